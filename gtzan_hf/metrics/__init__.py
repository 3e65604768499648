"""The package's `evaluate` metrics, loaded by path (no Hub access needed), and the functions built on them."""

from functools import cache
from pathlib import Path

import evaluate
import numpy as np

SONG_ACCURACY_METRIC = Path(__file__).parent / "song_accuracy"


@cache
def load_song_accuracy_metric() -> evaluate.EvaluationModule:
    """The package's `song_accuracy` evaluate module, loaded by path (no Hub access needed)."""
    return evaluate.load(str(SONG_ACCURACY_METRIC))


def song_level_metrics(logits: np.ndarray, labels: np.ndarray, song_index: np.ndarray, label_names) -> dict:
    """Clip and song accuracies, macro F1 and per-class song accuracy of segment logits (see the metric module)."""
    return load_song_accuracy_metric().compute(
        predictions=logits, references=labels, song_ids=song_index, label_names=label_names
    )
