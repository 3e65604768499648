"""Sources, file checks and song-level splits of gtzan_hf.data, on generated corpora."""

import json
import logging
import shutil

import datasets
import numpy as np
import pytest
import soundfile as sf
import torchaudio.datasets.gtzan as torchaudio_gtzan
from datasets import Dataset, Features, Value

from gtzan_hf.data import DataConfig, load_splits
from gtzan_hf.data.sources import _from_hub
from gtzan_hf.data.synthetic import generate_corpus
from gtzan_hf.inference.audio import decode_audio

GENRES = ("blues", "jazz", "metal")


def splits_of(source, split_file=None, **settings):
    """`load_splits` of `source` with the data settings given (the rest: `DataConfig`'s defaults)."""
    return load_splits(DataConfig(dataset=str(source), **settings), split_file)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """3 genres x 10 songs x 1.5 s in GTZAN's layout: the smallest corpus a stratified 80/10/10 split accepts."""
    root = tmp_path_factory.mktemp("corpus")
    generate_corpus(root / "genres", songs_per_genre=10, seed=0, duration=1.5, genres=GENRES, num_proc=1)
    return root


def _all_ids(splits):
    return [song_id for name in ("train", "validation", "test") for song_id in splits[name]["song_id"]]


def _relayout(corpus, target, extension, subtype_format):
    for path in sorted((corpus / "genres").rglob("*.wav")):
        out = target / path.parent.name / (path.stem + extension)
        out.parent.mkdir(parents=True, exist_ok=True)
        samples, rate = sf.read(path)
        sf.write(out, samples, rate, format=subtype_format, subtype="PCM_16")


@pytest.mark.parametrize("layout", ["genres/<genre>/*.wav", "genres/<genre>/*.au", "Data/genres_original"])
def test_gtzan_layouts_give_labels_and_song_ids(corpus, tmp_path, layout):
    if layout.endswith(".au"):  # the original archive's Sun/NeXT files
        _relayout(corpus, tmp_path / "genres", ".au", "AU")
        source = tmp_path
    elif layout.startswith("Data"):  # Kaggle: WAVs under Data/, beside images and CSV features
        shutil.copytree(corpus / "genres", tmp_path / "Data" / "genres_original")
        (tmp_path / "Data" / "images_original" / "jazz").mkdir(parents=True)
        (tmp_path / "Data" / "images_original" / "jazz" / "jazz00000.png").write_bytes(b"\x89PNG")
        (tmp_path / "Data" / "features_30_sec.csv").write_text("filename,label\n")
        source = tmp_path
    else:
        source = corpus
    splits = splits_of(source)
    ids = _all_ids(splits)
    assert sorted(ids) == sorted(f"{g}.{i:05d}" for g in GENRES for i in range(10))
    assert splits["train"].features["label"].names == list(GENRES)
    for name in splits:
        for row in splits[name]:
            assert splits[name].features["label"].int2str(row["label"]) == row["song_id"].split(".")[0]
            assert row["audio"]["path"].endswith(row["song_id"] + (".au" if layout.endswith(".au") else ".wav"))


def test_random_and_kfold_splits_are_by_song_stratified_and_deterministic(corpus, tmp_path):
    splits = splits_of(corpus, split="random", split_seed=0, split_file=tmp_path / "splits.json")
    sizes = {name: len(part) for name, part in splits.items()}
    assert sizes == {"train": 24, "validation": 3, "test": 3}
    ids = _all_ids(splits)
    assert len(ids) == len(set(ids)) == 30
    for name in ("validation", "test"):  # stratified: one song of each genre
        assert sorted(splits[name]["label"]) == [0, 1, 2]
    saved = json.loads((tmp_path / "splits.json").read_text())
    assert {name: saved["song_ids"][name] for name in splits} == {
        name: list(splits[name]["song_id"]) for name in splits
    }
    assert saved["num_skipped"] == 0 and saved["label_names"] == list(GENRES)
    again = splits_of(corpus, split="random", split_seed=0)
    assert {n: list(again[n]["song_id"]) for n in again} == {n: list(splits[n]["song_id"]) for n in splits}
    other = splits_of(corpus, split="random", split_seed=1)
    assert list(other["test"]["song_id"]) != list(splits["test"]["song_id"])

    folds = [splits_of(corpus, split="kfold", fold=k, num_folds=5) for k in range(5)]
    tests = [set(f["test"]["song_id"]) for f in folds]
    assert set().union(*tests) == set(ids) and sum(len(t) for t in tests) == 30
    for k, fold in enumerate(folds):
        assert set(fold["validation"]["song_id"]) == tests[(k + 1) % 5]
        assert len(set(_all_ids(fold))) == 30
    with pytest.raises(ValueError, match="fold must be"):
        splits_of(corpus, split="kfold", fold=5, num_folds=5)


