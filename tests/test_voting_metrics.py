import subprocess
import sys

import numpy as np
import pytest

from gtzan_hf.inference.voting import song_predictions, vote
from gtzan_hf.metrics import song_level_metrics


def test_soft_vote_follows_mean_probability_not_majority():
    # Two segments mildly prefer class 0, one strongly prefers class 1.
    probabilities = np.array([[0.55, 0.45], [0.55, 0.45], [0.0, 1.0]])
    assert vote(probabilities, "soft") == 1
    assert vote(probabilities, "hard") == 0
    assert vote(probabilities, "hybrid") == 0


def test_tie_breaking_hard_versus_hybrid():
    # One vote each for classes 0 and 2: hard takes the lowest index, hybrid the higher mean probability.
    probabilities = np.array([[0.5, 0.1, 0.4], [0.05, 0.35, 0.6]])
    assert vote(probabilities, "hard") == 0
    assert vote(probabilities, "hybrid") == 2


def test_unknown_rule_is_refused():
    with pytest.raises(ValueError, match="soft"):
        vote(np.ones((1, 2)), "average")


def test_song_predictions_group_segments_by_song():
    probabilities = np.array([[0.9, 0.1], [0.2, 0.8], [0.3, 0.7], [0.6, 0.4]])
    labels = np.array([0, 1, 1, 0])
    songs, song_labels, predicted = song_predictions(probabilities, labels, np.array([4, 9, 9, 4]))
    assert songs.tolist() == [4, 9]
    assert song_labels.tolist() == [0, 1]
    assert predicted.tolist() == [0, 1]


def test_song_predictions_refuse_mixed_labels_within_a_song():
    with pytest.raises(ValueError, match="different labels"):
        song_predictions(np.ones((2, 2)) / 2, np.array([0, 1]), np.array([3, 3]))


def test_song_accuracy_metric_on_hand_made_logits():
    # Song 0 (class a): segments right, wrong, right. Song 1 (class b): all wrong. Song 2 (class b): right by soft
    # vote only (one confident segment against two hesitant ones).
    logits = np.log(
        np.array(
            [
                [0.9, 0.1],
                [0.4, 0.6],
                [0.8, 0.2],
                [0.7, 0.3],
                [0.6, 0.4],
                [0.9, 0.1],
                [0.01, 0.99],
                [0.55, 0.45],
                [0.55, 0.45],
            ]
        )
    )
    labels = np.array([0, 0, 0, 1, 1, 1, 1, 1, 1])
    songs = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2])
    metrics = song_level_metrics(logits, labels, songs, ["a", "b"])
    assert metrics["clip_accuracy"] == pytest.approx(3 / 9)
    assert metrics["song_accuracy"] == pytest.approx(2 / 3)
    assert metrics["song_accuracy_hard"] == pytest.approx(1 / 3)
    assert metrics["song_accuracy_hybrid"] == pytest.approx(1 / 3)
    assert metrics["per_genre_accuracy"] == {"a": 1.0, "b": 0.5}
    # song level, soft voting: predictions a, a, b for truths a, b, b -> F1(a)=2/3, F1(b)=2/3
    assert metrics["macro_f1"] == pytest.approx(2 / 3)
    assert (metrics["num_clips"], metrics["num_songs"]) == (9, 3)


def test_course_project_vote_breaks_a_three_way_tie_over_all_classes():
    # Three windows, three different argmaxes (0, 1, 2), and class 3 the runner-up of every window: its mean
    # probability (0.30) beats those of the voted classes (0.217, 0.233, 0.25), so the course project's rule, the
    # argmax of the mean over all classes, picks 3; `hybrid` only looks among the tied classes 0, 1, 2 and picks 2.
    probabilities = np.array(
        [
            [0.40, 0.15, 0.15, 0.30],
            [0.10, 0.45, 0.15, 0.30],
            [0.15, 0.10, 0.45, 0.30],
        ]
    )
    assert vote(probabilities, "course-project") == 3
    assert vote(probabilities, "hybrid") == 2
    assert vote(probabilities, "soft") == 3
    # a 2-1 majority wins under both rules, even against a larger mean probability (class 1: 0.43 vs 0.37)
    majority = np.array([[0.51, 0.49, 0.0, 0.0], [0.51, 0.49, 0.0, 0.0], [0.10, 0.30, 0.60, 0.0]])
    assert vote(majority, "course-project") == vote(majority, "hybrid") == 0
    assert vote(majority, "soft") == 1
    metrics = song_level_metrics(np.log(np.concatenate([probabilities, majority]) + 1e-9), np.full(6, 3),
                                 np.repeat([0, 1], 3), list("abcd"))  # fmt: skip
    # song 0 (true 3): right by the course project's rule only; song 1 (true 3): wrong by every rule
    assert metrics["song_accuracy_course_project"] == pytest.approx(0.5)
    assert metrics["song_accuracy_hybrid"] == 0.0


@pytest.mark.parametrize("first", ["gtzan_hf.recipes.course_project", "gtzan_hf.inference.voting"])
def test_recipes_rules_are_registered_whatever_is_imported_first(first):
    """The registry imports the recipes at module level (they build on the vote types' leaf module, not on it): in a
    fresh process, importing either first gives every rule."""
    code = f"import {first}\nfrom gtzan_hf.inference.voting import vote_rules\nprint(list(vote_rules()))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.splitlines()[-1] == "['soft', 'hard', 'hybrid', 'course-project']"
