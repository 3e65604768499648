"""Reports of a fine-tuning run or an evaluation: metrics.json, confusion matrices, per-genre accuracy, learning
curves, a t-SNE map of the embeddings, a SpecAugment example, and a comparison table of runs."""

import csv
import json
from pathlib import Path

import matplotlib
import numpy as np
from matplotlib.figure import Figure
from sklearn.manifold import TSNE
from sklearn.metrics import confusion_matrix

from ..data.splits import read_record
from ..errors import UserError
from ..inference.plots import show_fbank
from ..inference.predict import WindowPredictions
from ..inference.voting import song_predictions, vote_rules
from ..metrics import song_level_metrics


def metric_keys() -> tuple[str, ...]:
    """The keys of a split's entry in metrics.json: clip accuracy, the song accuracy of every vote rule
    ([`~gtzan_hf.inference.voting.vote_rules`]), macro F1 and per-genre accuracy."""
    return ("clip_accuracy", *(rule.metric for rule in vote_rules().values()), "macro_f1", "per_genre_accuracy")


def split_metrics(predictions: WindowPredictions, label_names: list[str]) -> dict:
    """The metrics.json entry of one split (fractions in [0, 1])."""
    metrics = song_level_metrics(predictions.logits, predictions.labels, predictions.song_index, label_names)
    return {key: metrics[key] for key in (*metric_keys(), "num_clips", "num_songs")}


