"""The classic baselines that `scripts/benchmark.py real_music` sets beside the recipes (benchmarks/_baselines.py)."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest

librosa = pytest.importorskip("librosa", reason="the benchmarks extra (librosa) is not installed")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import _baselines  # noqa: E402

from gtzan_hf.data.synthetic import generate_corpus  # noqa: E402


def test_logmel_statistics_put_a_tone_in_its_band():
    rate = _baselines.SAMPLING_RATE
    tone = np.sin(2 * np.pi * 1000.0 * np.arange(2 * rate) / rate).astype(np.float32)
    features = _baselines.logmel_statistics(tone)
    assert features.shape == (2 * 96,)
    centres = librosa.mel_frequencies(n_mels=96 + 2, fmax=rate / 2)[1:-1]
    assert abs(centres[features[:96].argmax()] - 1000.0) < 100.0  # the loudest band holds 1 kHz


def test_the_baselines_score_the_test_tracks_a_run_split(tmp_path):
    corpus = tmp_path / "corpus"
    generate_corpus(corpus, songs_per_genre=4, seed=3, duration=3.0)
    paths = _baselines.tracks(corpus)
    test = [path.stem for path in paths[::4]]  # one song of each genre
    split_file = tmp_path / "splits.json"
    split_file.write_text(json.dumps({"song_ids": {"test": test}}))
    for name in _baselines.BASELINES:
        [accuracy] = _baselines.fold_accuracies(corpus, name, [split_file], tmp_path / "cache")
        assert accuracy >= 0.5  # 10 test songs of 10 generated genres: chance 0.1
        assert (tmp_path / "cache" / f"{name.replace(' ', '-')}.npy").is_file()
    split_file.write_text(json.dumps({"song_ids": {"test": [*test, "not-a-track"]}}))
    with pytest.raises(ValueError, match="11 songs, 10 of which"):
        _baselines.test_rows(paths, split_file)
