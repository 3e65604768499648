# Copyright 2026 The gtzan-hf authors. Licensed under the BSD-3-Clause licence.
"""SSAST (Self-Supervised Audio Spectrogram Transformer) model configuration."""

from typing import Literal

from huggingface_hub.dataclasses import strict
from transformers import PreTrainedConfig

# Widths of the released SSAST models (DeiT tiny / small / base); heads are always 64 wide.
SSAST_SIZES = {
    "tiny": {"hidden_size": 192, "num_attention_heads": 3, "intermediate_size": 768},
    "small": {"hidden_size": 384, "num_attention_heads": 6, "intermediate_size": 1536},
    "base": {"hidden_size": 768, "num_attention_heads": 12, "intermediate_size": 3072},
}
# The closed sets of settings, as types: the configs' strict validation and the command lines' choices read them.
Size = Literal[tuple(SSAST_SIZES)]
Pooling = Literal["mean", "cls"]

# The original fine-tuning recipes' strides, (freq_stride, time_stride): overlapping 16x16 patches every 10 bins and
# frames, or 128x2 frame patches every frame.
FINETUNING_STRIDES = {"patch": (10, 10), "frame": (128, 1)}

# save_pretrained records only the saved class in `auto_map`; listing every class lets each Auto class (with
# trust_remote_code=True) open any SSAST folder, e.g. AutoModel on a fine-tuned classifier.
AUTO_MAP = {
    "AutoConfig": "configuration_ssast.SSASTConfig",
    "AutoModel": "modeling_ssast.SSASTModel",
    "AutoModelForAudioClassification": "modeling_ssast.SSASTForAudioClassification",
    "AutoModelForPreTraining": "modeling_ssast.SSASTForPreTraining",
}


