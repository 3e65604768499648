import numpy as np
import pytest

from gtzan_hf.metrics import song_level_metrics
from gtzan_hf.voting import song_predictions, vote


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
