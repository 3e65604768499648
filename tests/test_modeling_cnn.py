import pytest
import torch
from torch import nn

from gtzan_hf.models.configuration_cnn import CNNConfig
from gtzan_hf.models.modeling_cnn import CNNForAudioClassification


@pytest.fixture
def model() -> CNNForAudioClassification:
    torch.manual_seed(0)
    config = CNNConfig(num_mel_bins=16, max_length=32, channels=[4, 8, 8], hidden_size=8, num_labels=3)
    return CNNForAudioClassification(config).eval()


def test_loss_is_smoothed_cross_entropy_for_hard_and_soft_labels(model):
    model.config.label_smoothing = 0.1
    values = torch.randn(4, 32, 16, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 2, 1, 1])
    mixed = 0.6 * nn.functional.one_hot(labels, 3).float() + 0.4 * nn.functional.one_hot(labels.flip(0), 3).float()
    with torch.no_grad():
        loss, logits = model(values, labels=labels, return_dict=False)
        log_probabilities = logits.log_softmax(-1)

        def smoothed_cross_entropy(targets):
            return -((0.9 * targets + 0.1 / 3) * log_probabilities).sum(-1).mean()

        torch.testing.assert_close(loss, smoothed_cross_entropy(nn.functional.one_hot(labels, 3).float()))
        torch.testing.assert_close(model(values, labels=mixed).loss, smoothed_cross_entropy(mixed))
        assert model(values).loss is None


def test_layer_ids_number_the_convolution_blocks(model):
    depths = model.layer_ids()
    assert set(depths) == {name for name, _ in model.named_parameters()}
    # features: conv, batch norm, ReLU, pool per block
    assert depths["features.0.weight"] == depths["features.1.bias"] == 0
    assert depths["features.4.weight"] == depths["features.5.weight"] == 1
    assert depths["features.8.bias"] == 2
    assert depths["classifier.0.weight"] == depths["classifier.3.bias"] == 3
    assert model.no_weight_decay() == {name for name in depths if name.endswith("bias")} | {
        "features.1.weight",
        "features.5.weight",
        "features.9.weight",
    }


def test_an_attention_mask_is_accepted_and_changes_nothing(model):
    values = torch.randn(2, 32, 16, generator=torch.Generator().manual_seed(0))
    mask = torch.ones(2, 32, dtype=torch.long)
    mask[1, 20:] = 0
    with torch.no_grad():
        torch.testing.assert_close(model(values, attention_mask=mask).logits, model(values).logits, rtol=0, atol=0)
