"""Folder datasets where something could vanish in silence, each fault made on the spot: class folders that are
links (and links that loop), empty class folders, classes without one usable song, file names shared by two
classes, and audio replaced under the same names after a run. Tiny generated corpora, CPU."""

import json
import logging
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from conftest import one_line_error
from datasets import Dataset, Features, Value
from datasets.data_files import DataFilesDict, get_data_patterns

from gtzan_hf.commands.evaluate import main as evaluation_main
from gtzan_hf.commands.finetune import parse_finetune_args, run_finetune
from gtzan_hf.data import DataConfig, SplitInfo, load_corpus, load_splits
from gtzan_hf.data.sources import _from_hub
from gtzan_hf.data.synthetic import generate_corpus
from gtzan_hf.serving.demo import DemoError, load_recording

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


def test_a_linked_class_folder_is_read_and_what_links_reach_twice_counts_once(songs, tmp_path, caplog):
    root = _copy(songs, tmp_path / "corpus", ("blues", "jazz"))
    elsewhere = _copy(songs, tmp_path / "other-disk", ("rock",))
    (root / "rock").symlink_to(elsewhere / "rock", target_is_directory=True)  # a class kept on another disk
    (root / "jazz" / "all").symlink_to(root, target_is_directory=True)  # a loop: a link to an ancestor
    (root / "blues-again").symlink_to(root / "blues", target_is_directory=True)  # the same class twice
    (root / "jazz" / "jazz.link.wav").symlink_to(root / "blues" / "blues.00001.wav")  # one recording, two classes
    os.link(root / "blues" / "blues.00002.wav", root / "jazz" / "jazz.hardlink.wav")
    (root / "jazz" / "jazz.gone.wav").symlink_to(tmp_path / "deleted.wav")

    with caplog.at_level(logging.WARNING):
        corpus = load_corpus(root, num_proc=1, cache_dir=tmp_path / "cache")
    assert corpus.label_names == ["blues", "jazz", "rock"]
    expected = sorted(f"{genre}.{i:05d}" for genre in ("blues", "jazz", "rock") for i in range(4))
    assert sorted(corpus.songs["song_id"]) == expected  # each recording once, in its own class
    reasons = {entry["song_id"]: entry["reason"] for entry in corpus.skipped}
    assert reasons == {
        "jazz.link": f"duplicate of {root / 'blues' / 'blues.00001.wav'} (the same file)",
        "jazz.hardlink": f"duplicate of {root / 'blues' / 'blues.00002.wav'} (the same file)",
        "jazz.gone": f"a broken link (to {tmp_path / 'deleted.wav'}, which does not exist)",
    }
    warned = _warnings(caplog)
    assert f"Not reading {root / 'jazz' / 'all'}: it leads to {root}, a folder read elsewhere" in warned
    assert f"Not reading {root / 'blues-again'}: it leads to {root / 'blues'}, a folder read elsewhere" in warned
    assert "Skipping jazz.link" in warned and "Skipping jazz.gone" in warned


def test_an_empty_class_folder_is_named_and_gets_no_label(songs, tmp_path, caplog):
    root = _copy(songs, tmp_path / "corpus", ("blues", "jazz", "rock"))
    (root / "pop").mkdir()
    (root / "metal").mkdir()
    (root / "metal" / "cover.jpg").write_bytes(b"\xff\xd8")  # no audio file either
    with caplog.at_level(logging.WARNING):
        splits = splits_of(root, split="kfold", num_folds=4, split_file=tmp_path / "splits.json", cache_dir=tmp_path)
    assert splits["train"].features["label"].names == ["blues", "jazz", "rock"]
    warned = _warnings(caplog)
    assert f"Class 'pop' is left out of the labels: its folder {root / 'pop'} holds no audio files" in warned
    assert f"Class 'metal' is left out of the labels: its folder {root / 'metal'} holds no audio files" in warned
    saved = json.loads((tmp_path / "splits.json").read_text())
    assert sorted(saved["dropped_classes"]) == ["metal", "pop"] and saved["label_names"] == ["blues", "jazz", "rock"]


