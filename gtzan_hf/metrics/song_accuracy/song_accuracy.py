"""Clip- and song-level accuracy of audio classification over fixed segments of songs."""

import datasets
import evaluate
import numpy as np
from sklearn.metrics import f1_score

from gtzan_hf.inference.voting import softmax, song_predictions, vote_rules

_DESCRIPTION = """
Accuracy of a classifier that predicts each song from its segments (e.g. three 10 s windows of a 30 s GTZAN track).
`clip_accuracy` scores every segment on its own; each song is scored once under every song-level vote of
`gtzan_hf.inference.voting.vote_rules()`: `song_accuracy` after soft voting (mean of the segments' probabilities),
`song_accuracy_hard` after majority voting, `song_accuracy_hybrid` after majority voting with ties broken by the tied
classes' mean probability, and the recipes' rules (`song_accuracy_course_project`: the course project's). `macro_f1`
and `per_genre_accuracy` are at song level (soft voting).
All values are fractions in [0, 1].
"""

_KWARGS_DESCRIPTION = """
Args:
    predictions (`list` of `list` of `float`): logits (or probabilities) of each segment, shape (segments, labels).
    references (`list` of `int`): true class of each segment.
    song_ids (`list` of `int`): the song each segment belongs to.
    label_names (`list` of `str`, *optional*): class names for `per_genre_accuracy` (default: the class indices).
    inputs_are_probabilities (`bool`, *optional*, defaults to `False`): skip the softmax.
Returns:
    clip_accuracy, the song accuracy of every vote rule (song_accuracy, song_accuracy_hard, ...), macro_f1,
    per_genre_accuracy
    (class name -> song accuracy of that class; classes without songs are left out), num_clips, num_songs.
Examples:
    >>> metric = evaluate.load("path/to/gtzan_hf/metrics/song_accuracy")
    >>> metric.compute(predictions=[[2.0, 0.0], [0.0, 1.0], [3.0, 0.0]], references=[0, 0, 0], song_ids=[7, 7, 7])
"""


@evaluate.utils.file_utils.add_start_docstrings(_DESCRIPTION, _KWARGS_DESCRIPTION)
class SongAccuracy(evaluate.Metric):
    def _info(self):
        return evaluate.MetricInfo(
            description=_DESCRIPTION,
            citation="",
            inputs_description=_KWARGS_DESCRIPTION,
            features=datasets.Features(
                {
                    "predictions": datasets.Sequence(datasets.Value("float32")),
                    "references": datasets.Value("int64"),
                    "song_ids": datasets.Value("int64"),
                }
            ),
        )

    def _compute(self, predictions, references, song_ids, label_names=None, inputs_are_probabilities=False):
        scores = np.asarray(predictions, dtype=np.float64)
        probabilities = scores if inputs_are_probabilities else softmax(scores)
        references = np.asarray(references)
        song_ids = np.asarray(song_ids)
        num_labels = probabilities.shape[1]
        label_names = list(label_names) if label_names is not None else [str(i) for i in range(num_labels)]

        _, song_labels, soft_predicted = song_predictions(probabilities, references, song_ids, "soft")
        results = {"clip_accuracy": float((probabilities.argmax(axis=1) == references).mean())}
        for rule in vote_rules().values():
            _, _, song_predicted = song_predictions(probabilities, references, song_ids, rule.name)
            results[rule.metric] = float((song_predicted == song_labels).mean())
        results["macro_f1"] = float(
            f1_score(song_labels, soft_predicted, labels=np.unique(song_labels), average="macro", zero_division=0)
        )
        results["per_genre_accuracy"] = {
            label_names[label]: float((soft_predicted[song_labels == label] == label).mean())
            for label in np.unique(song_labels)
        }
        results["num_clips"] = len(references)
        results["num_songs"] = len(song_labels)
        return results
