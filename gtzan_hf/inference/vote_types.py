"""What a song-level vote rule is ([`VoteRule`]) and the count rules are built from ([`majority_counts`]). A leaf
module (numpy only): recipes define their rules on it without importing the registry
([`gtzan_hf.inference.voting`]), which imports the recipes."""

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class VoteRule:
    """One song-level vote: `choose` maps a song's `(windows, labels)` probabilities to a class index."""

    name: str  # as `classify_song(vote=...)` names it
    metric: str  # key of the song accuracy under this rule
    vote_label: str  # the vote in words, for tables and model cards: "soft vote"
    description: str
    choose: Callable[[np.ndarray], int]
    in_tables: bool = False  # a column of the comparison tables (`--compare`, cross-validation)

    @property
    def label(self) -> str:
        return f"song accuracy ({self.vote_label})"


def majority_counts(probabilities: np.ndarray) -> np.ndarray:
    """`(labels,)` how many windows have each class as their top class."""
    return np.bincount(probabilities.argmax(axis=1), minlength=probabilities.shape[1])
