import json

import numpy as np
import pytest
from huggingface_hub import ModelCard

from gtzan_hf.commands.crossval import run_crossval
from gtzan_hf.data.synthetic import generate_corpus

TINY_CROSSVAL = [
    "--preset", "quickstart", "--num_train_epochs", "1", "--max_length", "128",
    "--crop_seconds", "1", "--eval_hop_seconds", "1", "--freq_mask", "0", "--time_mask", "0",
    "--save_total_limit", "1", "--dataloader_num_workers", "0", "--disable_tqdm", "true",
]  # fmt: skip


def test_three_folds_cover_the_corpus_once_and_resume(tmp_path, caplog):
    corpus = tmp_path / "corpus"
    genres = ("blues", "classical", "metal", "reggae")
    generate_corpus(corpus, songs_per_genre=6, seed=2, duration=3.0, genres=genres)
    output_dir = tmp_path / "cv"
    argv = [*TINY_CROSSVAL, "--dataset", str(corpus), "--cache_dir", str(tmp_path), "--num_folds", "3",
            "--output_dir", str(output_dir)]  # fmt: skip
    summary = run_crossval(argv)

    tests = [json.loads((output_dir / f"fold-{k}" / "splits.json").read_text())["song_ids"]["test"] for k in range(3)]
    every_song = sorted(f"{genre}.{index:05d}" for genre in genres for index in range(6))
    assert sorted(tests[0] + tests[1] + tests[2]) == every_song  # disjoint, and all of the corpus

    on_disk = json.loads((output_dir / "crossval.json").read_text())
    assert on_disk == summary and [run["name"] for run in on_disk["runs"]] == ["fold-0", "fold-1", "fold-2"]
    for key in ("clip_accuracy", "song_accuracy", "song_accuracy_course_project"):
        values = [json.loads((output_dir / f"fold-{k}" / "metrics.json").read_text())["test"][key] for k in range(3)]
        assert on_disk["mean"][key] == pytest.approx(np.mean(values))
        assert on_disk["std"][key] == pytest.approx(np.std(values, ddof=1))
    table = (output_dir / "crossval.md").read_text().splitlines()
    assert table[0] == (
        "| Model | Accuracy (1 s clip) | Accuracy (3 s song) | Accuracy (3 s song, course project's vote) |"
    )
    mean, std = 100 * summary["mean"]["song_accuracy"], 100 * summary["std"]["song_accuracy"]
    assert table[2].startswith("| cv (3-fold cross-validation) |") and f"{mean:.2f} ± {std:.2f} %" in table[2]
    card = ModelCard.load(output_dir / "fold-1" / "README.md")
    assert "## Cross-validation" in card.text and "one of 3 runs" in card.text and "trained from scratch" in card.text

    # again: every sub-run is finished, nothing is trained
    caplog.clear()
    assert run_crossval(argv) == summary
    assert caplog.text.count("holds a finished run") == 3


def test_the_few_labels_preset_cross_validates_as_a_probe_per_fold(tmp_path):
    corpus = tmp_path / "corpus"
    genres = ("blues", "classical", "metal", "reggae")
    generate_corpus(corpus, songs_per_genre=6, seed=5, duration=4.0, genres=genres)
    output_dir = tmp_path / "cv"
    summary = run_crossval(
        ["--preset", "few-labels", "--dataset", str(corpus), "--cache_dir", str(tmp_path), "--num_folds", "3",
         "--crop_seconds", "2", "--eval_hop_seconds", "1", "--max_length", "200", "--disable_tqdm", "true",
         "--output_dir", str(output_dir)]
    )  # fmt: skip
    folds = [output_dir / f"fold-{k}" for k in range(3)]
    for fold in folds:
        probe = json.loads((fold / "linear_probe.json").read_text())
        splits = json.loads((fold / "splits.json").read_text())
        assert probe["num_songs"] == len(splits["song_ids"]["train"]) + len(splits["song_ids"]["validation"]) == 16
        assert list(json.loads((fold / "metrics.json").read_text())) == ["test"]
    songs = [json.loads((fold / "metrics.json").read_text())["test"]["song_accuracy"] for fold in folds]
    assert summary["mean"]["song_accuracy"] == pytest.approx(np.mean(songs)) and np.mean(songs) >= 0.5  # chance 0.25
