# Copyright 2026 The gtzan-hf authors. Licensed under the BSD-3-Clause licence.
"""PyTorch SSAST (Self-Supervised Audio Spectrogram Transformer, Gong et al., AAAI 2022) model."""

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn
from transformers import PreTrainedModel
from transformers import initialization as init
from transformers.activations import ACT2FN
from transformers.modeling_layers import GradientCheckpointingLayer
from transformers.modeling_outputs import BaseModelOutputWithPooling, SequenceClassifierOutput
from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS
from transformers.processing_utils import Unpack
from transformers.utils import ModelOutput, TransformersKwargs
from transformers.utils.generic import can_return_tuple
from transformers.utils.output_capturing import capture_outputs

from .configuration_ssast import SSASTConfig

# Side lengths of the square blocks grown by cluster masking, drawn once per sample as in the original (3 to 5).
CLUSTER_SIZES = (3, 4, 5)


@dataclass
class SSASTForPreTrainingOutput(ModelOutput):
    r"""
    Output of [`SSASTForPreTraining`].

    Args:
        loss (`torch.FloatTensor` of shape `()`):
            Joint objective `mpc_loss + config.mpg_loss_weight * mpg_loss`.
        mpc_loss (`torch.FloatTensor` of shape `()`):
            Masked patch classification loss: InfoNCE between the predicted and the true masked patches of each
            sample, the other masked patches of the sample being the negatives.
        mpg_loss (`torch.FloatTensor` of shape `()`):
            Masked patch reconstruction (generation) loss: mean squared error over the masked patches.
        mpc_accuracy (`torch.FloatTensor` of shape `()`):
            Fraction of the predictions that their own patch ranks first among the sample's masked patches (the
            original's accuracy), in [0, 1].
        bool_masked_pos (`torch.BoolTensor` of shape `(batch_size, num_patches)`):
            The patches that were masked.
        hidden_states (`tuple(torch.FloatTensor)`, *optional*):
            The embeddings and each layer's output, each of shape `(batch_size, sequence_length, hidden_size)`.
        attentions (`tuple(torch.FloatTensor)`, *optional*):
            Each layer's attention weights, of shape `(batch_size, num_heads, sequence_length, sequence_length)`.
    """

    loss: torch.FloatTensor | None = None
    mpc_loss: torch.FloatTensor | None = None
    mpg_loss: torch.FloatTensor | None = None
    mpc_accuracy: torch.FloatTensor | None = None
    bool_masked_pos: torch.BoolTensor | None = None
    hidden_states: tuple[torch.FloatTensor, ...] | None = None
    attentions: tuple[torch.FloatTensor, ...] | None = None


class SSASTPatchEmbeddings(nn.Module):
    """
    Turns `input_values` of shape `(batch_size, max_length, num_mel_bins)` into patch embeddings of shape
    `(batch_size, num_patches, hidden_size)`, frequency-major (patch `f * time_patches + t`), as the original.
    """

    def __init__(self, config: SSASTConfig):
        super().__init__()
        self.projection = nn.Conv2d(
            1,
            config.hidden_size,
            kernel_size=(config.patch_freq, config.patch_time),
            stride=(config.freq_stride, config.time_stride),
        )

    def forward(self, input_values: torch.Tensor) -> torch.Tensor:
        spectrogram = input_values.unsqueeze(1).transpose(2, 3)  # (batch, 1, mel bins, frames)
        return self.projection(spectrogram).flatten(2).transpose(1, 2)


