import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from torch import nn

from gtzan_hf import (
    SSASTConfig,
    SSASTFeatureExtractor,
    SSASTForAudioClassification,
    SSASTForPreTraining,
    SSASTModel,
)


def tiny_config(**kwargs) -> SSASTConfig:
    defaults = {"num_hidden_layers": 2, "num_mel_bins": 32, "max_length": 48, "num_labels": 4}
    return SSASTConfig.from_size("tiny", **{**defaults, **kwargs})


@pytest.fixture
def inputs() -> torch.Tensor:
    return torch.randn(3, 48, 32, generator=torch.Generator().manual_seed(0))


def test_sizes_and_derived_values():
    assert SSASTConfig.from_size("small").hidden_size == 384
    assert SSASTConfig.from_size("small").num_attention_heads == 6
    config = SSASTConfig(patch_freq=128, patch_time=2, freq_stride=128, time_stride=1, max_length=100)
    assert config.masking == "random"
    assert config.patch_grid == (1, 99)
    assert SSASTConfig().masking == "cluster"
    assert SSASTConfig().patch_grid == (12, 101)  # the SSAST-Base-Patch fine-tuning grid


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"pooling": "max"}, "pooling"),
        ({"hidden_size": 100}, "multiple of num_attention_heads"),
        ({"num_cls_tokens": 3}, "num_cls_tokens"),
        ({"patch_freq": 256}, "patch_freq"),
        ({"time_stride": 0}, "time_stride"),
        ({"masking": "block"}, "masking"),
    ],
)
def test_config_rejects_bad_values(kwargs, message):
    with pytest.raises(ValueError, match=message):
        SSASTConfig(**kwargs)
    with pytest.raises(ValueError, match="size must be one of"):
        SSASTConfig.from_size("huge")


@pytest.mark.parametrize("num_cls_tokens", [1, 2])
def test_outputs_and_pooling(inputs, num_cls_tokens):
    torch.manual_seed(0)
    mean_model = SSASTModel(tiny_config(num_cls_tokens=num_cls_tokens)).eval()
    cls_model = SSASTModel(tiny_config(num_cls_tokens=num_cls_tokens, pooling="cls")).eval()
    cls_model.load_state_dict(mean_model.state_dict())
    with torch.no_grad():
        mean_out = mean_model(inputs, output_hidden_states=True)
        cls_out = cls_model(inputs)
    grid = mean_model.config.patch_grid
    assert mean_out.last_hidden_state.shape == (3, num_cls_tokens + grid[0] * grid[1], 192)
    assert len(mean_out.hidden_states) == 3
    torch.testing.assert_close(mean_model.layernorm(mean_out.hidden_states[-1]), mean_out.last_hidden_state)
    hidden = mean_out.last_hidden_state
    torch.testing.assert_close(mean_out.pooler_output, hidden[:, num_cls_tokens:].mean(1))
    torch.testing.assert_close(cls_out.pooler_output, hidden[:, :num_cls_tokens].mean(1))


def test_explicit_attention_matches_fused_kernel(inputs):
    torch.manual_seed(0)
    model = SSASTForAudioClassification(tiny_config()).eval()
    with torch.no_grad():
        fused = model(inputs)
        explicit = model(inputs, output_attentions=True)
    torch.testing.assert_close(fused.logits, explicit.logits, atol=1e-5, rtol=1e-5)
    assert len(explicit.attentions) == 2
    sequence_length = 2 + model.config.num_patches
    assert explicit.attentions[0].shape == (3, 3, sequence_length, sequence_length)
    torch.testing.assert_close(explicit.attentions[0].sum(-1), torch.ones(3, 3, sequence_length))


def test_wrong_input_shapes_are_refused(inputs):
    model = SSASTForAudioClassification(tiny_config())
    with pytest.raises(ValueError, match=r"\(batch_size, 48, 32\).*got \(3, 40, 32\).*max_length"):
        model(inputs[:, :40])
    with pytest.raises(ValueError, match="num_mel_bins=32"):
        model(torch.randn(3, 48, 64))
    with pytest.raises(ValueError, match="use_mask_token"):
        model.ssast(inputs, bool_masked_pos=torch.zeros(3, model.config.num_patches, dtype=torch.bool))


