"""The course project reproduced: its split lists, its exact recipe (`course-project-exact`), its vote."""

import csv
import json
from collections import Counter
from pathlib import Path

import pytest
import torch
from huggingface_hub import ModelCard

from gtzan_hf.commands.evaluate import main as evaluation_main
from gtzan_hf.commands.finetune import build_trainer, parse_finetune_args, run_finetune
from gtzan_hf.data import DataConfig, load_splits
from gtzan_hf.data.augmentation import spec_augment
from gtzan_hf.data.synthetic import generate_corpus
from gtzan_hf.models.loading import build_classifier
from gtzan_hf.reports.evaluation import comparison_table
from gtzan_hf.reports.model_card import write_model_card

REPO = Path(__file__).resolve().parents[1]
# the course project's own lists, as read from its repository (outside the package: an independent reference)
REFERENCE_LISTS = REPO.parent / "shared" / "seed" / "splits"
FIXTURES = REPO / "tests" / "fixtures" / "ssast_reference"


def splits_of(source, split_file=None, **settings):
    """`load_splits` of `source` with the data settings given (the rest: `DataConfig`'s defaults)."""
    return load_splits(DataConfig(dataset=str(source), **settings), split_file)


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
    splits = splits_of(
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

    splits = splits_of(gtzan_named_corpus, split="course-project-30s", cache_dir=tmp_path)
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
    splits = splits_of(root, split="course-project", cache_dir=tmp_path)
    assert sum(len(part) for part in splits.values()) == 6
    assert "993 songs of the course-project lists are not in this corpus" in caplog.text
    other = tmp_path / "other" / "speech"
    other.mkdir(parents=True)
    for wav in (root / "blues").glob("*.wav"):
        (other / f"clip-{wav.stem}.wav").write_bytes(wav.read_bytes())
    with pytest.raises(ValueError, match="needs GTZAN's song ids"):
        splits_of(tmp_path / "other", split="course-project", cache_dir=tmp_path)


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
    model = build_classifier(model_args.resolve(), model_args, ["a", "b"])
    assert (model.config.patch_freq, model.config.patch_time) == (128, 2)
    assert (model.config.freq_stride, model.config.time_stride) == (128, 1)
    assert model.config.patch_grid == (1, 199)
    explicit = parse_finetune_args(
        ["--model_name_or_path", str(FIXTURES / "pretrain_frame_tiny_d2.pth"), "--max_length", "200",
         "--tstride", "2", "--output_dir", str(tmp_path)]
    )[0]  # fmt: skip
    assert build_classifier(explicit.resolve(), explicit, ["a", "b"]).config.time_stride == 2


EXACT_RUN = [
    "--preset", "course-project-exact",
    "--model_name_or_path", str(FIXTURES / "pretrain_patch_tiny_d2.pth"),
    # shorter than the recipe's 10 s / 1024 frames, for speed; everything else as the preset says
    "--max_length", "128", "--crop_seconds", "1", "--eval_hop_seconds", "1",
    "--num_train_epochs", "2", "--logging_strategy", "steps", "--logging_steps", "1",
    "--save_total_limit", "1", "--use_cpu", "true", "--dataloader_num_workers", "0",
    "--report_to", "none", "--disable_tqdm", "true",
]  # fmt: skip


def exact_args(corpus: Path, output_dir: Path, *extra: str):
    return parse_finetune_args([*EXACT_RUN, "--dataset", str(corpus), "--cache_dir", str(corpus.parent),
                                "--output_dir", str(output_dir), *extra])  # fmt: skip


@pytest.mark.filterwarnings("ignore:Detected call of `lr_scheduler.step\\(\\)` before")
def test_exact_preset_sets_the_course_project_recipe(small_gtzan_named, tmp_path):
    model_args, data_args, training_args, _ = exact_args(small_gtzan_named, tmp_path)
    trainer, data = build_trainer(model_args, data_args, training_args)
    assert {name: len(ids) for name, ids in data.song_ids.items()} == {"train": 78, "validation": 12, "test": 10}
    # static windows: every song's three 1 s windows, each a sample
    assert len(data.train) == 3 * 78 and sorted(set(data.train.with_format(None)["start"])) == [0, 100, 200]

    optimizer = trainer.create_optimizer()
    assert isinstance(optimizer, torch.optim.AdamW)
    groups = {(group["lr"], group["weight_decay"]) for group in optimizer.param_groups}
    assert groups == {(1e-4, 0.01), (1e-4, 0.0), (5e-6, 0.01), (5e-6, 0.0)}
    assert training_args.label_smoothing_factor == 0.1 and training_args.dataloader_drop_last
    assert training_args.per_device_train_batch_size * training_args.gradient_accumulation_steps == 32

    # the schedule against torch's CosineAnnealingLR(T_max=epochs) stepped once per epoch, as the project ran it
    steps_per_epoch, epochs = 4, 5
    training_args.num_train_epochs = epochs
    scheduler = trainer.create_scheduler(steps_per_epoch * epochs, optimizer)
    reference_optimizer = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(1))], lr=1.0)
    reference = torch.optim.lr_scheduler.CosineAnnealingLR(reference_optimizer, T_max=epochs)
    base_rates = [group["initial_lr"] for group in optimizer.param_groups]
    for step in range(steps_per_epoch * epochs):
        factors = [rate / base for rate, base in zip(scheduler.get_last_lr(), base_rates)]
        assert factors == pytest.approx([reference.get_last_lr()[0]] * len(factors), abs=1e-12), step
        scheduler.step()
        if (step + 1) % steps_per_epoch == 0:
            reference.step()

    # the course project's masks: frames masked up to 35 wide, mel bins up to 127 (the 144-wide "time" mask)
    extractor = trainer.processing_class
    torch.manual_seed(0)
    batch = data.train[:64]["input_values"]
    masked = torch.isclose(batch, torch.tensor(-extractor.mean / (2 * extractor.std)))  # normalised zeros
    masked_bins = masked.all(dim=1).sum(dim=1)  # bins masked across every frame
    # frames masked across every bin, inside the window (the last window of a 2.98 s song ends at frame 98)
    masked_frames = masked[:, :95].all(dim=2).sum(dim=1)
    assert masked_bins.max() > 60 and masked_frames[masked_bins < 128].max() <= 35


