"""
The model types gtzan-hf trains and serves, one entry each: the only list of them. The resolver
([`gtzan_hf.models.source`]), the loaders ([`gtzan_hf.models.loading`]), the Auto-class registration (`gtzan_hf`),
`--model_type` and the Space read it.

Adding a model type is its `configuration_*.py` and `modeling_*.py` (a classifier that satisfies
[`AudioClassifier`]) and one entry in `MODEL_TYPES` (CONTRIBUTING.md walks through it).
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import torch
from transformers import FeatureExtractionMixin, PreTrainedConfig, PreTrainedModel
from transformers.modeling_outputs import SequenceClassifierOutput

from .configuration_cnn import CNNConfig
from .configuration_ssast import FINETUNING_STRIDES, SSASTConfig
from .feature_extraction_ssast import SSASTFeatureExtractor
from .modeling_cnn import CNNForAudioClassification
from .modeling_ssast import SSASTForAudioClassification, SSASTForPreTraining, SSASTModel


@runtime_checkable
class AudioClassifier(Protocol):
    """
    What the Trainer ([`~gtzan_hf.training.trainer.AudioClassificationTrainer`]), the prediction loop and the reports
    need from a classifier of filter-bank windows.
    """

    config: PreTrainedConfig  # `id2label`, `max_length`, `num_mel_bins`, `problem_type`
    classifier: torch.nn.Module  # the head: its input is the clip embedding (t-SNE maps of the reports)

    def __call__(
        self, input_values: torch.Tensor, labels: torch.Tensor | None = None, **kwargs
    ) -> SequenceClassifierOutput:
        """`input_values` `(batch, max_length, num_mel_bins)` -> `logits` `(batch, num_labels)`, and the loss when
        `labels` are given: `self.loss_function(labels, logits, self.config)`, transformers' rules for
        `config.problem_type`, as `ASTForAudioClassification`."""

    def layer_ids(self) -> dict[str, int]:
        """Depth of each parameter for layer-wise learning rates, the head deepest."""

    def no_weight_decay(self) -> set[str]:
        """Names of the parameters trained without weight decay."""


@dataclass(frozen=True)
class ModelType:
    """One model type: its classes, and how to configure one from scratch."""

    name: str  # as `--model_type` names it
    description: str  # what it is, for model cards
    config_class: type[PreTrainedConfig]
    classifier_class: type[PreTrainedModel]
    # `(ModelArguments) -> config` for a model trained from scratch (labels are added by the caller)
    scratch_config: Callable[[Any], PreTrainedConfig]
    feature_extractor_class: type[FeatureExtractionMixin] = SSASTFeatureExtractor
    base_model_class: type[PreTrainedModel] | None = None
    pretraining_class: type[PreTrainedModel] | None = None
    # whether it takes inputs of its config's `max_length` only (SSAST: one position embedding per patch), or any
    fixed_input_length: bool = True

    @property
    def config_model_type(self) -> str:
        """The `model_type` of its `config.json` (transformers' meaning of the words)."""
        return self.config_class.model_type


def _ssast_config(args) -> SSASTConfig:
    # unset strides: the original fine-tuning recipe for the patch shape
    frames = args.patch_freq == SSASTConfig().num_mel_bins
    freq_stride, time_stride = FINETUNING_STRIDES["frame" if frames else "patch"]
    return SSASTConfig.from_size(
        args.model_size,
        num_hidden_layers=args.num_hidden_layers,
        patch_freq=args.patch_freq,
        patch_time=args.patch_time,
        freq_stride=args.freq_stride or freq_stride,
        time_stride=args.time_stride or time_stride,
        max_length=args.max_length,
        pooling=args.pooling,
    )


MODEL_TYPES = (
    ModelType(
        "ssast",
        "SSAST (Self-Supervised Audio Spectrogram Transformer, Gong et al., AAAI 2022)",
        SSASTConfig,
        SSASTForAudioClassification,
        _ssast_config,
        base_model_class=SSASTModel,
        pretraining_class=SSASTForPreTraining,
    ),
    ModelType(
        "cnn",
        "A VGG-style CNN (the course project's baseline)",
        CNNConfig,
        CNNForAudioClassification,
        lambda args: CNNConfig(max_length=args.max_length, pooling=args.pooling),
        fixed_input_length=False,
    ),
)


def find_model_type(name: str) -> ModelType | None:
    """The entry whose `--model_type` name or `config.json` `model_type` is `name`, or `None`."""
    return next((entry for entry in MODEL_TYPES if name in (entry.name, entry.config_model_type)), None)
