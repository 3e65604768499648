"""Hub datasets through huggingface_hub's HTTP API, against a Hub served on 127.0.0.1 (`hub_server.LocalHub`): an
archive repository shaped like `marsyas/gtzan`, a parquet mirror shaped like `sanchit-gandhi/gtzan`, offline reuse,
new commits, interrupted unpacks and streaming pretraining."""

import io
import logging
import sys
import tarfile
from pathlib import Path

import datasets
import huggingface_hub
import pytest
import torch
from datasets import Audio, Dataset, Features, Value
from hub_server import LocalHub

from gtzan_hf.commands.pretrain import parse_pretrain_args, run_pretrain
from gtzan_hf.data import load_corpus
from gtzan_hf.data.synthetic import generate_corpus

GENRES = ("blues", "jazz", "metal")
ARCHIVE_REPO = "someone/gtzan-archive"
MIRROR_REPO = "someone/gtzan-parquet"
# what the real marsyas/gtzan carries beside its archive: a loading script, which datasets >= 4 refuses to run
LOADING_SCRIPT = b"import datasets\n\nclass Gtzan(datasets.GeneratorBasedBuilder):\n    pass\n"


@pytest.fixture(scope="module")
def songs(tmp_path_factory) -> Path:
    """3 genres x 3 songs x 3 s in GTZAN's layout: `<root>/genres/<genre>/<genre>.000NN.wav`."""
    root = tmp_path_factory.mktemp("songs")
    generate_corpus(root / "genres", songs_per_genre=3, seed=0, duration=3.0, genres=GENRES, num_proc=1)
    return root


def archive(songs: Path, per_genre: int = 3) -> bytes:
    """GTZAN's `genres.tar.gz`, with the first `per_genre` songs of each genre."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for path in sorted(songs.glob("genres/*/*.wav")):
            if int(path.stem.split(".")[1]) < per_genre:
                tar.add(path, arcname=str(path.relative_to(songs)))
    return buffer.getvalue()


def parquet(songs: Path, empty: tuple[str, ...] = (), audio_column: str = "audio") -> bytes:
    """sanchit-gandhi/gtzan's table (`file`, `audio` {bytes, path}, `genre`); the songs in `empty` have no bytes."""
    paths = sorted(songs.glob("genres/*/*.wav"))
    features = Features({"file": Value("string"), audio_column: {"bytes": Value("binary"), "path": Value("string")}})
    features["genre"] = Value("string")
    table = Dataset.from_dict(
        {
            "file": [str(path.relative_to(songs)) for path in paths],
            audio_column: [{"bytes": b"" if p.stem in empty else p.read_bytes(), "path": p.name} for p in paths],
            "genre": [path.parent.name for path in paths],
        },
        features=features,
    ).cast_column(audio_column, Audio())  # as on the Hub: an Audio column (its decoding would need torchcodec)
    buffer = io.BytesIO()
    table.to_parquet(buffer)
    return buffer.getvalue()


@pytest.fixture(scope="module")
def server():
    hub = LocalHub().start()
    yield hub
    hub.stop()


@pytest.fixture
def hub(server, tmp_path, monkeypatch) -> LocalHub:
    """The local Hub, with huggingface_hub and datasets pointed at it and their caches in `tmp_path`, online."""
    server.patch_endpoint(monkeypatch)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    for name in ("HF_DATASETS_CACHE", "HF_MODULES_CACHE", "DOWNLOADED_DATASETS_PATH", "EXTRACTED_DATASETS_PATH"):
        monkeypatch.setattr(datasets.config, name, tmp_path / "datasets" / name.lower())
    go_offline(monkeypatch, False)
    monkeypatch.chdir(tmp_path)  # a relative path looked up by mistake would be looked up here
    yield server
    assert not server.unhandled, f"requests the local Hub does not serve: {server.unhandled}"


def go_offline(monkeypatch, offline: bool = True) -> None:
    """`HF_HUB_OFFLINE=1`, as both libraries read it at import."""
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", offline)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", offline)


