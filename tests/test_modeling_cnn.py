import json

import pytest
import torch
from torch import nn

from gtzan_hf.models.configuration_cnn import CNNConfig
from gtzan_hf.models.feature_extraction_ssast import SSASTFeatureExtractor
from gtzan_hf.models.modeling_cnn import CNNForAudioClassification


@pytest.fixture
def model() -> CNNForAudioClassification:
    torch.manual_seed(0)
    config = CNNConfig(num_mel_bins=16, max_length=32, channels=[4, 8, 8], hidden_size=8, num_labels=3)
    return CNNForAudioClassification(config).eval()


def test_the_loss_is_transformers_loss_for_the_problem_type(model):
    values = torch.randn(4, 32, 16, generator=torch.Generator().manual_seed(0))
    labels = torch.tensor([0, 2, 1, 1])
    multi_hot = torch.tensor([[1.0, 0, 1], [0, 1, 1], [0, 1, 0], [0, 0, 0]])
    with torch.no_grad():
        loss, logits = model(values, labels=labels, return_dict=False)
        torch.testing.assert_close(loss, nn.functional.cross_entropy(logits, labels))
        model.config.problem_type = "multi_label_classification"
        torch.testing.assert_close(
            model(values, labels=multi_hot).loss, nn.functional.binary_cross_entropy_with_logits(logits, multi_hot)
        )
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


def test_a_saved_folder_ships_the_cnns_code_only(model, tmp_path):
    """Its remote code is its own configuration and model, and the feature extractor saved beside them: a CNN folder
    on the Hub carries no SSAST code."""
    model.save_pretrained(tmp_path)
    SSASTFeatureExtractor(num_mel_bins=16, max_length=32).save_pretrained(tmp_path)
    assert sorted(path.name for path in tmp_path.glob("*.py")) == [
        "configuration_cnn.py",
        "feature_extraction_ssast.py",
        "modeling_cnn.py",
    ]
    assert json.loads((tmp_path / "config.json").read_text())["auto_map"] == {
        "AutoConfig": "configuration_cnn.CNNConfig",
        "AutoModelForAudioClassification": "modeling_cnn.CNNForAudioClassification",
    }