@pytest.fixture(scope="module")
def exact_run(small_gtzan_named, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("exact-run")
    model_args, data_args, training_args, _ = exact_args(small_gtzan_named, output_dir)
    return output_dir, run_finetune(model_args, data_args, training_args)


def test_exact_preset_run_reports_the_course_project_vote(exact_run):
    output_dir, metrics = exact_run
    for split, songs in (("validation", 12), ("test", 10)):
        # drop_last is for training batches only: every window of every song is scored
        assert (metrics[split]["num_songs"], metrics[split]["num_clips"]) == (songs, 3 * songs)
        assert 0.0 <= metrics[split]["song_accuracy_course_project"] <= 1.0
    state = json.loads((output_dir / "trainer_state.json").read_text())
    # 234 windows, batches of 16 with the last partial one dropped: 14 batches, 7 optimiser steps per epoch
    assert state["global_step"] == 14
    evaluation = next(entry for entry in state["log_history"] if "eval_num_clips" in entry)
    assert evaluation["eval_num_clips"] == 36 and "eval_song_accuracy_course_project" in evaluation
    rates = [entry["learning_rate"] for entry in state["log_history"] if "loss" in entry]
    # the rate each step used: constant within an epoch, halved in the second (a cosine over 2 epochs)
    assert rates == [rates[0]] * 7 + [pytest.approx(rates[0] / 2)] * 7
    trainer_results = json.loads((output_dir / "all_results.json").read_text())
    assert trainer_results["test_song_accuracy"] == metrics["test"]["song_accuracy"]
    assert (
        trainer_results["eval_song_accuracy_course_project"] == metrics["validation"]["song_accuracy_course_project"]
    )
    assert "train_runtime" in json.loads((output_dir / "train_results.json").read_text())
    assert json.loads((output_dir / "eval_results.json").read_text())["eval_num_songs"] == 12
    run_config = json.loads((output_dir / "run_config.json").read_text())
    assert run_config["spec_augment_axes"] == "swapped" and run_config["split"] == "course-project"


def test_evaluate_model_run_dir_alone_gives_the_run_figures(exact_run):
    output_dir, metrics = exact_run
    evaluation_main([str(output_dir)])  # no flag: the run's dataset, split, windows and normalisation
    evaluated = json.loads((output_dir / "evaluation" / "metrics.json").read_text())
    for split in ("validation", "test"):
        for key in ("clip_accuracy", "song_accuracy", "song_accuracy_course_project", "macro_f1", "num_clips"):
            assert evaluated[split][key] == pytest.approx(metrics[split][key]), (split, key)
    saved = json.loads((output_dir / "evaluation" / "evaluation_config.json").read_text())
    assert (saved["split"], saved["crop_seconds"], saved["eval_hop_seconds"]) == ("course-project", 1.0, 1.0)
    # a flag overrides the saved value: two windows per song
    evaluation_main([str(output_dir), "--eval_segments", "2", "--output_dir", str(output_dir / "two")])
    assert json.loads((output_dir / "two" / "metrics.json").read_text())["test"]["num_clips"] == 20
    table = comparison_table([output_dir, output_dir / "two"])
    header = table.splitlines()[0]
    assert header.startswith("| Model | Windows | Accuracy (clip) | Accuracy (song) |")
    assert "| 1 s clip / 3 s song |" in table and "| 1 s clip / 2 s song |" in table


def test_model_card_parses_and_tells_the_truth(exact_run, tmp_path):
    output_dir, metrics = exact_run
    card = ModelCard.load(output_dir / "README.md")
    data = card.data
    assert data.license == "bsd-3-clause" and data.library_name == "transformers"
    assert data.base_model is None  # a local original checkpoint: no Hub id to name
    assert data.datasets is None and "gtzan" not in data.tags  # a generated corpus with GTZAN's names is not GTZAN
    assert "synthetic-data" in data.tags and data.eval_results is None  # no Hub dataset for a model-index to name
    assert data.metrics == ["accuracy", "f1"]
    course_project = f"{100 * metrics['test']['song_accuracy_course_project']:.1f} %"
    assert "song accuracy (course project's vote)" in card.text and course_project in card.text
    assert "fine-tuned from `pretrain_patch_tiny_d2.pth`" in card.text
    assert "fixed 1 s windows every 1 s, each a separate sample" in card.text
    assert "3 windows of 1 s every 1 s" in card.text and "GTZAN (Tzanetakis" not in card.text

    # the same run described as fine-tuned from a Hub model on real GTZAN (no generator's mark on the folder)
    copy = tmp_path / "copy"
    copy.mkdir()
    for name in ("metrics.json", "config.json", "preprocessor_config.json"):
        (copy / name).write_bytes((output_dir / name).read_bytes())
    run_config = json.loads((output_dir / "run_config.json").read_text())
    run_config.update(model_name_or_path="MIT/ast-finetuned-audioset-10-10-0.4593", dataset=str(tmp_path / "gtzan"))
    (copy / "run_config.json").write_text(json.dumps(run_config))
    splits = json.loads((output_dir / "splits.json").read_text())
    (copy / "splits.json").write_text(json.dumps({**splits, "source": str(tmp_path / "gtzan")}))
    (tmp_path / "gtzan").mkdir()
    card = ModelCard.load(write_model_card(copy))
    assert card.data.base_model == "MIT/ast-finetuned-audioset-10-10-0.4593"
    assert card.data.datasets == ["marsyas/gtzan"] and "gtzan" in card.data.tags
    results = {result.metric_name: result for result in card.data.eval_results}
    song = results["song accuracy (course project's vote)"]
    assert song.metric_value == pytest.approx(metrics["test"]["song_accuracy_course_project"], abs=1e-4)
    assert (song.dataset_name, song.dataset_type, song.dataset_split) == (
        "GTZAN", "marsyas/gtzan", "test (course-project split)"
    )  # fmt: skip
    assert "GTZAN (Tzanetakis" in card.text and "synthetic-data" not in card.data.tags
    run_config.update(model_name_or_path=None)
    (copy / "run_config.json").write_text(json.dumps(run_config))
    card = ModelCard.load(write_model_card(copy))
    assert card.data.base_model is None and "trained from scratch" in card.text and "fine-tuned" not in card.text
