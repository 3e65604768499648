"""
The course project's quirks (M. Beghdad and D. Mokhtari, *SSAST: Self-Supervised Audio Spectrogram Transformer —
Architecture Comparison for Audio Classification (GTZAN)*,
https://github.com/dhiahakmokhtari/Self-Supervised-Audio-Spectrogram-Transformer-DL), as its public code ran them
for its 79.5 % clip / 82.2 % song accuracy: its song vote, its split lists and its SpecAugment axes. The presets
`course-project-exact`, `ssast-gtzan` and `cnn-gtzan` use them; its per-epoch cosine schedule is the Trainer's
general `--lr_schedule_per_epoch`.
"""

import csv
from pathlib import Path

import numpy as np

from ..inference.vote_types import VoteRule, majority_counts

SPLIT_FILES = Path(__file__).parent / "course_project_splits"


def course_project_vote(probabilities: np.ndarray) -> int:
    """The project's "hybrid" song vote: the majority of the windows' top classes; without a single majority (a
    1-1-1 tie of three windows), the argmax of the mean probability over *all* classes, which may be a class no
    window voted for."""
    counts = majority_counts(probabilities)
    return int(counts.argmax()) if (counts == counts.max()).sum() == 1 else int(probabilities.mean(axis=0).argmax())


def _lists(file_name: str):
    def song_lists() -> dict[str, list[str]]:
        """The song ids of the split, from its CSV (`song_id`, `genre`, `split`)."""
        names = {"train": "train", "val": "validation", "test": "test"}
        lists = {name: [] for name in names.values()}
        with open(SPLIT_FILES / file_name, newline="") as handle:
            for row in csv.DictReader(handle):
                lists[names[row["split"]]].append(row["song_id"])
        return lists

    return song_lists


VOTE_RULES = [
    VoteRule(
        "course-project",
        "song_accuracy_course_project",
        "course project's vote",
        "the course project's: the windows' majority; without a single majority, the mean probability",
        course_project_vote,
        in_tables=True,
    )
]
# `course-project`: the split of its headline figures (Strategy A, 10 s clips: 799/99/101 songs, `jazz.00054` in none);
# `course-project-30s`: the split of its Strategy B and CNN runs (800/100/100 songs).
SPLIT_LISTS = {
    "course-project": _lists("course_project_10s_clips.csv"),
    "course-project-30s": _lists("course_project_30s_songs.csv"),
}
# Its masks met a `(1, frames, bins)` tensor: the frequency mask (`freq_mask`) spanned frames and the time mask
# (`time_mask`) mel bins.
SPEC_AUGMENT_AXES = {"swapped": (1, 2)}
