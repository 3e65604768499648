"""
Conversion between the original SSAST checkpoints (YuanGongND/ssast), transformers' AST checkpoints and SSAST models:
pure functions of a state dict (or of a model in memory), as timm's `checkpoint_filter_fn`. Names, files, folders and
Hub ids are resolved and read once by the caller ([`gtzan_hf.models.loading.convert_checkpoint`] and the other
loaders).

Accepted inputs of [`from_original_checkpoint`]:

1. the state dict of a self-supervised pretraining checkpoint saved by the original code
   (`SSAST-{Base,Small,Tiny}-{Patch,Frame}-{250,400}.pth`: `torch.nn.DataParallel` keys `module.*`, with
   `p_input_fdim`/`p_input_tdim`): the fine-tuning model is built as the original fine-tuning code builds it (new
   patch stride, positional embeddings cut or interpolated);
2. the state dict of a fine-tuned checkpoint saved by the original SSAST or AST code (`v.*` and `mlp_head.*`, with or
   without the `module.` prefix), head kept;
3. a transformers `ASTForAudioClassification` (e.g. `MIT/ast-finetuned-audioset-10-10-0.4593`), whose
   query/key/value projections are fused.
"""

import logging
import os
import re

import torch
from torch import nn
from transformers import ASTForAudioClassification

from ..errors import UserError
from .checkpoints import checkpoint_kind
from .configuration_ssast import FINETUNING_STRIDES, SSASTConfig
from .modeling_ssast import SSASTForAudioClassification, SSASTForPreTraining

logger = logging.getLogger(__name__)

# Original key prefix <-> our key prefix, used both ways; "{}" stands for a block index.
KEY_MAPPING = (
    ("v.cls_token", "ssast.embeddings.cls_token"),
    ("v.dist_token", "ssast.embeddings.distillation_token"),
    ("v.pos_embed", "ssast.embeddings.position_embeddings"),
    ("v.patch_embed.proj.", "ssast.embeddings.patch_embeddings.projection."),
    ("v.blocks.{}.norm1.", "ssast.encoder.layer.{}.layernorm_before."),
    ("v.blocks.{}.attn.qkv.", "ssast.encoder.layer.{}.attention.qkv."),
    ("v.blocks.{}.attn.proj.", "ssast.encoder.layer.{}.attention.out_proj."),
    ("v.blocks.{}.norm2.", "ssast.encoder.layer.{}.layernorm_after."),
    ("v.blocks.{}.mlp.", "ssast.encoder.layer.{}.mlp."),
    ("v.norm.", "ssast.layernorm."),
    ("mlp_head.0.", "classifier.layernorm."),
    ("mlp_head.1.", "classifier.dense."),
    ("mask_embed", "ssast.embeddings.mask_token"),
    ("cpredlayer.0.", "mpc_head.dense."),
    ("cpredlayer.2.", "mpc_head.decoder."),
    ("gpredlayer.0.", "mpg_head.dense."),
    ("gpredlayer.2.", "mpg_head.decoder."),
)
# Original keys with no counterpart: timm's unused ImageNet heads and the pretraining input size (read separately).
UNUSED_ORIGINAL_KEYS = re.compile(r"v\.head(_dist)?\.(weight|bias)|p_input_[ft]dim")
# The original code interpolates the time axis of the positional embeddings on a grid of 8 frequency rows.
INTERPOLATION_ROWS = 8
HEAD_DIM = 64


def _compile(source: str, target: str) -> tuple[re.Pattern, str]:
    return re.compile("^" + re.escape(source).replace(r"\{\}", r"(\d+)")), target.replace("{}", r"\1")


_TO_HF = [_compile(original, ours) for original, ours in KEY_MAPPING]
_TO_ORIGINAL = [_compile(ours, original) for original, ours in KEY_MAPPING]


def _rename(key: str, rules: list[tuple[re.Pattern, str]]) -> str | None:
    for pattern, replacement in rules:
        if pattern.match(key):
            return pattern.sub(replacement, key)
    return None


def _strip_data_parallel(state_dict: dict) -> dict:
    return {key.removeprefix("module."): value for key, value in state_dict.items()}


