"""Folder datasets where something could vanish in silence, each fault made on the spot: file names shared by two
classes. Tiny generated corpora, CPU."""

import logging
import shutil
from pathlib import Path

import pytest
from datasets import Dataset, Features, Value

from gtzan_hf.data import DataConfig, load_corpus, load_splits
from gtzan_hf.data.sources import _from_hub
from gtzan_hf.data.synthetic import generate_corpus

GENRES = ("blues", "jazz", "pop", "rock")


def splits_of(source, split_file=None, **settings):
    return load_splits(DataConfig(dataset=str(source), **settings), split_file)


def _ids(splits) -> list[str]:
    return sorted(song_id for part in splits.values() for song_id in part["song_id"])


def _warnings(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING)


@pytest.fixture(scope="module")
def songs(tmp_path_factory):
    """4 genres x 4 songs of 0.5 s in GTZAN's layout, to copy and damage."""
    root = tmp_path_factory.mktemp("songs")
    generate_corpus(root, songs_per_genre=4, seed=0, duration=0.5, genres=GENRES, num_proc=1)
    return root


def _copy(songs, target: Path, genres=GENRES) -> Path:
    for genre in genres:
        shutil.copytree(songs / genre, target / genre)
    return target


def test_a_file_name_in_two_classes_renames_only_those_songs(songs, tmp_path, caplog):
    root = _copy(songs, tmp_path / "corpus", ("pop", "rock"))
    for genre in ("pop", "rock"):
        shutil.copy(songs / "jazz" / f"jazz.0000{genre == 'rock':d}.wav", root / genre / "intro.wav")
    with caplog.at_level(logging.WARNING):
        splits = splits_of(root, split="fault-filtered", cache_dir=tmp_path)
    # GTZAN's ids unchanged, so the split's lists find them; no list names the intros: outside the split
    assert _ids(splits) == [f"{genre}.{i:05d}" for genre in ("pop", "rock") for i in range(4)]
    assert "2 songs share their file name (without extension) with another song" in _warnings(caplog)
    assert "pop/intro, rock/intro" in _warnings(caplog)
    assert sorted(load_corpus(root, num_proc=1, cache_dir=tmp_path).songs["song_id"]) == sorted(
        [f"{genre}.{i:05d}" for genre in ("pop", "rock") for i in range(4)] + ["pop/intro", "rock/intro"]
    )

    # a Hub dataset's rows get the same ids (a parquet copy shaped like `sanchit-gandhi/gtzan`)
    rows = {"file": [], "audio": [], "genre": []}
    for path in sorted(root.rglob("*.wav")):
        rows["file"].append(f"genres/{path.parent.name}/{path.name}")
        rows["audio"].append({"bytes": path.read_bytes(), "path": None})
        rows["genre"].append(path.parent.name)
    features = Features(
        {
            "file": Value("string"),
            "audio": {"bytes": Value("binary"), "path": Value("string")},
            "genre": Value("string"),
        }
    )
    (tmp_path / "repo" / "data").mkdir(parents=True)
    Dataset.from_dict(rows, features=features).to_parquet(tmp_path / "repo" / "data" / "train-00000.parquet")
    hub_songs, _ = _from_hub(str(tmp_path / "repo"), "audio", "genre", None, None)
    assert sorted(hub_songs["song_id"]) == sorted(load_corpus(root, num_proc=1, cache_dir=tmp_path).songs["song_id"])
