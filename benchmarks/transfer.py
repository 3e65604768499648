"""Does self-supervised pretraining pay off at small scale? Pretrain on unlabeled audio, fine-tune on a small labeled
set, and compare with the same fine-tuning from scratch, over k folds that together test every labeled song.

    python scripts/benchmark.py transfer [--seed 1 2 3 4] [--pretrain-seed 42 7 11] [--folds 3] [--audio clean|hard]
        [--workdir DIR] [--pretrain "--max_steps 600"] [--finetune "--learning_rate 1e-4 --layer_decay 0.75"]

The audio (written on first use, reused afterwards) is the generated corpus (`gtzan_hf.data.synthetic`):
- **labeled**: `--songs-per-genre` songs of `--seconds` per genre (6 of 10 s: per fold 2 per genre to train on, so
  that fine-tuning from scratch stays far from the 90 %+ it reaches on the full generated corpus);
- **unlabeled pool**: `--pool-songs-per-genre` songs of `--pool-seconds`, drawn from other seeds, so that no labeled
  song (and no test song) is ever pretrained on; its labels are never read.
With `--audio hard` every song is also degraded (`degrade`): resampled by up to +-2 semitones (pitch and tempo move
together, blurring the genres' tempo ranges), a second song of another genre mixed in underneath, coloured noise at
0-10 dB SNR and a random gain.

Then: one pretraining run (`--preset tiny` and the `--pretrain` flags) on the pool per `--pretrain-seed` (3 by
default: one run's gain can be several points above or below the next one's), and per fold of a stratified
`--folds`-fold split of the labeled songs (test fold f, validation fold f + 1, training the rest) fine-tuning runs of
the same recipe and budget (`--preset quickstart` with the `--finetune` flags, by default the encoder at 1e-4 and the
head at 1e-3): one from scratch and one from each pretraining folder (`--pretrained-finetune` adds flags to those
only; `--pretrained DIR` fine-tunes from an existing pretraining folder or checkpoint instead). Prints the
pretraining curves, each run's test song and clip accuracies, and mean +- std over the folds and pretraining runs
(each pretrained run's gain against the from-scratch run of its fold); writes them to
`<workdir>/<audio>/labeled-seed<seed>-<size>-<folds>folds/transfer-<recipe>.json`. Every folder (songs, pretraining,
runs) is named after the sizes, seeds and flags it depends on: a finished one is reused when the command is repeated,
never another's. The recipe (the `tiny` preset's 3,000 steps, the fine-tuning rates) was chosen on `--seed 0 5 6`, the
development labeled sets; seeds 1-4, pooled, are the benchmark's.
"""

import argparse
import json
import logging
import shlex
import sys
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import lfilter

from gtzan_hf.commands.finetune import parse_finetune_args, run_finetune
from gtzan_hf.commands.pretrain import parse_pretrain_args, run_pretrain
from gtzan_hf.data.synthetic import GTZAN_GENRES, synthesize_song

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helpers beside this suite
from _runs import mean_std, slug  # noqa: E402

SAMPLING_RATE = 22050
POOL_SEED = 1000  # the unlabeled pool's songs come from a seed no labeled set uses
# Both arms' fine-tuning: the quickstart recipe with the encoder at a tenth of its rate (the head keeps 1e-3), so that
# a pretrained encoder is adapted rather than overwritten by 20 labeled songs; chosen on the development sets.
FINETUNE = "--learning_rate 1e-4"