def _architecture(state_dict: dict[str, torch.Tensor]) -> dict:
    """Encoder size, depth, token count and patch shape, read from an original state dict (without `module.`)."""
    hidden_size = state_dict["v.pos_embed"].shape[-1]
    depth = len({int(match.group(1)) for key in state_dict if (match := re.match(r"v\.blocks\.(\d+)\.", key))})
    patch_weight = state_dict["v.patch_embed.proj.weight"]
    return {
        "hidden_size": hidden_size,
        "num_hidden_layers": depth,
        "num_attention_heads": hidden_size // HEAD_DIM,
        "intermediate_size": state_dict["v.blocks.0.mlp.fc1.weight"].shape[0],
        "qkv_bias": "v.blocks.0.attn.qkv.bias" in state_dict,
        "num_cls_tokens": 2 if "v.dist_token" in state_dict else 1,
        "patch_freq": patch_weight.shape[2],
        "patch_time": patch_weight.shape[3],
    }


def _to_hf_state_dict(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    converted = {}
    for key, value in state_dict.items():
        if UNUSED_ORIGINAL_KEYS.fullmatch(key):
            continue
        new_key = _rename(key, _TO_HF)
        if new_key is None:
            raise UserError(f"Unexpected key {key!r} in the original checkpoint: it has no SSAST counterpart.")
        converted[new_key] = value
    return converted


def adapt_position_embeddings(
    position_embeddings: torch.Tensor,
    num_cls_tokens: int,
    pretraining_grid: tuple[int, int],
    grid: tuple[int, int],
    interpolation_rows: int = INTERPOLATION_ROWS,
) -> torch.Tensor:
    """
    Cuts or interpolates pretrained positional embeddings to a new patch grid, exactly as the original fine-tuning
    code: the time axis first (centre crop if shorter, else bilinear on a grid of `interpolation_rows` frequency rows:
    SSAST's 8, or AST's own rows), then frequency.

    Args:
        position_embeddings (`torch.Tensor` of shape `(1, num_cls_tokens + p_freq * p_time, hidden_size)`):
            The pretrained embeddings, class tokens first, patches frequency-major.
        num_cls_tokens (`int`): Number of class tokens, kept as they are.
        pretraining_grid (`tuple[int, int]`): `(p_freq, p_time)` patches of the pretraining input.
        grid (`tuple[int, int]`): `(freq, time)` patches of the fine-tuning input.

    Returns:
        `torch.Tensor` of shape `(1, num_cls_tokens + freq * time, hidden_size)`.
    """
    (p_freq, p_time), (freq, time) = pretraining_grid, grid
    hidden_size = position_embeddings.shape[-1]
    patches = position_embeddings[:, num_cls_tokens:].detach().transpose(1, 2).reshape(1, hidden_size, p_freq, p_time)
    if time < p_time:
        start = p_time // 2 - time // 2
        patches = patches[:, :, :, start : start + time]
    else:
        patches = nn.functional.interpolate(patches, size=(interpolation_rows, time), mode="bilinear")
    if freq < patches.shape[2]:
        # The original slices this crop with the time length instead of the frequency length; its next reshape fails
        # unless both select the same rows, so the correct centre crop reproduces every case the original runs.
        start = patches.shape[2] // 2 - freq // 2
        patches = patches[:, :, start : start + freq]
    else:
        patches = nn.functional.interpolate(patches, size=(freq, time), mode="bilinear")
    patches = patches.reshape(1, hidden_size, freq * time).transpose(1, 2)
    return torch.cat([position_embeddings[:, :num_cls_tokens].detach(), patches], dim=1)


def _pretraining_grid(state_dict: dict[str, torch.Tensor], architecture: dict) -> tuple[int, int]:
    # Pretraining never overlaps patches: stride = patch shape.
    grid = (
        int(state_dict["p_input_fdim"]) // architecture["patch_freq"],
        int(state_dict["p_input_tdim"]) // architecture["patch_time"],
    )
    expected = grid[0] * grid[1] + architecture["num_cls_tokens"]
    if state_dict["v.pos_embed"].shape[1] != expected:
        raise UserError(
            f"Damaged pretraining checkpoint: p_input_fdim/p_input_tdim give a {grid[0]}x{grid[1]} patch grid "
            f"({expected} positions with the class tokens) but v.pos_embed has {state_dict['v.pos_embed'].shape[1]}."
        )
    return grid


def _finetuning_config(
    state_dict, freq_stride, time_stride, max_length, num_mel_bins, pooling, config_kwargs
) -> SSASTConfig:
    architecture = _architecture(state_dict)
    default_freq_stride, default_time_stride = FINETUNING_STRIDES[
        "frame" if architecture["patch_freq"] == num_mel_bins else "patch"
    ]
    return SSASTConfig(
        **architecture,
        freq_stride=freq_stride or default_freq_stride,
        time_stride=time_stride or default_time_stride,
        num_mel_bins=num_mel_bins,
        max_length=max_length or 1024,
        pooling=pooling or "mean",
        **config_kwargs,
    )


def _build_classifier(
    config: SSASTConfig, state_dict: dict[str, torch.Tensor], new_head: tuple[str, ...]
) -> SSASTForAudioClassification:
    """Loads `state_dict` into a new classifier; the weights under the `new_head` prefixes are initialised anew."""
    state_dict = {key: value for key, value in state_dict.items() if not key.startswith(new_head)}
    model = SSASTForAudioClassification(config)
    result = model.load_state_dict(state_dict, strict=False)
    missing = [key for key in result.missing_keys if not key.startswith(new_head)]
    if missing or result.unexpected_keys:
        raise UserError(f"Checkpoint does not fit the model: missing {missing}, unexpected {result.unexpected_keys}.")
    return model


def _from_pretraining(state_dict: dict[str, torch.Tensor], config: SSASTConfig) -> SSASTForAudioClassification:
    pretraining_grid = _pretraining_grid(state_dict, _architecture(state_dict))
    converted = {
        key: value
        for key, value in _to_hf_state_dict(state_dict).items()
        if not key.startswith(("ssast.embeddings.mask_token", "mpc_head.", "mpg_head."))
    }
    converted["ssast.embeddings.position_embeddings"] = adapt_position_embeddings(
        converted["ssast.embeddings.position_embeddings"], config.num_cls_tokens, pretraining_grid, config.patch_grid
    )
    return _build_classifier(config, converted, new_head=("classifier.",))


def _from_finetuned(state_dict: dict[str, torch.Tensor], config: SSASTConfig) -> SSASTForAudioClassification:
    positions = state_dict["v.pos_embed"].shape[1] - config.num_cls_tokens
    if positions != config.num_patches:
        raise UserError(
            f"The checkpoint's positional embeddings hold {positions} patches, but strides "
            f"({config.freq_stride}, {config.time_stride}) on {config.num_mel_bins} bins x {config.max_length} frames "
            f"give {config.patch_grid[0]}x{config.patch_grid[1]} = {config.num_patches}: pass the freq_stride, "
            "time_stride and max_length the model was fine-tuned with."
        )
    keep_head = config.num_labels == state_dict["mlp_head.1.weight"].shape[0]
    return _build_classifier(
        config, _to_hf_state_dict(state_dict), new_head=() if keep_head else ("classifier.dense.",)
    )


def _from_transformers_ast(
    ast: ASTForAudioClassification,
    num_labels: int | None,
    pooling: str | None,
    config_kwargs: dict,
    freq_stride: int | None = None,
    time_stride: int | None = None,
    max_length: int | None = None,
) -> SSASTForAudioClassification:
    """An AST model as SSAST; other strides or another `max_length` than its own get its positional embeddings cut
    or interpolated as the original AST code adapts its AudioSet model (`ASTModel.__init__`)."""
    ast_config = ast.config
    patch_size = ast_config.patch_size
    patch_freq, patch_time = (patch_size, patch_size) if isinstance(patch_size, int) else patch_size
    keep_head = num_labels is None or num_labels == ast_config.num_labels
    # a head kept is the AST's: its classes and the problem type its loss follows
    labels = (
        {"id2label": ast_config.id2label, "label2id": ast_config.label2id, "problem_type": ast_config.problem_type}
        if keep_head
        else {"num_labels": num_labels}
    )
    config = SSASTConfig(
        hidden_size=ast_config.hidden_size,
        num_hidden_layers=ast_config.num_hidden_layers,
        num_attention_heads=ast_config.num_attention_heads,
        intermediate_size=ast_config.intermediate_size,
        hidden_act=ast_config.hidden_act,
        hidden_dropout_prob=ast_config.hidden_dropout_prob,
        attention_probs_dropout_prob=ast_config.attention_probs_dropout_prob,
        initializer_range=ast_config.initializer_range,
        layer_norm_eps=ast_config.layer_norm_eps,
        classifier_layer_norm_eps=ast_config.layer_norm_eps,
        qkv_bias=ast_config.qkv_bias,
        patch_freq=patch_freq,
        patch_time=patch_time,
        freq_stride=freq_stride or ast_config.frequency_stride,
        time_stride=time_stride or ast_config.time_stride,
        num_mel_bins=ast_config.num_mel_bins,
        max_length=max_length or ast_config.max_length,
        num_cls_tokens=2,
        pooling=pooling or "cls",
        **(labels | config_kwargs),
    )
    ast_state = ast.state_dict()
    converted = {}
    for key, value in ast_state.items():
        if re.search(r"\.attention\.[kv]_proj\.", key):
            continue  # fused with the query projection below
        if ".attention.q_proj." in key:
            # One fused projection, query then key then value: the original (timm) layout.
            value = torch.cat(
                [value, ast_state[key.replace("q_proj", "k_proj")], ast_state[key.replace("q_proj", "v_proj")]]
            )
            key = key.replace("q_proj", "qkv")
        key = key.replace("audio_spectrogram_transformer.layers.", "ssast.encoder.layer.")
        key = key.replace("audio_spectrogram_transformer.", "ssast.").replace(".o_proj.", ".out_proj.")
        converted[key] = value
    grid = (
        (ast_config.num_mel_bins - patch_freq) // ast_config.frequency_stride + 1,
        (ast_config.max_length - patch_time) // ast_config.time_stride + 1,
    )
    if grid != config.patch_grid:
        # The original AST code interpolates on the model's own frequency rows (12 for AudioSet), not on SSAST's 8.
        key = "ssast.embeddings.position_embeddings"
        converted[key] = adapt_position_embeddings(
            converted[key], 2, grid, config.patch_grid, interpolation_rows=grid[0]
        )
    return _build_classifier(config, converted, new_head=() if keep_head else ("classifier.dense.",))


def _state_dict(checkpoint) -> dict[str, torch.Tensor] | ASTForAudioClassification:
    """An original state dict without its `module.` prefixes, or the AST model as it is."""
    if isinstance(checkpoint, (str, os.PathLike)):
        raise TypeError(
            f"Conversion takes a state dict or a transformers AST model, not {checkpoint!r}: for a file, a released "
            "name, a folder or a Hub id, use gtzan_hf.models.loading.convert_checkpoint."
        )
    return checkpoint if isinstance(checkpoint, ASTForAudioClassification) else _strip_data_parallel(checkpoint)


def from_original_checkpoint(
    checkpoint: dict[str, torch.Tensor] | ASTForAudioClassification,
    *,
    freq_stride: int | None = None,
    time_stride: int | None = None,
    max_length: int | None = None,
    num_mel_bins: int = 128,
    num_labels: int | None = None,
    pooling: str | None = None,
    **config_kwargs,
) -> SSASTForAudioClassification:
    """
    Builds an [`SSASTForAudioClassification`] from an original SSAST/AST checkpoint or a transformers AST model.

    Args:
        checkpoint (`dict` or `ASTForAudioClassification`):
            A state dict saved by the original code (pretraining or fine-tuned, `module.` prefix or not), or a
            transformers `ASTForAudioClassification`. (A file, a released name such as `SSAST-Base-Patch-400`, a
            folder or a Hub id: [`gtzan_hf.models.loading.convert_checkpoint`], which reads it and keeps its
            provenance as `source_checkpoint`.)
        freq_stride (`int`, *optional*), time_stride (`int`, *optional*):
            Patch strides (the original code's `fstride`, `tstride`). For a pretraining checkpoint they default to
            the original recipes (10 and 10 for 16x16 patches, 128 and 1 for 128x2 frames); a fine-tuned checkpoint
            needs those it was trained with. A transformers AST model keeps its own unless given others.
        max_length (`int`, *optional*):
            Number of input frames (the original code's `input_tdim`), 1024 by default; a transformers AST model's
            own by default. Other strides or another length than a transformers AST model's adapt its positional
            embeddings as the original AST code does.
        num_mel_bins (`int`, *optional*, defaults to 128):
            Number of mel bins.
        num_labels (`int`, *optional*):
            Size of the classification head. A pretraining checkpoint always gets a new head (2 labels unless given);
            a fine-tuned checkpoint keeps its head unless `num_labels` differs from it, in which case the last linear
            layer is initialised anew.
        pooling (`str`, *optional*):
            `"mean"` or `"cls"` (see [`SSASTConfig`]); defaults to `"mean"` for original checkpoints (SSAST's
            `ft_avgtok`) and `"cls"` for transformers AST models (how they were trained).
        config_kwargs:
            Further [`SSASTConfig`] fields, e.g. `id2label`, `label2id` or dropouts.

    Returns:
        [`SSASTForAudioClassification`] in evaluation mode.
    """
    state_dict = _state_dict(checkpoint)
    if isinstance(state_dict, ASTForAudioClassification):
        if num_mel_bins not in (128, state_dict.config.num_mel_bins):
            raise UserError(
                f"This AST model reads {state_dict.config.num_mel_bins} mel bins, not {num_mel_bins}: leave "
                "num_mel_bins unset."
            )
        geometry = {"freq_stride": freq_stride, "time_stride": time_stride, "max_length": max_length}
        return _from_transformers_ast(state_dict, num_labels, pooling, config_kwargs, **geometry).eval()
    kind = checkpoint_kind(state_dict)
    if num_labels is None and kind == "finetuned" and "id2label" not in config_kwargs:
        num_labels = state_dict["mlp_head.1.weight"].shape[0]
    if num_labels is not None:
        config_kwargs["num_labels"] = num_labels
    elif kind == "pretraining" and "id2label" not in config_kwargs:
        logger.warning("No num_labels given: the new classification head has 2 outputs.")
    config = _finetuning_config(state_dict, freq_stride, time_stride, max_length, num_mel_bins, pooling, config_kwargs)
    model = _from_pretraining(state_dict, config) if kind == "pretraining" else _from_finetuned(state_dict, config)
    return model.eval()


def pretraining_model_from_original_checkpoint(
    checkpoint: dict[str, torch.Tensor], **config_kwargs
) -> SSASTForPreTraining:
    """
    Loads the state dict of an original pretraining checkpoint, heads and mask embedding included, into an
    [`SSASTForPreTraining`] with its pretraining input size (`p_input_fdim` x `p_input_tdim`) and non-overlapping
    patches, e.g. to continue pretraining on music; `config_kwargs` set further [`SSASTConfig`] fields, e.g.
    `num_masked_patches`.
    """
    state_dict = _state_dict(checkpoint)
    if isinstance(state_dict, ASTForAudioClassification) or checkpoint_kind(state_dict) != "pretraining":
        raise UserError(
            "A fine-tuned checkpoint has no pretraining heads: expected an original pretraining checkpoint."
        )
    architecture = _architecture(state_dict)
    _pretraining_grid(state_dict, architecture)
    config = SSASTConfig(
        **architecture,
        freq_stride=architecture["patch_freq"],
        time_stride=architecture["patch_time"],
        num_mel_bins=int(state_dict["p_input_fdim"]),
        max_length=int(state_dict["p_input_tdim"]),
        **config_kwargs,
    )
    model = SSASTForPreTraining(config)
    model.load_state_dict(_to_hf_state_dict(state_dict), strict=True)
    return model.eval()


def classifier_from_pretraining_model(model: SSASTForPreTraining, **kwargs) -> SSASTForAudioClassification:
    """
    Builds an [`SSASTForAudioClassification`] from a (pretrained) [`SSASTForPreTraining`], e.g. the output folder of
    `scripts/pretrain.py`, exactly as from an original pretraining checkpoint: new patch strides and input length,
    positional embeddings cut or interpolated, heads and mask embedding dropped. `kwargs` are those of
    [`from_original_checkpoint`] (`freq_stride`, `time_stride`, `max_length`, `num_labels`, `pooling`, config
    fields).
    """
    kwargs.setdefault("layer_norm_eps", model.config.layer_norm_eps)
    kwargs.setdefault("hidden_act", model.config.hidden_act)
    if getattr(model.config, "source_checkpoint", None):  # where the pretrained weights came from
        kwargs.setdefault("source_checkpoint", model.config.source_checkpoint)
    return from_original_checkpoint(to_original_checkpoint(model), num_mel_bins=model.config.num_mel_bins, **kwargs)


def to_original_checkpoint(model: SSASTForAudioClassification | SSASTForPreTraining) -> dict[str, torch.Tensor]:
    """
    The state dict the original code would save for this model: for [`SSASTForPreTraining`] a pretraining checkpoint
    (`module.` keys, `p_input_fdim`/`p_input_tdim`, loadable by the original fine-tuning code), for
    [`SSASTForAudioClassification`] a fine-tuned one (`v.*`, `mlp_head.*`). timm's unused ImageNet heads are left out,
    as the original fine-tuning code loads with `strict=False`.
    """
    state_dict = {}
    for key, value in model.state_dict().items():
        original_key = _rename(key, _TO_ORIGINAL)
        if original_key is None:
            raise ValueError(f"{key!r} has no counterpart in the original checkpoint format.")
        state_dict[original_key] = value.detach().clone()
    if isinstance(model, SSASTForPreTraining):
        state_dict["p_input_fdim"] = torch.tensor(model.config.num_mel_bins)
        state_dict["p_input_tdim"] = torch.tensor(model.config.max_length)
        state_dict = {f"module.{key}": value for key, value in state_dict.items()}
    return state_dict
