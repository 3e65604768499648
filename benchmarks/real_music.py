"""Few labels, real recordings: k-fold test accuracy of fine-tuning recipes on soundtracks nobody here wrote, one
class per Debian game-music package, side by side in one run.

    python scripts/benchmark.py real_music [--packages P1 P2 ...] [--pool-packages Q1 Q2 ...] [--folds 4]
        [--fold 0 1] [--recipes quickstart few-labels] [--recipe NAME "FINETUNE FLAGS" ["PRETRAIN FLAGS"]]
        [--pretrain-on pool|labeled] [--cap 20] [--seconds 30] [--min-seconds 40] [--workdir DIR]

The audio comes from installed Debian packages (`apt-get install` them first: the command says which are missing):
- **labeled corpus**, one class per package of `--packages`: the package's music files (`dpkg -L`; audio that
  soundfile decodes, also inside `.pk3`/`.zip` archives, whose path names a music, bgm or soundtrack folder, or any
  audio of a package so named; tracker modules and MIDI, e.g. pingus-data's, are not audio here), at least
  `--min-seconds` long, symlinked and identical copies counted once (content hash, across packages too); at most
  `--cap` per class, spread evenly over the sorted names; from each, `--seconds` cut from the middle, written as
  `<workdir>/data/<corpus>/<package>/<track>.flac` (the toolkit's folder layout);
- **pretraining audio**, for the recipes that pretrain (`--pretrain-on`): `pool`, the full-length music files of
  `--pool-packages`, which must share no package with `--packages`, so that no labeled (and no test) track is ever
  pretrained on, one pretraining run shared by the folds; or `labeled`, in domain, the full-length files of the
  labeled tracks but those the fold tests (as the first recipe's run of that fold split them), one pretraining run
  per fold.

The recipes: `quickstart` (`--preset quickstart`, as the README runs it) and `few-labels` (`--preset few-labels`,
a linear probe of a randomly initialised CNN); `--recipe` adds others. Per recipe, fine-tuning runs
(`scripts/finetune.py` with the recipe's flags) on each fold of a stratified `--folds`-fold split of the labeled tracks
(test fold f, validation fold f + 1, training the rest; every track is tested once), each from a pretraining run of
the recipe's pretraining flags (`scripts/pretrain.py` on the pretraining audio) when it has some, else from scratch.
Beside them, on the same test tracks, two classic baselines (`_baselines.py`, librosa: `pip install -e
".[benchmarks]"`): a logistic regression on each track's 96-band log-mel statistics, and one on hand-crafted
features, fitted on all the other tracks with the linear probe's protocol. Prints each run's test song and clip
accuracies and, per baseline and recipe, mean +- std over the folds, the gain over the log-mel statistics baseline
(paired by fold), chance, the majority class and the training time per fold; writes them to
`<workdir>/<corpus>-<k>folds/real_music-<recipes>-folds<list>.json`. Every folder (corpus, pool, pretraining, runs)
is named after the packages, sizes and flags it depends on: a finished one is reused when the command is repeated,
never another's.

The few-labels recipe was chosen on two package sets, the default `--packages` and `--packages warzone2100-music
hyperrogue-music planetblupi-music-ogg drascula-music nexuiz-music singularity-music`; no other package took part in
the choice. Both are in BENCHMARKS.md.
"""

import argparse
import hashlib
import io
import json
import re
import shlex
import subprocess
import sys
import time
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import soundfile as sf

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the helpers beside this suite
from _baselines import BASELINES, fold_accuracies  # noqa: E402
from _runs import mean_std, slug  # noqa: E402

SCRIPTS = Path(__file__).resolve().parents[1] / "scripts"
AUDIO_SUFFIXES = (".ogg", ".oga", ".opus", ".flac", ".wav", ".mp3")
ARCHIVE_SUFFIXES = (".pk3", ".zip")  # game data archives, e.g. ufoai-music's 0music.pk3
MUSIC = re.compile(r"music|bgm|soundtrack", re.IGNORECASE)
DEVELOPMENT_PACKAGES = [
    "ufoai-music", "wesnoth-1.16-music", "freedroidrpg-data", "extremetuxracer-data", "hedgewars-data",
    "supertux-data",
]  # fmt: skip
POOL_PACKAGES = ["widelands-data", "supertuxkart-data", "megaglest-data", "openclonk-data"]
# name: (scripts/finetune.py flags, scripts/pretrain.py flags or None to train from scratch)
RECIPES = {
    "quickstart": ("--preset quickstart --crop_seconds 5 --eval_hop_seconds 10", None),
    "few-labels": ("--preset few-labels", None),
}


