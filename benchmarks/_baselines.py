"""Classic baselines of a labelled folder (`<class>/<track>.<ext>`) on the folds a toolkit run tested: one feature
vector per track (librosa, the benchmarks extra: `pip install -e ".[benchmarks]"`), a logistic regression on the
standardised features of every track but the fold's test tracks, its C chosen by cross-validation on those tracks only
(the toolkit's linear probe protocol, `gtzan_hf.training.linear_probe`), scored on the test tracks."""

import json
from pathlib import Path

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from gtzan_hf.training.linear_probe import DEFAULT_C_VALUES, best_c, cross_validated_scores, fitted_probe

SAMPLING_RATE = 22050  # librosa's default, as the anchors ran


def logmel_statistics(samples: np.ndarray) -> np.ndarray:
    """The mean and standard deviation over the track of each band of a 96-band log-mel spectrogram."""
    import librosa

    logmel = librosa.power_to_db(librosa.feature.melspectrogram(y=samples, sr=SAMPLING_RATE, n_mels=96))
    return np.concatenate([logmel.mean(axis=1), logmel.std(axis=1)])


def handcrafted(samples: np.ndarray) -> np.ndarray:
    """The mean and standard deviation over the track of 20 MFCCs with their deltas and delta-deltas, chroma,
    spectral contrast, tonnetz and the zero-crossing rate, and the tempo."""
    import librosa

    mfcc = librosa.feature.mfcc(y=samples, sr=SAMPLING_RATE, n_mfcc=20)
    descriptors = [
        mfcc,
        librosa.feature.delta(mfcc),
        librosa.feature.delta(mfcc, order=2),
        librosa.feature.chroma_stft(y=samples, sr=SAMPLING_RATE),
        librosa.feature.spectral_contrast(y=samples, sr=SAMPLING_RATE),
        librosa.feature.tonnetz(y=samples, sr=SAMPLING_RATE),
        librosa.feature.zero_crossing_rate(samples),
    ]
    statistics = [np.concatenate([d.mean(axis=1), d.std(axis=1)]) for d in descriptors]
    return np.concatenate([*statistics, np.atleast_1d(librosa.feature.tempo(y=samples, sr=SAMPLING_RATE))])


BASELINES = {"log-mel statistics": logmel_statistics, "hand-crafted": handcrafted}


def tracks(corpus: Path) -> list[Path]:
    """The corpus's tracks, sorted."""
    return sorted(path for path in corpus.glob("*/*") if path.is_file())


def test_rows(paths: list[Path], split_file: Path) -> list[int]:
    """The rows of `paths` that a toolkit run's `splits.json` tests: its song ids are file names without suffix, or
    `<class>/<name>` where names collide."""
    test = set(json.loads(split_file.read_text())["song_ids"]["test"])
    rows = [row for row, path in enumerate(paths) if path.stem in test or f"{path.parent.name}/{path.stem}" in test]
    if len(rows) != len(test):
        raise ValueError(f"{split_file} tests {len(test)} songs, {len(rows)} of which are files of the corpus")
    return rows


def features(corpus: Path, name: str, cache: Path) -> np.ndarray:
    """`(tracks, features)` of baseline `name` over the corpus's tracks, computed once into `cache`."""
    cached = cache / f"{name.replace(' ', '-')}.npy"
    if cached.is_file():
        return np.load(cached)
    import librosa

    vectors = np.stack([BASELINES[name](librosa.load(path, sr=SAMPLING_RATE)[0]) for path in tracks(corpus)])
    cache.mkdir(parents=True, exist_ok=True)
    np.save(cached, vectors)
    return vectors


def fold_accuracies(corpus: Path, name: str, split_files: list[Path], cache: Path, seed: int = 0) -> list[float]:
    """Test accuracy of baseline `name` on the test tracks of each of `split_files` (toolkit runs' `splits.json`):
    fitted on every other track, C by 5-fold cross-validation on them."""
    paths = tracks(corpus)
    vectors = features(corpus, name, cache)
    labels = np.unique([path.parent.name for path in paths], return_inverse=True)[1]
    accuracies = []
    for split_file in split_files:
        test = test_rows(paths, split_file)
        train = [row for row in range(len(paths)) if row not in set(test)]
        splitter = StratifiedGroupKFold(min(5, np.bincount(labels[train]).min()), shuffle=True, random_state=seed)
        groups = np.arange(len(train))  # one window per track
        scores = {
            c: cross_validated_scores(vectors[train], labels[train], groups, c, splitter) for c in DEFAULT_C_VALUES
        }
        probe = fitted_probe(best_c(scores), vectors[train], labels[train])
        accuracies.append(float((probe.predict(vectors[test]) == labels[test]).mean()))
    return accuracies