def test_a_class_with_too_few_usable_songs_for_the_split_is_named(songs, tmp_path):
    root = _copy(songs, tmp_path / "corpus", ("blues", "jazz", "rock"))
    for path in sorted((root / "rock").glob("*.wav"))[1:]:
        path.write_bytes(b"RIFF not really a wave file")
    with pytest.raises(ValueError, match=r"Cannot split 9 songs of 3 classes by class \(.*fewest songs: rock 1, "):
        splits_of(root, cache_dir=tmp_path)


TINY_FINETUNE = [
    "--preset", "quickstart",
    "--split", "kfold", "--num_folds", "3",
    "--num_train_epochs", "1",
    "--crop_seconds", "2", "--eval_hop_seconds", "2", "--max_length", "208",
    "--freq_mask", "0", "--time_mask", "0",
    "--per_device_train_batch_size", "4",
    "--disable_tqdm", "true",
]  # fmt: skip


@pytest.fixture(scope="module")
def run_without_pop(tmp_path_factory):
    """A tiny fine-tuning run on 3 genres x 3 songs of 2.5 s, and a `pop` folder of 3 unreadable files."""
    workdir = tmp_path_factory.mktemp("run")
    corpus = workdir / "corpus"
    generate_corpus(corpus, songs_per_genre=3, seed=1, duration=2.5, genres=("blues", "jazz", "rock"), num_proc=1)
    (corpus / "pop").mkdir()
    for index in range(3):
        (corpus / "pop" / f"pop.{index:05d}.wav").write_bytes(b"RIFF not really a wave file")
    arguments = [*TINY_FINETUNE, "--dataset", str(corpus), "--output_dir", str(workdir / "out")]
    metrics = run_finetune(*parse_finetune_args([*arguments, "--cache_dir", str(workdir / "cache")])[:3])
    return corpus, workdir / "out", metrics


def test_a_class_without_usable_songs_is_left_out_of_labels_splits_and_reports(run_without_pop):
    _, output_dir, metrics = run_without_pop
    labels = ["blues", "jazz", "rock"]
    config = json.loads((output_dir / "config.json").read_text())
    assert [config["id2label"][str(i)] for i in range(len(config["id2label"]))] == labels
    splits = json.loads((output_dir / "splits.json").read_text())
    assert splits["label_names"] == labels
    assert splits["dropped_classes"] == {"pop": "all its 3 files are skipped (see the warnings above)"}
    assert sorted(entry["song_id"] for entry in splits["skipped"]) == ["pop.00000", "pop.00001", "pop.00002"]
    for split in ("validation", "test"):
        assert set(metrics[split]["per_genre_accuracy"]) <= set(labels)


def test_audio_replaced_after_a_run_is_refused_by_evaluation(run_without_pop, tmp_path):
    corpus, output_dir, _ = run_without_pop
    splits = json.loads((output_dir / "splits.json").read_text())
    assert sorted(splits["content_hashes"]) == sorted(s for ids in splits["song_ids"].values() for s in ids)
    evaluation_main([str(output_dir), "--output_dir", str(tmp_path / "before")])  # the same audio: accepted

    replaced = sorted(splits["song_ids"]["test"])[0]
    genre = replaced.split(".")[0]
    other = next(s for s in splits["song_ids"]["train"] if not s.startswith(genre))
    shutil.copy(corpus / other.split(".")[0] / f"{other}.wav", corpus / genre / f"{replaced}.wav")
    with pytest.raises(ValueError) as refused:
        evaluation_main([str(output_dir), "--output_dir", str(tmp_path / "after")])
    assert f"test song {replaced} holds other audio (its file's bytes changed). The dataset has changed" in str(
        refused.value
    )
    assert not (tmp_path / "after" / "metrics.json").exists()