def installed(package: str) -> bool:
    status = subprocess.run(["dpkg-query", "-W", "-f=${Status}", package], capture_output=True, text=True)
    return status.returncode == 0 and status.stdout.endswith(" installed")


def music_tracks(package: str, min_seconds: float):
    """(name, encoded bytes) of each music track of an installed package at least `min_seconds` long, sorted by
    name; a track is a decodable audio file or archive member whose path (or package) names music."""
    listed = subprocess.run(["dpkg", "-L", package], capture_output=True, text=True, check=True).stdout.split("\n")
    music_package = MUSIC.search(package) is not None
    files = sorted({Path(line).resolve() for line in listed if line.startswith("/") and Path(line).is_file()})
    tracks = []
    for path in files:
        if path.suffix.lower() in AUDIO_SUFFIXES and (music_package or MUSIC.search(str(path.parent))):
            tracks.append((path.stem, path.read_bytes()))
        elif path.suffix.lower() in ARCHIVE_SUFFIXES and zipfile.is_zipfile(path):
            with zipfile.ZipFile(path) as archive:
                for member in archive.namelist():
                    inner = Path(member)
                    if inner.suffix.lower() in AUDIO_SUFFIXES and (music_package or MUSIC.search(str(inner.parent))):
                        tracks.append((inner.stem, archive.read(member)))
    long_enough = []
    for name, data in tracks:
        try:
            seconds = sf.info(io.BytesIO(data)).duration
        except (sf.LibsndfileError, RuntimeError):  # a format libsndfile does not decode
            continue
        if seconds >= min_seconds:
            long_enough.append((re.sub(r"[^\w.-]+", "_", name), data))
    return sorted(long_enough)


def distinct(tracks, seen: set[str]):
    """The tracks whose content was not seen yet (`seen` is updated), each under a name unique among them."""
    names = Counter()
    for name, data in tracks:
        digest = hashlib.sha256(data).hexdigest()
        if digest in seen:
            continue
        seen.add(digest)
        names[name] += 1
        yield (name if names[name] == 1 else f"{name}-{names[name]}"), data