def test_classification_losses(inputs):
    torch.manual_seed(0)
    model = SSASTForAudioClassification(tiny_config()).eval()
    labels = torch.tensor([0, 3, 1])
    with torch.no_grad():
        output = model(inputs, labels=labels)
        expected = -torch.log_softmax(output.logits, -1)[torch.arange(3), labels].mean()
        torch.testing.assert_close(output.loss, expected)
        # Mixed-up labels: the loss is the same mixture of the two cross-entropies.
        other = torch.tensor([2, 2, 0])
        mixed = 0.7 * nn.functional.one_hot(labels, 4).float() + 0.3 * nn.functional.one_hot(other, 4).float()
        mixed_loss = model(inputs, labels=mixed).loss
        other_loss = model(inputs, labels=other).loss
        torch.testing.assert_close(mixed_loss, 0.7 * output.loss + 0.3 * other_loss)
        loss, logits = model(inputs, labels=labels, return_dict=False)
        torch.testing.assert_close(logits, output.logits)
    with pytest.raises(ValueError, match="class probabilities"):
        model(inputs, labels=torch.tensor([0.0, 3.0, 1.0]))


def test_gradient_checkpointing_gives_the_same_gradients(inputs):
    torch.manual_seed(0)
    model = SSASTForAudioClassification(tiny_config()).train()
    labels = torch.tensor([0, 1, 2])

    def gradients():
        model.zero_grad()
        model(inputs, labels=labels).loss.backward()
        return {name: parameter.grad.clone() for name, parameter in model.named_parameters()}

    plain = gradients()
    model.activation_checkpointing_enable()
    assert all(layer.gradient_checkpointing for layer in model.ssast.encoder.layer)
    checkpointed = gradients()
    for name, gradient in plain.items():
        torch.testing.assert_close(checkpointed[name], gradient, msg=name)


def test_save_and_load_round_trip(tmp_path, inputs):
    torch.manual_seed(0)
    model = SSASTForAudioClassification(tiny_config(id2label={0: "a", 1: "b", 2: "c", 3: "d"})).eval()
    model.save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    assert config["auto_map"]["AutoModelForAudioClassification"] == "modeling_ssast.SSASTForAudioClassification"
    assert config["auto_map"]["AutoModel"] == "modeling_ssast.SSASTModel"
    assert (tmp_path / "modeling_ssast.py").is_file() and (tmp_path / "configuration_ssast.py").is_file()
    loaded = SSASTForAudioClassification.from_pretrained(tmp_path)
    assert loaded.config.id2label[3] == "d"
    with torch.no_grad():
        torch.testing.assert_close(loaded(inputs).logits, model(inputs).logits, atol=0, rtol=0)


def pretraining_config(**kwargs) -> SSASTConfig:
    defaults = {"freq_stride": 16, "time_stride": 16, "num_masked_patches": 6}
    return tiny_config(**{**defaults, **kwargs})


@pytest.mark.parametrize(
    ("kwargs", "grid"),
    [({}, (2, 3)), ({"patch_freq": 32, "patch_time": 2, "freq_stride": 32, "time_stride": 2}, (1, 24))],
)
def test_mask_generation(kwargs, grid):
    model = SSASTForPreTraining(pretraining_config(**kwargs))
    assert model.config.patch_grid == grid
    mask = model.generate_mask(5, generator=torch.Generator().manual_seed(0))
    assert mask.shape == (5, grid[0] * grid[1])
    assert mask.sum(1).tolist() == [6] * 5


def test_cluster_masks_are_blocks():
    config = pretraining_config(max_length=320, num_mel_bins=128, num_masked_patches=9)
    masks = SSASTForPreTraining(config).generate_mask(20, generator=torch.Generator().manual_seed(1))
    masks = masks.view(20, *config.patch_grid)
    # Share of masked patches with a masked 4-neighbour: near 1 for blocks, about 0.2 for 9 random patches of 160.
    padded = nn.functional.pad(masks.float(), (1, 1, 1, 1))
    neighbours = padded[:, :-2, 1:-1] + padded[:, 2:, 1:-1] + padded[:, 1:-1, :-2] + padded[:, 1:-1, 2:]
    assert (neighbours[masks] > 0).float().mean() > 0.9


