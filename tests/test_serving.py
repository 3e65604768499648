"""The serving forms of a classifier (gtzan_hf.serving.forms) and the calibration that picks one, on a tiny SSAST saved
on the spot. No timing is asserted: only that the form kept is the fastest of those measured and agreeing."""

import copy
import logging

import pytest
import torch

from gtzan_hf.models.loading import load_classifier
from gtzan_hf.serving import forms as serving


@pytest.fixture(scope="module")
def classifier(tiny_ssast):
    return load_classifier(str(tiny_ssast))


def _logits(model, windows):
    with torch.inference_mode():
        return model(input_values=windows.to(next(model.parameters(), windows).dtype)).logits.float()


@pytest.mark.parametrize("name", ["int8", "onnx-int8", "bfloat16"])
def test_each_form_computes_the_float32_logits_closely(classifier, name):
    pytest.importorskip({"int8": "torchao", "onnx-int8": "onnxruntime", "bfloat16": "torch"}[name])
    model, feature_extractor = classifier
    windows = serving.calibration_windows(feature_extractor)
    form = serving.build_form(name, model, windows)
    reference, served = _logits(model, windows), _logits(form, windows)
    assert served.shape == reference.shape == (len(windows), model.config.num_labels)
    assert not torch.equal(served, reference)  # really another computation
    torch.testing.assert_close(served, reference, atol=0.05 * reference.abs().max().item(), rtol=0)


def test_the_onnx_export_runs_any_batch_size(classifier):
    pytest.importorskip("onnxruntime")
    model, feature_extractor = classifier
    windows = serving.calibration_windows(feature_extractor)
    form = serving.build_form("onnx", model, windows[:2])
    for batch in (windows[:1], windows):
        torch.testing.assert_close(_logits(form, batch), _logits(model, batch), atol=1e-4, rtol=0)


@pytest.mark.parametrize("native", [False, True])
def test_calibration_keeps_the_fastest_agreeing_form_and_bfloat16_only_where_native(classifier, monkeypatch, native):
    model, feature_extractor = classifier
    monkeypatch.delenv(serving.SERVING_ENV, raising=False)
    monkeypatch.setattr(serving, "bfloat16_is_native", lambda: native)
    forms = [form for form in serving.available_forms() if not form.startswith("onnx")]  # exports: tested above
    assert ("bfloat16" in forms) == native
    chosen = serving.choose_serving_form(model, feature_extractor, forms)
    timed = {key.split(",")[0] for key in chosen.candidates}
    assert "float32" in timed and ("bfloat16" in timed) <= native
    assert chosen.seconds_per_window == min(chosen.candidates.values())
    assert chosen.candidates[f"{chosen.name}, {chosen.batch_size}"] == chosen.seconds_per_window
    assert chosen.speedup > 0 and chosen.name in chosen.describe()


def test_a_form_whose_top1_differs_is_not_served(classifier, monkeypatch, caplog):
    model, feature_extractor = classifier
    monkeypatch.delenv(serving.SERVING_ENV, raising=False)
    build_form = serving.build_form

    def build_with_a_swapped_head(name, model, example, export_dir=None):
        form = build_form(name, model, example, export_dir)
        if name == "bfloat16":  # a real computation that ranks the classes otherwise: the head negated
            form = copy.deepcopy(form)
            form.classifier.dense.weight.data.neg_()
            form.classifier.dense.bias.data.neg_()
        return form

    monkeypatch.setattr(serving, "build_form", build_with_a_swapped_head)
    with caplog.at_level(logging.WARNING, logger="gtzan_hf.serving.forms"):
        chosen = serving.choose_serving_form(model, feature_extractor, ["float32", "bfloat16"])
    assert chosen.name == "float32" and all(key.startswith("float32") for key in chosen.candidates)
    assert "bfloat16 skipped" in caplog.text and "top-1 differs from float32" in caplog.text