def write_labeled(out_dir: Path, packages: list[str], cap: int, seconds: float, min_seconds: float) -> Path:
    """`<out_dir>/<package>/<track>.flac`: `seconds` from the middle of at most `cap` tracks per package."""
    if (out_dir / "complete").is_file():
        return out_dir
    seen = set()
    for package in packages:
        tracks = list(distinct(music_tracks(package, min_seconds), seen))
        if not tracks:
            sys.exit(f"{package} has no music track of at least {min_seconds:g} s: choose another package")
        keep = np.unique(np.linspace(0, len(tracks) - 1, min(cap, len(tracks))).round().astype(int))
        (out_dir / package).mkdir(parents=True, exist_ok=True)
        for index in keep:
            name, data = tracks[index]
            with sf.SoundFile(io.BytesIO(data)) as track:
                length = round(seconds * track.samplerate)
                track.seek(max((track.frames - length) // 2, 0))
                audio = track.read(length, dtype="float32", always_2d=True)
                sampling_rate = track.samplerate
            sf.write(out_dir / package / f"{name}.flac", audio, sampling_rate, subtype="PCM_16")
    (out_dir / "complete").write_text("")
    return out_dir


def write_full(out_dir: Path, corpus: Path, packages: list[str], min_seconds: float) -> Path:
    """`<out_dir>/<package>/<track><suffix>`: the full-length music file of each track of `corpus`, as shipped."""
    if (out_dir / "complete").is_file():
        return out_dir
    seen = set()
    for package in packages:
        (out_dir / package).mkdir(parents=True, exist_ok=True)
        for name, data in distinct(music_tracks(package, min_seconds), seen):  # the names write_labeled gave
            if (corpus / package / f"{name}.flac").is_file():
                (out_dir / package / f"{name}{suffix_of(data)}").write_bytes(data)
    (out_dir / "complete").write_text("")
    return out_dir


def without_test_tracks(full: Path, split_file: Path) -> Path:
    """`<full>-fold<f>of<k>/<package>/`: links to the files of `full` but those of the tracks that `split_file` (a
    fine-tuning run's splits.json) tests, for in-domain pretraining that never sees the fold's test tracks."""
    split = json.loads(split_file.read_text())
    out_dir = full.with_name(f"{full.name}-fold{split['fold']}of{split['num_folds']}")
    if (out_dir / "complete").is_file():
        return out_dir
    test = set(split["song_ids"]["test"])
    for path in sorted(full.glob("*/*")):
        if path.stem not in test:
            (out_dir / path.parent.name).mkdir(parents=True, exist_ok=True)
            (out_dir / path.parent.name / path.name).symlink_to(path.resolve())
    (out_dir / "complete").write_text("")
    return out_dir


def suffix_of(data: bytes) -> str:
    return {"OGG": ".ogg", "FLAC": ".flac", "WAV": ".wav", "MP3": ".mp3"}[sf.info(io.BytesIO(data)).format]


def write_pool(out_dir: Path, packages: list[str], min_seconds: float) -> Path:
    """`<out_dir>/<package>/<track><suffix>`: every distinct music track of the packages, full length, as shipped."""
    if (out_dir / "complete").is_file():
        return out_dir
    seen = set()
    for package in packages:
        (out_dir / package).mkdir(parents=True, exist_ok=True)
        for name, data in distinct(music_tracks(package, min_seconds), seen):
            (out_dir / package / f"{name}{suffix_of(data)}").write_bytes(data)
    (out_dir / "complete").write_text("")
    return out_dir


def run_script(script: str, output_dir: Path, flags: list[str], done: str) -> None:
    """Run `scripts/<script>` with `flags` into `output_dir`, unless it holds `done` (a finished run); its wall-clock
    time, data preparation included, goes to `benchmark_seconds.txt`."""
    if (output_dir / done).is_file():
        return
    output_dir.mkdir(parents=True, exist_ok=True)
    log = output_dir / "benchmark.log"
    command = [sys.executable, str(SCRIPTS / script), *flags, "--output_dir", str(output_dir)]
    start = time.perf_counter()
    with log.open("w") as stream:
        if subprocess.run(command, stdout=stream, stderr=subprocess.STDOUT).returncode:
            sys.exit(f"{shlex.join(command)} failed: see {log}")
    (output_dir / "benchmark_seconds.txt").write_text(f"{time.perf_counter() - start:.1f}\n")


def train_seconds(output_dir: Path) -> float:
    """The training time of the finished run in `output_dir`, as it logged it (no data preparation; for a linear
    probe, its features and fit)."""
    return json.loads((output_dir / "all_results.json").read_text())["train_runtime"]


def wall_seconds(output_dir: Path) -> float | None:
    """The run's whole wall-clock time, data preparation included, when this benchmark ran it (else `None`)."""
    path = output_dir / "benchmark_seconds.txt"
    return float(path.read_text()) if path.is_file() else None


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="benchmark.py real_music", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workdir", type=Path, default=Path("runs/real-music-benchmark"))
    parser.add_argument("--packages", nargs="+", default=DEVELOPMENT_PACKAGES, help="labeled: one class each")
    parser.add_argument("--pool-packages", nargs="+", default=POOL_PACKAGES, help="unlabeled pretraining audio")
    parser.add_argument("--pretrain-on", choices=["pool", "labeled"], default="pool",
                        help="pretraining audio: the pool's packages, or the full-length labeled tracks but the "
                        "fold's test tracks")  # fmt: skip
    parser.add_argument("--cap", type=int, default=20, help="at most this many tracks per class")
    parser.add_argument("--seconds", type=float, default=30.0, help="excerpt cut from the middle of each track")
    parser.add_argument("--min-seconds", type=float, default=40.0, help="shorter files are not counted as tracks")
    parser.add_argument("--folds", type=int, default=4)
    parser.add_argument("--fold", type=int, nargs="+", help="run these folds only (development: faster)")
    parser.add_argument("--recipes", nargs="+", default=list(RECIPES), choices=list(RECIPES), help="the first is "
                        "the first recipe's runs split the folds for --pretrain-on labeled")  # fmt: skip
    parser.add_argument("--recipe", nargs="+", action="append", default=[], metavar="NAME FLAGS",
                        help="another recipe: a name, scripts/finetune.py flags and optionally scripts/pretrain.py "
                        "flags (then fine-tuned from that pretraining on the pool)")  # fmt: skip
    args = parser.parse_args(argv)
    recipes = {name: RECIPES[name] for name in args.recipes}
    for name, *flags in args.recipe:
        if len(flags) not in (1, 2):
            parser.error(f"--recipe {name}: give the fine-tuning flags and at most the pretraining flags")
        recipes[name] = (flags[0], flags[1] if len(flags) == 2 else None)
    pretraining = any(pretrain_flags is not None for _, pretrain_flags in recipes.values())
    if args.pretrain_on == "labeled" and next(iter(recipes.values()))[1] is not None:
        parser.error("--pretrain-on labeled: the first recipe must train from scratch (its runs split the folds)")
    pool_packages = args.pool_packages if pretraining and args.pretrain_on == "pool" else []
    if set(args.packages) & set(pool_packages):
        parser.error(f"{sorted(set(args.packages) & set(args.pool_packages))} both labeled and in the pool: a test "
                     "track would be pretrained on; choose --pool-packages without them")  # fmt: skip
    missing = [p for p in [*args.packages, *pool_packages] if not installed(p)]
    if missing:
        sys.exit(f"Missing Debian packages; install them with: sudo apt-get install {' '.join(missing)}")

    cache = ["--cache_dir", str(args.workdir / "cache"), "--disable_tqdm", "true"]
    corpus_name = f"{'+'.join(args.packages)}-cap{args.cap}-{args.seconds:g}s-min{args.min_seconds:g}s"
    corpus = write_labeled(
        args.workdir / "data" / corpus_name, args.packages, args.cap, args.seconds, args.min_seconds
    )
    counts = {package: len(list((corpus / package).glob("*.flac"))) for package in args.packages}
    total = sum(counts.values())
    print(f"Labeled corpus {corpus}: {total} tracks, " + ", ".join(f"{p} {n}" for p, n in counts.items()))
    if pool_packages:
        pool = write_pool(
            args.workdir / "data" / f"pool-{'+'.join(pool_packages)}-min{args.min_seconds:g}s", pool_packages,
            args.min_seconds,
        )  # fmt: skip
        print(f"Unlabeled pool {pool}: {len([p for p in pool.rglob('*') if p.is_file()]) - 1} tracks")
    elif pretraining:
        full = write_full(args.workdir / "data" / f"{corpus_name}-full", corpus, args.packages, args.min_seconds)
        print(f"Full-length labeled tracks {full}, pretrained on but for each fold's test tracks")

    runs = args.workdir / f"{corpus_name}-{args.folds}folds"
    folds = args.fold if args.fold is not None else list(range(args.folds))
    results = {}
    first_run = runs / f"{next(iter(recipes))}-{slug(next(iter(recipes.values()))[0])}"
    for name, (finetune_flags, pretrain_flags) in recipes.items():
        run_name = f"{name}-{slug(finetune_flags)}"
        if pretrain_flags is not None:
            audio = pool.name if pool_packages else "in-domain"
            run_name += f"-from-{audio}-{slug(pretrain_flags)}"
        results[name] = {"finetune": finetune_flags, "pretrain": pretrain_flags, "pretrain_on": args.pretrain_on}
        results[name]["folds"] = []
        for fold in folds:
            start, pretrain_seconds = [], 0.0
            if pretrain_flags is not None:
                audio = pool if pool_packages else without_test_tracks(full, first_run / f"fold{fold}/splits.json")
                source = args.workdir / "pretrain" / f"{audio.name}-{slug(pretrain_flags)}"
                pretrain_argv = ["--dataset", str(audio), *cache, *shlex.split(pretrain_flags)]
                run_script("pretrain.py", source, pretrain_argv, "trainer_state.json")
                pretrain_seconds = train_seconds(source)
                start = ["--model_name_or_path", str(source)]
            flags = [
                "--dataset", str(corpus), "--split", "kfold", "--num_folds", str(args.folds), "--fold", str(fold),
                *cache, *shlex.split(finetune_flags), *start,
            ]  # fmt: skip
            output_dir = runs / run_name / f"fold{fold}"
            run_script("finetune.py", output_dir, flags, "metrics.json")
            seconds = train_seconds(output_dir)
            test = json.loads((output_dir / "metrics.json").read_text())["test"]
            results[name]["folds"].append(
                {"fold": fold, "song_accuracy": test["song_accuracy"], "clip_accuracy": test["clip_accuracy"],
                 "seconds": seconds, "wall_seconds": wall_seconds(output_dir), "pretrain_seconds": pretrain_seconds}
            )  # fmt: skip
            print(f"fold {fold} {name}: song {test['song_accuracy']:.3f} clip {test['clip_accuracy']:.3f} "
                  f"({seconds:.0f} s)")  # fmt: skip
    split_files = [first_run / f"fold{fold}" / "splits.json" for fold in folds]
    baselines = {}
    for name in BASELINES:
        accuracies = fold_accuracies(corpus, name, split_files, args.workdir / "baselines" / corpus_name)
        scores = [{"fold": f, "song_accuracy": a, "clip_accuracy": a} for f, a in zip(folds, accuracies)]
        baselines[name] = {"baseline": True, "folds": scores}
        print(f"{name}: song " + ", ".join(f"{accuracy:.3f}" for accuracy in accuracies))
    results = baselines | results
    summarize(results, counts, f"{len(folds)} of {args.folds} folds, {len(args.packages)} packages, {total} tracks")
    results_file = runs / f"real_music-{slug('-'.join(recipes))}-folds{slug(str(folds))}.json"
    results_file.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "counts": counts,
                                        "recipes": results}, indent=2))  # fmt: skip
    print(f"Written to {results_file}")


