"""
The Gradio Space's serving path against float32 eager PyTorch on the CPU: speed, memory and top-1 agreement.

    python scripts/benchmark.py space                                      # SSAST-Base, stride 10, 1024 frames
    python scripts/benchmark.py space --agreement-model runs/quickstart      # plus a model trained with the toolkit

Speed: generated songs (30 s and 180 s, 22 050 Hz) classified whole (resampling, fbank, 10 s windows, soft vote) by
SSAST-Base with the course project's configuration (stride 10, 1024 frames: 1214 tokens). The baseline is
`gtzan_hf.inference.songs.classify_song` with its defaults on the float32 model (8 windows per pass). Against it: every
serving form of `gtzan_hf.serving.forms` (with token merging too: `float32+tome`, `onnx-int8+tome`...) with one window
per pass and 8, and what the Space serves: the form its start-up calibration picked, through
`gtzan_hf.serving.demo.GenreClassifier(...).iter_classify` on a WAV file (decoding included), as the page streams it,
with the time to its first update (the first window's genre). Runs are interleaved (a drift of the machine hits them
alike), medians of `--repeats` after a warm-up; the peak memory is the growth of the process's peak RSS during a
variant's runs (`/proc/self/clear_refs`).

Agreement: top-1 of every window and every song (soft vote) of each form against float32, on generated test songs
drawn with a seed of their own. A random-weight model gives near-uniform outputs whose argmax agreement means
nothing, so agreement is measured on trained models:
- SSAST-Base with a trained head: the timed model's classifier is fitted (logistic regression) on the float32 pooled
  embeddings of generated training songs, a linear probe of the untrained backbone that tells the genres apart;
- `--agreement-model`: any saved or Hub classifier, e.g. the quickstart model (`scripts/finetune.py --preset
  quickstart`), on more songs since it is small.
"""

import argparse
import platform
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import soundfile as sf
import torch
from sklearn.linear_model import LogisticRegression

from gtzan_hf.data.synthetic import GTZAN_GENRES, synthesize_song
from gtzan_hf.inference.audio import to_mono
from gtzan_hf.inference.songs import classify_song
from gtzan_hf.models.configuration_ssast import SSASTConfig
from gtzan_hf.models.feature_extraction_ssast import SSASTFeatureExtractor
from gtzan_hf.models.loading import load_classifier
from gtzan_hf.models.modeling_ssast import SSASTForAudioClassification
from gtzan_hf.serving.demo import GenreClassifier, cpu_count, load_recording, serve_on_cpu
from gtzan_hf.serving.forms import (
    bfloat16_is_native,
    build_form,
    calibration_windows,
    form_names,
    probability_change,
)

SAMPLING_RATE = 22050
BATCHED = 8  # classify_song's default


def _songs(songs_per_genre: int, seconds: float, seed: int) -> list[tuple[int, np.ndarray]]:
    """`(label, waveform)` of generated songs, each from its own generator `(seed, genre, index)`."""
    return [
        (label, synthesize_song(genre, np.random.default_rng([seed, label, index]), seconds, SAMPLING_RATE))
        for label, genre in enumerate(GTZAN_GENRES)
        for index in range(songs_per_genre)
    ]


def _base_model() -> tuple[SSASTForAudioClassification, SSASTFeatureExtractor]:
    torch.manual_seed(0)
    config = SSASTConfig.from_size(
        "base",
        max_length=1024,
        freq_stride=10,
        time_stride=10,
        num_labels=len(GTZAN_GENRES),
        id2label=dict(enumerate(GTZAN_GENRES)),
        label2id={genre: label for label, genre in enumerate(GTZAN_GENRES)},
    )
    # the windows a run of the course project's recipe records (10 s every 10 s), not the whole 10.24 s input
    feature_extractor = SSASTFeatureExtractor(max_length=1024, window_seconds=10.0, hop_seconds=10.0)
    return SSASTForAudioClassification(config).eval(), feature_extractor


@torch.inference_mode()
def fit_probe_head(model, feature_extractor, songs: list[tuple[int, np.ndarray]]) -> float:
    """
    Fit the classifier of an SSAST model on the float32 pooled embeddings of `songs` (one 10 s window each) by
    multinomial logistic regression, and write it into `model.classifier.dense` (after its layer norm). Returns
    the training accuracy.
    """
    embeddings, labels = [], []
    captured = []
    hook = model.classifier.dense.register_forward_pre_hook(lambda _, args: captured.append(args[0]))
    try:
        for label, waveform in songs:
            mono = to_mono(waveform[:, None], SAMPLING_RATE, feature_extractor.sampling_rate)
            model(**feature_extractor(mono, sampling_rate=feature_extractor.sampling_rate, return_tensors="pt"))
            labels.append(label)
    finally:
        hook.remove()
    embeddings = torch.cat(captured).numpy()
    probe = LogisticRegression(C=10.0, max_iter=2000).fit(embeddings, labels)
    model.classifier.dense.weight.copy_(torch.from_numpy(probe.coef_).float())
    model.classifier.dense.bias.copy_(torch.from_numpy(probe.intercept_).float())
    return float(probe.score(embeddings, labels))


