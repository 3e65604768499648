import csv
import json
import runpy
import shutil
import sys
from pathlib import Path

import datasets
import numpy as np
import pytest
import torch
from conftest import one_line_error, save_tiny_classifier

from gtzan_hf import SSASTConfig, SSASTForAudioClassification
from gtzan_hf.commands import embed, probe
from gtzan_hf.commands.embed import window_embeddings
from gtzan_hf.data.synthetic import GTZAN_GENRES, generate_corpus

REPO = Path(__file__).resolve().parents[1]
GENRES = list(GTZAN_GENRES[:3])
MAX_LENGTH = 304
WINDOW = ["--crop_seconds", "3", "--eval_hop_seconds", "3", "--eval_segments", "3"]


@pytest.fixture(scope="module")
def encoder():
    torch.manual_seed(0)
    config = SSASTConfig.from_size("tiny", num_hidden_layers=2, freq_stride=16, time_stride=16, max_length=128)
    return SSASTForAudioClassification(config).ssast.eval()


def test_pooled_embeddings_are_the_encoders_outputs(encoder):
    input_values = torch.randn(3, 128, 128)
    with torch.no_grad():
        outputs = encoder(input_values)
    num_cls = encoder.config.num_cls_tokens
    torch.testing.assert_close(window_embeddings(encoder, input_values, "mean"), outputs.pooler_output)
    torch.testing.assert_close(
        window_embeddings(encoder, input_values, "cls"), outputs.last_hidden_state[:, :num_cls].mean(1)
    )
    # The patch grid, (freq_patches, time_patches, hidden) flattened: patch (f, t) at f * time_patches + t.
    freq_patches, time_patches = encoder.config.patch_grid
    grid = window_embeddings(encoder, input_values, "patches").view(3, freq_patches, time_patches, -1)
    torch.testing.assert_close(grid[:, 1, 2], outputs.last_hidden_state[:, num_cls + time_patches + 2])


def test_a_layers_embedding_is_its_hidden_state_under_the_final_norm(encoder):
    input_values = torch.randn(2, 128, 128)
    depth = encoder.config.num_hidden_layers
    torch.testing.assert_close(
        window_embeddings(encoder, input_values, "mean", layer=depth), window_embeddings(encoder, input_values)
    )
    # Layer 0: the patch embeddings (positions added) before any block.
    with torch.no_grad():
        embedded = encoder.layernorm(encoder.embeddings(input_values))
    num_cls = encoder.config.num_cls_tokens
    torch.testing.assert_close(
        window_embeddings(encoder, input_values, "mean", layer=0), embedded[:, num_cls:].mean(1)
    )
    first = window_embeddings(encoder, input_values, "mean", layer=1)
    assert not torch.allclose(first, window_embeddings(encoder, input_values, "mean", layer=0))
    assert not torch.allclose(first, window_embeddings(encoder, input_values, "mean"))


@pytest.fixture(scope="module")
def corpus_and_model(tmp_path_factory):
    """3 genres x 10 songs x 9 s (three 3 s windows each) and a random tiny SSAST classifier folder."""
    root = tmp_path_factory.mktemp("embed")
    generate_corpus(root / "corpus", songs_per_genre=10, seed=3, duration=9.0, genres=GENRES, num_proc=1)
    save_tiny_classifier(root / "model", GENRES, 2, MAX_LENGTH)
    return root


def run_script(name: str, *args: str) -> None:
    """Runs `scripts/<name>` as `python scripts/<name> ARGS` would, in this process (no second import of torch)."""
    script = str(REPO / "scripts" / name)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "argv", [script, *args])
        runpy.run_path(script, run_name="__main__")


@pytest.fixture(scope="module")
def embedded(corpus_and_model):
    root = corpus_and_model
    output_dir = root / "embeddings"
    run_script(
        "embed.py",
        str(root / "model"),
        "--dataset",
        str(root / "corpus"),
        "--output_dir",
        str(output_dir),
        "--cache_dir",
        str(root / "cache"),
        "--per_song",
        "true",
        *WINDOW,
    )
    return output_dir


def test_embed_writes_one_row_per_window(embedded, tmp_path):
    windows = datasets.load_dataset("parquet", data_dir=str(embedded / "windows"), cache_dir=str(tmp_path))
    song_ids = json.loads((embedded / "splits.json").read_text())["song_ids"]
    assert set(windows) == {"train", "validation", "test"}
    for split, rows in windows.items():
        assert rows.column_names == ["song_id", "label", "split", "window_start", "embedding"]
        assert rows.features["label"].names == GENRES
        assert len(rows) == 3 * len(song_ids[split])
        assert set(rows["split"]) == {split}
        assert sorted(set(rows["song_id"])) == sorted(song_ids[split])
        assert sorted(rows["window_start"]) == sorted([0.0, 3.0, 6.0] * len(song_ids[split]))
        embeddings = rows.with_format("numpy")[:]["embedding"]
        assert embeddings.shape == (len(rows), 192) and np.isfinite(embeddings).all()
        for song_id, label in zip(rows["song_id"], rows["label"]):
            assert song_id.startswith(GENRES[label])
    config = json.loads((embedded / "embeddings_config.json").read_text())
    assert config["embedding_shape"] == [192] and config["layer"] == 2 and config["pooling"] == "mean"


