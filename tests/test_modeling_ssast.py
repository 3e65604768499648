import json
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
from huggingface_hub.errors import StrictDataclassError
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
    """transformers 5's strict configs: closed sets by their types, the rest in `validate_architecture`."""
    with pytest.raises(StrictDataclassError, match=message):
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


def attention_twins(*implementations: str) -> list[SSASTForAudioClassification]:
    """The same tiny classifier (same weights) under each attention implementation."""
    torch.manual_seed(0)
    models = [SSASTForAudioClassification(tiny_config(attn_implementation=name)).eval() for name in implementations]
    for model in models[1:]:
        model.load_state_dict(models[0].state_dict())
    return models


@pytest.mark.parametrize("implementation", ["eager", "flex_attention"])
def test_attention_implementations_agree_with_sdpa(inputs, implementation):
    if implementation == "flex_attention" and not torch.cuda.is_available():
        pytest.skip("transformers compiles flex attention with inductor: about 30 s on this CPU (checked by hand)")
    sdpa, other = attention_twins("sdpa", implementation)
    assert (sdpa.config._attn_implementation, other.config._attn_implementation) == ("sdpa", implementation)
    with torch.no_grad():
        torch.testing.assert_close(other(inputs).logits, sdpa(inputs).logits, atol=1e-5, rtol=0)


