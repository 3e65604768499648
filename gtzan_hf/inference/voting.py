"""Song-level voting over the predictions of a song's segments (windows).

One place for the rules, used by the evaluation metric, `scripts/evaluate_model.py` and the Gradio Space.
"""

import numpy as np

VOTING_RULES = ("soft", "hard", "hybrid", "course-project")


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of `(num_segments, num_labels)` logits, computed stably."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def vote(probabilities: np.ndarray, rule: str = "soft") -> int:
    """
    Predicted class of one song from the `(num_segments, num_labels)` probabilities of its segments.

    - `soft`: argmax of the mean probability (the default and the headline figure);
    - `hard`: majority of the segments' argmaxes, ties going to the lowest class index;
    - `hybrid`: majority of the segments' argmaxes, ties broken by the mean probability of the tied classes;
    - `course-project`: the course project's hybrid, behind its 82.2 %: majority of the segments' argmaxes; without a
      single majority (a 1-1-1 tie of three windows), the argmax of the mean probability over *all* classes, which
      may be a class no segment voted for.
    """
    mean_probabilities = probabilities.mean(axis=0)
    if rule == "soft":
        return int(mean_probabilities.argmax())
    counts = np.bincount(probabilities.argmax(axis=1), minlength=probabilities.shape[1])
    if rule == "hard":
        return int(counts.argmax())
    if rule == "hybrid":
        tied = counts == counts.max()
        return int(np.where(tied, mean_probabilities, -np.inf).argmax())
    if rule == "course-project":
        return int(counts.argmax()) if (counts == counts.max()).sum() == 1 else int(mean_probabilities.argmax())
    raise ValueError(f"Unknown voting rule {rule!r}: choose one of {VOTING_RULES}.")


def song_predictions(
    probabilities: np.ndarray, labels: np.ndarray, song_ids: np.ndarray, rule: str = "soft"
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """
    Group segment probabilities by song and vote.

    Args:
        probabilities: `(num_segments, num_labels)` class probabilities of every segment.
        labels: `(num_segments,)` true class of every segment (the same for all segments of a song).
        song_ids: `(num_segments,)` identifier of the song each segment comes from.

    Returns:
        `(unique_song_ids, song_labels, song_predicted)`, one entry per song, sorted by song id.
    """
    unique_songs, inverse = np.unique(song_ids, return_inverse=True)
    song_labels = np.empty(len(unique_songs), dtype=np.int64)
    song_predicted = np.empty(len(unique_songs), dtype=np.int64)
    for index in range(len(unique_songs)):
        members = inverse == index
        if len(np.unique(labels[members])) != 1:
            raise ValueError(f"Segments of song {unique_songs[index]!r} carry different labels.")
        song_labels[index] = labels[members][0]
        song_predicted[index] = vote(probabilities[members], rule)
    return unique_songs, song_labels, song_predicted
