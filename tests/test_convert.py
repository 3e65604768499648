import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import REFERENCE_FIXTURES
from transformers import ASTConfig, ASTForAudioClassification

from gtzan_hf import SSASTConfig, SSASTFeatureExtractor, SSASTForAudioClassification
from gtzan_hf.errors import UserError
from gtzan_hf.models.convert import (
    from_original_checkpoint,
    pretraining_model_from_original_checkpoint,
    to_original_checkpoint,
)
from gtzan_hf.models.loading import convert_checkpoint

REPO = Path(__file__).resolve().parents[1]
FIXTURES = REFERENCE_FIXTURES
CASES = json.loads((FIXTURES / "cases.json").read_text()) if FIXTURES.is_dir() else []
needs_fixtures = pytest.mark.skipif(
    not FIXTURES.is_dir(), reason=f"reference fixtures of the original SSAST code not found at {FIXTURES}"
)
TOLERANCE = {"atol": 1e-4, "rtol": 0}


def case_settings(case: dict) -> dict:
    # the fixtures name the geometry as the original code does
    return {"freq_stride": case["fstride"], "time_stride": case["tstride"], "max_length": case["input_tdim"]}


@needs_fixtures
@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
@pytest.mark.parametrize("pooling", ["mean", "cls"])
def test_pretraining_checkpoint_gives_the_original_outputs(case, pooling):
    expected = torch.load(FIXTURES / case["expected"], weights_only=True)
    model = convert_checkpoint(
        FIXTURES / case["pretrained_checkpoint"], num_labels=case["num_labels"], pooling=pooling, **case_settings(case)
    )
    assert model.config.num_hidden_layers == case["depth"] and model.config.hidden_size == 192
    with torch.no_grad():
        output = model.ssast(expected["input_values"])
    torch.testing.assert_close(output.last_hidden_state, expected["last_hidden_state"], **TOLERANCE)
    torch.testing.assert_close(output.pooler_output, expected[f"pooled_{pooling}"], **TOLERANCE)
    # The cut / interpolated positional embeddings are those the original fine-tuning model was built with.
    finetuned = torch.load(FIXTURES / case["finetuned_checkpoint"], weights_only=True)
    torch.testing.assert_close(model.ssast.embeddings.position_embeddings, finetuned["v.pos_embed"], **TOLERANCE)


@needs_fixtures
@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
@pytest.mark.parametrize("pooling", ["mean", "cls"])
@pytest.mark.parametrize("data_parallel", [False, True])
def test_finetuned_checkpoint_gives_the_original_logits(case, pooling, data_parallel):
    expected = torch.load(FIXTURES / case["expected"], weights_only=True)
    checkpoint = torch.load(FIXTURES / case["finetuned_checkpoint"], weights_only=True)
    if data_parallel:
        checkpoint = {f"module.{key}": value for key, value in checkpoint.items()}
    model = from_original_checkpoint(checkpoint, pooling=pooling, **case_settings(case))
    assert model.config.num_labels == case["num_labels"]
    with torch.no_grad():
        logits = model(expected["input_values"]).logits
    torch.testing.assert_close(logits, expected[f"logits_{pooling}"], **TOLERANCE)


@needs_fixtures
def test_finetuned_checkpoint_with_a_new_head():
    case = CASES[0]
    finetuned = torch.load(FIXTURES / case["finetuned_checkpoint"], weights_only=True)
    model = from_original_checkpoint(finetuned, num_labels=3, **case_settings(case))
    assert model.classifier.dense.out_features == 3
    torch.testing.assert_close(model.classifier.layernorm.weight, finetuned["mlp_head.0.weight"])