def test_pretraining_losses_fall_and_match_the_per_sample_formula():
    torch.manual_seed(0)
    model = SSASTForPreTraining(pretraining_config(max_length=64, num_masked_patches=8)).train()
    time = torch.linspace(0, 6.28, 64)
    # Structured spectrograms: per-sample sinusoids over time and frequency.
    batch = torch.stack([torch.sin(k * time)[:, None] * torch.cos(torch.linspace(0, k, 32))[None] for k in (1, 2, 3)])
    mask = model.generate_mask(3, generator=torch.Generator().manual_seed(0))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    history = []
    for _ in range(8):
        output = model(batch, bool_masked_pos=mask)
        history.append((output.mpc_loss.item(), output.mpg_loss.item()))
        assert 0.0 <= output.mpc_accuracy.item() <= 1.0
        torch.testing.assert_close(output.loss, output.mpc_loss + 10 * output.mpg_loss)
        optimizer.zero_grad()
        output.loss.backward()
        optimizer.step()
    assert history[-1][0] < history[0][0] and history[-1][1] < history[0][1]

    # The vectorised InfoNCE equals the original per-sample loop (torch.mm, log-softmax diagonal, argmax over dim 0).
    model.eval()
    with torch.no_grad():
        output = model(batch, bool_masked_pos=mask)
        hidden = model.ssast(batch, bool_masked_pos=mask).last_hidden_state
        patches = nn.functional.unfold(batch.unsqueeze(1).transpose(2, 3), (16, 16), stride=(16, 16)).transpose(1, 2)
        nce, correct = 0.0, 0
        for sample in range(3):
            index = mask[sample].nonzero()[:, 0]
            total = patches[sample, index] @ model.mpc_head(hidden[sample, index + 2]).T
            nce += torch.diag(torch.log_softmax(total, dim=-1)).sum()
            correct += (total.softmax(-1).argmax(0) == torch.arange(8)).sum()
        torch.testing.assert_close(output.mpc_loss, -nce / 24)
        torch.testing.assert_close(output.mpc_accuracy, correct / 24)


def test_pretraining_refuses_bad_settings():
    with pytest.raises(ValueError, match="non-overlapping"):
        SSASTForPreTraining(tiny_config())
    with pytest.raises(ValueError, match="exceeds the 6 patches"):
        SSASTForPreTraining(pretraining_config(num_masked_patches=7))
    model = SSASTForPreTraining(pretraining_config())
    uneven = torch.zeros(2, 6, dtype=torch.bool)
    uneven[0, :2], uneven[1, :3] = True, True
    with pytest.raises(ValueError, match="same number of masked patches"):
        model(torch.randn(2, 48, 32), bool_masked_pos=uneven)


def test_pipeline_in_a_fresh_process(tmp_path):
    torch.manual_seed(0)
    config = tiny_config(num_mel_bins=128, max_length=100, id2label={0: "blues", 1: "jazz", 2: "rock", 3: "pop"})
    SSASTForAudioClassification(config).save_pretrained(tmp_path)
    SSASTFeatureExtractor(max_length=100).save_pretrained(tmp_path)
    script = textwrap.dedent(
        f"""
        import sys, numpy as np, torch, transformers
        from transformers import AutoConfig, AutoFeatureExtractor, AutoModel, AutoModelForAudioClassification
        folder = {str(tmp_path)!r}
        config = AutoConfig.from_pretrained(folder, trust_remote_code=True)
        extractor = AutoFeatureExtractor.from_pretrained(folder, trust_remote_code=True)
        model = AutoModelForAudioClassification.from_pretrained(folder, trust_remote_code=True)
        encoder = AutoModel.from_pretrained(folder, trust_remote_code=True)
        assert type(model).__name__ == "SSASTForAudioClassification" and type(encoder).__name__ == "SSASTModel"
        wave = np.sin(np.linspace(0, 2000, 16000)).astype(np.float32)
        features = extractor(wave, sampling_rate=16000, return_tensors="pt")
        with torch.no_grad():
            probabilities = model(**features).logits.softmax(-1)[0]
        classifier = transformers.pipeline("audio-classification", model=folder, trust_remote_code=True)
        predictions = classifier({{"raw": wave, "sampling_rate": 16000}}, top_k=4)
        by_label = {{p["label"]: p["score"] for p in predictions}}
        expected = {{config.id2label[i]: probabilities[i].item() for i in range(4)}}
        assert all(abs(by_label[k] - v) < 1e-5 for k, v in expected.items()), (by_label, expected)
        assert not any(name.startswith("gtzan_hf") for name in sys.modules)
        print("ok")
        """
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.strip().endswith("ok")


def test_feature_extractor_output_fits_the_model():
    extractor = SSASTFeatureExtractor(max_length=48, num_mel_bins=32)
    features = extractor(np.zeros(8000, dtype=np.float32), sampling_rate=16000, return_tensors="pt")
    logits = SSASTForAudioClassification(tiny_config()).eval()(**features).logits
    assert logits.shape == (1, 4)