def agreement(reference, forms: dict, feature_extractor, songs: list[tuple[int, np.ndarray]]) -> dict[str, dict]:
    """Top-1 agreement of each of `forms` (`{name: model}`) with `reference` on every window and every song, the
    change of the window probabilities (as the calibration measures it) and of the song probabilities, and the song
    accuracy against the generated genres."""
    counts = {name: {"windows": 0, "songs": 0, "correct": 0, "shift": [], "window_change": []} for name in forms}
    windows = reference_correct = 0
    for label, waveform in songs:
        first = classify_song(waveform, SAMPLING_RATE, reference, feature_extractor)
        windows += len(first.window_starts)
        reference_correct += int(first.probabilities.argmax() == label)
        for name, model in forms.items():
            second = classify_song(waveform, SAMPLING_RATE, model, feature_extractor)
            count = counts[name]
            count["windows"] += int(
                (first.window_probabilities.argmax(1) == second.window_probabilities.argmax(1)).sum()
            )
            count["songs"] += int(first.probabilities.argmax() == second.probabilities.argmax())
            count["correct"] += int(second.probabilities.argmax() == label)
            count["shift"].append(np.abs(first.probabilities - second.probabilities).max())
            count["window_change"].append(
                probability_change(
                    torch.from_numpy(second.window_probabilities), torch.from_numpy(first.window_probabilities)
                )
                * len(first.window_starts)
            )
    return {
        name: {
            "window_agreement": count["windows"] / windows,
            "windows": windows,
            "song_agreement": count["songs"] / len(songs),
            "songs": len(songs),
            "window_change": sum(count["window_change"]) / windows,
            "mean_shift": float(np.mean(count["shift"])),
            "max_shift": float(np.max(count["shift"])),
            "reference_accuracy": reference_correct / len(songs),
            "accuracy": count["correct"] / len(songs),
        }
        for name, count in counts.items()
    }


def _peak_rss_growth(run) -> tuple[float, float]:
    """`(seconds, MB)`: the time of `run()` and how far the process's peak RSS rose above its RSS before it."""

    def status(field: str) -> float:
        line = next(line for line in Path("/proc/self/status").read_text().splitlines() if line.startswith(field))
        return int(line.split()[1]) / 1024

    Path("/proc/self/clear_refs").write_text("5")  # the peak RSS starts again from the current RSS
    before = status("VmRSS:")
    start = time.perf_counter()
    run()
    return time.perf_counter() - start, status("VmHWM:") - before


