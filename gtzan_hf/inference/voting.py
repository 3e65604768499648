"""Song-level votes over the predictions of a song's windows, from one registry of rules.

A [`~gtzan_hf.inference.vote_types.VoteRule`] names a rule, the metric key it is reported under (`metrics.json`, the
Trainer's logs), its label in tables and model cards, and its function. The evaluation metric, the reports, the model
cards and [`~gtzan_hf.inference.songs.classify_song`] read [`vote_rules`]; recipes with rules of their own
([`gtzan_hf.recipes`]) plug them in.
"""

from functools import cache

import numpy as np

from ..recipes import plugins
from .vote_types import VoteRule, majority_counts


def _soft(probabilities: np.ndarray) -> int:
    return int(probabilities.mean(axis=0).argmax())


def _hard(probabilities: np.ndarray) -> int:
    return int(majority_counts(probabilities).argmax())


def _hybrid(probabilities: np.ndarray) -> int:
    counts = majority_counts(probabilities)
    return int(np.where(counts == counts.max(), probabilities.mean(axis=0), -np.inf).argmax())


BUILTIN_RULES = (
    VoteRule("soft", "song_accuracy", "soft vote", "the mean probability (the headline)", _soft, in_tables=True),
    VoteRule("hard", "song_accuracy_hard", "majority", "the windows' majority, ties to the lowest class", _hard),
    VoteRule(
        "hybrid",
        "song_accuracy_hybrid",
        "hybrid vote",
        "the windows' majority, ties broken by the tied classes' mean probability",
        _hybrid,
    ),
)


@cache
def vote_rules() -> dict[str, VoteRule]:
    """Every vote rule by name: the built-in ones, then the recipes' ([`gtzan_hf.recipes`]), in that order; read on
    first use, once every module has been imported."""
    return {rule.name: rule for rule in (*BUILTIN_RULES, *plugins("VOTE_RULES"))}


def vote(probabilities: np.ndarray, rule: str = "soft") -> int:
    """Predicted class of one song from the `(num_segments, num_labels)` probabilities of its windows (see
    [`vote_rules`] for the rules)."""
    rules = vote_rules()
    if rule not in rules:
        raise ValueError(f"Unknown voting rule {rule!r}: choose one of {', '.join(rules)}.")
    return rules[rule].choose(probabilities)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax of `(num_segments, num_labels)` logits, computed stably."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


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
