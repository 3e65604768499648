"""Configuration of the VGG-style CNN baseline."""

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig


@strict
class CNNConfig(PreTrainedConfig):
    r"""
    Configuration of [`CNNForAudioClassification`], the course project's VGG-style baseline: blocks of 3×3
    convolution → batch norm → ReLU → 2×2 max-pool, global average pooling, one dense layer with dropout, one output
    per class.

    Args:
        num_mel_bins (`int`, *optional*, defaults to 128):
            Mel bins of the input filter banks.
        max_length (`int`, *optional*, defaults to 1024):
            Frames per input, as produced by the feature extractor (the network itself accepts any length).
        channels (`list[int]`, *optional*, defaults to `[32, 64, 128, 256]`):
            Output channels of the convolution blocks.
        hidden_size (`int`, *optional*, defaults to 128):
            Width of the dense layer after pooling.
        dropout (`float`, *optional*, defaults to 0.5):
            Dropout before the output layer.

    The classification loss follows `problem_type` (a [`PreTrainedConfig`] field), as transformers' AST's does.
    """

    model_type = "gtzan_cnn"

    num_mel_bins: int = 128
    max_length: int = 1024
    channels: list[int] | tuple[int, ...] = (32, 64, 128, 256)
    hidden_size: int = 128
    dropout: float | int = 0.5

    def __post_init__(self, **kwargs):
        # Folders saved before the loss followed `problem_type` carry their training's label smoothing, which nothing
        # reads any more: dropped, so that saving them again does not carry it on.
        kwargs.pop("label_smoothing", None)
        super().__post_init__(**kwargs)

    def validate_architecture(self):
        if len(self.channels) == 0:
            raise ValueError("`channels` needs at least one convolution block.")


CNNConfig.register_for_auto_class()

__all__ = ["CNNConfig"]
