"""Configuration of the VGG-style CNN baseline."""

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

POOLING = ("mean", "stats")


@strict
class CNNConfig(PreTrainedConfig):
    r"""
    Configuration of [`CNNForAudioClassification`], the course project's VGG-style baseline: blocks of 3×3
    convolution → batch norm → ReLU → 2×2 max-pool, global average pooling, one dense layer with dropout, one output
    per class. With `pooling="stats"` and `hidden_size=0` it is the few-labels recipe's network: statistics of the
    input and of every block, read by one linear layer (fitted as a linear probe, the blocks left as initialised).

    Args:
        num_mel_bins (`int`, *optional*, defaults to 128):
            Mel bins of the input filter banks.
        max_length (`int`, *optional*, defaults to 1024):
            Frames per input, as produced by the feature extractor (the network itself accepts any length).
        channels (`list[int]`, *optional*, defaults to `[32, 64, 128, 256]`):
            Output channels of the convolution blocks.
        pooling (`str`, *optional*, defaults to `"mean"`):
            What the head reads: `"mean"`, the last block's output averaged over time and frequency; `"stats"`,
            statistics over time of the input, `4 * num_mel_bins + 3 * num_cepstra` (the mean and standard deviation
            of every mel bin, the mean absolute value and standard deviation of its frame-to-frame differences, the
            mean and standard deviation of the first `num_cepstra` coefficients of the frames' cepstrum, a DCT of
            the mel bins, and the standard deviation of their differences), and the mean and standard deviation over
            time and frequency of every channel of every block, `2 * sum(channels)`.
        num_cepstra (`int`, *optional*, defaults to 40):
            Cepstral coefficients of the `"stats"` pooling (1 to `num_mel_bins`; unread by `"mean"`).
        hidden_size (`int`, *optional*, defaults to 128):
            Width of the dense layer after pooling; 0 for none (the head is one linear layer).
        dropout (`float`, *optional*, defaults to 0.5):
            Dropout before the output layer.

    The classification loss follows `problem_type` (a [`PreTrainedConfig`] field), as transformers' AST's does.
    """

    model_type = "gtzan_cnn"

    num_mel_bins: int = 128
    max_length: int = 1024
    channels: list[int] | tuple[int, ...] = (32, 64, 128, 256)
    pooling: str = "mean"
    num_cepstra: int = 40
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
        if self.pooling not in POOLING:
            raise ValueError(f"Unknown CNN pooling {self.pooling!r}: choose one of {', '.join(POOLING)}.")
        # Only the "stats" pooling reads the cepstrum; a "mean" network of few mel bins keeps the default unread.
        if self.pooling == "stats" and not 0 < self.num_cepstra <= self.num_mel_bins:
            raise ValueError(f"num_cepstra {self.num_cepstra}: expected 1 to num_mel_bins ({self.num_mel_bins}).")
        if self.hidden_size < 0:
            raise ValueError(f"hidden_size {self.hidden_size}: expected 0 (no dense layer) or more.")

    @property
    def pooled_size(self) -> int:
        """Features the head reads (see `pooling`)."""
        if self.pooling == "mean":
            return self.channels[-1]
        return 4 * self.num_mel_bins + 3 * self.num_cepstra + 2 * sum(self.channels)


CNNConfig.register_for_auto_class()

__all__ = ["CNNConfig"]
