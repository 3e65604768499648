"""A new model type is its configuration, its model and one registry entry: with nothing else changed, the commands'
loaders build it from scratch, resolve and load its saved folders without running any folder code, and the Trainer
reads its optimisation structure."""

import torch
from huggingface_hub.dataclasses import strict
from torch import nn
from transformers import PreTrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from gtzan_hf.models import registry
from gtzan_hf.models.feature_extraction_ssast import SSASTFeatureExtractor
from gtzan_hf.models.loading import ModelArguments, build_classifier, load_classifier
from gtzan_hf.models.source import SourceKind, resolve_model
from gtzan_hf.training.trainer import AudioClassificationTrainer, AudioTrainingArguments


@strict
class MeanConfig(PreTrainedConfig):
    model_type = "gtzan_hf_test_mean"

    num_mel_bins: int = 128
    max_length: int = 64


class MeanForAudioClassification(PreTrainedModel):
    """A linear classifier of the mean filter bank: the smallest model the AudioClassifier protocol allows."""

    config_class = MeanConfig
    main_input_name = "input_values"

    def __init__(self, config):
        super().__init__(config)
        self.classifier = nn.Linear(config.num_mel_bins, config.num_labels)
        self.post_init()

    def layer_ids(self):
        return {name: 0 for name, _ in self.named_parameters()}

    def no_weight_decay(self):
        return {"classifier.bias"}

    def forward(self, input_values, labels=None, attention_mask=None, **kwargs):
        logits = self.classifier(input_values.mean(dim=1))
        loss = None if labels is None else self.loss_function(labels, logits, self.config)
        return SequenceClassifierOutput(loss=loss, logits=logits)


def test_a_model_type_is_two_classes_and_one_registry_entry(monkeypatch, tmp_path):
    entry = registry.ModelType(
        "mean", "A mean-pooled linear classifier", MeanConfig, MeanForAudioClassification, lambda args: MeanConfig()
    )
    monkeypatch.setattr(registry, "MODEL_TYPES", (*registry.MODEL_TYPES, entry))
    model = build_classifier(None, ModelArguments(model_type="mean"), ["a", "b", "c"])
    assert isinstance(model, MeanForAudioClassification) and isinstance(model, registry.AudioClassifier)
    assert model.config.id2label == {0: "a", 1: "b", 2: "c"}
    model.save_pretrained(tmp_path)
    SSASTFeatureExtractor(max_length=64).save_pretrained(tmp_path)

    source = resolve_model(str(tmp_path))  # no trust_remote_code: a registered type runs no folder code
    assert source.kind is SourceKind.MODEL and source.registered_type is entry
    loaded, feature_extractor = load_classifier(source)
    assert isinstance(loaded, MeanForAudioClassification) and feature_extractor.max_length == 64
    torch.testing.assert_close(loaded.classifier.weight, model.classifier.weight)

    args = AudioTrainingArguments(output_dir=str(tmp_path / "run"), use_cpu=True, report_to="none", weight_decay=0.1)
    groups = AudioClassificationTrainer(model=loaded, args=args).parameter_groups(loaded)
    assert sorted(group["weight_decay"] for group in groups) == [0.0, 0.1]
