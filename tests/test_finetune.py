import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from datasets import Dataset
from huggingface_hub import ModelCard
from matplotlib.image import imread
from transformers import AutoFeatureExtractor, AutoModelForAudioClassification, Trainer, TrainingArguments

from gtzan_hf import SSASTFeatureExtractor
from gtzan_hf.commands.cli import preset_names
from gtzan_hf.commands.finetune import parse_finetune_args, run_finetune, specaugment_example
from gtzan_hf.data import DataConfig, build_datasets
from gtzan_hf.data.synthetic import GENERATED_CORPUS_MARKER, GTZAN_GENRES, generate_corpus
from gtzan_hf.errors import UserError
from gtzan_hf.inference.voting import vote_rules
from gtzan_hf.reports.model_card import RECIPE_KEYS

REPO = Path(__file__).resolve().parents[1]
SAVED = ("run_config", "splits", "preprocessor_config")
TINY_RUN = [
    "--preset",
    "quickstart",
    "--num_train_epochs",
    "12",
    "--crop_seconds",
    "3",
    "--eval_hop_seconds",
    "3",
    "--max_length",
    "304",
    "--freq_mask",
    "0",
    "--time_mask",
    "0",
    "--per_device_train_batch_size",
    "8",
    "--learning_rate",
    "2e-3",
    "--head_learning_rate",
    "2e-3",
    "--disable_tqdm",
    "true",
]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    generate_corpus(root, songs_per_genre=10, seed=3, duration=9.0)
    return root


@pytest.fixture(scope="module")
def finished_run(corpus, tmp_path_factory):
    output_dir = tmp_path_factory.mktemp("run")
    args = parse_finetune_args(
        [*TINY_RUN, "--dataset", str(corpus), "--output_dir", str(output_dir), "--cache_dir", str(corpus.parent)]
    )
    metrics = run_finetune(*args)
    return output_dir, metrics