def test_per_song_embeddings_are_the_means_of_their_windows(embedded, tmp_path):
    windows = datasets.load_dataset(str(embedded), split="test", cache_dir=str(tmp_path)).with_format("numpy")[:]
    songs = datasets.load_dataset(str(embedded), "songs", split="test", cache_dir=str(tmp_path))
    songs = songs.with_format("numpy")[:]
    assert sorted(songs["song_id"]) == sorted(set(windows["song_id"]))
    for song_id, embedding in zip(songs["song_id"], songs["embedding"]):
        members = windows["embedding"][windows["song_id"] == song_id]
        assert len(members) == 3
        np.testing.assert_allclose(embedding, members.mean(axis=0), rtol=1e-5, atol=1e-6)


def test_probe_on_the_embeddings(embedded, tmp_path):
    run_script("probe.py", str(embedded), "--output_dir", str(tmp_path), "--cache_dir", str(tmp_path / "cache"))
    metrics = json.loads((tmp_path / "probe_metrics.json").read_text())
    song_ids = json.loads((embedded / "splits.json").read_text())["song_ids"]
    assert set(metrics) == {"validation", "test"}
    for split, values in metrics.items():
        assert values["num_songs"] == len(song_ids[split]) and values["num_clips"] == 3 * len(song_ids[split])
        assert 0 <= values["clip_accuracy"] <= 1 and 0 <= values["song_accuracy"] <= 1
        assert set(values["per_genre_accuracy"]) <= set(GENRES)
        with open(tmp_path / f"confusion_song_{split}.csv") as handle:
            matrix = [[int(cell) for cell in row[1:]] for row in list(csv.reader(handle))[1:]]
        assert np.sum(matrix) == values["num_songs"]
        assert np.trace(matrix) == round(values["song_accuracy"] * values["num_songs"])
    chosen = json.loads((tmp_path / "probe_config.json").read_text())
    assert chosen["chosen_c"] in chosen["c_values"]


def _sizes(folder: Path) -> dict[str, tuple[int, int]]:
    return {p.relative_to(folder).as_posix(): (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_a_stopped_run_leaves_the_previous_embeddings_whole(embedded, corpus_and_model, tmp_path, monkeypatch):
    output_dir = tmp_path / "embeddings"
    shutil.copytree(embedded, output_dir)
    before = _sizes(output_dir)
    calls = []

    def stopped_after_one_batch(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt  # Ctrl-C, or a SIGTERM (`gtzan_hf.commands.cli.Stopped`)
        return window_embeddings(*args, **kwargs)

    root = corpus_and_model
    argv = [str(root / "model"), "--dataset", str(root / "corpus"), "--output_dir", str(output_dir)]
    argv += ["--cache_dir", str(root / "cache"), "--pooling", "cls", "--batch_size", "4", *WINDOW]
    monkeypatch.setattr(embed, "window_embeddings", stopped_after_one_batch)
    with pytest.raises(KeyboardInterrupt):
        embed.main(argv)
    assert _sizes(output_dir) == before  # nothing of the stopped run, not even its partial folder

    monkeypatch.undo()
    left = output_dir / ".embed-partial-killed" / "windows"  # what a SIGKILL would leave
    left.mkdir(parents=True)
    shutil.copy(output_dir / "windows" / "train-00000.parquet", left / "train-00000.parquet")
    embed.main(argv)
    config = embed.read_embeddings(output_dir)
    assert config["pooling"] == "cls" and not list(output_dir.glob(".embed-partial-*"))
    assert sorted(config["files"]) == sorted(
        p.relative_to(output_dir).as_posix() for p in output_dir.rglob("*.parquet")
    )
    assert not (output_dir / "songs").exists()  # the previous run's per-song files went with it


def _extra_shard(folder: Path) -> str:
    shutil.copy(folder / "windows" / "train-00000.parquet", folder / "windows" / "train-00001.parquet")
    return (
        f"{folder / 'windows' / 'train-00001.parquet'} is not among the shards embeddings_config.json lists: "
        f"{folder} mixes shards of two runs of scripts/embed.py."
    )


def _unlisted(folder: Path) -> None:
    """As written before embed.py listed its shards."""
    config = json.loads((folder / "embeddings_config.json").read_text())
    del config["files"]
    (folder / "embeddings_config.json").write_text(json.dumps(config))


def _other_width(folder: Path) -> str:
    _unlisted(folder)
    rows = {"song_id": ["x"], "label": [0], "split": ["train"], "window_start": [0.0], "embedding": [[0.0] * 8]}
    datasets.Dataset.from_dict(rows).to_parquet(folder / "windows" / "train-00001.parquet")
    return f"{folder / 'windows'} mixes shards of two runs of scripts/embed.py: they cannot be read as one dataset ("


def _same_width_twice(folder: Path) -> str:
    _unlisted(folder)
    _extra_shard(folder)
    windows = json.loads((folder / "embeddings_config.json").read_text())["num_windows"]["train"]
    return (
        f"{folder / 'windows'} mixes shards of two runs of scripts/embed.py: they hold {2 * windows} train windows, "
        f"not {windows}."
    )


def _unfinished(folder: Path) -> str:
    (folder / "embeddings_config.json").unlink()
    return (
        f"{folder} has no embeddings_config.json: scripts/embed.py writes it last, once every shard is in place, so "
        "the run that wrote there did not finish, or this is not its output folder."
    )


@pytest.mark.parametrize("damage", [_extra_shard, _other_width, _same_width_twice, _unfinished])
def test_the_probe_refuses_shards_of_two_runs_in_one_line(embedded, tmp_path, damage):
    folder = tmp_path / "embeddings"
    shutil.copytree(embedded, folder)
    says = damage(folder)
    message = one_line_error(
        probe.main, [str(folder), "--output_dir", str(tmp_path / "probe"), "--cache_dir", str(tmp_path)]
    )
    assert message.startswith(f"error: {says}"), message
    assert message.endswith("Run scripts/embed.py again (into this folder or an empty one).")