@strict
class SSASTConfig(PreTrainedConfig):
    r"""
    Configuration of an SSAST model ([`SSASTModel`], [`SSASTForAudioClassification`], [`SSASTForPreTraining`]).
    The defaults give the base-size, 16x16-patch model fine-tuned on 1024 frames with stride 10 (the SSAST-Base-Patch
    recipe). Use [`SSASTConfig.from_size`] for the tiny / small / base widths.

    Args:
        hidden_size (`int`, *optional*, defaults to 768):
            Width of the encoder (192 tiny, 384 small, 768 base).
        num_hidden_layers (`int`, *optional*, defaults to 12):
            Number of transformer blocks.
        num_attention_heads (`int`, *optional*, defaults to 12):
            Number of attention heads (3 tiny, 6 small, 12 base).
        intermediate_size (`int`, *optional*, defaults to 3072):
            Width of the feed-forward layers (4 x `hidden_size` in the released models).
        hidden_act (`str`, *optional*, defaults to `"gelu"`):
            Activation of the feed-forward layers.
        hidden_dropout_prob (`float`, *optional*, defaults to 0.0):
            Dropout after the embeddings, the attention output and the feed-forward output.
        attention_probs_dropout_prob (`float`, *optional*, defaults to 0.0):
            Dropout on the attention probabilities.
        initializer_range (`float`, *optional*, defaults to 0.02):
            Standard deviation of the truncated normal initialiser of the weights.
        layer_norm_eps (`float`, *optional*, defaults to 1e-6):
            Epsilon of the encoder's layer norms (1e-6 in the original DeiT-based SSAST; transformers' AST
            checkpoints use 1e-12).
        classifier_layer_norm_eps (`float`, *optional*, defaults to 1e-5):
            Epsilon of the classification head's layer norm (PyTorch's default, as in the original `mlp_head`).
        classifier_dropout_prob (`float`, *optional*, defaults to 0.0):
            Dropout between the head's layer norm and its linear layer.
        qkv_bias (`bool`, *optional*, defaults to `True`):
            Whether the query / key / value projection has a bias.
        patch_freq (`int`, *optional*, defaults to 16):
            Patch height in mel bins: 16 for patch-based SSAST, 128 (= `num_mel_bins`) for frame-based SSAST.
        patch_time (`int`, *optional*, defaults to 16):
            Patch width in frames: 16 for patch-based SSAST, 2 for frame-based SSAST.
        freq_stride (`int`, *optional*, defaults to 10):
            Patch stride along frequency (10 to fine-tune patch models, 128 for frame models, `patch_freq` to
            pretrain).
        time_stride (`int`, *optional*, defaults to 10):
            Patch stride along time (10 to fine-tune patch models, 1 for frame models, `patch_time` to pretrain).
        num_mel_bins (`int`, *optional*, defaults to 128):
            Number of mel bins of the input filter bank.
        max_length (`int`, *optional*, defaults to 1024):
            Number of input frames; the feature extractor's `max_length` must be the same.
        num_cls_tokens (`int`, *optional*, defaults to 2):
            2 (a class and a distillation token, as in the released DeiT-style checkpoints) or 1.
        pooling (`str`, *optional*, defaults to `"mean"`):
            Clip representation fed to the classifier: `"mean"` averages the patch tokens (the original `ft_avgtok`,
            the SSAST default), `"cls"` averages the class tokens (the original `ft_cls`, transformers' AST).
        num_masked_patches (`int`, *optional*, defaults to 400):
            Patches masked per sample by [`SSASTForPreTraining`] (400 in the released models).
        masking (`str`, *optional*):
            `"cluster"` (masks grown as 3x3 to 5x5 blocks, for patch models) or `"random"` (for frame models). Defaults
            to `"random"` when a patch spans all mel bins, `"cluster"` otherwise.
        mpg_loss_weight (`float`, *optional*, defaults to 10.0):
            Weight of the reconstruction (MSE) loss in the pretraining loss `mpc_loss + mpg_loss_weight * mpg_loss`.
        token_merging (`int`, *optional*, defaults to 0):
            Token merging at inference (ToMe, Bolya et al., ICLR 2023; no retraining): in every block but the last,
            between the attention and the MLP, the `token_merging` most similar pairs of patch tokens (bipartite soft
            matching on the cosine similarity of their attention keys, at most half of them) are merged into their
            size-weighted mean, and attention counts each token as the patches it holds (proportional attention);
            mean pooling weighs them likewise. The class tokens are never merged. Applied in eval mode only, without
            masked patches: training sees every token. `0` (the default) computes exactly what the model computes
            without it.

    The classification loss follows `problem_type` (a [`PreTrainedConfig`] field), as transformers' AST's does.

    Example:

    ```python
    >>> from gtzan_hf import SSASTConfig, SSASTForAudioClassification

    >>> config = SSASTConfig.from_size("tiny", max_length=1000, num_labels=10)
    >>> model = SSASTForAudioClassification(config)
    ```"""

    model_type = "ssast"

    hidden_size: int = 768
    num_hidden_layers: int = 12
    num_attention_heads: int = 12
    intermediate_size: int = 3072
    hidden_act: str = "gelu"
    hidden_dropout_prob: float | int = 0.0
    attention_probs_dropout_prob: float | int = 0.0
    initializer_range: float = 0.02
    layer_norm_eps: float = 1e-6
    classifier_layer_norm_eps: float = 1e-5
    classifier_dropout_prob: float | int = 0.0
    qkv_bias: bool = True
    patch_freq: int = 16
    patch_time: int = 16
    freq_stride: int = 10
    time_stride: int = 10
    num_mel_bins: int = 128
    max_length: int = 1024
    num_cls_tokens: Literal[1, 2] = 2
    pooling: Pooling = "mean"
    num_masked_patches: int = 400
    masking: Literal["cluster", "random"] | None = None
    mpg_loss_weight: float | int = 10.0
    token_merging: int = 0

    def __post_init__(self, **kwargs):
        # Folders saved before the loss followed `problem_type` carry their training's label smoothing, which nothing
        # reads any more: dropped, so that saving them again does not carry it on.
        kwargs.pop("label_smoothing", None)
        if self.masking is None:
            self.masking = "random" if self.patch_freq == self.num_mel_bins else "cluster"
        super().__post_init__(**kwargs)
        if getattr(self, "auto_map", None) is None:
            self.auto_map = dict(AUTO_MAP)

    def validate_architecture(self):
        """Part of `@strict`'s validation (the closed sets are checked by their types)."""
        if self.hidden_size % self.num_attention_heads:
            raise ValueError(
                f"hidden_size ({self.hidden_size}) must be a multiple of num_attention_heads "
                f"({self.num_attention_heads})."
            )
        for name in ("patch_freq", "patch_time", "freq_stride", "time_stride", "num_masked_patches"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be a positive integer, got {getattr(self, name)}.")
        if self.token_merging < 0:
            raise ValueError(
                f"token_merging must be 0 (off) or a positive number of tokens, got {self.token_merging}."
            )
        if not 1 <= self.patch_freq <= self.num_mel_bins:
            raise ValueError(f"patch_freq ({self.patch_freq}) must lie in [1, num_mel_bins={self.num_mel_bins}].")
        if not 1 <= self.patch_time <= self.max_length:
            raise ValueError(f"patch_time ({self.patch_time}) must lie in [1, max_length={self.max_length}].")
        probabilities = ("hidden_dropout_prob", "attention_probs_dropout_prob", "classifier_dropout_prob")
        for name in probabilities:
            if not 0.0 <= getattr(self, name) < 1.0:
                raise ValueError(f"{name} must lie in [0, 1), got {getattr(self, name)}.")

    def to_dict(self) -> dict:
        """The config's fields, without `token_merging` while it is off: an inference option, written only when set,
        so that folders saved without it stay what they were."""
        output = super().to_dict()
        if not output.get("token_merging"):
            output.pop("token_merging", None)
        return output

    @classmethod
    def from_size(cls, size: Size, **kwargs) -> "SSASTConfig":
        """
        Config of a released model width: `size` is `"tiny"` (192 wide, 3 heads), `"small"` (384, 6) or `"base"`
        (768, 12); every other field comes from `kwargs` or the defaults.
        """
        if size not in SSAST_SIZES:
            raise ValueError(f"size must be one of {sorted(SSAST_SIZES)}, got {size!r}.")
        return cls(**{**SSAST_SIZES[size], **kwargs})

    @property
    def patch_grid(self) -> tuple[int, int]:
        """Number of patches along frequency and along time for `num_mel_bins` x `max_length` inputs."""
        return (
            (self.num_mel_bins - self.patch_freq) // self.freq_stride + 1,
            (self.max_length - self.patch_time) // self.time_stride + 1,
        )

    @property
    def num_patches(self) -> int:
        frequency_patches, time_patches = self.patch_grid
        return frequency_patches * time_patches


SSASTConfig.register_for_auto_class()

__all__ = ["FINETUNING_STRIDES", "SSASTConfig"]