def test_split_changes_name_a_song_and_old_split_files_compare_songs_only(tmp_path):
    ids = {"train": ["a.1", "a.2"], "validation": ["b.1"], "test": ["b.2"]}
    hashes = {song_id: f"hash-of-{song_id}" for song_ids in ids.values() for song_id in song_ids}
    run = SplitInfo("corpus", "random", 0, None, None, ["a", "b"], ids, content_hashes=hashes)
    same = SplitInfo("corpus", "random", 0, None, None, ["a", "b"], ids, content_hashes=dict(hashes))
    assert run.changes(same) == ""
    assert run.changes(SplitInfo(**{**vars(same), "content_hashes": {**hashes, "b.2": "other"}})) == (
        "test song b.2 holds other audio (its file's bytes changed)"
    )
    other = {**hashes, "a.1": "other", "a.2": "other"}
    assert run.changes(SplitInfo(**{**vars(same), "content_hashes": other})) == (
        "2 train songs (a.1, ...) hold other audio (their files' bytes changed)"
    )
    gone = SplitInfo(**{**vars(same), "song_ids": {**ids, "validation": []}})
    assert run.changes(gone, ("validation", "test")) == "validation song b.1 is gone"
    assert gone.changes(run) == "validation song b.1 is new"

    run.save(tmp_path / "splits.json")  # as written before content hashes existed
    record = json.loads((tmp_path / "splits.json").read_text())
    del record["content_hashes"], record["dropped_classes"]
    (tmp_path / "splits.json").write_text(json.dumps(record))
    old = SplitInfo.load(tmp_path / "splits.json")
    assert old.content_hashes == {} and old.song_ids == ids
    assert old.changes(SplitInfo(**{**vars(same), "content_hashes": {**hashes, "b.2": "other"}})) == ""
    assert old.changes(gone) == "validation song b.1 is gone"


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


DC_SILENCE = (
    "silent: nothing but a constant (DC) offset, which the filter bank removes; what the model hears (the channels "
    "averaged, each 25 ms frame's DC offset removed) peaks at or below -80 dBFS"
)
CANCELLING = (
    "silent: its 2 channels cancel out when averaged to mono; what the model hears (the channels averaged, each 25 ms "
    "frame's DC offset removed) peaks at or below -80 dBFS"
)


def test_silence_is_judged_on_what_the_model_hears_in_datasets_and_uploads(songs, tmp_path):
    root = _copy(songs, tmp_path / "corpus", ("blues", "jazz"))
    rate = 22050
    tone = 0.3 * np.sin(2 * np.pi * 440 * np.arange(6 * rate) / rate)
    heard = {
        "jazz.dc": (np.full(6 * rate, 0.5), DC_SILENCE),  # 6 s of constant DC
        "jazz.dc-stereo": (np.full((6 * rate, 2), -0.25), DC_SILENCE),
        "jazz.cancel": (np.stack([tone, -tone], axis=1), CANCELLING),  # channels that cancel in the downmix
        "jazz.hum": (np.stack([tone, -0.5 * tone], axis=1) * 0.01 + 0.5, ""),  # a quiet tone on DC: heard
    }
    for name, (samples, _) in heard.items():
        sf.write(root / "jazz" / f"{name}.wav", samples, rate, subtype="FLOAT")
    corpus = load_corpus(root, num_proc=1, cache_dir=tmp_path / "cache")
    assert {entry["song_id"]: entry["reason"] for entry in corpus.skipped} == {
        name: reason for name, (_, reason) in heard.items() if reason
    }
    assert "jazz.hum" in corpus.songs["song_id"]
    for name, (_, reason) in heard.items():
        if reason:  # the Space refuses them too, with the same reason
            with pytest.raises(DemoError) as refused:
                load_recording(root / "jazz" / f"{name}.wav")
            limits = "between 1 s and 10:00 minutes"
            assert (
                str(refused.value)
                == f"{name}.wav cannot be classified: {reason}. Upload a recording of music, {limits}."
            )
        else:
            assert load_recording(root / "jazz" / f"{name}.wav").problem == ""


def _cut_short(path: Path) -> None:
    path.write_text(path.read_text()[:200])


def _without_test_songs(path: Path) -> None:
    record = json.loads(path.read_text())
    del record["song_ids"]["test"]
    path.write_text(json.dumps(record))


def _labels_as_text(path: Path) -> None:
    record = json.loads(path.read_text())
    path.write_text(json.dumps({**record, "label_names": "blues jazz rock"}))


EXPECTED_SPLITS = (
    ": it was cut short or edited by hand. Expected the songs of every split of a run (train, validation, test), as "
    "fine-tuning writes them. Restore it from a copy, or run again the command that wrote it."
)