def timing(model, feature_extractor, forms: dict, song_seconds: float, repeats: int, served: GenreClassifier) -> None:
    """Print the table of every variant on a generated song of `song_seconds`."""
    song = _songs(1, song_seconds, seed=202)[len(GTZAN_GENRES) // 2][1]
    classify = partial(classify_song, song, SAMPLING_RATE, feature_extractor=feature_extractor)
    variants = {"float32, classify_song defaults (baseline)": partial(classify, model=model)}
    for name, form in forms.items():
        for batch_size in (1, BATCHED):
            variants[f"{name}, {batch_size} per pass"] = partial(classify, model=form, batch_size=batch_size)
    first_updates, decoding = [], []

    def streamed(path: Path) -> None:
        """The Space's request: `iter_classify` to its last update, noting when the first came."""
        start = time.perf_counter()
        updates = served.iter_classify(path)
        next(updates)
        first_updates.append(time.perf_counter() - start)
        for _ in updates:
            pass

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "song.wav"
        sf.write(path, song, SAMPLING_RATE)
        served_name = f"served: GenreClassifier.iter_classify ({served.form.name}, {served.form.batch_size} per pass)"
        variants[served_name] = partial(streamed, path)
        times, memory = {name: [] for name in variants}, {name: 0.0 for name in variants}
        for repeat in range(repeats + 1):
            for name, run in variants.items():
                seconds, megabytes = _peak_rss_growth(run)
                memory[name] = max(memory[name], megabytes)
                if repeat:  # the first round warms up
                    times[name].append(seconds)
                elif name == served_name:
                    first_updates.clear()
                print(f"  [{song_seconds:g} s, round {repeat}] {name}: {seconds:.2f} s", file=sys.stderr, flush=True)
            start = time.perf_counter()
            load_recording(path).resampled(served.feature_extractor.sampling_rate)
            decoding.append(time.perf_counter() - start)
    baseline = statistics.median(times["float32, classify_song defaults (baseline)"])
    print(f"\nA {song_seconds:g} s song, whole (resample, fbank, windows, vote), median of {repeats}:")
    print("| variant | seconds | speed-up over the baseline | peak RSS growth (MB) |\n| --- | --- | --- | --- |")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {baseline / median:.2f}x | {memory[name]:.0f} |")
    print(
        f"Served, streamed: the first window's update after {statistics.median(first_updates):.2f} s (median), of "
        f"which {statistics.median(decoding):.2f} s decoding and resampling the WAV; the whole song after "
        f"{statistics.median(times[served_name]):.2f} s."
    )


def _print_agreement(model: str, results: dict[str, dict]) -> None:
    for form, result in results.items():
        print(
            f"| {model} | {form} | {100 * result['window_agreement']:.1f} % of {result['windows']} | "
            f"{100 * result['song_agreement']:.1f} % of {result['songs']} | {result['window_change']:.4f} | "
            f"{result['mean_shift']:.4f} / "
            f"{result['max_shift']:.4f} | {100 * result['reference_accuracy']:.0f} % / "
            f"{100 * result['accuracy']:.0f} % |"
        )


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmark.py space", description=__doc__.strip().split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant (after one warm-up)")
    parser.add_argument("--song-seconds", type=float, nargs="+", default=[30.0, 180.0])
    others = form_names()[1:]
    parser.add_argument("--forms", nargs="+", default=others, choices=others, help="forms besides float32")
    parser.add_argument("--probe-songs-per-genre", type=int, default=3, help="10 s training songs of the base head")
    parser.add_argument("--songs-per-genre", type=int, default=3, help="test songs of the base model")
    parser.add_argument("--test-seconds", type=float, default=30.0, help="length of the base model's test songs")
    parser.add_argument("--agreement-model", action="append", default=[], help="trained classifier(s), repeatable")
    parser.add_argument("--model-songs-per-genre", type=int, default=20, help="30 s test songs per --agreement-model")
    parser.add_argument("--skip-timing", action="store_true")
    parser.add_argument("--skip-agreement", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str]) -> None:
    args = _parse(argv)
    threads = serve_on_cpu()
    print(
        f"# space benchmark: {platform.processor() or platform.machine()}, {cpu_count()} CPUs available, {threads} "
        f"torch threads, torch {torch.__version__}, native bfloat16: {bfloat16_is_native()}"
    )
    model, feature_extractor = _base_model()
    start = time.perf_counter()
    train_accuracy = fit_probe_head(model, feature_extractor, _songs(args.probe_songs_per_genre, 10.0, seed=101))
    print(
        f"SSAST-Base (stride 10, 1024 frames, {model.config.num_patches + model.config.num_cls_tokens} tokens): head "
        f"fitted on {args.probe_songs_per_genre * len(GTZAN_GENRES)} generated 10 s songs (training accuracy "
        f"{100 * train_accuracy:.0f} %) in {time.perf_counter() - start:.0f} s"
    )
    windows = calibration_windows(feature_extractor)
    with tempfile.TemporaryDirectory() as export_dir:
        forms = {name: build_form(name, model, windows, export_dir) for name in args.forms}
    with tempfile.TemporaryDirectory() as folder:  # the Space's own path: a saved folder, loaded and calibrated
        model.save_pretrained(folder)
        feature_extractor.save_pretrained(folder)
        served = GenreClassifier(folder)
        served.load()
    form = served.form
    print(
        f"Served after calibration: {form.describe()}; seconds per window: {form.candidates}; window probability "
        f"changes on the calibration windows: { {name: round(change, 4) for name, change in form.changes.items()} }"
    )

    if not args.skip_timing:
        for song_seconds in args.song_seconds:
            timing(model, feature_extractor, forms, song_seconds, args.repeats, served)

    if args.skip_agreement:
        return
    print("\nTop-1 agreement with float32 on generated test songs (each model's own windows, soft vote):")
    print(
        "| model | form | windows | songs | window probability change, mean | song probability change, mean / max | "
        "song accuracy float32 / form |"
    )
    print("| --- | --- | --- | --- | --- | --- | --- |")
    test_songs = _songs(args.songs_per_genre, args.test_seconds, seed=303)
    _print_agreement(
        f"SSAST-Base, linear-probe head ({args.test_seconds:g} s songs)",
        agreement(model, forms, feature_extractor, test_songs),
    )
    del model, forms, served
    for model_id in args.agreement_model:
        reference, model_feature_extractor = load_classifier(model_id)
        with tempfile.TemporaryDirectory() as export_dir:
            windows = calibration_windows(model_feature_extractor)
            forms = {name: build_form(name, reference, windows, export_dir) for name in args.forms}
        songs = _songs(args.model_songs_per_genre, 30.0, seed=404)
        _print_agreement(
            f"{Path(model_id).name} (30 s songs)", agreement(reference, forms, model_feature_extractor, songs)
        )


if __name__ == "__main__":
    main(sys.argv[1:])
