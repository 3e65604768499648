"""The generated corpus: GTZAN's layout, reproducible, and genres a classifier can tell apart."""

import hashlib

import numpy as np
import soundfile as sf
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

from gtzan_hf.data.synthetic import GTZAN_GENRES, generate_corpus, main, synthesize_song
from gtzan_hf.models.feature_extraction_ssast import SSASTFeatureExtractor


def _digest(paths):
    return {p.split("/")[-1]: hashlib.sha256(open(p, "rb").read()).hexdigest() for p in paths}


def test_layout_names_format_and_reproducibility(tmp_path):
    paths = generate_corpus(tmp_path / "a", songs_per_genre=2, seed=3, duration=1.5, num_proc=2)
    expected = sorted(f"{tmp_path}/a/{g}/{g}.{i:05d}.wav" for g in GTZAN_GENRES for i in range(2))
    assert sorted(paths) == expected
    info = sf.info(paths[0])
    assert (info.samplerate, info.channels, info.subtype, info.frames) == (22050, 1, "PCM_16", int(1.5 * 22050))
    # the same seed gives the same bytes whatever the number of processes; another seed other songs
    same = generate_corpus(tmp_path / "b", songs_per_genre=2, seed=3, duration=1.5, num_proc=1)
    other = generate_corpus(tmp_path / "c", songs_per_genre=2, seed=4, duration=1.5, num_proc=1)
    assert _digest(paths) == _digest(same)
    assert not set(_digest(paths).values()) & set(_digest(other).values())


def test_command_line(tmp_path):
    main([str(tmp_path), "--songs-per-genre", "1", "--seed", "0", "--duration", "1"])
    assert sorted(p.name for p in tmp_path.rglob("*.wav")) == sorted(f"{g}.00000.wav" for g in GTZAN_GENRES)


def test_genres_are_separable_but_songs_vary():
    """Mean and spread of each mel bin over a song separate the genres of unseen songs; songs of one genre differ."""
    extractor = SSASTFeatureExtractor(num_mel_bins=64)
    features, labels = [], []
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # small FFTs: extra threads only contend
    try:
        for label, genre in enumerate(GTZAN_GENRES):
            for index in range(6):
                rng = np.random.default_rng([0, label, index])
                fbank = extractor.fbank(
                    torch.from_numpy(synthesize_song(genre, rng, duration=4.0, sampling_rate=16000))
                )
                features.append(torch.cat([fbank.mean(0), fbank.std(0)]).numpy())
                labels.append(label)
    finally:
        torch.set_num_threads(threads)
    features, labels = np.stack(features), np.array(labels)
    accuracy = cross_val_score(LogisticRegression(max_iter=2000), features, labels, cv=3).mean()
    assert accuracy >= 0.8
    for label in range(len(GTZAN_GENRES)):
        same_genre = features[labels == label]
        assert np.abs(same_genre[1:] - same_genre[0]).max(axis=1).min() > 0.1