@pytest.mark.parametrize(
    "damage, found",
    [
        (_cut_short, "is not valid JSON (Expecting value: line "),
        (_without_test_songs, "lacks song_ids.test" + EXPECTED_SPLITS),
        (_labels_as_text, 'has label_names: "blues jazz rock", not a list' + EXPECTED_SPLITS),
    ],
)
def test_a_damaged_splits_json_is_one_line_naming_the_file_and_the_key(run_without_pop, tmp_path, damage, found):
    _, output_dir, _ = run_without_pop
    run = tmp_path / "run"
    shutil.copytree(output_dir, run, ignore=shutil.ignore_patterns("checkpoint-*", "evaluation"))
    damage(run / "splits.json")
    message = one_line_error(evaluation_main, [str(run), "--output_dir", str(tmp_path / "evaluation")])
    assert message.startswith(f"error: {run / 'splits.json'} {found}"), message
    assert not (tmp_path / "evaluation").exists()


def _datasets_reading(root: Path) -> dict[Path, str]:
    """The split of every audio file of `root` as `load_dataset("audiofolder", data_dir=root)` resolves its files
    (datasets' own data-file patterns; loading them needs torchcodec, resolving them does not)."""
    base = str(root.resolve())
    files = DataFilesDict.from_patterns(get_data_patterns(base), base_path=base)
    return {Path(file): split for split, names in files.items() for file in names if file.endswith(".wav")}


def _our_reading(corpus) -> dict[Path, str]:
    paths = [Path(audio["path"]).resolve() for audio in corpus.songs["audio"]]
    return {path: corpus.named_splits[song_id] for path, song_id in zip(paths, corpus.songs["song_id"])}


def _songs_to(songs: Path, target: Path, split_of) -> dict[str, tuple[str, str]]:
    """Copy the 4 x 4 songs into `target` as `split_of(genre, index)` says (a path under `target`); returns
    `{song id: (split, genre)}`."""
    placed = {}
    for genre in GENRES:
        for index in range(4):
            split, relative = split_of(genre, index)
            (target / relative).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(songs / genre / f"{genre}.{index:05d}.wav", target / relative)
            placed[Path(relative).stem] = (split, genre)
    return placed


def _metadata_per_split(songs, root):
    """datasets' documented layout: train/metadata.csv and test/metadata.csv, `file_name,label`."""
    placed = _songs_to(
        songs, root, lambda g, i: ("test" if i == 3 else "train", f"{'test' if i == 3 else 'train'}/{g}{i}.wav")
    )
    for split in ("train", "test"):
        rows = [f"{song_id}.wav,{genre}" for song_id, (s, genre) in placed.items() if s == split]
        (root / split / "metadata.csv").write_text("file_name,label\n" + "\n".join(rows) + "\n")
    return placed, {}


def _metadata_at_the_root(songs, root):
    """One metadata.jsonl beside the split folders (validation named `val`, test `eval`), classes in `genre`."""
    names = {0: "train", 1: "train", 2: "val", 3: "eval"}
    placed = _songs_to(songs, root, lambda g, i: (names[i], f"{names[i]}-2024/{g}-{i}.wav"))
    rows = [{"file_name": f"{s}-2024/{song_id}.wav", "genre": genre} for song_id, (s, genre) in placed.items()]
    (root / "metadata.jsonl").write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    splits = {"train": "train", "val": "validation", "eval": "test"}
    return {song_id: (splits[s], genre) for song_id, (s, genre) in placed.items()}, {"label_column": "genre"}


def _class_folders_per_split(songs, root):
    """No metadata: train/<class>/, validation/<class>/, test/<class>/; the class is the folder's name."""
    names = {0: "train", 1: "train", 2: "validation", 3: "test"}
    return _songs_to(songs, root, lambda g, i: (names[i], f"{names[i]}/{g}/{g}.{i:05d}.wav")), {}


def _parquet_metadata_with_audio_file_name(songs, root):
    """metadata.parquet per split folder, the path in `audio_file_name`, the splits `training` and `testing`."""
    names = {0: "training", 1: "training", 2: "training", 3: "testing"}
    placed = _songs_to(songs, root, lambda g, i: (names[i], f"{names[i]}/{g}{i}.wav"))
    for split in ("training", "testing"):
        members = [(song_id, genre) for song_id, (s, genre) in placed.items() if s == split]
        table = {"audio_file_name": [f"{song_id}.wav" for song_id, _ in members], "label": [g for _, g in members]}
        Dataset.from_dict(table).to_parquet(root / split / "metadata.parquet")
    return {song_id: (s.removesuffix("ing"), genre) for song_id, (s, genre) in placed.items()}, {}