def degrade(audio: np.ndarray, other: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A generated song made hard to classify: `audio` and `other` (a song of another genre, at least as long) are
    float32 `(samples,)`; returns `(len(audio),)` float32 in [-1, 1]."""
    # read faster or slower (looping at the end): pitch and tempo shift together
    ratio = 2.0 ** (rng.uniform(-2.0, 2.0) / 12)
    positions = np.arange(len(audio)) * ratio % len(audio)
    audio = np.interp(positions, np.arange(len(audio)), audio)
    audio = audio + rng.uniform(0.2, 0.5) * other[: len(audio)]
    # coloured noise: white noise through a random one-pole low-pass
    pole = rng.uniform(0.0, 0.95)
    noise = lfilter([1 - pole], [1, -pole], rng.standard_normal(len(audio)))
    snr_db = rng.uniform(0.0, 10.0)
    noise *= np.sqrt(np.mean(audio**2) / (np.mean(noise**2) * 10 ** (snr_db / 10)))
    audio = audio + noise
    audio = audio / max(np.abs(audio).max(), 1e-9) * rng.uniform(0.1, 0.9)
    return audio.astype(np.float32)


def write_corpus(out_dir: Path, songs_per_genre: int, seconds: float, seed: int, hard: bool) -> Path:
    """`<out_dir>/<genre>/<genre>.000NN.wav` for GTZAN's ten genres, each song `degrade`d if `hard`; written once."""
    done = out_dir / "complete"
    if done.is_file():
        return out_dir
    for genre_index, genre in enumerate(GTZAN_GENRES):
        (out_dir / genre).mkdir(parents=True, exist_ok=True)
        for index in range(songs_per_genre):
            rng = np.random.default_rng([seed, genre_index, index])
            other = GTZAN_GENRES[(genre_index + 1 + rng.integers(len(GTZAN_GENRES) - 1)) % len(GTZAN_GENRES)]
            song = synthesize_song(genre, rng, seconds, SAMPLING_RATE)
            background = synthesize_song(other, rng, seconds, SAMPLING_RATE)
            path = out_dir / genre / f"{genre}.{index:05d}.wav"
            sf.write(path, degrade(song, background, rng) if hard else song, SAMPLING_RATE, subtype="PCM_16")
    done.write_text("")
    return out_dir


def test_metrics(output_dir: Path, argv: list[str]) -> dict:
    """The test metrics of a fine-tuning run, trained now unless `output_dir` holds a finished one."""
    if not (output_dir / "metrics.json").is_file():
        run_finetune(*parse_finetune_args([*argv, "--output_dir", str(output_dir)]))
    return json.loads((output_dir / "metrics.json").read_text())["test"]


def pretrain(output_dir: Path, pool: Path, flags: list[str]) -> None:
    """Pretrain with `--preset tiny` and `flags` on `pool`, unless `output_dir` holds a finished run."""
    if not (output_dir / "trainer_state.json").is_file():
        run_pretrain(*parse_pretrain_args(
            ["--preset", "tiny", "--dataset", str(pool), "--output_dir", str(output_dir), *flags]
        ))  # fmt: skip


def pretraining_curves(output_dir: Path) -> list[dict]:
    """Step, mpc_loss, mpg_loss and mpc_accuracy at every log of the pretraining run in `output_dir`, printed."""
    state = json.loads((output_dir / "trainer_state.json").read_text())
    curves = [
        {key: entry[key] for key in ("step", "mpc_loss", "mpg_loss", "mpc_accuracy")}
        for entry in state["log_history"]
        if "mpc_loss" in entry
    ]
    print(f"Pretraining of {output_dir}: step, mpc_loss, mpg_loss, mpc_accuracy")
    for entry in curves[:: max(len(curves) // 10, 1)] + curves[-1:]:
        print(f"  {entry['step']:5d}  {entry['mpc_loss']:.3f}  {entry['mpg_loss']:.3f}  {entry['mpc_accuracy']:.3f}")
    return curves


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="benchmark.py transfer", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("runs/transfer-benchmark"))
    parser.add_argument("--seed", type=int, nargs="+", default=[1, 2, 3, 4], help="labeled set(s), pooled when "
                        "several (0, 5, 6: the recipe's development sets; 1-4: the benchmark's)")  # fmt: skip
    parser.add_argument("--audio", choices=["clean", "hard"], default="clean", help="generated songs as they are "
                        "(few labels make them hard) or each `degrade`d")  # fmt: skip
    parser.add_argument("--songs-per-genre", type=int, default=6)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--pool-songs-per-genre", type=int, default=30)
    parser.add_argument("--pool-seconds", type=float, default=20.0)
    parser.add_argument("--folds", type=int, default=3)
    parser.add_argument("--pretrain", default="", help="extra scripts/pretrain.py flags (over --preset tiny)")
    parser.add_argument("--pretrain-seed", type=int, nargs="+", default=[42, 7, 11], help="one pretraining run per "
                        "seed, each fine-tuned from and pooled: the gain moves by points from run to run")  # fmt: skip
    parser.add_argument("--pretrained", type=Path, help="fine-tune from this pretrained folder instead of pretraining")
    parser.add_argument("--finetune", default=FINETUNE, help="extra scripts/finetune.py flags for both arms")
    parser.add_argument("--pretrained-finetune", default="", help="extra flags for the pretrained arm only")
    parser.add_argument("--arms", default="scratch,pretrained", help="the arms to run (comma-separated)")
    parser.add_argument("--only-fold", type=int, help="run this fold only (e.g. one per process), no summary")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    cache = ["--cache_dir", str(args.workdir / "cache"), "--disable_tqdm", "true"]
    hard = args.audio == "hard"
    root = args.workdir / args.audio  # each kind of audio has its own songs, pretraining and runs
    # every folder is named after what it depends on, so that changed sizes or flags never reuse other runs
    pool_name = f"pool-{args.pool_songs_per_genre}x{args.pool_seconds:g}s"
    pool = write_corpus(root / "data" / pool_name, args.pool_songs_per_genre, args.pool_seconds, POOL_SEED, hard)
    sources = [args.pretrained] if args.pretrained else [
        root / "pretrain" / f"{pool_name}-{slug(args.pretrain)}-seed{seed}" for seed in args.pretrain_seed
    ]  # fmt: skip
    arms = args.arms.split(",")
    runs_of = {
        "scratch": [(f"scratch-{slug(args.finetune)}", [])],
        "pretrained": [
            (
                f"pretrained-{source.name}-{slug(args.finetune)}-{slug(args.pretrained_finetune)}",
                ["--model_name_or_path", str(source), *shlex.split(args.pretrained_finetune)],
            )
            for source in sources
        ],
    }
    curves = {}
    if "pretrained" in arms:
        if args.pretrained is None:
            for seed, source in zip(args.pretrain_seed, sources):
                pretrain(source, pool, [*cache, "--seed", str(seed), *shlex.split(args.pretrain)])
        for source in sources:
            if (source / "trainer_state.json").is_file():  # an original checkpoint has no curves to show
                curves[source.name] = pretraining_curves(source)
    pretraining = (
        sources[0].name
        if args.pretrained
        else f"{pool_name}-{slug(args.pretrain)}-seeds{slug(str(args.pretrain_seed))}"
    )
    what = f"{args.folds} folds" + (f" x {len(sources)} pretraining run(s)" if "pretrained" in arms else "")

    pooled = {arm: [] for arm in arms}
    for seed in args.seed:
        labeled_name = f"labeled-seed{seed}-{args.songs_per_genre}x{args.seconds:g}s"
        labeled = write_corpus(root / "data" / labeled_name, args.songs_per_genre, args.seconds, seed, hard)
        runs = root / f"{labeled_name}-{args.folds}folds"
        finetune = [
            "--preset", "quickstart", "--dataset", str(labeled), "--split", "kfold", "--num_folds", str(args.folds),
            "--crop_seconds", "5", "--eval_hop_seconds", str((args.seconds - 5) / 2), *cache,
            *shlex.split(args.finetune),
        ]  # fmt: skip
        results = {arm: [] for arm in arms}
        for fold in range(args.folds) if args.only_fold is None else [args.only_fold]:
            for arm in arms:
                for name, flags in runs_of[arm]:
                    metrics = test_metrics(runs / name / f"fold{fold}", [*finetune, "--fold", str(fold), *flags])
                    results[arm].append({key: metrics[key] for key in ("song_accuracy", "clip_accuracy")})
                    print(
                        f"seed {seed} fold {fold} {name}: song {metrics['song_accuracy']:.3f} "
                        f"clip {metrics['clip_accuracy']:.3f}"
                    )
        if args.only_fold is not None:
            continue
        summarize(results, f"{what}, labeled seed {seed}")
        if len(arms) == 2:
            summary = {"args": {k: str(v) for k, v in vars(args).items()}, "pretraining": curves, "folds": results}
            results_file = runs / f"transfer-{pretraining}-{slug(args.finetune)}-{slug(args.pretrained_finetune)}.json"
            results_file.write_text(json.dumps(summary, indent=2))
            print(f"Written to {results_file}")
        for arm in arms:
            pooled[arm] += results[arm]
    if args.only_fold is None and len(args.seed) > 1:
        summarize(pooled, f"{what}, all labeled seeds {args.seed}")


def summarize(results: dict[str, list[dict]], what: str) -> None:
    """Print each arm's test accuracies, and the pretrained arm's gain, as mean +- std over the folds."""
    print(f"\nTest accuracy (%), mean +- std over {what}:")
    for arm, folds in results.items():
        songs, clips = ([fold[key] for fold in folds] for key in ("song_accuracy", "clip_accuracy"))
        print(f"  {arm:10s} song {mean_std(songs)}   clip {mean_std(clips)}")
    if len(results) == 2:
        # each pretrained run (fold-major, one per pretraining run) is paired with the from-scratch run of its fold
        runs_per_fold = len(results["pretrained"]) // len(results["scratch"])
        scratch = [fold for fold in results["scratch"] for _ in range(runs_per_fold)]
        gains = {
            key: [p[key] - s[key] for p, s in zip(results["pretrained"], scratch)]
            for key in ("song_accuracy", "clip_accuracy")
        }
        print(f"  {'gain':10s} song {mean_std(gains['song_accuracy'])}   clip {mean_std(gains['clip_accuracy'])}")


if __name__ == "__main__":
    main(sys.argv[1:])