def test_a_form_whose_probabilities_move_beyond_the_tolerance_is_not_served(classifier, monkeypatch, caplog):
    """The same top-1 on every window is not enough: a form whose probabilities move further than
    `PROBABILITY_TOLERANCE` on average changes answers on windows the calibration does not hold."""
    model, feature_extractor = classifier
    monkeypatch.delenv(serving.SERVING_ENV, raising=False)
    build_form = serving.build_form

    def build_with_a_sharper_head(name, model, example, export_dir=None):
        form = build_form(name, model, example, export_dir)
        if name == "bfloat16":  # logits times 4: every window keeps its top-1, its probabilities sharpen
            form = copy.deepcopy(form)
            form.classifier.dense.weight.data.mul_(4)
            form.classifier.dense.bias.data.mul_(4)
        return form

    monkeypatch.setattr(serving, "build_form", build_with_a_sharper_head)
    with caplog.at_level(logging.WARNING, logger="gtzan_hf.serving.forms"):
        chosen = serving.choose_serving_form(model, feature_extractor, ["float32", "bfloat16"])
    assert chosen.name == "float32" and chosen.changes["float32"] == chosen.probability_change == 0.0
    assert chosen.changes["bfloat16"] > serving.PROBABILITY_TOLERANCE
    assert "bfloat16 skipped" in caplog.text and "probabilities move by" in caplog.text
    assert "top-1 differs" not in caplog.text


def test_the_environment_forces_a_form(classifier, monkeypatch):
    model, feature_extractor = classifier
    monkeypatch.setenv(serving.SERVING_ENV, "bfloat16")
    chosen = serving.choose_serving_form(model, feature_extractor)
    assert chosen.name == "bfloat16" and next(chosen.model.parameters()).dtype == torch.bfloat16
    monkeypatch.setenv(serving.SERVING_ENV, "fp16")
    with pytest.raises(ValueError, match="GTZAN_HF_SERVING='fp16'.*float32, bfloat16"):
        serving.choose_serving_form(model, feature_extractor)


def test_the_onnx_forms_share_one_export_and_a_failed_calibration_serves_float32(classifier, monkeypatch, caplog):
    pytest.importorskip("onnxruntime")
    model, feature_extractor = classifier
    monkeypatch.delenv(serving.SERVING_ENV, raising=False)
    exports = []
    export_onnx = serving.export_onnx
    monkeypatch.setattr(serving, "export_onnx", lambda *args: exports.append(args) or export_onnx(*args))
    chosen = serving.choose_serving_form(model, feature_extractor, ["onnx", "onnx-int8"])
    assert len(exports) == 1 and set(chosen.changes) == {"onnx", "onnx-int8"}

    def fail(*args):
        raise RuntimeError("no exporter here")

    monkeypatch.setattr(serving, "export_onnx", fail)
    with caplog.at_level(logging.WARNING, logger="gtzan_hf.serving.forms"):
        chosen = serving.choose_serving_form(model, feature_extractor, ["onnx", "onnx-int8"])
    assert chosen.name == "float32" and chosen.speedup == 1.0
    assert caplog.text.count("skipped: RuntimeError: no exporter here") == 2


def test_token_merging_forms_merge_a_share_of_the_patches_with_the_same_weights(classifier, monkeypatch):
    from gtzan_hf.models.configuration_cnn import CNNConfig
    from gtzan_hf.models.modeling_cnn import CNNForAudioClassification

    model, feature_extractor = classifier
    forms = serving.available_forms(model)
    assert forms == [*forms[: len(forms) // 2], *(name + "+tome" for name in forms[: len(forms) // 2])]
    windows = serving.calibration_windows(feature_extractor)
    form = serving.build_form("float32+tome", model, windows)
    merged = round(serving.TOKEN_MERGING_SHARE * model.config.num_patches)
    assert form.config.token_merging == merged > 0 and model.config.token_merging == 0
    assert form.classifier.dense.weight is model.classifier.dense.weight
    with torch.inference_mode():
        hidden_states = form(input_values=windows, output_hidden_states=True).hidden_states
    lengths = [state.shape[1] for state in hidden_states]
    full = model.config.num_patches + model.config.num_cls_tokens
    layers = model.config.num_hidden_layers  # each block but the last merges
    assert lengths == [full, *(full - merged * min(layer, layers - 1) for layer in range(1, layers + 1))]
    assert _logits(form, windows).shape == _logits(model, windows).shape
    monkeypatch.setenv(serving.SERVING_ENV, "float32+tome")
    assert serving.choose_serving_form(model, feature_extractor).name == "float32+tome"
    cnn = CNNForAudioClassification(CNNConfig(channels=[4], hidden_size=8, num_labels=2))
    assert not any(name.endswith("+tome") for name in serving.available_forms(cnn))
    with pytest.raises(ValueError, match="cannot merge tokens: serve float32"):
        serving.build_form("float32+tome", cnn, windows)