@pytest.mark.parametrize(
    "layout",
    [_metadata_per_split, _metadata_at_the_root, _class_folders_per_split, _parquet_metadata_with_audio_file_name],
)
def test_an_audiofolder_is_read_as_datasets_reads_it(songs, tmp_path, layout):
    root = tmp_path / "data"
    placed, settings = layout(songs, root)
    corpus = load_corpus(root, num_proc=1, cache_dir=tmp_path / "cache", **settings)
    assert corpus.label_names == list(GENRES) and not corpus.skipped  # not `train` and `test`
    assert {s: corpus.label_names[label] for s, label in zip(corpus.songs["song_id"], corpus.songs["label"])} == {
        song_id: genre for song_id, (_, genre) in placed.items()
    }
    assert corpus.named_splits == {song_id: split for song_id, (split, _) in placed.items()}
    assert _our_reading(corpus) == _datasets_reading(root)

    # fine-tuning's split: the dataset's own, what it lacks drawn from its train songs
    config = DataConfig(dataset=str(root), cache_dir=str(tmp_path / "cache"), validation_size=0.34, **settings)
    data = load_splits(config, tmp_path / "s.json")  # a third of 12 train songs: one per class at least
    saved = json.loads((tmp_path / "s.json").read_text())
    named = {split: {s for s, (named_split, _) in placed.items() if named_split == split} for split in data}
    assert set(saved["drawn"]) == {split for split in ("validation", "test") if not named[split]}
    drawn = {song_id for split in saved["drawn"] for song_id in data[split]["song_id"]}
    assert drawn <= named["train"] and all(data[split].num_rows for split in saved["drawn"])
    assert set(data["train"]["song_id"]) == named["train"] - drawn
    for split in ("validation", "test"):
        assert split in saved["drawn"] or set(data[split]["song_id"]) == named[split]
    assert saved["split"] == "dataset"


def test_an_audiofolders_splits_are_pooled_only_when_asked(songs, tmp_path, caplog):
    root = tmp_path / "data"
    _metadata_per_split(songs, root)
    with caplog.at_level(logging.WARNING):
        data = splits_of(root, split="kfold", num_folds=4, cache_dir=tmp_path / "cache")
    assert sum(part.num_rows for part in data.values()) == 16
    assert f"{root} names its own splits (train 12, test 4): --split kfold splits all its 16 songs afresh" in (
        _warnings(caplog)
    )
    with pytest.raises(ValueError, match="split='dataset' takes the splits a dataset's folders name"):
        splits_of(_copy(songs, tmp_path / "plain"), split="dataset", cache_dir=tmp_path / "cache")


def test_what_an_audiofolders_metadata_does_not_list_is_said(songs, tmp_path, caplog):
    root = tmp_path / "data"
    _metadata_per_split(songs, root)
    shutil.copy(songs / "pop" / "pop.00000.wav", root / "train" / "unlisted.wav")
    with open(root / "test" / "metadata.csv", "a") as metadata:
        metadata.write("gone.wav,rock\n")
    with caplog.at_level(logging.WARNING):
        corpus = load_corpus(root, num_proc=1, cache_dir=tmp_path / "cache")
    assert {entry["song_id"]: entry["reason"] for entry in corpus.skipped} == {
        "unlisted": "listed in no metadata file (metadata.csv)",
        "gone": f"listed in {root / 'test' / 'metadata.csv'} (row 5), but there is no such file",
    }
    assert f"1 audio files under {root} are listed in no metadata file (metadata.csv), and are not read" in (
        _warnings(caplog)
    )
    (root / "train" / "metadata.csv").write_text("file_name,label\n../../elsewhere.wav,rock\n")
    message = one_line_error(lambda argv: load_corpus(root, num_proc=1, cache_dir=tmp_path / "cache"), [])
    assert message == (
        f"error: {root / 'train' / 'metadata.csv'} (row 1): file_name '../../elsewhere.wav' is not a path inside "
        f"{root / 'train'}; expected the audio file's path relative to the metadata file, as datasets' audiofolder "
        "requires. Correct it."
    )
    (root / "train" / "metadata.csv").write_text("file_name,style\nblues0.wav,blues\n")  # no column of classes
    message = one_line_error(lambda argv: load_corpus(root, num_proc=1, cache_dir=tmp_path / "cache"), [])
    assert message == (
        f"error: {root / 'train' / 'metadata.csv'} has the columns file_name, style: expected a 'label' column "
        "of the classes (name another with --label_column)."
    )


