"""Windows follow the model: evaluation, embeddings, whole-song inference and `pipeline` cut audio into the windows a
model was trained on (recorded in its feature extractor by fine-tuning), else into its whole input; a window given
on purpose wins, and one the model cannot read is one clear error. On a 512-frame model, the quickstart's size."""

import json

import numpy as np
import pytest
import torch
from conftest import save_tiny_classifier
from transformers import pipeline

from gtzan_hf import SSASTFeatureExtractor
from gtzan_hf.commands import embed, evaluate
from gtzan_hf.commands.cli import run
from gtzan_hf.data.synthetic import GTZAN_GENRES, generate_corpus, synthesize_song
from gtzan_hf.inference import classify_song
from gtzan_hf.inference.windowing import model_windows
from gtzan_hf.models.loading import load_classifier

GENRES = GTZAN_GENRES[:3]


def _model(path, **windows):
    """A random tiny 512-frame SSAST genre classifier saved in `path`; `windows` as its feature extractor records."""
    return save_tiny_classifier(path, GENRES, 1, 512, **windows)


@pytest.fixture(scope="module")
def unrecorded(tmp_path_factory):
    """A model whose feature extractor records no windows (a converted checkpoint, an older run): its input is 5.12
    s."""
    return _model(tmp_path_factory.mktemp("unrecorded"))


@pytest.fixture(scope="module")
def quickstart_like(tmp_path_factory):
    """A model that recorded the quickstart's windows: 5 s, evaluated every 10 s."""
    return _model(tmp_path_factory.mktemp("recorded"), window_seconds=5.0, hop_seconds=10.0)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    generate_corpus(root, songs_per_genre=4, seed=0, duration=21.0, genres=GENRES, num_proc=1)
    return root


def test_the_windows_are_asked_for_else_recorded_else_the_input():
    unrecorded = SSASTFeatureExtractor(max_length=512)
    recorded = SSASTFeatureExtractor(max_length=512, window_seconds=5.0, hop_seconds=10.0)
    assert (model_windows(unrecorded).seconds, model_windows(unrecorded).hop_seconds) == (5.12, 5.12)
    assert (model_windows(recorded).seconds, model_windows(recorded).hop_seconds) == (5.0, 10.0)
    assert model_windows(recorded, 3.0).hop_seconds == 10.0 and model_windows(recorded, 3.0, 1.5).seconds == 3.0
    with pytest.raises(ValueError, match="10 s window is 1000 frames; this model reads at most 512 frames"):
        model_windows(recorded, 10.0)
    with pytest.raises(ValueError, match="hop between windows must be positive"):
        model_windows(recorded, 4.0, -1.0)


@pytest.mark.parametrize(("model", "window", "hop"), [("unrecorded", 5.12, 5.12), ("quickstart_like", 5.0, 10.0)])
def test_evaluate_and_embed_need_no_window_flag(request, corpus, tmp_path, model, window, hop):
    model = request.getfixturevalue(model)
    common = ["--dataset", str(corpus), "--cache_dir", str(tmp_path / "cache"), "--split", "kfold", "--num_folds", "3"]
    run(evaluate.main, [str(model), *common, "--output_dir", str(tmp_path / "evaluation")])
    settings = json.loads((tmp_path / "evaluation" / "evaluation_config.json").read_text())
    assert (settings["crop_seconds"], settings["eval_hop_seconds"]) == (window, hop)
    metrics = json.loads((tmp_path / "evaluation" / "metrics.json").read_text())
    # 21 s songs, three windows each (eval_segments 3) when they start inside the song
    assert metrics["test"]["num_clips"] == 3 * metrics["test"]["num_songs"]

    run(embed.main, [str(model), *common, "--output_dir", str(tmp_path / "embeddings")])
    described = json.loads((tmp_path / "embeddings" / "embeddings_config.json").read_text())
    assert (described["data"]["crop_seconds"], described["data"]["eval_hop_seconds"]) == (window, hop)
    assert sum(described["num_windows"].values()) == 3 * len(GENRES) * 4


def test_a_window_the_model_cannot_read_is_one_line(quickstart_like, corpus, tmp_path):
    with pytest.raises(SystemExit) as raised:
        run(evaluate.main, [str(quickstart_like), "--dataset", str(corpus), "--crop_seconds", "10"])
    assert raised.value.code.startswith("error: A 10 s window is 1000 frames; this model reads at most 512 frames")
    assert not (quickstart_like / "evaluation").exists()


def test_classify_song_and_pipeline_use_the_recorded_window(quickstart_like):
    model, feature_extractor = load_classifier(str(quickstart_like))
    waveform = synthesize_song("metal", np.random.default_rng(0), 30.0, 16000)
    prediction = classify_song(waveform, 16000, model, feature_extractor)
    assert prediction.window_seconds == 5.0 and prediction.window_starts.tolist() == [0.0, 10.0, 20.0]
    # the pipeline sees what training saw: the window's 500 frames, padded to the model's 512
    first_window = feature_extractor(waveform[:80240], sampling_rate=16000, return_tensors="pt")
    with torch.no_grad():
        expected = model(**first_window).logits.softmax(-1)[0]
    np.testing.assert_allclose(prediction.window_probabilities[0], expected.numpy(), atol=1e-5)
    classifier = pipeline("audio-classification", model=str(quickstart_like))
    scores = {entry["label"]: entry["score"] for entry in classifier(waveform, top_k=3)}
    np.testing.assert_allclose([scores[genre] for genre in GENRES], expected.numpy(), atol=1e-5)