@needs_fixtures
@pytest.mark.parametrize("name", ["pretrain_patch_tiny_d2.pth", "pretrain_frame_tiny_d2.pth"])
def test_pretraining_model_round_trips_to_the_original_format(name):
    original = torch.load(FIXTURES / name, weights_only=True)
    model = pretraining_model_from_original_checkpoint(original, num_masked_patches=20)
    assert (model.config.max_length, model.config.num_mel_bins) == (256, 128)
    assert model.config.masking == ("random" if "frame" in name else "cluster")
    exported = to_original_checkpoint(model)
    # Only timm's unused ImageNet heads are left out.
    assert set(original) - set(exported) == {
        f"module.v.{h}.{p}" for h in ("head", "head_dist") for p in ("weight", "bias")
    }
    assert set(exported) <= set(original)
    for key, value in exported.items():
        assert torch.equal(value, original[key]), key
    with torch.no_grad():
        output = model(torch.randn(2, 256, 128))
    assert torch.isfinite(output.loss)


def random_ast(**kwargs) -> ASTForAudioClassification:
    config = ASTConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=128,
        max_length=64,
        num_mel_bins=48,
        **{"num_labels": 5, **kwargs},
    )
    torch.manual_seed(0)
    model = ASTForAudioClassification(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():  # no zero tokens or unit norms: every weight matters
            parameter.add_(0.1 * torch.randn_like(parameter))
    return model


@pytest.mark.parametrize("qkv_bias", [True, False])
def test_transformers_ast_folder_gives_the_same_logits(tmp_path, qkv_bias):
    ast = random_ast(qkv_bias=qkv_bias)
    ast.save_pretrained(tmp_path)
    model = convert_checkpoint(str(tmp_path))
    assert model.config.pooling == "cls" and model.config.layer_norm_eps == ast.config.layer_norm_eps
    assert model.config.id2label == ast.config.id2label
    inputs = torch.randn(2, 64, 48)
    with torch.no_grad():
        torch.testing.assert_close(model(inputs).logits, ast(inputs).logits, atol=1e-5, rtol=1e-5)
    retargeted = from_original_checkpoint(ast, num_labels=10)
    assert retargeted.classifier.dense.out_features == 10
    torch.testing.assert_close(retargeted.ssast.layernorm.weight, model.ssast.layernorm.weight)


@pytest.mark.parametrize("labels", ["indices", "multi-hot", "regression"])
def test_the_loss_is_transformers_asts_on_the_same_logits(labels):
    """A converted AST keeps its head and its problem type: its loss is AST's own, whatever the labels."""
    ast = random_ast(**({"num_labels": 1, "problem_type": "regression"} if labels == "regression" else {}))
    model = from_original_checkpoint(ast)
    targets = {
        "indices": torch.tensor([0, 4, 2]),
        "multi-hot": torch.tensor([[1.0, 0, 0, 1, 0], [0, 0, 0, 0, 0], [0, 1, 1, 1, 1]]),
        "regression": torch.tensor([0.5, -1.0, 2.0]),
    }[labels]
    inputs = torch.randn(3, 64, 48, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours, theirs = model(inputs, labels=targets), ast(inputs, labels=targets)
    torch.testing.assert_close(ours.loss, theirs.loss, atol=1e-5, rtol=1e-5)
    assert model.config.problem_type == ast.config.problem_type


def test_unknown_and_damaged_checkpoints_are_refused(tmp_path):
    with pytest.raises(ValueError, match=r"Unknown checkpoint format: found keys conv\.weight"):
        from_original_checkpoint({"conv.weight": torch.zeros(1)})
    damaged = tmp_path / "damaged.pth"
    torch.save({"v.pos_embed": torch.zeros(1, 4, 8)}, damaged)
    damaged.write_bytes(damaged.read_bytes()[:100])
    with pytest.raises(ValueError, match="Could not read .*damaged.pth.*damaged or truncated"):
        convert_checkpoint(damaged)
    not_a_state_dict = tmp_path / "list.pth"
    torch.save([torch.zeros(1)], not_a_state_dict)
    with pytest.raises(ValueError, match="holds a list"):
        convert_checkpoint(not_a_state_dict)
    with pytest.raises(UserError, match="missing.pth not found: pass the path of a .pth file"):
        convert_checkpoint(tmp_path / "missing.pth")
    SSASTForAudioClassification(SSASTConfig.from_size("tiny", num_hidden_layers=1, max_length=32)).save_pretrained(
        tmp_path / "ssast"
    )
    with pytest.raises(ValueError, match="is a gtzan-hf model .*expected an original SSAST/AST .pth"):
        convert_checkpoint(tmp_path / "ssast")
    # the conversion functions take what is in memory: files are the loaders'
    with pytest.raises(TypeError, match="use gtzan_hf.models.loading.convert_checkpoint"):
        from_original_checkpoint(str(not_a_state_dict))


@needs_fixtures
def test_wrong_finetuning_settings_are_refused():
    case = CASES[0]
    finetuned = torch.load(FIXTURES / case["finetuned_checkpoint"], weights_only=True)
    with pytest.raises(ValueError, match=r"hold 468 patches.*give 12x13 = 156"):
        from_original_checkpoint(finetuned, freq_stride=10, time_stride=10, max_length=140)
    with pytest.raises(ValueError, match="no pretraining heads"):
        pretraining_model_from_original_checkpoint(finetuned)


@needs_fixtures
def test_conversion_script_writes_a_loadable_folder(tmp_path):
    case = CASES[1]
    command = [
        sys.executable,
        str(REPO / "scripts" / "convert_ssast_checkpoint.py"),
        str(FIXTURES / case["pretrained_checkpoint"]),
        str(tmp_path),
        "--freq_stride",
        str(case["fstride"]),
        "--time_stride",
        str(case["tstride"]),
        "--input-tdim",
        str(case["input_tdim"]),
        "--num-labels",
        str(case["num_labels"]),
        "--pooling",
        "cls",
    ]
    result = subprocess.run(command, capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-3000:]
    model = SSASTForAudioClassification.from_pretrained(tmp_path)
    assert SSASTFeatureExtractor.from_pretrained(tmp_path).max_length == case["input_tdim"]
    expected = torch.load(FIXTURES / case["expected"], weights_only=True)
    with torch.no_grad():
        output = model.ssast(expected["input_values"])
    torch.testing.assert_close(output.pooler_output, expected["pooled_cls"], **TOLERANCE)


def test_transformers_ast_accepts_its_own_geometry_and_adapts_to_another_length(tmp_path):
    ast = random_ast()
    ast.save_pretrained(tmp_path)
    inputs = torch.randn(2, 64, 48)
    same = convert_checkpoint(str(tmp_path), freq_stride=10, time_stride=10, max_length=64)
    with torch.no_grad():
        torch.testing.assert_close(same(inputs).logits, ast(inputs).logits, atol=1e-5, rtol=1e-5)

    # AST's 4 x 5 patch grid (48 bins, 64 frames, stride 10). Shorter: the original AST code keeps the centre columns.
    positions = ast.audio_spectrogram_transformer.embeddings.position_embeddings.detach()
    grid = positions[:, 2:].reshape(1, 4, 5, -1)
    shorter = convert_checkpoint(str(tmp_path), max_length=44)
    assert shorter.config.patch_grid == (4, 3)
    adapted = shorter.ssast.embeddings.position_embeddings.detach()
    torch.testing.assert_close(adapted[:, :2], positions[:, :2])
    torch.testing.assert_close(adapted[:, 2:].reshape(1, 4, 3, -1), grid[:, :, 1:4])
    # Longer: interpolated along time on AST's own 4 frequency rows, the rows unchanged.
    longer = convert_checkpoint(str(tmp_path), max_length=96)
    assert longer.config.patch_grid == (4, 9)
    stretched = longer.ssast.embeddings.position_embeddings.detach()[:, 2:].reshape(1, 4, 9, -1)
    # bilinear, half-pixel centres: output column 1 of 9 samples input column (1.5 * 5 / 9 - 0.5) = 1/3
    torch.testing.assert_close(stretched[:, :, 1], grid[:, :, 0] * 2 / 3 + grid[:, :, 1] / 3)
    with torch.no_grad():
        logits = longer(torch.randn(2, 96, 48)).logits
    assert logits.shape == (2, 5) and torch.isfinite(logits).all()