def test_eager_attention_runs_without_sdpa(inputs, monkeypatch):
    sdpa, eager = attention_twins("sdpa", "eager")
    with torch.no_grad():
        expected = sdpa(inputs).logits

        def unavailable(*args, **kwargs):
            raise RuntimeError("scaled_dot_product_attention is unavailable")

        monkeypatch.setattr(torch.nn.functional, "scaled_dot_product_attention", unavailable)
        with pytest.raises(RuntimeError, match="unavailable"):
            sdpa(inputs)
        torch.testing.assert_close(eager(inputs).logits, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_output_attentions_and_hidden_states(inputs, implementation):
    (model,) = attention_twins(implementation)
    with torch.no_grad():
        plain = model(inputs)
        explicit = model(inputs, output_attentions=True, output_hidden_states=True)
        as_tuple = model(inputs, output_attentions=True, return_dict=False)
    torch.testing.assert_close(explicit.logits, plain.logits, atol=1e-5, rtol=0)
    assert plain.attentions is None and plain.hidden_states is None
    sequence_length = 2 + model.config.num_patches
    assert len(explicit.attentions) == 2
    for weights in explicit.attentions:
        assert weights.shape == (3, 3, sequence_length, sequence_length)
        torch.testing.assert_close(weights.sum(-1), torch.ones(3, 3, sequence_length))
    # The embeddings, then each block's output (before the final layer norm).
    assert len(explicit.hidden_states) == 3
    assert all(state.shape == (3, sequence_length, 192) for state in explicit.hidden_states)
    assert len(as_tuple) == 2
    torch.testing.assert_close(as_tuple[0], explicit.logits)
    torch.testing.assert_close(as_tuple[1][1], explicit.attentions[1])


def test_wrong_input_shapes_are_refused(inputs):
    model = SSASTForAudioClassification(tiny_config())
    with pytest.raises(ValueError, match=r"\(batch_size, 48, 32\).*got \(3, 40, 32\).*max_length"):
        model(inputs[:, :40])
    with pytest.raises(ValueError, match="num_mel_bins=32"):
        model(torch.randn(3, 48, 64))
    with pytest.raises(ValueError, match="use_mask_token"):
        model.ssast(inputs, bool_masked_pos=torch.zeros(3, model.config.num_patches, dtype=torch.bool))


def test_the_loss_follows_the_problem_type_as_transformers_does(inputs):
    """Class indices: cross-entropy; regression with one output: MSE; multi-hot float labels with the problem type
    unset: binary cross-entropy (inferred, as transformers' AST infers it). Each against torch's own function."""
    torch.manual_seed(0)
    model = SSASTForAudioClassification(tiny_config()).eval()
    assert model.config.problem_type is None
    labels = torch.tensor([0, 3, 1])
    multi_hot = torch.tensor([[1.0, 0, 0, 1], [0, 0, 0, 0], [0, 1, 1, 0]])
    with torch.no_grad():
        output = model(inputs, labels=labels)
        torch.testing.assert_close(output.loss, nn.functional.cross_entropy(output.logits, labels))
        loss, logits = model(inputs, labels=labels, return_dict=False)
        torch.testing.assert_close(logits, output.logits)
        assert model.config.problem_type == "single_label_classification"  # inferred from the integer labels

        model.config.problem_type = None
        torch.testing.assert_close(
            model(inputs, labels=multi_hot).loss, nn.functional.binary_cross_entropy_with_logits(logits, multi_hot)
        )
        assert model.config.problem_type == "multi_label_classification"

        regression = SSASTForAudioClassification(tiny_config(num_labels=1, problem_type="regression")).eval()
        targets = torch.tensor([0.5, -1.0, 2.0])
        output = regression(inputs, labels=targets)
        torch.testing.assert_close(output.loss, nn.functional.mse_loss(output.logits.squeeze(-1), targets))


def test_a_saved_label_smoothing_is_dropped(tmp_path, inputs):
    """Folders saved before the loss followed the problem type carry `label_smoothing`: they load, the key is
    dropped, and their loss is plain cross-entropy."""
    torch.manual_seed(0)
    SSASTForAudioClassification(tiny_config()).save_pretrained(tmp_path)
    config = json.loads((tmp_path / "config.json").read_text())
    (tmp_path / "config.json").write_text(json.dumps({**config, "label_smoothing": 0.1}))
    model = SSASTForAudioClassification.from_pretrained(tmp_path).eval()
    assert not hasattr(model.config, "label_smoothing")
    labels = torch.tensor([0, 3, 1])
    with torch.no_grad():
        output = model(inputs, labels=labels)
    torch.testing.assert_close(output.loss, nn.functional.cross_entropy(output.logits, labels))
    model.save_pretrained(tmp_path / "again")
    assert "label_smoothing" not in json.loads((tmp_path / "again" / "config.json").read_text())


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


def test_optimisation_structure_declaration():
    config = pretraining_config()
    classifier = SSASTForAudioClassification(tiny_config())
    depths = classifier.layer_ids()
    assert set(depths) == {name for name, _ in classifier.named_parameters()}
    assert (
        depths["ssast.embeddings.position_embeddings"]
        == depths["ssast.embeddings.patch_embeddings.projection.weight"]
        == 0
    )
    assert depths["ssast.encoder.layer.0.attention.qkv.weight"] == 1
    assert depths["ssast.encoder.layer.1.mlp.fc2.bias"] == depths["ssast.layernorm.weight"] == 2
    assert depths["classifier.dense.weight"] == depths["classifier.layernorm.bias"] == 3

    pretraining = SSASTForPreTraining(config)
    exempt = pretraining.no_weight_decay()
    assert {
        "ssast.embeddings.mask_token",
        "ssast.embeddings.cls_token",
        "ssast.embeddings.distillation_token",
        "ssast.embeddings.position_embeddings",
        "ssast.encoder.layer.0.layernorm_before.weight",
        "ssast.encoder.layer.1.attention.qkv.bias",
        "mpc_head.dense.bias",
    } <= exempt
    decayed = {name for name, _ in pretraining.named_parameters()} - exempt
    assert decayed == {name for name, parameter in pretraining.named_parameters() if parameter.ndim >= 2} - {
        "ssast.embeddings.mask_token",
        "ssast.embeddings.cls_token",
        "ssast.embeddings.distillation_token",
        "ssast.embeddings.position_embeddings",
    }
    assert pretraining.layer_ids()["mpg_head.decoder.weight"] == 3
    assert SSASTModel(config).layer_ids()["layernorm.bias"] == 2


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_an_attention_mask_is_accepted_and_changes_nothing(inputs, implementation):
    # The frame mask of SequenceFeatureExtractor.pad, as the Trainer's default collator passes it; zeros included,
    # to show it is not used.
    mask = torch.ones(3, 48, dtype=torch.long)
    mask[1, 40:] = 0
    torch.manual_seed(0)
    classifier = SSASTForAudioClassification(tiny_config(attn_implementation=implementation)).eval()
    pretraining = SSASTForPreTraining(pretraining_config(attn_implementation=implementation)).eval()
    masked = pretraining.generate_mask(3, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 1, 2])
    with torch.no_grad():
        for model, arguments in [
            (classifier.ssast, {}),
            (classifier, {"labels": labels}),
            (pretraining, {"bool_masked_pos": masked}),
        ]:
            expected = model(inputs, **arguments)
            actual = model(inputs, attention_mask=mask, **arguments)
            for name, value in expected.items():
                torch.testing.assert_close(actual[name], value, rtol=0, atol=0)


def test_token_merging_off_computes_what_the_model_computes_without_it(tmp_path, inputs):
    """`token_merging=0` (the default, not written to saved configs) and training mode compute every token, bit for
    bit as a model without the setting."""
    torch.manual_seed(0)
    plain = SSASTForAudioClassification(tiny_config(num_hidden_layers=3)).eval()
    plain.save_pretrained(tmp_path)
    assert "token_merging" not in json.loads((tmp_path / "config.json").read_text())
    off = SSASTForAudioClassification(tiny_config(num_hidden_layers=3, token_merging=0)).eval()
    merging = SSASTForAudioClassification(tiny_config(num_hidden_layers=3, token_merging=2))
    for model in (off, merging):
        model.load_state_dict(plain.state_dict())
    with torch.no_grad():
        expected = plain(inputs, output_hidden_states=True)
        assert torch.equal(off(inputs).logits, expected.logits)
        assert torch.equal(merging.train()(inputs).logits, plain.train()(inputs).logits)  # no dropout in tiny_config
        assert len(merging.train()(inputs, output_hidden_states=True).hidden_states[-1][0]) == 2 + 8