def summarize(results: dict, counts: dict[str, int], what: str) -> None:
    """Print each baseline's and recipe's test accuracies and its gain over the first baseline's (the log-mel
    statistics), as mean +- std over the folds; a baseline has one prediction per track (its clip is its song)."""
    total = sum(counts.values())
    print(f"\nTest accuracy (%), mean +- std over {what}; chance {100 / len(counts):.1f}, "
          f"majority class {100 * max(counts.values()) / total:.1f}:")  # fmt: skip
    baseline = next(iter(results.values()))["folds"]
    for name, recipe in results.items():
        folds = recipe["folds"]
        songs, clips = ([fold[key] for fold in folds] for key in ("song_accuracy", "clip_accuracy"))
        line = f"  {name:18s} song {mean_std(songs)}   clip {mean_std(clips)}"
        if folds is not baseline:
            gains = {
                key: [fold[key] - base[key] for fold, base in zip(folds, baseline)]
                for key in ("song_accuracy", "clip_accuracy")
            }
            line += f"   gain song {mean_std(gains['song_accuracy'])} clip {mean_std(gains['clip_accuracy'])}"
        if recipe.get("baseline"):
            print(line)
            continue
        seconds = [fold["seconds"] for fold in folds]
        line += f"   training {np.mean(seconds) / 60:.1f} min per fold"
        walls = [fold["wall_seconds"] for fold in folds if fold.get("wall_seconds")]
        if walls:
            line += f" (the whole run {np.mean(walls) / 60:.1f} min)"
        if recipe["pretrain"] is not None:
            pretrain_minutes = max(fold["pretrain_seconds"] for fold in folds) / 60
            line += f" + {pretrain_minutes:.1f} min pretraining " + (
                "(shared by the folds)" if recipe["pretrain_on"] == "pool" else "per fold (at most)"
            )
        print(line)


if __name__ == "__main__":
    main(sys.argv[1:])
