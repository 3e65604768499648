"""The course project reproduced: its split lists, its exact recipe (`course-project-exact`), its vote."""

import csv
import json
from collections import Counter
from pathlib import Path

import pytest
import torch

from gtzan_hf.data import load_splits
from gtzan_hf.data.augmentation import spec_augment
from gtzan_hf.finetune import build_model, parse_finetune_args
from gtzan_hf.synthetic import generate_corpus

REPO = Path(__file__).resolve().parents[1]
# the course project's own lists, as read from its repository (outside the package: an independent reference)
REFERENCE_LISTS = REPO.parent / "shared" / "seed" / "splits"
FIXTURES = REPO / "tests" / "fixtures" / "ssast_reference"


@pytest.fixture(scope="module")
def gtzan_named_corpus(tmp_path_factory):
    """All 1000 GTZAN names (100 songs per genre), 1 s each, with jazz.00054 unreadable as in GTZAN."""
    root = tmp_path_factory.mktemp("gtzan-named")
    generate_corpus(root, songs_per_genre=100, seed=0, duration=1.0)
    (root / "jazz" / "jazz.00054.wav").write_bytes(b"RIFF not really a wave file")
    return root


def reference_lists(name: str) -> dict[str, list[str]]:
    if not REFERENCE_LISTS.is_dir():
        pytest.skip(f"the course project's reference lists are not at {REFERENCE_LISTS}")
    lists = {"train": [], "val": [], "test": []}
    with open(REFERENCE_LISTS / name, newline="") as handle:
        for row in csv.DictReader(handle):
            lists[row["split"]].append(row["song_id"])
    return lists


def test_course_project_splits_have_the_project_songs(gtzan_named_corpus, tmp_path, caplog):
    splits = load_splits(
        gtzan_named_corpus, split="course-project", split_file=tmp_path / "splits.json", cache_dir=tmp_path
    )
    sizes = {name: len(part) for name, part in splits.items()}
    assert sizes == {"train": 799, "validation": 99, "test": 101}
    ids = {name: set(part["song_id"]) for name, part in splits.items()}
    assert "jazz.00054" not in set().union(*ids.values())
    reference = reference_lists("strategy_a_10s_clips.csv")
    assert ids == {
        "train": set(reference["train"]),
        "validation": set(reference["val"]),
        "test": set(reference["test"]),
    }
    saved = json.loads((tmp_path / "splits.json").read_text())
    assert saved["split"] == "course-project" and saved["num_songs"] == sizes
    assert {name: set(songs) for name, songs in saved["song_ids"].items()} == ids
    assert [entry["song_id"] for entry in saved["skipped"]] == ["jazz.00054"]

    splits = load_splits(gtzan_named_corpus, split="course-project-30s", cache_dir=tmp_path)
    # jazz.00054 is listed for training but unreadable: skipped (and reported as such), not missing
    assert {name: len(part) for name, part in splits.items()} == {"train": 799, "validation": 100, "test": 100}
    test_genres = Counter(song_id.split(".")[0] for song_id in splits["test"]["song_id"])
    assert (test_genres["blues"], test_genres["hiphop"], test_genres["jazz"]) == (14, 5, 6)
    reference = reference_lists("strategy_b_30s_songs.csv")
    assert set(splits["test"]["song_id"]) == set(reference["test"])
    assert set(splits["validation"]["song_id"]) == set(reference["val"])


def test_course_project_split_warns_about_missing_songs_and_refuses_other_names(tmp_path, caplog):
    root = tmp_path / "few"
    generate_corpus(root, songs_per_genre=3, seed=0, duration=0.5, genres=("blues", "rock"))
    splits = load_splits(root, split="course-project", cache_dir=tmp_path)
    assert sum(len(part) for part in splits.values()) == 6
    assert "993 songs of the course-project lists are not in this corpus" in caplog.text
    other = tmp_path / "other" / "speech"
    other.mkdir(parents=True)
    for wav in (root / "blues").glob("*.wav"):
        (other / f"clip-{wav.stem}.wav").write_bytes(wav.read_bytes())
    with pytest.raises(ValueError, match="needs GTZAN's song ids"):
        load_splits(tmp_path / "other", split="course-project", cache_dir=tmp_path)


def test_swapped_spec_augment_masks_frames_with_the_frequency_width():
    torch.manual_seed(0)
    batch = spec_augment(torch.ones(200, 300, 128), freq_mask=36, time_mask=144, axes="swapped")
    masked_frames = (batch == 0).all(dim=2).sum(dim=1)  # frames masked across all bins: the "frequency" mask
    masked_bins = (batch == 0).all(dim=1).sum(dim=1)  # bins masked across all frames: the "time" mask
    # a bin band as wide as all 128 bins masks every frame; otherwise, at most 35 whole frames
    partial = masked_bins < 128
    assert masked_frames[partial].max() <= 35 and masked_frames[partial].max() >= 25
    assert masked_bins.max() <= 127 and masked_bins.float().mean() > 40  # widths uniform in [0, 128)
    standard = spec_augment(torch.ones(200, 300, 128), freq_mask=36, time_mask=144)
    assert (standard == 0).all(dim=1).sum(dim=1).max() <= 35  # bins masked up to 35 wide
    assert (standard == 0).all(dim=2).sum(dim=1).max() > 100  # frames masked up to 143 wide


def test_frame_checkpoint_through_finetune_keeps_frame_strides(tmp_path):
    model_args = parse_finetune_args(
        ["--model_name_or_path", str(FIXTURES / "pretrain_frame_tiny_d2.pth"), "--max_length", "200",
         "--output_dir", str(tmp_path)]
    )[0]  # fmt: skip
    model = build_model(model_args, ["a", "b"])
    assert (model.config.patch_freq, model.config.patch_time) == (128, 2)
    assert (model.config.freq_stride, model.config.time_stride) == (128, 1)
    assert model.config.patch_grid == (1, 199)
    explicit = parse_finetune_args(
        ["--model_name_or_path", str(FIXTURES / "pretrain_frame_tiny_d2.pth"), "--max_length", "200",
         "--tstride", "2", "--output_dir", str(tmp_path)]
    )[0]  # fmt: skip
    assert build_model(explicit, ["a", "b"]).config.time_stride == 2