def test_presets_config_file_and_command_line_priority(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text("learning_rate: 0.0003\nnum_train_epochs: 7\nfreq_mask: 10\n")
    model_args, data_args, training_args, _ = parse_finetune_args(
        ["--preset", "ssast-gtzan", "--config", str(config), "--num_train_epochs", "9", "--output_dir", str(tmp_path)]
    )
    assert training_args.learning_rate == 3e-4  # config over preset
    assert training_args.num_train_epochs == 9  # command line over config
    assert data_args.freq_mask == 10 and data_args.time_mask == 144  # preset where nothing overrides
    assert training_args.head_learning_rate == 1e-4 and training_args.gradient_accumulation_steps == 2
    assert model_args.freq_stride == 10 and model_args.max_length == 1024
    assert training_args.metric_for_best_model == "song_accuracy"


def test_every_preset_parses_and_unknown_config_keys_are_refused(tmp_path):
    for preset in preset_names("finetune"):
        parse_finetune_args(["--preset", preset, "--output_dir", str(tmp_path)])
    config = tmp_path / "bad.json"
    config.write_text(json.dumps({"learning_rat": 1e-3}))
    with pytest.raises(ValueError, match="learning_rat"):
        parse_finetune_args(["--config", str(config), "--output_dir", str(tmp_path)])


def test_missing_original_checkpoint_says_where_to_get_one(tmp_path, corpus):
    args = parse_finetune_args(
        [
            *TINY_RUN,
            "--model_name_or_path",
            str(tmp_path / "SSAST-Base-Patch-400.pth"),
            "--dataset",
            str(corpus),
            "--output_dir",
            str(tmp_path / "run"),
            "--cache_dir",
            str(corpus.parent),
        ]
    )
    with pytest.raises(UserError, match=r"SSAST-Base-Patch-400.pth not found: .* released name \(SSAST-Base"):
        run_finetune(*args)


def test_training_learns_and_the_best_model_is_evaluated_once(finished_run):
    output_dir, metrics = finished_run
    state = json.loads((output_dir / "trainer_state.json").read_text())
    losses = [entry["loss"] for entry in state["log_history"] if "loss" in entry]
    assert losses[-1] < losses[0]
    evaluations = [e["eval_song_accuracy"] for e in state["log_history"] if "eval_song_accuracy" in e]
    assert state["best_metric"] == max(evaluations)
    # the reported validation figures are those of the best checkpoint, evaluated again at the end
    assert metrics["validation"]["song_accuracy"] == pytest.approx(state["best_metric"])
    assert metrics["test"]["song_accuracy"] >= 0.4  # chance is 0.1
    assert len(list(output_dir.glob("checkpoint-*"))) <= 2


def test_report_files_are_valid(finished_run):
    output_dir, metrics = finished_run
    on_disk = json.loads((output_dir / "metrics.json").read_text())
    assert on_disk == metrics and set(on_disk) == {"validation", "test"}
    for split in on_disk.values():
        for key in ("clip_accuracy", "song_accuracy", "song_accuracy_hard", "song_accuracy_hybrid", "macro_f1"):
            assert 0.0 <= split[key] <= 1.0
        assert set(split["per_genre_accuracy"]) == set(GTZAN_GENRES)
        assert split["num_songs"] == 10 and split["num_clips"] == 30

    for png in (
        "confusion_clip_test.png",
        "confusion_song_test.png",
        "confusion_song_validation.png",
        "per_genre_accuracy_test.png",
        "learning_curves.png",
        "tsne_test.png",
        "specaugment_example.png",
    ):
        image = imread(output_dir / png)
        assert image.ndim == 3 and image.shape[0] > 100 and image.std() > 0, png

    with open(output_dir / "confusion_song_test.csv") as handle:
        rows = list(csv.reader(handle))
    assert rows[0][1:] == list(GTZAN_GENRES)
    counts = np.array([[int(v) for v in row[1:]] for row in rows[1:]])
    assert counts.sum() == 10 and np.trace(counts) / 10 == pytest.approx(metrics["test"]["song_accuracy"])

    with open(output_dir / "learning_curves.csv") as handle:
        curve = list(csv.DictReader(handle))
    assert {row["epoch"] for row in curve if row["loss"]} == {str(float(e)) for e in range(1, 13)}

    splits = json.loads((output_dir / "splits.json").read_text())
    songs = [set(splits["song_ids"][name]) for name in ("train", "validation", "test")]
    assert not (songs[0] & songs[1] or songs[0] & songs[2] or songs[1] & songs[2])
    run_config = json.loads((output_dir / "run_config.json").read_text())
    assert run_config["max_length"] == 304 and run_config["crop_seconds"] == 3.0

    card = (output_dir / "README.md").read_text()
    assert "pipeline_tag: audio-classification" in card
    assert f"{100 * metrics['test']['song_accuracy']:.1f} %" in card
    assert 'pipeline("audio-classification"' in card


def test_the_saved_folder_states_its_problem_type_and_a_plain_trainer_reports_cross_entropy(finished_run, tmp_path):
    """The run trained with label smoothing 0.1 (quickstart): a training choice, not saved with the model, whose
    loss is then plain cross-entropy for any client, as transformers' AST's is."""
    output_dir, _ = finished_run
    config = json.loads((output_dir / "config.json").read_text())
    assert config["problem_type"] == "single_label_classification" and "label_smoothing" not in config
    model = AutoModelForAudioClassification.from_pretrained(output_dir).eval()
    extractor = AutoFeatureExtractor.from_pretrained(output_dir)
    waveforms = list(np.random.default_rng(0).uniform(-0.5, 0.5, (4, 3 * 16000)).astype(np.float32))
    labels = [0, 3, 5, 9]
    features = extractor(waveforms, sampling_rate=16000)["input_values"]
    dataset = Dataset.from_dict({"input_values": features, "labels": labels})
    arguments = TrainingArguments(tmp_path, per_device_eval_batch_size=4, report_to=[], use_cpu=True)
    eval_loss = Trainer(model=model, args=arguments, eval_dataset=dataset).evaluate()["eval_loss"]
    with torch.no_grad():
        logits = model(torch.tensor(np.stack(features))).logits
    assert eval_loss == pytest.approx(torch.nn.functional.cross_entropy(logits, torch.tensor(labels)).item(), rel=1e-5)


def test_specaugment_example_masks_a_copy(corpus):
    torch.manual_seed(0)
    extractor = SSASTFeatureExtractor(max_length=304)
    data = build_datasets(DataConfig(dataset=str(corpus), crop_seconds=3.0, cache_dir=str(corpus.parent)), extractor)
    before, after = specaugment_example(data, DataConfig(crop_seconds=3.0, freq_mask=30, time_mask=60), extractor)
    raw = next(data.fbank_arrays("validation"))[:300].astype(np.float32)
    np.testing.assert_allclose(before[:300], (raw - extractor.mean) / (2 * extractor.std), rtol=1e-5, atol=1e-5)
    masked = before != after
    assert masked.any()
    # masked cells hold the normalised padding value, as in training
    np.testing.assert_allclose(after[masked], -extractor.mean / (2 * extractor.std), rtol=1e-6)


def test_published_folder_classifies_in_a_fresh_process(finished_run, corpus):
    output_dir, _ = finished_run
    song = next((corpus / "metal").glob("*.wav"))
    code = f"""
import sys
import soundfile as sf
from transformers import pipeline

classifier = pipeline("audio-classification", model={str(output_dir)!r}, trust_remote_code=True)
waveform, rate = sf.read({str(song)!r}, dtype="float32")
result = classifier({{"raw": waveform, "sampling_rate": rate}}, top_k=3)
assert "gtzan_hf" not in sys.modules, "the folder must work without the package"
print(result[0]["label"], len(result))
"""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=output_dir, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    label, count = done.stdout.split()[-2:]
    assert label in GTZAN_GENRES and count == "3"


def test_evaluate_script_reproduces_the_run_and_compares(finished_run, corpus, tmp_path):
    output_dir, metrics = finished_run
    common = ["--dataset", str(corpus), "--cache_dir", str(corpus.parent), "--crop_seconds", "3"]
    common += ["--eval_hop_seconds", "3"]
    for name, models in (
        ("single", [str(output_dir)]),
        ("ensemble", ["--ensemble", str(output_dir), str(output_dir)]),
    ):
        done = subprocess.run(
            [
                sys.executable,
                str(REPO / "scripts" / "evaluate_model.py"),
                *models,
                *common,
                "--output_dir",
                str(tmp_path / name),
            ],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-3000:]
        evaluated = json.loads((tmp_path / name / "metrics.json").read_text())
        for split in ("validation", "test"):
            assert evaluated[split]["song_accuracy"] == pytest.approx(metrics[split]["song_accuracy"])
            assert evaluated[split]["clip_accuracy"] == pytest.approx(metrics[split]["clip_accuracy"])
    table = subprocess.run(
        [
            sys.executable,
            str(REPO / "scripts" / "evaluate_model.py"),
            "--compare",
            str(output_dir),
            str(tmp_path / "single"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert table.returncode == 0, table.stderr[-3000:]
    header, _, *rows = table.stdout.strip().splitlines()
    # the headers name the runs' own windows: 3 windows of 3 s
    assert header == (
        "| Model | Accuracy (3 s clip) | Accuracy (9 s song) | Accuracy (9 s song, course project's vote) |"
    )
    assert [row.split("|")[1].strip() for row in rows] == [output_dir.name, "single"]
    for row in rows:
        clip, song = (cell.strip() for cell in row.split("|")[2:4])
        assert clip == f"{100 * metrics['test']['clip_accuracy']:.2f} %"
        assert song == f"{100 * metrics['test']['song_accuracy']:.2f} %"


def test_two_process_ddp_counts_every_song_once(corpus, tmp_path):
    output_dir = tmp_path / "ddp"
    command = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--standalone",  # a free rendezvous port on this machine
        "--nproc_per_node",
        "2",
        str(REPO / "scripts" / "finetune.py"),
        *TINY_RUN,
        "--num_train_epochs",
        "1",
        "--dataset",
        str(corpus),
        "--cache_dir",
        str(corpus.parent),
        "--output_dir",
        str(output_dir),
    ]
    done = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    state = json.loads((output_dir / "trainer_state.json").read_text())
    # 80 training songs, 8 per device and process, 2 processes: 5 optimiser steps in the epoch
    assert state["global_step"] == 5
    evaluation = next(entry for entry in state["log_history"] if "eval_num_songs" in entry)
    assert (evaluation["eval_num_songs"], evaluation["eval_num_clips"]) == (10, 30)
    metrics = json.loads((output_dir / "metrics.json").read_text())
    assert metrics["test"]["num_songs"] == 10 and metrics["test"]["num_clips"] == 30


def test_the_model_card_says_only_what_the_run_saved(finished_run):
    """The card of a quickstart run, sentence by sentence, against the files the run saved; and no number in its text
    that those files do not give."""
    output_dir, metrics = finished_run
    saved = {name: json.loads((output_dir / f"{name}.json").read_text()) for name in SAVED}
    run_config, splits, preprocessor = saved["run_config"], saved["splits"], saved["preprocessor_config"]
    generated = json.loads((Path(splits["source"]) / GENERATED_CORPUS_MARKER).read_text())
    card = ModelCard.load(output_dir / "README.md")
    assert "synthetic-data" in card.data.tags and card.data.datasets is None and card.data.eval_results is None
    text = re.sub(r"```.*?```", "", card.text, flags=re.S)  # the usage snippet is code, tested in test_snippets.py
    sizes = " / ".join(str(len(splits["song_ids"][name])) for name in ("train", "validation", "test"))
    per_class = metrics["test"]["per_genre_accuracy"]
    test_songs = len(splits["song_ids"]["test"])
    expected_sentences = [
        "trained from scratch (random initialisation), for audio classification on a corpus generated by "
        f"`gtzan_hf.data.synthetic` ({generated['songs_per_genre']} songs of {generated['duration']:g} s per class, "
        f"seed {generated['seed']})",
        f"split random (seed {splits['seed']}): {sizes} songs (train / validation / test)",
        f"Training on a random {run_config['crop_seconds']:g} s crop of each song at every epoch; evaluation on "
        f"{run_config['eval_segments']} windows of {run_config['crop_seconds']:g} s every "
        f"{run_config['eval_hop_seconds']:g} s per song",
        "Per-class song accuracy (test): " + ", ".join(f"{name} {100 * v:.0f} %" for name, v in per_class.items()),
        f"It classifies the first {preprocessor['window_seconds']:g} s of what it is given",
        f"({len(splits['label_names'])} classes: {', '.join(splits['label_names'])})",
        f"A test split of {test_songs} songs moves by {100 / test_songs:.2g} points per song",
        "It was trained and tested on generated songs only",
    ]
    flat = " ".join(text.split())
    for sentence in expected_sentences:
        assert " ".join(sentence.split()) in flat, sentence
    for split, figures in metrics.items():  # the results table, cell by cell
        row = next(line for line in text.splitlines() if line.startswith(f"| {split} |"))
        cells = [cell.strip() for cell in row.strip("|").split("|")][1:]
        keys = ["clip_accuracy", *(rule.metric for rule in vote_rules().values()), "macro_f1"]
        assert cells == [*(f"{100 * figures[key]:.1f} %" for key in keys[:-1]), f"{figures['macro_f1']:.3f}"] + [
            str(figures["num_songs"])
        ]
    recipe = dict(re.findall(r"^- (.+?): `(.*)`$", text, re.M))  # the recipe's lines, each a saved setting
    labels = dict(RECIPE_KEYS)
    assert recipe and all(recipe[labels[key]] == str(run_config[key]) for key in labels if labels[key] in recipe)
    assert set(recipe) <= set(labels.values())
    # every number of the text comes from a saved file (or is the SSAST paper's year)
    numbers = set(re.findall(r"(?<![\w.])\d+(?:\.\d+)?(?![\w.])", text))
    allowed = {"2022", str(generated["songs_per_genre"]), f"{generated['duration']:g}", str(generated["seed"])}
    allowed |= {part for part in sizes.split(" / ")} | {str(splits["seed"]), str(len(splits["label_names"]))}
    allowed |= {f"{100 / test_songs:.2g}", str(test_songs), f"{preprocessor['window_seconds']:g}"}
    allowed |= {f"{run_config[key]:g}" for key in ("crop_seconds", "eval_hop_seconds")} | {"3"}  # eval_segments
    allowed |= {f"{100 * v:.0f}" for v in per_class.values()}
    allowed |= {f"{100 * figures[key]:.1f}" for figures in metrics.values() for key in figures if key in keys}
    allowed |= {f"{figures['macro_f1']:.3f}" for figures in metrics.values()}
    allowed |= {str(figures["num_songs"]) for figures in metrics.values()}
    allowed |= {str(value) for value in run_config.values() if isinstance(value, (int, float))}
    assert numbers <= allowed, sorted(numbers - allowed)