class SSASTEmbeddings(nn.Module):
    """
    Class token(s), patch embeddings and positional embeddings; with `use_mask_token`, a learnable embedding that
    replaces the masked patches (for pretraining).
    """

    def __init__(self, config: SSASTConfig, use_mask_token: bool = False):
        super().__init__()
        self.cls_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size))
        self.distillation_token = (
            nn.Parameter(torch.zeros(1, 1, config.hidden_size)) if config.num_cls_tokens == 2 else None
        )
        self.mask_token = nn.Parameter(torch.zeros(1, 1, config.hidden_size)) if use_mask_token else None
        self.patch_embeddings = SSASTPatchEmbeddings(config)
        self.position_embeddings = nn.Parameter(
            torch.zeros(1, config.num_patches + config.num_cls_tokens, config.hidden_size)
        )
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(self, input_values: torch.Tensor, bool_masked_pos: torch.BoolTensor | None = None) -> torch.Tensor:
        embeddings = self.patch_embeddings(input_values)
        if bool_masked_pos is not None:
            embeddings = torch.where(bool_masked_pos.unsqueeze(-1), self.mask_token.to(embeddings.dtype), embeddings)
        batch_size = embeddings.shape[0]
        class_tokens = [self.cls_token.expand(batch_size, -1, -1)]
        if self.distillation_token is not None:
            class_tokens.append(self.distillation_token.expand(batch_size, -1, -1))
        embeddings = torch.cat([*class_tokens, embeddings], dim=1) + self.position_embeddings
        return self.dropout(embeddings)


