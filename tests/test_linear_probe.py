"""The linear probe (`--linear_probe`, the few-labels preset): a scikit-learn logistic regression written into the
head's last linear layer, the CNN's statistics pooling it reads, and a few-labels run end to end."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch
from conftest import one_line_error
from huggingface_hub import ModelCard
from scipy.fft import dct
from sklearn.datasets import make_classification

from gtzan_hf.commands.finetune import main as finetune_main
from gtzan_hf.commands.finetune import parse_finetune_args, run_finetune
from gtzan_hf.data.synthetic import GTZAN_GENRES, generate_corpus
from gtzan_hf.models.configuration_cnn import CNNConfig
from gtzan_hf.models.modeling_cnn import CNNForAudioClassification
from gtzan_hf.training.linear_probe import fit_linear_probe, probe_pipeline, write_head


@pytest.mark.parametrize("num_labels", [2, 4])
def test_the_head_gives_the_regressions_probabilities(num_labels):
    features, labels = make_classification(200, 12, n_informative=6, n_classes=num_labels, random_state=0)
    features = features * np.arange(1, 13) + 5  # other scales and offsets: the standardisation must be folded in
    probe = probe_pipeline(0.3).fit(features, labels)
    layer = torch.nn.Linear(12, num_labels)
    write_head(layer, probe, num_labels)
    with torch.no_grad():
        probabilities = layer(torch.as_tensor(features, dtype=torch.float32)).softmax(-1).numpy()
    np.testing.assert_allclose(probabilities, probe.predict_proba(features), atol=1e-5)


def test_the_cnns_statistics_pooling_is_the_inputs_statistics_and_every_blocks():
    config = CNNConfig(pooling="stats", hidden_size=0, channels=[4, 8], num_cepstra=20, num_labels=3)
    model = CNNForAudioClassification(config).eval()
    frames = torch.randn(2, 60, 128)
    with torch.no_grad():
        pooled = model.pool(frames).numpy()
    x = frames.numpy()
    cepstrum = dct(x, axis=-1, norm="ortho")[..., :20]
    expected = [
        x.mean(1), x.std(1, ddof=1),
        np.abs(np.diff(x, axis=1)).mean(1), np.diff(x, axis=1).std(1, ddof=1),
        cepstrum.mean(1), cepstrum.std(1, ddof=1), np.diff(cepstrum, axis=1).std(1, ddof=1),
    ]  # fmt: skip
    np.testing.assert_allclose(pooled[:, : 4 * 128 + 3 * 20], np.concatenate(expected, 1), rtol=1e-4, atol=1e-4)
    assert pooled.shape == (2, config.pooled_size) == (2, 4 * 128 + 3 * 20 + 2 * (4 + 8))
    assert isinstance(model.classifier[-1], torch.nn.Linear) and model.classifier[-1].in_features == config.pooled_size


def test_fitting_the_probe_changes_only_the_heads_linear_layer_and_separates_the_classes():
    torch.manual_seed(0)
    model = CNNForAudioClassification(CNNConfig(pooling="stats", hidden_size=0, channels=[4], num_labels=2))
    before = {name: value.clone() for name, value in model.state_dict().items()}
    # two classes of windows: the second louder in the upper bins; four songs of each, three windows per song
    windows = torch.randn(24, 50, 128)
    labels = torch.arange(24) // 12
    windows[labels == 1, :, 64:] += 0.5
    batches = [{"input_values": windows, "labels": labels, "song_index": torch.arange(24) // 3}]
    fit = fit_linear_probe(model, batches, c_values=[0.01, 1.0], cv_folds=4)
    changed = {name for name, value in model.state_dict().items() if not torch.equal(value, before[name])}
    assert changed == {"classifier.1.weight", "classifier.1.bias"}
    assert (fit.num_songs, fit.num_windows, fit.num_features, fit.cv_folds) == (8, 24, model.config.pooled_size, 4)
    held_out = torch.randn(10, 50, 128)
    held_out[5:, :, 64:] += 0.5
    with torch.no_grad():
        predicted = model(held_out).logits.argmax(-1)
    assert predicted.tolist() == [0] * 5 + [1] * 5


def test_a_class_without_enough_songs_is_refused_in_one_line():
    model = CNNForAudioClassification(CNNConfig(pooling="stats", hidden_size=0, channels=[4], num_labels=2))
    model.config.id2label = {0: "rock", 1: "jazz"}
    batches = [{"input_values": torch.randn(6, 50, 128), "labels": torch.tensor([0] * 5 + [1]),
                "song_index": torch.arange(6)}]  # fmt: skip
    with pytest.raises(ValueError, match="at least 2 labelled songs of every class; jazz has 1"):
        fit_linear_probe(model, batches)


def test_config_overrides_are_checked_before_any_data_work(tmp_path):
    corpus = tmp_path / "missing-corpus-never-read"
    for overrides, found in (("hiden_size=0", "hiden_size"), ("pooling=max", "Unknown CNN pooling 'max'")):
        message = one_line_error(
            finetune_main,
            ["--preset", "few-labels", "--config_overrides", overrides, "--dataset", str(tmp_path), "--output_dir",
             str(tmp_path / "run"), "--cache_dir", str(corpus)],
        )  # fmt: skip
        assert "--config_overrides" in message and found in message
        assert not corpus.exists() and not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def few_labels_run(tmp_path_factory):
    corpus = tmp_path_factory.mktemp("few-labels-corpus")
    generate_corpus(corpus, songs_per_genre=5, seed=4, duration=6.0)
    output_dir = tmp_path_factory.mktemp("few-labels-run")
    argv = ["--preset", "few-labels", "--dataset", str(corpus), "--split", "kfold", "--num_folds", "5",
            "--crop_seconds", "2", "--eval_hop_seconds", "1", "--max_length", "200", "--output_dir",
            str(output_dir), "--cache_dir", str(corpus.parent), "--disable_tqdm", "true"]  # fmt: skip
    return corpus, output_dir, run_finetune(*parse_finetune_args(argv))


def test_a_few_labels_run_is_a_probe_scored_on_test_only(few_labels_run):
    corpus, output_dir, metrics = few_labels_run
    assert list(metrics) == ["test"]  # the validation songs were fitted on
    assert metrics["test"]["song_accuracy"] >= 0.6  # 10 test songs of 10 generated genres; chance 0.1
    probe = json.loads((output_dir / "linear_probe.json").read_text())
    splits = json.loads((output_dir / "splits.json").read_text())
    assert probe["num_songs"] == len(splits["song_ids"]["train"]) + len(splits["song_ids"]["validation"]) == 40
    assert probe["num_windows"] == 40 * 5  # 2 s windows every 1 s of 6 s songs
    assert f"{probe['c']:g}" in probe["cv_song_accuracy"]
    assert json.loads((output_dir / "all_results.json").read_text())["train_runtime"] > 0  # the fit, as training's
    card = " ".join(ModelCard.load(output_dir / "README.md").text.split())
    assert "kept at its random initialisation, with only its output layer fitted, as a logistic regression" in card
    assert f"chosen by {probe['cv_folds']}-fold cross-validation over the 40 training and validation songs" in card
    assert "learning rate" not in card and not (output_dir / "learning_curves.png").exists()


def test_a_few_labels_folder_runs_in_transformers_pipeline_without_the_package(few_labels_run):
    corpus, output_dir, _ = few_labels_run
    song = sorted((corpus / "metal").glob("*.wav"))[0]
    code = f"""
import sys
import soundfile as sf
from transformers import pipeline

classifier = pipeline("audio-classification", model={str(output_dir)!r}, trust_remote_code=True)
waveform, rate = sf.read({str(song)!r}, dtype="float32")
print(classifier({{"raw": waveform, "sampling_rate": rate}}, top_k=1)[0]["label"])
assert "gtzan_hf" not in sys.modules
"""
    env = {key: value for key, value in os.environ.items() if key != "PYTHONPATH"}
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=output_dir, env=env, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split()[-1] in GTZAN_GENRES