@pytest.mark.parametrize("implementation", ["eager", "sdpa"])
def test_token_merging_merges_patch_tokens_between_blocks_and_keeps_the_outputs_shapes(inputs, implementation):
    torch.manual_seed(0)
    plain = SSASTForAudioClassification(tiny_config(num_hidden_layers=3, attn_implementation=implementation)).eval()
    merging = SSASTForAudioClassification(
        tiny_config(num_hidden_layers=3, token_merging=2, attn_implementation=implementation)
    ).eval()
    merging.load_state_dict(plain.state_dict())
    with torch.no_grad():
        expected = plain(inputs, output_hidden_states=True)
        merged = merging(inputs, output_hidden_states=True)
    # 2 class tokens and 8 patches; 2 merged in the first and the second of the 3 blocks
    assert [state.shape[1] for state in merged.hidden_states] == [10, 8, 6, 6]
    assert merged.logits.shape == expected.logits.shape == (3, 4)
    assert not torch.equal(merged.logits, expected.logits)
    # the first block's attention saw every token, its MLP the merged ones: the class tokens, which are never merged,
    # come out of it as they do without merging
    torch.testing.assert_close(merged.hidden_states[1][:, :2], expected.hidden_states[1][:, :2])


def test_merge_tokens_averages_the_most_similar_pair_by_size_and_keeps_the_class_tokens():
    from gtzan_hf.models.modeling_ssast import merge_tokens

    generator = torch.Generator().manual_seed(0)
    hidden = torch.randn(1, 2 + 6, 16, generator=generator)
    hidden[0, 2 + 2] = 3 * hidden[0, 2 + 5]  # the first set's token 1 points as the second set's token 2
    sizes = torch.tensor([[1.0, 1.0, 1.0, 2.0, 3.0, 1.0, 2.0, 4.0]])
    merged, merged_sizes = merge_tokens(hidden, sizes, 1, num_protected=2)
    assert merged.shape == (1, 7, 16) and merged_sizes.shape == (1, 7)
    assert torch.equal(merged[:, :2], hidden[:, :2]) and torch.equal(merged_sizes[:, :2], sizes[:, :2])
    assert merged_sizes.sum() == sizes.sum()
    # the first set's other tokens (0 and 2, best-matched first), then the second set, whose token 2 holds the pair
    kept = [2, 6] if torch.equal(merged[0, 2], hidden[0, 2]) else [6, 2]
    assert torch.equal(merged[0, 2:4], hidden[0, kept]) and merged_sizes[0, 2:4].tolist() == sizes[0, kept].tolist()
    assert torch.equal(merged[0, 4:6], hidden[0, [3, 5]])
    torch.testing.assert_close(merged[0, 6], (3 * hidden[0, 4] + 4 * hidden[0, 7]) / 7)
    assert merged_sizes[0, 4:].tolist() == [2.0, 1.0, 7.0]
    # no more merges than half the tokens: none of one token
    assert merge_tokens(hidden, None, 10, num_protected=2)[0].shape == (1, 2 + 3, 16)
    assert merge_tokens(hidden[:, :3], None, 10, num_protected=2)[0].shape == (1, 3, 16)
    # given a metric (the blocks give their keys), the match is the metric's: the first set's 0 with the second's 0
    metric = torch.randn(1, 2 + 6, 4, generator=generator)
    metric[0, 2 + 0] = metric[0, 2 + 1]
    merged, merged_sizes = merge_tokens(hidden, sizes, 1, num_protected=2, metric=metric)
    torch.testing.assert_close(merged[0, 4], (1 * hidden[0, 2] + 2 * hidden[0, 3]) / 3)
    assert merged_sizes[0, 4:].tolist() == [3.0, 1.0, 4.0]


def test_proportional_attention_attends_to_a_merged_token_as_to_its_copies():
    """Two identical tokens merged into one of size 2 leave every other token's attention output unchanged."""
    from gtzan_hf.models.modeling_ssast import SSASTSelfAttention

    torch.manual_seed(0)
    attention = SSASTSelfAttention(tiny_config()).eval()
    tokens = torch.randn(1, 5, 192)
    copies = torch.cat([tokens, tokens[:, 4:]], dim=1)  # token 4 twice
    with torch.no_grad():
        expected, *_ = attention(copies)
        merged, *_ = attention(tokens, torch.tensor([[1.0, 1.0, 1.0, 1.0, 2.0]]))
    torch.testing.assert_close(merged, expected[:, :5], atol=1e-5, rtol=0)