def test_a_nested_folder_belongs_to_its_class_folder(songs, tmp_path, caplog):
    root = _copy(songs, tmp_path / "corpus", ("jazz", "rock"))
    (root / "rock" / "live").mkdir()
    (root / "jazz" / "takes" / "2024").mkdir(parents=True)
    shutil.move(root / "rock" / "rock.00003.wav", root / "rock" / "live" / "rock.00003.wav")
    shutil.move(root / "jazz" / "jazz.00003.wav", root / "jazz" / "takes" / "2024" / "jazz.00003.wav")
    with caplog.at_level(logging.WARNING):
        corpus = load_corpus(root, num_proc=1, cache_dir=tmp_path / "cache")
    assert corpus.label_names == ["jazz", "rock"] and not corpus.skipped
    labels = {s: corpus.label_names[label] for s, label in zip(corpus.songs["song_id"], corpus.songs["label"])}
    assert labels["rock.00003"] == "rock" and labels["jazz.00003"] == "jazz"
    assert (
        f"Folders inside class folders are read as part of their class: {root / 'jazz' / 'takes'} (1 file): class "
        f"'jazz'; {root / 'rock' / 'live'} (1 file): class 'rock'. A class is a folder of its own beside the "
        "others: move a folder there to make it a class."
    ) in _warnings(caplog)

    # every class folder nested one level deeper (no song beside the sub-folders): the classes stay the top folders
    for genre in ("jazz", "rock"):
        for path in (root / genre).glob("*.wav"):
            (root / genre / "studio").mkdir(exist_ok=True)
            shutil.move(path, root / genre / "studio" / path.name)
    assert load_corpus(root, num_proc=1, cache_dir=tmp_path / "cache").label_names == ["jazz", "rock"]


def test_classes_whose_names_differ_only_by_case_are_refused(songs, tmp_path):
    root = _copy(songs, tmp_path / "corpus", ("jazz", "rock"))
    shutil.copytree(songs / "pop", root / "Rock")
    message = one_line_error(lambda argv: load_corpus(root, num_proc=1, cache_dir=tmp_path / "cache"), [])
    assert message == (
        f"error: The class folders {root / 'Rock'} and {root / 'rock'} differ only by case: they would be two classes "
        "here and one folder on a system whose file names ignore case (macOS, Windows). Merge them, or rename one."
    )
    listed = tmp_path / "songs.csv"
    rows = [f"{path},{'Rock' if index % 2 else 'rock'}" for index, path in enumerate(sorted(root.rglob("*.wav")))]
    listed.write_text("path,genre\n" + "\n".join(rows) + "\n")
    message = one_line_error(
        lambda argv: load_corpus(listed, label_column="genre", num_proc=1, cache_dir=tmp_path / "cache"), []
    )
    assert message == (
        f"error: The classes 'Rock' and 'rock' of {listed} differ only by case: they would be two classes here and "
        "one on a system whose file names ignore case (macOS, Windows). Give them one spelling, or rename one."
    )


def test_fine_tuning_on_an_audiofolder_trains_its_classes_on_its_splits(songs, tmp_path):
    root = tmp_path / "data"
    placed, _ = _metadata_per_split(songs, root)  # data/train/metadata.csv, data/test/metadata.csv
    argv = [a for a in TINY_FINETUNE if a not in ("--split", "kfold", "--num_folds", "3")]
    argv += ["--dataset", str(root), "--output_dir", str(tmp_path / "run"), "--cache_dir", str(tmp_path / "cache")]
    run_finetune(*parse_finetune_args([*argv, "--validation_size", "0.34", "--max_steps", "1"])[:3])
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert [config["id2label"][str(i)] for i in range(len(GENRES))] == list(GENRES)
    splits = json.loads((tmp_path / "run" / "splits.json").read_text())
    assert splits["split"] == "dataset" and splits["drawn"] == ["validation"]
    assert sorted(splits["song_ids"]["test"]) == sorted(s for s, (split, _) in placed.items() if split == "test")