def commit_archive(hub: LocalHub, songs: Path, repo_id: str = ARCHIVE_REPO, per_genre: int = 3) -> str:
    files = {"data/genres.tar.gz": archive(songs, per_genre), "gtzan.py": LOADING_SCRIPT, "README.md": b"# GTZAN\n"}
    return hub.commit(repo_id, files)


def unpacks(repo_id: str) -> list[str]:
    """The entries of the repository's folder of unpacked archives (in the default cache)."""
    folder = Path(datasets.config.HF_DATASETS_CACHE) / "gtzan_hf" / "hub-archives" / repo_id.replace("/", "--")
    return sorted(path.name for path in folder.iterdir())


def expected_ids(per_genre: int = 3) -> list[str]:
    return sorted(f"{genre}.{index:05d}" for genre in GENRES for index in range(per_genre))


def test_archive_repository_is_read_from_its_archive(hub, songs):
    commit = commit_archive(hub, songs, "owner/any-name")  # recognised by its archive, not by its name
    corpus = load_corpus("owner/any-name", num_proc=1)
    assert sorted(corpus.songs["song_id"]) == expected_ids() and not corpus.skipped
    assert corpus.label_names == list(GENRES)
    for row in corpus.songs:
        assert row["song_id"].startswith(corpus.label_names[row["label"]])
    assert unpacks("owner/any-name") == [commit]  # no temporary folder left
    # the loading script is never fetched, let alone run
    assert not any("gtzan.py" in request for request in hub.requests)


def test_parquet_mirror_labels_and_an_empty_audio_row(hub, songs, caplog):
    hub.commit(MIRROR_REPO, {"data/train-00000-of-00001.parquet": parquet(songs, empty=("jazz.00001",))})
    # a file of the empty row's name in the working directory must not stand in for it
    Path("jazz.00001.wav").write_bytes((songs / "genres/jazz/jazz.00001.wav").read_bytes())
    with caplog.at_level(logging.WARNING, logger="gtzan_hf.data.sources"):
        corpus = load_corpus(MIRROR_REPO, label_column="genre", num_proc=1)
    assert sorted(corpus.songs["song_id"]) == [i for i in expected_ids() if i != "jazz.00001"]
    assert corpus.label_names == list(GENRES)
    for row in corpus.songs:
        assert row["song_id"].startswith(corpus.label_names[row["label"]])
    assert [(entry["song_id"], entry["reason"]) for entry in corpus.skipped] == [
        ("jazz.00001", "unreadable: ValueError: empty file: no audio bytes")
    ]
    assert any("jazz.00001" in record.getMessage() for record in caplog.records)


def test_a_parquet_class_without_usable_songs_is_left_out_of_the_labels(hub, songs, caplog):
    empty = ("jazz.00000", "jazz.00001", "jazz.00002")
    hub.commit(MIRROR_REPO, {"data/train-00000-of-00001.parquet": parquet(songs, empty=empty)})
    with caplog.at_level(logging.WARNING, logger="gtzan_hf.data.sources"):
        corpus = load_corpus(MIRROR_REPO, label_column="genre", num_proc=1)
    assert corpus.label_names == ["blues", "metal"]
    assert corpus.dropped_classes == {"jazz": "all its 3 files are skipped (see the warnings above)"}
    assert "Class 'jazz' is left out of the labels" in caplog.text
    for row in corpus.songs:
        assert row["song_id"].startswith(corpus.label_names[row["label"]])
    assert sorted(corpus.content_hashes) == sorted(corpus.songs["song_id"])  # of the rows' bytes


def test_offline_reuse_and_offline_without_cache(hub, songs, monkeypatch):
    commit_archive(hub, songs)
    hub.commit(MIRROR_REPO, {"data/train-00000-of-00001.parquet": parquet(songs)})
    online = {repo: load_corpus(repo, label_column="genre", num_proc=1) for repo in (ARCHIVE_REPO, MIRROR_REPO)}

    go_offline(monkeypatch)
    requests = len(hub.requests)
    for repo, first in online.items():
        again = load_corpus(repo, label_column="genre", num_proc=1)
        assert again.songs["song_id"] == first.songs["song_id"] and again.fingerprint == first.fingerprint, repo
    assert hub.requests[requests:] == []  # not one request reached the Hub

    with pytest.raises(ValueError) as error:
        load_corpus("someone/never-downloaded", num_proc=1)
    message = str(error.value)
    assert "\n" not in message
    for part in ("'someone/never-downloaded'", "HF_HUB_OFFLINE=1", "not in the cache", "once online"):
        assert part in message