def eager_attention_forward(
    module: nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float,
    dropout: float = 0.0,
    **kwargs: Unpack[TransformersKwargs],
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    Attention in plain PyTorch operations, the only implementation that returns the weights.

    Args:
        query, key, value (`torch.Tensor` of shape `(batch_size, num_heads, sequence_length, head_dim)`).

    Returns:
        The context, of shape `(batch_size, sequence_length, num_heads, head_dim)`, and the attention weights, of shape
        `(batch_size, num_heads, sequence_length, sequence_length)`.
    """
    attn_weights = torch.matmul(query, key.transpose(2, 3)) * scaling
    if attention_mask is not None:
        attn_weights = attn_weights + attention_mask
    attn_weights = nn.functional.softmax(attn_weights, dim=-1, dtype=torch.float32).to(query.dtype)
    attn_weights = nn.functional.dropout(attn_weights, p=dropout, training=module.training)
    attn_output = torch.matmul(attn_weights, value).transpose(1, 2).contiguous()
    return attn_output, attn_weights


class SSASTSelfAttention(nn.Module):
    """
    Multi-head self-attention with a fused query/key/value projection, as in the original (timm) blocks. The attention
    itself is `config._attn_implementation` (`"eager"`, `"sdpa"`, `"flex_attention"`, `"flash_attention_*"`).
    """

    def __init__(self, config: SSASTConfig):
        super().__init__()
        self.config = config
        self.num_heads = config.num_attention_heads
        self.head_dim = config.hidden_size // config.num_attention_heads
        self.scaling = self.head_dim**-0.5
        self.dropout_prob = config.attention_probs_dropout_prob
        self.is_causal = False  # read by the sdpa and flash implementations
        self.qkv = nn.Linear(config.hidden_size, 3 * config.hidden_size, bias=config.qkv_bias)
        self.out_proj = nn.Linear(config.hidden_size, config.hidden_size)

    def forward(
        self,
        hidden_states: torch.Tensor,
        token_sizes: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor]:
        """`hidden_states` of shape `(batch_size, sequence_length, hidden_size)` -> the same shape, the attention
        weights (with `output_attentions`) of shape `(batch_size, num_heads, sequence_length, sequence_length)`, and
        the keys, of shape `(batch_size, num_heads, sequence_length, head_dim)` (token merging's similarity).
        `token_sizes` `(batch_size, sequence_length)`: how many patches each token holds after token merging; a token
        of `n` patches is attended to as `n` copies of it would be (proportional attention: `log n` added to the
        scores)."""
        batch_size, seq_length, hidden_size = hidden_states.shape
        qkv = self.qkv(hidden_states).view(batch_size, seq_length, 3, self.num_heads, self.head_dim)
        query, key, value = qkv.permute(2, 0, 3, 1, 4).unbind(0)  # each (batch, heads, seq, head_dim)
        # Only the eager implementation computes the weights: use it for the calls that ask for them.
        implementation = "eager" if kwargs.get("output_attentions") else self.config._attn_implementation
        attention_interface: Callable = ALL_ATTENTION_FUNCTIONS.get_interface(implementation, eager_attention_forward)
        bias = None if token_sizes is None else token_sizes.log()[:, None, None, :].to(query.dtype)
        context, attn_weights = attention_interface(
            self,
            query,
            key,
            value,
            bias,
            dropout=self.dropout_prob if self.training else 0.0,
            scaling=self.scaling,
            **kwargs,
        )
        return self.out_proj(context.reshape(batch_size, seq_length, hidden_size)), attn_weights, key


class SSASTMLP(nn.Module):
    def __init__(self, config: SSASTConfig):
        super().__init__()
        self.fc1 = nn.Linear(config.hidden_size, config.intermediate_size)
        self.activation_fn = ACT2FN[config.hidden_act]
        self.fc2 = nn.Linear(config.intermediate_size, config.hidden_size)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.activation_fn(self.fc1(hidden_states)))


class SSASTLayer(GradientCheckpointingLayer):
    """A pre-norm transformer block: `x + attention(norm(x))`, then `x + mlp(norm(x))`; with token merging, the tokens
    are merged between the two ([`merge_tokens`])."""

    def __init__(self, config: SSASTConfig):
        super().__init__()
        self.num_cls_tokens = config.num_cls_tokens
        self.layernorm_before = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.attention = SSASTSelfAttention(config)
        self.layernorm_after = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.mlp = SSASTMLP(config)
        self.dropout = nn.Dropout(config.hidden_dropout_prob)

    def forward(
        self,
        hidden_states: torch.Tensor,
        token_sizes: torch.Tensor | None = None,
        token_merging: int = 0,
        **kwargs: Unpack[TransformersKwargs],
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """`hidden_states` `(batch_size, sequence_length, hidden_size)` and their `token_sizes` -> the block's output,
        `token_merging` tokens fewer (at most half of the patch tokens), and its tokens' sizes."""
        attention_output, _, key = self.attention(self.layernorm_before(hidden_states), token_sizes, **kwargs)
        hidden_states = hidden_states + self.dropout(attention_output)
        # as ToMe: before the MLP, so that it runs on the merged tokens; similar keys, similar tokens
        if token_merging:
            hidden_states, token_sizes = merge_tokens(
                hidden_states, token_sizes, token_merging, self.num_cls_tokens, metric=key.mean(1)
            )
        return hidden_states + self.dropout(self.mlp(self.layernorm_after(hidden_states))), token_sizes


def merge_tokens(
    hidden_states: torch.Tensor,
    token_sizes: torch.Tensor | None,
    num_merged: int,
    num_protected: int,
    metric: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """
    ToMe's bipartite soft matching (Bolya et al., ICLR 2023): the tokens after the first `num_protected` (the class
    tokens, kept as they are) are split alternately into two sets; each token of the first set is matched with its
    most similar token of the second (cosine similarity of their `metric`), and the `num_merged` best-matched ones (at
    most half of the tokens) are merged into their match as the mean of the patches both hold (weighted by
    `token_sizes`).

    Args:
        hidden_states (`torch.Tensor` of shape `(batch_size, sequence_length, hidden_size)`).
        token_sizes (`torch.Tensor` of shape `(batch_size, sequence_length)`, *optional*): patches per token, float32
            (default: one each).
        metric (`torch.Tensor` of shape `(batch_size, sequence_length, channels)`, *optional*): what the similarity
            is computed on (default: `hidden_states`; the blocks give their attention keys, averaged over the heads).

    Returns:
        The merged tokens, of shape `(batch_size, sequence_length - num_merged, hidden_size)` (class tokens first,
        then the unmerged tokens of the first set, then the second set), and their sizes, of shape
        `(batch_size, sequence_length - num_merged)`.
    """
    if token_sizes is None:
        token_sizes = hidden_states.new_ones(hidden_states.shape[:2], dtype=torch.float32)
    protected, tokens = hidden_states[:, :num_protected], hidden_states[:, num_protected:]
    sizes = token_sizes[:, num_protected:, None]
    num_merged = min(num_merged, tokens.shape[1] // 2)
    if num_merged == 0:
        return hidden_states, token_sizes
    metric = (hidden_states if metric is None else metric)[:, num_protected:]
    metric = metric / metric.norm(dim=-1, keepdim=True)
    scores = metric[:, ::2] @ metric[:, 1::2].transpose(1, 2)  # (batch, first set, second set)
    best_score, best_match = scores.max(dim=-1)
    order = best_score.argsort(dim=-1, descending=True)[..., None]
    kept, merged = order[:, num_merged:], order[:, :num_merged]
    targets = best_match[..., None].gather(1, merged)

    def merge(values: torch.Tensor) -> torch.Tensor:
        """`(batch, tokens, channels)` -> the first set's kept rows, then the second set's with the merged added."""
        channels = values.shape[-1]
        first, second = values[:, ::2], values[:, 1::2]
        moved = first.gather(1, merged.expand(-1, -1, channels))
        second = second.scatter_add(1, targets.expand(-1, -1, channels), moved)
        return torch.cat([first.gather(1, kept.expand(-1, -1, channels)), second], dim=1)

    merged_sizes = merge(sizes)
    tokens = (merge(tokens.float() * sizes) / merged_sizes).to(hidden_states.dtype)
    return torch.cat([protected, tokens], dim=1), torch.cat([token_sizes[:, :num_protected], merged_sizes[..., 0]], 1)


class SSASTEncoder(nn.Module):
    def __init__(self, config: SSASTConfig):
        super().__init__()
        self.config = config
        self.layer = nn.ModuleList([SSASTLayer(config) for _ in range(config.num_hidden_layers)])

    def forward(
        self, hidden_states: torch.Tensor, token_merging: int = 0, **kwargs: Unpack[TransformersKwargs]
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The blocks, each but the last merging `token_merging` tokens ([`SSASTLayer`]); returns the last block's
        output and how many patches each of its tokens holds (`None` without merging)."""
        token_sizes = None
        last = len(self.layer) - 1
        for index, layer in enumerate(self.layer):
            merging = token_merging if index < last else 0
            hidden_states, token_sizes = layer(hidden_states, token_sizes, merging, **kwargs)
        return hidden_states, token_sizes


class SSASTPreTrainedModel(PreTrainedModel):
    config: SSASTConfig
    base_model_prefix = "ssast"
    main_input_name = "input_values"
    input_modalities = ("audio",)
    supports_gradient_checkpointing = True
    _no_split_modules = ["SSASTEmbeddings", "SSASTLayer"]
    _supports_sdpa = True
    _supports_flash_attn = True
    _supports_flex_attn = True
    _supports_attention_backend = True
    _can_record_outputs = {"hidden_states": SSASTLayer, "attentions": SSASTSelfAttention}
    # The losses are batch means, given no `num_items_in_batch`: the Trainer scales them for gradient accumulation.
    accepts_loss_kwargs = False

    def _init_weights(self, module: nn.Module) -> None:
        std = self.config.initializer_range
        if isinstance(module, (nn.Linear, nn.Conv2d)):
            init.trunc_normal_(module.weight, std=std)
            if module.bias is not None:
                init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            init.ones_(module.weight)
            init.zeros_(module.bias)
        elif isinstance(module, SSASTEmbeddings):
            init.trunc_normal_(module.cls_token, std=std)
            init.trunc_normal_(module.position_embeddings, std=std)
            if module.distillation_token is not None:
                init.trunc_normal_(module.distillation_token, std=std)
            if module.mask_token is not None:
                init.xavier_normal_(module.mask_token)

    def layer_ids(self) -> dict[str, int]:
        """
        Depth of each parameter, for layer-wise learning rates: 0 for the embeddings, `i + 1` for block `i`,
        `num_hidden_layers` for the final layer norm (it normalises the last block's output, and trains with it), and
        `num_hidden_layers + 1`, the deepest, for the head(s).
        """
        encoder, num_layers = self.base_model, self.config.num_hidden_layers
        stages = [encoder.embeddings, *encoder.encoder.layer]
        depths = {id(parameter): depth for depth, stage in enumerate(stages) for parameter in stage.parameters()}
        depths |= {id(parameter): num_layers for parameter in encoder.layernorm.parameters()}
        return {name: depths.get(id(parameter), num_layers + 1) for name, parameter in self.named_parameters()}

    def no_weight_decay(self) -> set[str]:
        """
        Parameters trained without weight decay: biases and norm weights (1-D), and the embeddings' own parameters
        (positions, class, distillation and mask tokens), which carry no scale to shrink.
        """
        embeddings = self.base_model.embeddings
        learned_embeddings = {id(parameter) for parameter in embeddings.parameters(recurse=False)}
        return {
            name
            for name, parameter in self.named_parameters()
            if parameter.ndim <= 1 or id(parameter) in learned_embeddings
        }

    def _check_input_values(self, input_values: torch.Tensor) -> None:
        expected = (self.config.max_length, self.config.num_mel_bins)
        if input_values.ndim != 3 or tuple(input_values.shape[1:]) != expected:
            raise ValueError(
                f"input_values must have shape (batch_size, frames, mel_bins) = (batch_size, {expected[0]}, "
                f"{expected[1]}) for this model (config.max_length={expected[0]} frames, config.num_mel_bins="
                f"{expected[1]} bins), got {tuple(input_values.shape)}. The feature extractor's max_length and "
                "num_mel_bins must match the model's config."
            )


class SSASTModel(SSASTPreTrainedModel):
    """
    The bare SSAST encoder: patch embeddings, transformer blocks and a final layer norm, with a pooled output chosen by
    `config.pooling`.
    """

    def __init__(self, config: SSASTConfig, use_mask_token: bool = False):
        super().__init__(config)
        self.embeddings = SSASTEmbeddings(config, use_mask_token=use_mask_token)
        self.encoder = SSASTEncoder(config)
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.layer_norm_eps)
        self.post_init()

    def get_input_embeddings(self) -> SSASTPatchEmbeddings:
        return self.embeddings.patch_embeddings

    def pool(
        self, sequence_output: torch.Tensor, pooling: str | None = None, token_sizes: torch.Tensor | None = None
    ) -> torch.Tensor:
        """
        A clip representation of `sequence_output` of shape `(batch_size, num_cls_tokens + num_patches, hidden_size)`
        (class tokens first): `"mean"`, the mean of the patch tokens, or `"cls"`, the mean of the class tokens, of
        shape `(batch_size, hidden_size)`; or `"patches"`, the patch tokens flattened frequency-major, of shape
        `(batch_size, num_patches * hidden_size)`. `pooling` defaults to `config.pooling`. After token merging,
        `token_sizes` `(batch_size, sequence_length)` weighs each token's part in the mean by the patches it holds.
        """
        pooling = pooling or self.config.pooling
        num_cls_tokens = self.config.num_cls_tokens
        if pooling == "mean" and token_sizes is not None:
            weights = token_sizes[:, num_cls_tokens:, None].to(sequence_output.dtype)
            return (sequence_output[:, num_cls_tokens:] * weights).sum(dim=1) / weights.sum(dim=1)
        if pooling == "mean":
            return sequence_output[:, num_cls_tokens:].mean(dim=1)
        if pooling == "cls":
            return sequence_output[:, :num_cls_tokens].mean(dim=1)
        if pooling == "patches" and token_sizes is not None:
            raise ValueError("pooling='patches' needs every patch token: set config.token_merging to 0.")
        if pooling == "patches":
            return sequence_output[:, num_cls_tokens:].flatten(1)
        raise ValueError(f"Unknown pooling {pooling!r}: choose 'mean', 'cls' or 'patches'.")

    @capture_outputs(tie_last_hidden_states=False)
    def forward(
        self,
        input_values: torch.Tensor,
        bool_masked_pos: torch.BoolTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> BaseModelOutputWithPooling:
        r"""
        Args:
            input_values (`torch.FloatTensor` of shape `(batch_size, max_length, num_mel_bins)`):
                Normalised log-mel filter banks, as [`SSASTFeatureExtractor`] returns them.
            bool_masked_pos (`torch.BoolTensor` of shape `(batch_size, num_patches)`, *optional*):
                Patches to replace by the mask embedding (only for a model built with `use_mask_token=True`).
            attention_mask (`torch.LongTensor` of shape `(batch_size, max_length)`, *optional*):
                Accepted for transformers' clients, which pass the frame mask of [`~SequenceFeatureExtractor.pad`]
                (the `Trainer`'s default collator, the example scripts), and not used: every input is `max_length`
                frames, padding included, and SSAST attends to all of them, as the released checkpoints were trained.
            output_attentions (`bool`, *optional*):
                Whether to return each layer's attention weights (computed by the eager implementation, whatever
                `config._attn_implementation` is).
            output_hidden_states (`bool`, *optional*):
                Whether to return the embeddings and each layer's output (before the final layer norm).
            return_dict (`bool`, *optional*):
                Whether to return a [`~transformers.modeling_outputs.BaseModelOutputWithPooling`] or a tuple.

        Returns:
            [`~transformers.modeling_outputs.BaseModelOutputWithPooling`]: `last_hidden_state` of shape
            `(batch_size, num_cls_tokens + num_patches, hidden_size)` after the final layer norm, class tokens first
            (in eval mode with token merging, `config.token_merging` fewer for each block but the last, at most half
            of the patch tokens each);
            `pooler_output` of shape `(batch_size, hidden_size)`: the mean of the patch tokens (`pooling="mean"`) or of
            the class tokens (`pooling="cls"`).
        """
        self._check_input_values(input_values)
        if bool_masked_pos is not None and self.embeddings.mask_token is None:
            raise ValueError("bool_masked_pos needs a model built with use_mask_token=True (SSASTForPreTraining).")

        # token merging serves inference: training and masked pretraining see every token
        token_merging = 0 if self.training or bool_masked_pos is not None else self.config.token_merging
        hidden_states, token_sizes = self.encoder(
            self.embeddings(input_values, bool_masked_pos), token_merging=token_merging, **kwargs
        )
        sequence_output = self.layernorm(hidden_states)
        return BaseModelOutputWithPooling(
            last_hidden_state=sequence_output, pooler_output=self.pool(sequence_output, token_sizes=token_sizes)
        )


class SSASTClassificationHead(nn.Module):
    """LayerNorm + Linear over the pooled output (the original `mlp_head`)."""

    def __init__(self, config: SSASTConfig):
        super().__init__()
        self.layernorm = nn.LayerNorm(config.hidden_size, eps=config.classifier_layer_norm_eps)
        self.dropout = nn.Dropout(config.classifier_dropout_prob)
        self.dense = nn.Linear(config.hidden_size, config.num_labels)

    def forward(self, pooled_output: torch.Tensor) -> torch.Tensor:
        return self.dense(self.dropout(self.layernorm(pooled_output)))


class SSASTForAudioClassification(SSASTPreTrainedModel):
    """SSAST with a classification head on the pooled output, e.g. for GTZAN genres or AudioSet tags."""

    def __init__(self, config: SSASTConfig):
        super().__init__(config)
        self.num_labels = config.num_labels
        self.ssast = SSASTModel(config)
        self.classifier = SSASTClassificationHead(config)
        self.post_init()

    @can_return_tuple
    def forward(
        self,
        input_values: torch.Tensor,
        labels: torch.Tensor | None = None,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> SequenceClassifierOutput:
        r"""
        Args:
            input_values (`torch.FloatTensor` of shape `(batch_size, max_length, num_mel_bins)`):
                Normalised log-mel filter banks, as [`SSASTFeatureExtractor`] returns them.
            labels (`torch.LongTensor` of shape `(batch_size,)` or `torch.FloatTensor` of shape
                `(batch_size, num_labels)`, *optional*):
                The loss follows `config.problem_type` as transformers' `ASTForAudioClassification`'s does: class
                indices (cross-entropy) for `"single_label_classification"`, multi-hot targets (binary cross-entropy)
                for `"multi_label_classification"`, targets (mean squared error) for `"regression"`; unset, it is
                inferred from `num_labels` and the labels' dtype, as transformers does. Training choices such as label
                smoothing or mixup's class probabilities are the Trainer's
                ([`~gtzan_hf.training.trainer.AudioClassificationTrainer`]).
            attention_mask (`torch.LongTensor` of shape `(batch_size, max_length)`, *optional*):
                Not used; see [`SSASTModel.forward`].
            output_attentions (`bool`, *optional*):
                Whether to return each layer's attention weights.
            output_hidden_states (`bool`, *optional*):
                Whether to return the embeddings and each layer's output.
            return_dict (`bool`, *optional*):
                Whether to return a [`~transformers.modeling_outputs.SequenceClassifierOutput`] or a tuple.

        Returns:
            [`~transformers.modeling_outputs.SequenceClassifierOutput`] with `logits` of shape
            `(batch_size, num_labels)` and `loss` of shape `()` when `labels` are given.
        """
        outputs = self.ssast(input_values, **kwargs)
        logits = self.classifier(outputs.pooler_output)
        loss = None if labels is None else self.loss_function(labels, logits, self.config)
        return SequenceClassifierOutput(
            loss=loss, logits=logits, hidden_states=outputs.hidden_states, attentions=outputs.attentions
        )


class SSASTPredictionHead(nn.Module):
    """Linear-ReLU-Linear from the hidden size to a flattened patch (the original `cpredlayer`/`gpredlayer`)."""

    def __init__(self, config: SSASTConfig):
        super().__init__()
        self.dense = nn.Linear(config.hidden_size, config.hidden_size)
        self.activation = nn.ReLU()
        self.decoder = nn.Linear(config.hidden_size, config.patch_freq * config.patch_time)

    def forward(self, hidden_states: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.activation(self.dense(hidden_states)))


class SSASTForPreTraining(SSASTPreTrainedModel):
    """
    SSAST with the self-supervised heads of the paper: masked patch classification (`mpc_head`, InfoNCE) and masked
    patch reconstruction (`mpg_head`, MSE), both on the encoder outputs at the masked patches, trained jointly as
    `mpc_loss + config.mpg_loss_weight * mpg_loss`. Patches do not overlap (stride = patch shape), as in the original.

    The two objectives share one masked forward pass, as in the paper's formulation; the original code drew an
    independent mask for each objective and ran the encoder twice.
    """

    def __init__(self, config: SSASTConfig):
        super().__init__(config)
        if (config.freq_stride, config.time_stride) != (config.patch_freq, config.patch_time):
            raise ValueError(
                f"Pretraining needs non-overlapping patches: freq_stride/time_stride ({config.freq_stride}, "
                f"{config.time_stride}) must equal patch_freq/patch_time ({config.patch_freq}, {config.patch_time})."
            )
        if config.num_masked_patches > config.num_patches:
            raise ValueError(
                f"num_masked_patches ({config.num_masked_patches}) exceeds the {config.num_patches} patches of a "
                f"{config.max_length}-frame input."
            )
        self.ssast = SSASTModel(config, use_mask_token=True)
        self.mpc_head = SSASTPredictionHead(config)
        self.mpg_head = SSASTPredictionHead(config)
        self.post_init()

    def generate_mask(self, batch_size: int, generator: torch.Generator | None = None) -> torch.BoolTensor:
        """
        Draws `config.num_masked_patches` patches to mask per sample: random patches (`masking="random"`, for frames)
        or square clusters of 3x3 to 5x5 patches (`masking="cluster"`, for 16x16 patches), one cluster size per sample.

        Returns:
            `torch.BoolTensor` of shape `(batch_size, num_patches)` with exactly `num_masked_patches` `True` per row.
        """
        num_masked = self.config.num_masked_patches
        if self.config.masking == "random":
            order = torch.rand(batch_size, self.config.num_patches, generator=generator).argsort(dim=1)
            mask = torch.zeros(batch_size, self.config.num_patches, dtype=torch.bool)
            return mask.scatter_(1, order[:, :num_masked], True)
        frequency_patches, time_patches = self.config.patch_grid
        masks = []
        for _ in range(batch_size):
            size = CLUSTER_SIZES[int(torch.randint(len(CLUSTER_SIZES), (1,), generator=generator))]
            mask = torch.zeros(frequency_patches, time_patches, dtype=torch.bool)
            count = 0
            while count < num_masked:
                f0 = int(torch.randint(frequency_patches, (1,), generator=generator))
                t0 = int(torch.randint(time_patches, (1,), generator=generator))
                # Fill the block's not-yet-masked patches, stopping exactly at num_masked.
                new = (~mask[f0 : f0 + size, t0 : t0 + size]).nonzero()[: num_masked - count]
                mask[new[:, 0] + f0, new[:, 1] + t0] = True
                count += len(new)
            masks.append(mask.flatten())
        return torch.stack(masks)

    @can_return_tuple
    def forward(
        self,
        input_values: torch.Tensor,
        bool_masked_pos: torch.BoolTensor | None = None,
        attention_mask: torch.Tensor | None = None,
        **kwargs: Unpack[TransformersKwargs],
    ) -> SSASTForPreTrainingOutput:
        r"""
        Args:
            input_values (`torch.FloatTensor` of shape `(batch_size, max_length, num_mel_bins)`):
                Normalised log-mel filter banks, as [`SSASTFeatureExtractor`] returns them.
            bool_masked_pos (`torch.BoolTensor` of shape `(batch_size, num_patches)`, *optional*):
                Patches to mask, the same number in every row; drawn with [`~SSASTForPreTraining.generate_mask`] when
                not given.
            attention_mask (`torch.LongTensor` of shape `(batch_size, max_length)`, *optional*):
                Not used; see [`SSASTModel.forward`].
            output_attentions (`bool`, *optional*):
                Whether to return each layer's attention weights.
            output_hidden_states (`bool`, *optional*):
                Whether to return the embeddings and each layer's output.
            return_dict (`bool`, *optional*):
                Whether to return a [`SSASTForPreTrainingOutput`] or a tuple.
        """
        batch_size = input_values.shape[0]
        if bool_masked_pos is None:
            bool_masked_pos = self.generate_mask(batch_size).to(input_values.device)
        num_masked = bool_masked_pos.sum(dim=1)
        if bool_masked_pos.shape != (batch_size, self.config.num_patches) or (num_masked != num_masked[0]).any():
            raise ValueError(
                f"bool_masked_pos must have shape (batch_size, num_patches) = ({batch_size}, "
                f"{self.config.num_patches}) with the same number of masked patches in every row, got shape "
                f"{tuple(bool_masked_pos.shape)} with {num_masked.tolist()} masked."
            )

        outputs = self.ssast(input_values, bool_masked_pos=bool_masked_pos, **kwargs)
        # Indices of the masked patches, (batch, num_masked), in increasing order within each row.
        masked_index = bool_masked_pos.nonzero()[:, 1].view(batch_size, -1)
        patch_tokens = outputs.last_hidden_state[:, self.config.num_cls_tokens :]
        masked_tokens = patch_tokens.gather(1, masked_index.unsqueeze(-1).expand(-1, -1, patch_tokens.shape[-1]))
        # The flattened input patches, (batch, num_patches, patch_freq * patch_time), are the targets of both heads.
        patches = nn.functional.unfold(
            input_values.unsqueeze(1).transpose(2, 3),
            kernel_size=(self.config.patch_freq, self.config.patch_time),
            stride=(self.config.freq_stride, self.config.time_stride),
        ).transpose(1, 2)
        targets = patches.gather(1, masked_index.unsqueeze(-1).expand(-1, -1, patches.shape[-1]))

        # InfoNCE within each sample: scores[b, i, j] = <patch i, prediction j>, normalised over predictions.
        scores = targets @ self.mpc_head(masked_tokens).transpose(1, 2)
        mpc_loss = -torch.log_softmax(scores, dim=-1).diagonal(dim1=1, dim2=2).mean()
        # As the original: prediction j is right when, of all masked patches, its own gives it the highest probability
        # (each patch's probabilities normalised over the predictions).
        positions = torch.arange(scores.shape[1], device=scores.device)
        mpc_accuracy = (scores.softmax(dim=-1).argmax(dim=1) == positions).float().mean()
        mpg_loss = nn.functional.mse_loss(self.mpg_head(masked_tokens), targets)
        loss = mpc_loss + self.config.mpg_loss_weight * mpg_loss

        return SSASTForPreTrainingOutput(
            loss=loss,
            mpc_loss=mpc_loss,
            mpg_loss=mpg_loss,
            mpc_accuracy=mpc_accuracy,
            bool_masked_pos=bool_masked_pos,
            hidden_states=outputs.hidden_states,
            attentions=outputs.attentions,
        )


SSASTModel.register_for_auto_class("AutoModel")
SSASTForAudioClassification.register_for_auto_class("AutoModelForAudioClassification")
SSASTForPreTraining.register_for_auto_class("AutoModelForPreTraining")

__all__ = [
    "SSASTForAudioClassification",
    "SSASTForPreTraining",
    "SSASTModel",
    "SSASTPreTrainedModel",
]
