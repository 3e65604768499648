"""The course project's VGG-style CNN baseline as a transformers model, trained on the same features as SSAST."""

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import SequenceClassifierOutput

from .configuration_cnn import CNNConfig


class CNNPreTrainedModel(PreTrainedModel):
    config_class = CNNConfig
    base_model_prefix = "cnn"
    main_input_name = "input_values"

    def _init_weights(self, module):
        # He initialisation: the network is trained from scratch with ReLUs, not fine-tuned.
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            init.kaiming_normal_(module.weight, nonlinearity="relu")
            init.zeros_(module.bias)
        elif isinstance(module, nn.BatchNorm2d):
            init.ones_(module.weight)
            init.zeros_(module.bias)


class CNNForAudioClassification(CNNPreTrainedModel):
    """
    Four blocks of 3×3 conv → batch norm → ReLU → 2×2 max-pool (32→64→128→256 channels by default), global average
    pooling (so any number of frames works), then the `classifier`: dense layer, ReLU, dropout, one output per class.
    """

    def __init__(self, config: CNNConfig):
        super().__init__(config)
        blocks = []
        in_channels = 1
        for out_channels in config.channels:
            blocks += [
                nn.Conv2d(in_channels, out_channels, kernel_size=3, padding=1),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            in_channels = out_channels
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(
            nn.Linear(in_channels, config.hidden_size),
            nn.ReLU(),
            nn.Dropout(config.dropout),
            nn.Linear(config.hidden_size, config.num_labels),
        )
        self.post_init()

    def forward(
        self,
        input_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        return_dict: bool | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput | tuple:
        r"""
        input_values (`torch.FloatTensor` of shape `(batch_size, num_frames, num_mel_bins)`):
            Normalised filter banks from the feature extractor.
        labels (`torch.LongTensor` of shape `(batch_size,)`, or `torch.FloatTensor` `(batch_size, num_labels)`):
            Class indices, or class probabilities (mixup); the loss is their cross-entropy with the logits.
        """
        if input_values.ndim != 3 or input_values.shape[-1] != self.config.num_mel_bins:
            raise ValueError(
                f"Expected input_values of shape (batch, frames, {self.config.num_mel_bins}), got "
                f"{tuple(input_values.shape)}."
            )
        return_dict = return_dict if return_dict is not None else self.config.return_dict
        # (batch, frames, bins) -> (batch, 1, bins, frames): frequency as image height, as SSAST does.
        hidden = self.features(input_values.transpose(1, 2).unsqueeze(1))
        logits = self.classifier(hidden.mean(dim=(2, 3)))
        loss = nn.functional.cross_entropy(logits, labels) if labels is not None else None
        if not return_dict:
            return (logits,) if loss is None else (loss, logits)
        return SequenceClassifierOutput(loss=loss, logits=logits)


CNNForAudioClassification.register_for_auto_class("AutoModelForAudioClassification")

__all__ = ["CNNPreTrainedModel", "CNNForAudioClassification"]