def test_fault_filtered_split_and_corrupt_jazz_00054(tmp_path, caplog):
    """All 1000 GTZAN names (tiny files): the artist-filtered lists give 443/197/290; the corrupt jazz.00054 of
    Kaggle's copy is skipped, reported, and leaves 442 training songs."""
    generate_corpus(tmp_path / "genres", songs_per_genre=100, seed=0, duration=0.1, num_proc=2)
    splits = splits_of(tmp_path, split="fault-filtered", split_file=tmp_path / "ff.json")
    assert {n: len(p) for n, p in splits.items()} == {"train": 443, "validation": 197, "test": 290}
    assert set(splits["test"]["song_id"]) == set(torchaudio_gtzan.filtered_test)
    assert set(splits["train"]["song_id"]) == set(torchaudio_gtzan.filtered_train)
    assert len(json.loads((tmp_path / "ff.json").read_text())["excluded"]) == 70

    (tmp_path / "genres" / "jazz" / "jazz.00054.wav").write_bytes(b"\x00" * 4096)  # "does not start with RIFF id"
    with caplog.at_level(logging.WARNING):
        splits = splits_of(tmp_path, split="fault-filtered", split_file=tmp_path / "ff.json")
    assert len(splits["train"]) == 442 and "jazz.00054" not in splits["train"]["song_id"]
    assert any("jazz.00054" in r.getMessage() and "unreadable" in r.getMessage() for r in caplog.records)
    saved = json.loads((tmp_path / "ff.json").read_text())
    assert saved["num_skipped"] == 1 and saved["skipped"][0]["song_id"] == "jazz.00054"


def test_bad_files_are_skipped_with_a_warning_and_counted(corpus, tmp_path, caplog):
    shutil.copytree(corpus / "genres", tmp_path / "genres")
    bad = {
        "blues.00000": lambda p: p.write_bytes(b"RIFF not really a wave file"),
        "blues.00001": lambda p: p.write_bytes(b""),
        "jazz.00000": lambda p: sf.write(p, np.zeros((0,), np.float32), 22050),
        "metal.00000": lambda p: sf.write(p, np.zeros(22050, np.float32), 22050),
    }
    for song_id, damage in bad.items():
        damage(tmp_path / "genres" / song_id.split(".")[0] / f"{song_id}.wav")
    with caplog.at_level(logging.WARNING):
        splits = splits_of(tmp_path, split_file=tmp_path / "splits.json")
    assert len(_all_ids(splits)) == 26 and not set(bad) & set(_all_ids(splits))
    warned = " ".join(r.getMessage() for r in caplog.records)
    for song_id in bad:
        assert song_id in warned
    assert "4 files skipped" in warned
    saved = json.loads((tmp_path / "splits.json").read_text())
    reasons = {entry["song_id"]: entry["reason"] for entry in saved["skipped"]}
    assert saved["num_skipped"] == 4 and set(reasons) == set(bad)
    assert reasons["metal.00000"].startswith("silent") and reasons["jazz.00000"].startswith("empty")


