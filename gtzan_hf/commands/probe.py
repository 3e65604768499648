"""
Linear probes on frozen embeddings, the protocol of the published GTZAN figures for audio foundation models (MERT,
Jukebox, M2D): a logistic regression on standardised window embeddings written by `scripts/embed.py`, its inverse
regularisation `C` chosen on the validation split by song accuracy, then scored once on the test split with the
package's song-level voting metric. `scripts/probe.py` is its command line.
"""

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
from datasets import DatasetDict, load_dataset
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from ..errors import UserError
from ..inference.predict import WindowPredictions
from ..reports.evaluation import split_metrics, write_confusion_matrices
from .cli import entry_point, parse_args

logger = logging.getLogger(__name__)

SPLITS = ("train", "validation", "test")


@dataclass
class ProbeArguments:
    embeddings_dir: str | None = field(default=None, metadata={"help": "Output folder of scripts/embed.py."})
    output_dir: str = field(default="probe", metadata={"help": "Where probe_metrics.json and the figures go."})
    c_values: list[float] = field(
        default_factory=lambda: [1e-4, 1e-3, 1e-2, 1e-1, 1.0, 10.0],
        metadata={"help": "Inverse regularisation strengths tried; the best on validation song accuracy is kept."},
    )
    max_iter: int = field(default=2000, metadata={"help": "L-BFGS iterations of each fit."})
    cache_dir: str | None = field(default=None, metadata={"help": "datasets cache folder."})


def load_window_embeddings(embeddings_dir: str | Path, cache_dir: str | None = None) -> DatasetDict:
    """The `train`, `validation` and `test` window embeddings of a `scripts/embed.py` output folder."""
    windows = Path(embeddings_dir) / "windows"
    missing = [split for split in SPLITS if not any(windows.glob(f"{split}-*.parquet"))]
    if missing:
        raise UserError(
            f"No {', '.join(missing)} embeddings in {windows}: expected the output folder of scripts/embed.py "
            "(windows/{train,validation,test}-*.parquet)."
        )
    return load_dataset("parquet", data_dir=str(windows), cache_dir=cache_dir)


def _split_arrays(dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`(embeddings (windows, width), labels (windows,), song_index (windows,))` of one split."""
    columns = dataset.with_format("numpy")[:]
    _, song_index = np.unique(columns["song_id"], return_inverse=True)
    return columns["embedding"].astype(np.float32), columns["label"], song_index


def _predictions(probe, arrays) -> WindowPredictions:
    embeddings, labels, song_index = arrays
    # Log-probabilities as logits: the metric's softmax gives the probe's probabilities back.
    logits = np.log(np.clip(probe.predict_proba(embeddings), 1e-12, None))
    return WindowPredictions(logits=logits, labels=labels, song_index=song_index)


def fit_probe(arrays: dict, label_names: list[str], c_values: list[float], max_iter: int = 2000):
    """
    Fits one standardised logistic regression per `C` on the training windows and keeps the best on validation song
    accuracy (ties: clip accuracy, then the stronger regularisation).

    Returns:
        `(probe, validation_scores)`: the fitted `Pipeline` and `{C: validation song accuracy}`.
    """
    embeddings, labels, _ = arrays["train"]
    if len(np.unique(labels)) != len(label_names):
        raise UserError(
            f"The training windows hold {len(np.unique(labels))} of the {len(label_names)} classes: every class "
            "needs training songs."
        )
    best, best_key, scores = None, None, {}
    for c in sorted(c_values):
        probe = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=max_iter)).fit(embeddings, labels)
        metrics = split_metrics(_predictions(probe, arrays["validation"]), label_names)
        scores[f"{c:g}"] = metrics["song_accuracy"]
        key = (metrics["song_accuracy"], metrics["clip_accuracy"])
        if best_key is None or key > best_key:  # ascending C: on a tie the stronger regularisation stays
            best, best_key = probe, key
    return best, scores


def run_probe(args: ProbeArguments) -> dict:
    """Fits the probe, writes `probe_metrics.json` (`{"validation": {...}, "test": {...}}`, as a run's
    metrics.json), clip- and song-level confusion matrices and `probe_config.json`; returns the metrics."""
    if args.embeddings_dir is None:
        raise UserError("Name the embeddings to probe: EMBEDDINGS_DIR, an output folder of scripts/embed.py.")
    embeddings = load_window_embeddings(args.embeddings_dir, args.cache_dir)
    label_names = embeddings["train"].features["label"].names
    arrays = {split: _split_arrays(embeddings[split]) for split in SPLITS}
    probe, scores = fit_probe(arrays, label_names, args.c_values, args.max_iter)
    output_dir = Path(args.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    metrics = {}
    for split in ("validation", "test"):
        predictions = _predictions(probe, arrays[split])
        metrics[split] = split_metrics(predictions, label_names)
        write_confusion_matrices(predictions, label_names, output_dir, split)
    (output_dir / "probe_metrics.json").write_text(json.dumps(metrics, indent=2))
    chosen = probe[-1].C
    (output_dir / "probe_config.json").write_text(
        json.dumps({**asdict(args), "chosen_c": chosen, "validation_song_accuracy": scores}, indent=2)
    )
    for split in ("validation", "test"):
        logger.info(
            "%s (C=%g): clip accuracy %.4f, song accuracy %.4f",
            split,
            chosen,
            metrics[split]["clip_accuracy"],
            metrics[split]["song_accuracy"],
        )
    return metrics


def main(argv: list[str] | None = None) -> None:
    argv = list(argv or [])
    if argv and not argv[0].startswith("-"):  # `probe.py EMBEDDINGS_DIR ...`
        argv = ["--embeddings_dir", *argv]
    args, _ = parse_args((ProbeArguments,), argv)
    run_probe(args)


cli = entry_point(main)

if __name__ == "__main__":
    cli()