def _write_confusion(matrix: np.ndarray, label_names: list[str], title: str, path_stem: Path) -> None:
    with open(path_stem.with_suffix(".csv"), "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["true \\ predicted", *label_names])
        for name, row in zip(label_names, matrix):
            writer.writerow([name, *row.tolist()])
    size = max(4.0, 0.55 * len(label_names) + 2)
    figure = Figure(figsize=(size, size))
    axes = figure.subplots()
    axes.imshow(matrix, cmap="Blues")
    for (row, column), value in np.ndenumerate(matrix):
        color = "white" if value > matrix.max() / 2 else "black"
        axes.text(column, row, int(value), ha="center", va="center", color=color, fontsize=8)
    axes.set_xticks(range(len(label_names)), label_names, rotation=45, ha="right")
    axes.set_yticks(range(len(label_names)), label_names)
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    axes.set_title(title)
    figure.tight_layout()
    figure.savefig(path_stem.with_suffix(".png"), dpi=120)


def write_confusion_matrices(predictions: WindowPredictions, label_names: list[str], output_dir: Path, split: str):
    """Clip-level and song-level (soft voting) confusion matrices, as PNG and CSV."""
    labels = range(len(label_names))
    clip = confusion_matrix(predictions.labels, predictions.logits.argmax(axis=1), labels=labels)
    _write_confusion(clip, label_names, f"{split}: clips", output_dir / f"confusion_clip_{split}")
    _, song_labels, song_predicted = song_predictions(
        predictions.probabilities(), predictions.labels, predictions.song_index, "soft"
    )
    song = confusion_matrix(song_labels, song_predicted, labels=labels)
    _write_confusion(song, label_names, f"{split}: songs (soft voting)", output_dir / f"confusion_song_{split}")


def write_per_genre_chart(per_genre_accuracy: dict[str, float], output_dir: Path, split: str) -> None:
    names = list(per_genre_accuracy)
    values = [100 * per_genre_accuracy[name] for name in names]
    figure = Figure(figsize=(max(5.0, 0.6 * len(names) + 2), 3.5))
    axes = figure.subplots()
    axes.bar(names, values, color="tab:blue")
    for position, value in enumerate(values):
        axes.text(position, value + 1, f"{value:.0f}", ha="center", fontsize=8)
    axes.set_ylim(0, 110)
    axes.set_ylabel("song accuracy (%)")
    axes.set_title(f"{split}: per-genre accuracy")
    axes.tick_params(axis="x", rotation=45)
    figure.tight_layout()
    figure.savefig(output_dir / f"per_genre_accuracy_{split}.png", dpi=120)


def write_learning_curves(log_history: list[dict], output_dir: Path) -> None:
    """Training and validation accuracy and loss per epoch, from `trainer.state.log_history`."""
    train = [entry for entry in log_history if "loss" in entry and "epoch" in entry]
    evaluation = [entry for entry in log_history if "eval_loss" in entry and "epoch" in entry]
    figure = Figure(figsize=(10, 3.5))
    loss_axes, accuracy_axes = figure.subplots(1, 2)
    loss_axes.plot([e["epoch"] for e in train], [e["loss"] for e in train], label="train", color="tab:red")
    loss_axes.plot([e["epoch"] for e in evaluation], [e["eval_loss"] for e in evaluation], label="validation")
    loss_axes.set_title("loss")
    points = [e for e in train if "train_accuracy" in e]
    accuracy_axes.plot([e["epoch"] for e in points], [e["train_accuracy"] for e in points], label="train (clips)")
    for key, label in (("eval_clip_accuracy", "validation (clips)"), ("eval_song_accuracy", "validation (songs)")):
        points = [e for e in evaluation if key in e]
        accuracy_axes.plot([e["epoch"] for e in points], [e[key] for e in points], label=label)
    accuracy_axes.set_title("accuracy")
    for axes in (loss_axes, accuracy_axes):
        axes.set_xlabel("epoch")
        axes.legend()
    figure.tight_layout()
    figure.savefig(output_dir / "learning_curves.png", dpi=120)
    with open(output_dir / "learning_curves.csv", "w", newline="") as handle:
        keys = ["epoch", "step", "loss", "train_accuracy", "eval_loss", "eval_clip_accuracy", "eval_song_accuracy"]
        writer = csv.DictWriter(handle, fieldnames=keys, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(train + evaluation)


def write_tsne(predictions: WindowPredictions, label_names: list[str], output_dir: Path, split: str, seed: int = 0):
    """2-D t-SNE map of the segment embeddings, coloured by true genre."""
    embeddings = predictions.embeddings
    if embeddings is None or len(embeddings) < 3:
        return
    perplexity = float(min(30, len(embeddings) - 1))
    points = TSNE(n_components=2, perplexity=perplexity, random_state=seed, init="pca").fit_transform(embeddings)
    figure = Figure(figsize=(6.5, 5))
    axes = figure.subplots()
    colours = matplotlib.colormaps["tab10" if len(label_names) <= 10 else "tab20"]
    for label, name in enumerate(label_names):
        members = predictions.labels == label
        if members.any():
            axes.scatter(*points[members].T, s=10, color=colours(label % colours.N), label=name)
    axes.legend(fontsize=7, markerscale=1.5, loc="best")
    axes.set_title(f"{split}: t-SNE of pooled embeddings")
    axes.set_xticks([])
    axes.set_yticks([])
    figure.tight_layout()
    figure.savefig(output_dir / f"tsne_{split}.png", dpi=120)


def write_spectrogram_pair(before: np.ndarray, after: np.ndarray, path: Path) -> None:
    """One training sample's normalised filter bank before and after SpecAugment, (frames, bins) each."""
    figure = Figure(figsize=(8, 5))
    axes = figure.subplots(2, 1, sharex=True)
    for ax, values, title in zip(axes, (before, after), ("before SpecAugment", "after SpecAugment")):
        show_fbank(ax, values, title)
    axes[0].set_xlabel("")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def write_evaluation_reports(
    splits: dict[str, WindowPredictions], label_names: list[str], output_dir: str | Path, seed: int = 0
) -> dict:
    """metrics.json (`{split: {clip_accuracy, song_accuracy, ...}}`), confusion matrices, per-genre charts and t-SNE
    maps of every evaluated split. Returns the metrics."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    metrics = {}
    for split, predictions in splits.items():
        metrics[split] = split_metrics(predictions, label_names)
        write_confusion_matrices(predictions, label_names, output_dir, split)
        write_per_genre_chart(metrics[split]["per_genre_accuracy"], output_dir, split)
        write_tsne(predictions, label_names, output_dir, split, seed=seed)
    (output_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def read_run_settings(run_dir: str | Path) -> dict:
    """The settings a run or an evaluation was made with: its `run_config.json` or `evaluation_config.json`."""
    for name in ("run_config.json", "evaluation_config.json"):
        if (Path(run_dir) / name).is_file():
            return read_record(Path(run_dir) / name, "the settings of a run or an evaluation")
    raise UserError(
        f"{run_dir} holds neither run_config.json nor evaluation_config.json: name the output_dir of a finished run "
        "or evaluation."
    )


def describe_windows(settings: dict) -> str:
    """Training (or a linear probe's fitting) and evaluation windows in words, with their lengths and hops."""
    crop = float(settings.get("crop_seconds") or 10.0)
    hop = float(settings.get("eval_hop_seconds") or crop)
    segments = settings.get("eval_segments")
    if settings.get("linear_probe"):
        training = f"fixed {crop:g} s windows every {hop:g} s of the training and validation songs (a linear probe)"
    elif settings.get("crop_strategy", "random-crop") == "random-crop":
        training = f"a random {crop:g} s crop of each song at every epoch"
    else:
        training = f"fixed {crop:g} s windows every {hop:g} s, each a separate sample"
    evaluation = f"{segments} windows" if segments else "as many windows as cover the song"
    return f"Training on {training}; evaluation on {evaluation} of {crop:g} s every {hop:g} s per song"


def window_names(settings: dict) -> tuple[str, str]:
    """What a clip and a song are under `settings`, for table headers: `("10 s clip", "30 s song")`."""
    crop = float(settings.get("crop_seconds") or 10.0)
    hop = float(settings.get("eval_hop_seconds") or crop)
    segments = settings.get("eval_segments")
    if not segments:
        song = f"song: all {crop:g} s windows, hop {hop:g} s"
    else:
        song = f"{segments * crop:g} s song" if hop == crop else f"song: {segments} × {crop:g} s, hop {hop:g} s"
    return f"{crop:g} s clip", song


def table_keys() -> tuple[str, ...]:
    """The metrics of the comparison tables: clip accuracy, then the song accuracy of each vote rule marked
    `in_tables` (the soft vote, the course project's)."""
    return ("clip_accuracy", *(rule.metric for rule in vote_rules().values() if rule.in_tables))


def accuracy_table(rows: list[tuple[str, dict, dict[str, str]]]) -> str:
    """
    Markdown table in the course project's Table 1 layout (model, clip accuracy, song accuracy), plus the song
    accuracy under each other vote rule marked `in_tables`. `rows` are `(name, settings, cells by table_keys())`; the
    headers name the windows when all rows share them, else a Windows column does.
    """
    names = {window_names(settings) for _, settings, _ in rows}
    windows_column = len(names) > 1
    clip, song = ("clip", "song") if windows_column else names.pop()
    header = ["Model", *(["Windows"] if windows_column else []), f"Accuracy ({clip})", f"Accuracy ({song})"]
    rules = [rule for rule in vote_rules().values() if rule.in_tables and rule.name != "soft"]
    header += [f"Accuracy ({song}, {rule.vote_label})" for rule in rules]
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    for name, settings, cells in rows:
        windows = [" / ".join(window_names(settings))] if windows_column else []
        lines.append("| " + " | ".join([name, *windows, *(cells[key] for key in table_keys())]) + " |")
    return "\n".join(lines)


def comparison_table(run_dirs: list[str | Path], split: str = "test") -> str:
    """The `split` figures of finished runs or evaluations, one row each (see [`accuracy_table`])."""
    rows = []
    for run_dir in map(Path, run_dirs):
        metrics_file = run_dir / "metrics.json"
        if not metrics_file.exists():
            raise UserError(f"{metrics_file} not found: is {run_dir} the output_dir of a finished run?")
        figures = json.loads(metrics_file.read_text())[split]
        cells = {key: f"{100 * figures[key]:.2f} %" for key in table_keys()}
        rows.append((run_dir.name, read_run_settings(run_dir), cells))
    return accuracy_table(rows)