def test_new_commit_is_unpacked_anew(hub, songs):
    first = commit_archive(hub, songs, per_genre=2)
    assert sorted(load_corpus(ARCHIVE_REPO, num_proc=1).songs["song_id"]) == expected_ids(2)
    second = commit_archive(hub, songs, per_genre=3)
    assert sorted(load_corpus(ARCHIVE_REPO, num_proc=1).songs["song_id"]) == expected_ids(3)
    assert first != second and unpacks(ARCHIVE_REPO) == [second]  # the older unpack is gone
    # an older revision asked for by its sha is unpacked again from its own archive
    assert sorted(load_corpus(ARCHIVE_REPO, revision=first, num_proc=1).songs["song_id"]) == expected_ids(2)


def test_interrupted_unpack_is_redone(hub, songs, monkeypatch):
    commit = commit_archive(hub, songs)
    extractall = tarfile.TarFile.extractall

    def killed_after_four_files(tar, path, *args, **kwargs):
        extractall(tar, path, members=[m for m in tar.getmembers() if m.isfile()][:4], filter="data")
        raise KeyboardInterrupt  # as a Ctrl-C or a kill would stop it

    monkeypatch.setattr(tarfile.TarFile, "extractall", killed_after_four_files)
    with pytest.raises(KeyboardInterrupt):
        load_corpus(ARCHIVE_REPO, num_proc=1)
    (leftover,) = unpacks(ARCHIVE_REPO)
    assert leftover != commit and leftover.startswith(".")  # the partial unpack is not where a reader looks

    monkeypatch.setattr(tarfile.TarFile, "extractall", extractall)
    corpus = load_corpus(ARCHIVE_REPO, num_proc=1)
    assert sorted(corpus.songs["song_id"]) == expected_ids() and not corpus.skipped
    assert unpacks(ARCHIVE_REPO) == [commit]  # the leftover is cleaned


@pytest.mark.parametrize("repo_kind", ["archive", "parquet mirror"])
def test_streaming_pretraining_without_torchcodec(hub, songs, tmp_path, monkeypatch, repo_kind, caplog):
    monkeypatch.setitem(sys.modules, "torchcodec", None)  # as if not installed: `import torchcodec` fails
    if repo_kind == "archive":
        commit_archive(hub, songs)
        repo, audio_column = ARCHIVE_REPO, "audio"
    else:  # an audio column of another name: renaming it while streaming would need torchcodec
        repo, audio_column = MIRROR_REPO, "clip"
        table = parquet(songs, empty=("metal.00002",), audio_column=audio_column)
        hub.commit(repo, {"data/train-00000-of-00001.parquet": table})
    arguments = parse_pretrain_args(
        [
            "--preset", "tiny",
            "--dataset", repo,
            "--audio_column", audio_column,
            "--streaming",
            "--dataset_stats", "false",
            "--output_dir", str(tmp_path / "run"),
            "--max_length", "256",
            "--num_masked_patches", "20",
            "--max_steps", "2",
            "--per_device_train_batch_size", "4",
            "--warmup_steps", "1",
            "--logging_steps", "1",
            "--disable_tqdm", "true",
        ]
    )  # fmt: skip
    with caplog.at_level(logging.WARNING, logger="gtzan_hf.commands.pretrain"):
        trainer = run_pretrain(*arguments)
    assert trainer.state.global_step == 2
    losses = [entry["loss"] for entry in trainer.state.log_history if "loss" in entry]
    assert len(losses) == 2 and all(torch.isfinite(torch.tensor(losses)))
    if repo_kind == "parquet mirror":
        assert any("empty file" in record.getMessage() for record in caplog.records)
