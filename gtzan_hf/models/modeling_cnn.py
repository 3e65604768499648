"""The course project's VGG-style CNN baseline as a transformers model, trained on the same features as SSAST."""

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.modeling_outputs import SequenceClassifierOutput
from transformers.utils.generic import can_return_tuple

from .configuration_cnn import CNNConfig


def dct_basis(size: int, num_coefficients: int, like: torch.Tensor) -> torch.Tensor:
    """`(num_coefficients, size)`: the first rows of the orthonormal DCT-II, which maps log-mel frames to their
    cepstrum (as MFCCs are computed), on the device and in the dtype of `like`."""
    positions = torch.arange(size, device=like.device, dtype=torch.float64) + 0.5
    orders = torch.arange(num_coefficients, device=like.device, dtype=torch.float64)[:, None]
    basis = torch.cos(torch.pi / size * orders * positions) * (2 / size) ** 0.5
    basis[0] /= 2**0.5
    return basis.to(like.dtype)


class CNNPreTrainedModel(PreTrainedModel):
    config_class = CNNConfig
    base_model_prefix = "cnn"
    main_input_name = "input_values"
    # The loss is a batch mean, given no `num_items_in_batch`: the Trainer scales it for gradient accumulation.
    accepts_loss_kwargs = False

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
    Four blocks of 3×3 conv → batch norm → ReLU → 2×2 max-pool (32→64→128→256 channels by default), pooling over
    time and frequency (so any number of frames works; see `CNNConfig.pooling`), then the `classifier`: dense layer,
    ReLU, dropout, one output per class (`hidden_size=0`: dropout and one linear layer).
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
        if config.hidden_size:
            dense = [nn.Linear(config.pooled_size, config.hidden_size), nn.ReLU()]
            self.classifier = nn.Sequential(
                *dense, nn.Dropout(config.dropout), nn.Linear(config.hidden_size, config.num_labels)
            )
        else:
            self.classifier = nn.Sequential(
                nn.Dropout(config.dropout), nn.Linear(config.pooled_size, config.num_labels)
            )
        self.post_init()

    def layer_ids(self) -> dict[str, int]:
        """Depth of each parameter, for layer-wise learning rates: `j` for convolution block `j` (each ends with its
        pooling), `len(config.channels)`, the deepest, for the `classifier` head."""
        depths, block = {}, 0
        for index, module in enumerate(self.features):
            depths |= {f"features.{index}.{name}": block for name, _ in module.named_parameters()}
            block += isinstance(module, nn.MaxPool2d)
        return depths | {f"classifier.{name}": block for name, _ in self.classifier.named_parameters()}

    def no_weight_decay(self) -> set[str]:
        """Parameters trained without weight decay: biases and batch-norm weights (the 1-D ones)."""
        return {name for name, parameter in self.named_parameters() if parameter.ndim <= 1}

    def pool(self, input_values: torch.Tensor) -> torch.Tensor:
        """`(batch, frames, bins)` -> `(batch, config.pooled_size)`, what the classifier reads."""
        # frequency as image height, as SSAST does: (batch, 1, bins, frames)
        hidden = input_values.transpose(1, 2).unsqueeze(1)
        if self.config.pooling == "mean":
            return self.features(hidden).mean(dim=(2, 3))
        # the input's statistics over time: of each mel bin, of its changes, of the frames' cepstrum
        differences = input_values.diff(dim=1)
        cepstrum = input_values @ dct_basis(self.config.num_mel_bins, self.config.num_cepstra, input_values).T
        statistics = [
            input_values.mean(dim=1),
            input_values.std(dim=1),
            differences.abs().mean(dim=1),
            differences.std(dim=1),
            cepstrum.mean(dim=1),
            cepstrum.std(dim=1),
            cepstrum.diff(dim=1).std(dim=1),
        ]
        for module in self.features:
            hidden = module(hidden)
            if isinstance(module, nn.MaxPool2d):  # the end of a block
                statistics += [hidden.mean(dim=(2, 3)), hidden.std(dim=(2, 3))]
        return torch.cat(statistics, dim=1)

    @can_return_tuple
    def forward(
        self,
        input_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        **kwargs,
    ) -> SequenceClassifierOutput:
        r"""
        input_values (`torch.FloatTensor` of shape `(batch_size, num_frames, num_mel_bins)`):
            Normalised filter banks from the feature extractor.
        labels (`torch.LongTensor` of shape `(batch_size,)`, or `torch.FloatTensor` `(batch_size, num_labels)`):
            The loss follows `config.problem_type` as transformers' `ASTForAudioClassification`'s does (class indices:
            cross-entropy; multi-hot targets: binary cross-entropy; regression: mean squared error).
        attention_mask (`torch.LongTensor` of shape `(batch_size, num_frames)`, *optional*):
            Accepted for transformers' clients, which pass the frame mask of [`~SequenceFeatureExtractor.pad`] (the
            `Trainer`'s default collator, the example scripts), and not used: the convolutions and the average pool
            take every frame, padding included.
        """
        if input_values.ndim != 3 or input_values.shape[-1] != self.config.num_mel_bins:
            raise ValueError(
                f"Expected input_values of shape (batch, frames, {self.config.num_mel_bins}), got "
                f"{tuple(input_values.shape)}."
            )
        logits = self.classifier(self.pool(input_values))
        loss = None if labels is None else self.loss_function(labels, logits, self.config)
        return SequenceClassifierOutput(loss=loss, logits=logits)


CNNForAudioClassification.register_for_auto_class("AutoModelForAudioClassification")

__all__ = ["CNNPreTrainedModel", "CNNForAudioClassification"]