def test_class_folders_and_lists_with_any_labels_rates_and_channels(tmp_path):
    """An audiofolder-style tree (file names repeated across classes), a CSV and a JSON-lines list."""
    rng = np.random.default_rng(0)
    rows = []
    for label, rate, channels in (("dog", 44100, 2), ("cat", 8000, 1), ("bird", 16000, 1)):
        for index in range(10):
            path = tmp_path / "sounds" / "train" / label / f"{index:03d}.flac"
            path.parent.mkdir(parents=True, exist_ok=True)
            sf.write(path, 0.1 * rng.standard_normal((int(rate * (0.5 + index / 10)), channels)), rate)
            rows.append((f"sounds/train/{label}/{index:03d}.flac", label))
    splits = splits_of(tmp_path / "sounds")
    ids = _all_ids(splits)
    assert len(set(ids)) == 30 and "dog/003" in ids  # "003" alone is not unique: the class is prefixed
    assert splits["train"].features["label"].names == ["bird", "cat", "dog"]

    (tmp_path / "list.csv").write_text("path,label\n" + "\n".join(f"{p},{lab}" for p, lab in rows))
    (tmp_path / "list.jsonl").write_text("\n".join(json.dumps({"file": p, "genre": lab}) for p, lab in rows))
    for source, kwargs in ((tmp_path / "list.csv", {"label_column": "label"}), (tmp_path / "list.jsonl", {})):
        listed = splits_of(source, **kwargs)
        assert sorted(_all_ids(listed)) == sorted(ids)
        for row in listed["test"]:
            assert listed["test"].features["label"].int2str(row["label"]) == row["song_id"].split("/")[0]
    with pytest.raises(ValueError, match="label column"):
        splits_of(tmp_path / "list.jsonl", label_column="label")


def test_stereo_44k_is_downmixed_and_resampled_to_16k_mono(tmp_path):
    t = np.arange(44100 * 2) / 44100
    left, right = 0.5 * np.sin(2 * np.pi * 440 * t), 0.3 * np.sin(2 * np.pi * 1000 * t)
    sf.write(tmp_path / "stereo.wav", np.stack([left, right], axis=1), 44100, subtype="FLOAT")
    waveform = decode_audio(str(tmp_path / "stereo.wav"))
    assert waveform.dtype == np.float32 and waveform.shape == (32000,)
    spectrum = np.abs(np.fft.rfft(waveform)) / len(waveform) * 2  # amplitude per 0.5 Hz bin
    frequencies = np.fft.rfftfreq(len(waveform), 1 / 16000)
    assert set(frequencies[np.argsort(spectrum)[-2:]]) == {440.0, 1000.0}
    assert spectrum[frequencies == 440.0][0] == pytest.approx(0.25, abs=0.01)  # the mean of both channels
    assert spectrum[frequencies == 1000.0][0] == pytest.approx(0.15, abs=0.01)


def test_hub_dataset_columns_and_offline_error(tmp_path, monkeypatch):
    """The Hub path on a local parquet copy shaped like `sanchit-gandhi/gtzan` (`file`, `audio`, `genre`)."""
    rng = np.random.default_rng(0)
    audio, files, genres = [], [], []
    for genre in GENRES:
        for index in range(3):
            path = tmp_path / f"{genre}.{index:05d}.wav"
            sf.write(path, 0.1 * rng.standard_normal(22050), 22050)
            audio.append({"bytes": path.read_bytes(), "path": None})
            files.append(f"genres/{genre}/{path.name}")
            genres.append(genre)
    features = Features({"file": Value("string"), "audio": {"bytes": Value("binary"), "path": Value("string")}})
    features["genre"] = Value("string")
    (tmp_path / "repo" / "data").mkdir(parents=True)
    Dataset.from_dict({"file": files, "audio": audio, "genre": genres}, features=features).to_parquet(
        tmp_path / "repo" / "data" / "train-00000.parquet"
    )
    songs, _ = _from_hub(str(tmp_path / "repo"), "audio", "genre", None, None)
    assert list(songs["song_id"]) == [f.split("/")[-1][:-4] for f in files]
    assert [songs.features["label"].int2str(label) for label in songs["label"]] == genres
    assert decode_audio(songs[0]["audio"]).shape == (16000,)
    with pytest.raises(ValueError, match="set `audio_column` and `label_column`"):
        _from_hub(str(tmp_path / "repo"), "audio", "label", None, None)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)  # as without a network, minus the retries
    with pytest.raises(ValueError, match="could not be loaded from the Hugging Face Hub"):
        splits_of("gtzan-hf-tests/no-such-dataset-exists")
