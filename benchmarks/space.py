"""
The Gradio Space's serving path against float32 eager PyTorch on the CPU: speed, and top-1 agreement.

    python scripts/benchmark.py space                                  # SSAST-Base, stride 10, 1024 frames
    python scripts/benchmark.py space --agreement-model runs/quickstart  # plus a model trained with the toolkit

Speed: a generated 30 s song (22 050 Hz) classified whole by `gtzan_hf.inference.classify_song` (resampling, fbank,
three 10 s windows, soft vote) with the seed's SSAST-Base configuration (stride 10, 1024 frames: 1214 tokens). The
baseline is the float32 model, one window per forward pass; what the Space serves is the same model with its Linear
layers but the head dynamically quantised to int8 (`load_classifier(..., quantize=True)`), one window per pass
(`SERVING_BATCH_SIZE`: batching them was measured slower), one torch thread per available CPU. The variants in
between, and bfloat16 weights, are timed too, interleaved (a drift of the machine hits them alike); medians of
`--repeats` runs after a warm-up. Every variant runs under `torch.inference_mode` (inside `classify_song`).

Agreement: top-1 of every window and every song (soft vote) of the int8 (and bfloat16) form against float32, on a
generated test set drawn with a seed of its own. A random-weight model gives near-uniform outputs whose argmax
agreement means nothing, so agreement is measured on trained models:
- SSAST-Base with a trained head: the timed model's classifier is fitted (logistic regression) on the float32 pooled
  embeddings of generated training songs, a linear probe of the untrained backbone that tells the genres apart;
  it is cut from the same 12 float32 layers, so the int8 error is that of the served base-size model.
- `--agreement-model`: any saved or Hub classifier, e.g. the quickstart model (`scripts/finetune.py --preset
  quickstart`), on more songs since it is small.
The mean and largest change of the song probabilities are printed alongside.
"""

import argparse
import copy
import platform
import statistics
import sys
import tempfile
import time
from functools import partial
from pathlib import Path

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression

from gtzan_hf.audio import to_mono
from gtzan_hf.configuration_ssast import SSASTConfig
from gtzan_hf.demo import SERVING_BATCH_SIZE, cpu_count, serve_on_cpu
from gtzan_hf.feature_extraction_ssast import SSASTFeatureExtractor
from gtzan_hf.inference import classify_song, load_classifier, quantize_linear_layers
from gtzan_hf.modeling_ssast import SSASTForAudioClassification
from gtzan_hf.synthetic import GTZAN_GENRES, synthesize_song

SAMPLING_RATE = 22050


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
    return SSASTForAudioClassification(config).eval(), SSASTFeatureExtractor(max_length=1024)


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
    change of the song probabilities, and the song accuracy against the generated genres."""
    counts = {name: {"windows": 0, "songs": 0, "correct": 0, "shift": []} for name in forms}
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
    return {
        name: {
            "window_agreement": count["windows"] / windows,
            "windows": windows,
            "song_agreement": count["songs"] / len(songs),
            "songs": len(songs),
            "mean_shift": float(np.mean(count["shift"])),
            "max_shift": float(np.max(count["shift"])),
            "reference_accuracy": reference_correct / len(songs),
            "accuracy": count["correct"] / len(songs),
        }
        for name, count in counts.items()
    }


def _print_agreement(model: str, results: dict[str, dict]) -> None:
    for form, result in results.items():
        print(
            f"| {model} | {form} | {100 * result['window_agreement']:.1f} % of {result['windows']} | "
            f"{100 * result['song_agreement']:.1f} % of {result['songs']} | {result['mean_shift']:.4f} / "
            f"{result['max_shift']:.4f} | {100 * result['reference_accuracy']:.0f} % / "
            f"{100 * result['accuracy']:.0f} % |"
        )


def _parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="benchmark.py space", description=__doc__.strip().split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per variant (after one warm-up)")
    parser.add_argument("--song-seconds", type=float, default=30.0)
    parser.add_argument("--probe-songs-per-genre", type=int, default=3, help="10 s training songs of the base head")
    parser.add_argument("--songs-per-genre", type=int, default=3, help="test songs of the base model")
    parser.add_argument("--test-seconds", type=float, default=10.0, help="length of the base model's test songs")
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
        f"torch threads, torch {torch.__version__}, quantized engine {torch.backends.quantized.engine}"
    )
    model, feature_extractor = _base_model()
    start = time.perf_counter()
    train_accuracy = fit_probe_head(model, feature_extractor, _songs(args.probe_songs_per_genre, 10.0, seed=101))
    print(
        f"SSAST-Base (stride 10, 1024 frames, {model.config.num_patches + model.config.num_cls_tokens} tokens): head "
        f"fitted on {args.probe_songs_per_genre * len(GTZAN_GENRES)} generated 10 s songs (training accuracy "
        f"{100 * train_accuracy:.0f} %) in {time.perf_counter() - start:.0f} s"
    )
    # a saved and reloaded copy: the int8 form is built exactly as the Space builds it
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        feature_extractor.save_pretrained(folder)
        served, _ = load_classifier(folder, quantize=True)
    forms = {"int8 dynamic (served)": served, "bfloat16": copy.deepcopy(model).to(torch.bfloat16)}

    if not args.skip_timing:
        song = _songs(1, args.song_seconds, seed=202)[len(GTZAN_GENRES) // 2][1]
        classify = partial(classify_song, song, SAMPLING_RATE, feature_extractor=feature_extractor)
        variants = {
            "float32, 1 window per pass (baseline)": partial(classify, model=model, batch_size=1),
            "float32, windows batched": partial(classify, model=model),
            "bfloat16, windows batched": partial(classify, model=forms["bfloat16"]),
            "int8 dynamic, windows batched": partial(classify, model=served),
            f"int8 dynamic, {SERVING_BATCH_SIZE} window per pass (served)": partial(
                classify, model=served, batch_size=SERVING_BATCH_SIZE
            ),
        }
        times = {name: [] for name in variants}
        for repeat in range(args.repeats + 1):
            for name, run in variants.items():
                start = time.perf_counter()
                run()
                if repeat:  # the first round warms up
                    times[name].append(time.perf_counter() - start)
        baseline = statistics.median(times["float32, 1 window per pass (baseline)"])
        print(f"\nA {args.song_seconds:g} s song, whole (resample, fbank, windows, vote), median of {args.repeats}:")
        print("| variant | seconds | speed-up over the baseline |\n| --- | --- | --- |")
        for name, values in times.items():
            print(f"| {name} | {statistics.median(values):.2f} | {baseline / statistics.median(values):.2f}x |")

    if args.skip_agreement:
        return
    print("\nTop-1 agreement with float32 on generated test songs (windows of 10 s, soft vote):")
    print("| model | form | windows | songs | song probability change, mean / max | song accuracy float32 / form |")
    print("| --- | --- | --- | --- | --- | --- |")
    test_songs = _songs(args.songs_per_genre, args.test_seconds, seed=303)
    results = agreement(model, forms, feature_extractor, test_songs)
    _print_agreement(f"SSAST-Base, linear-probe head ({args.test_seconds:g} s songs)", results)
    del model, served, forms
    for model_id in args.agreement_model:
        reference, model_feature_extractor = load_classifier(model_id)
        forms = {"int8 dynamic (served)": quantize_linear_layers(copy.deepcopy(reference))}
        songs = _songs(args.model_songs_per_genre, 30.0, seed=404)
        _print_agreement(
            f"{Path(model_id).name} (30 s songs)", agreement(reference, forms, model_feature_extractor, songs)
        )


if __name__ == "__main__":
    main(sys.argv[1:])
