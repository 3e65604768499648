"""
The one prediction loop over windows: batches of normalised filter-bank windows in, what a step computes out, on
the device and in the dtype of the model (any serving form), gathered across processes when an `accelerate`
`Accelerator` is given. Evaluation reports ([`predict`]), whole-song inference
([`~gtzan_hf.inference.songs.classify_song`]) and embeddings (`scripts/embed.py`) run it.
"""

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..errors import UserError
from .voting import softmax

# What a batch may carry besides `input_values`: passed through to the outputs, gathered like them.
PASSED_THROUGH = ("labels", "song_index")


@dataclass
class WindowPredictions:
    """What a classifier made of a set of windows, one row per window."""

    logits: np.ndarray  # (windows, labels)
    labels: np.ndarray | None = None  # (windows,) true classes, where known
    song_index: np.ndarray | None = None  # (windows,) the song each window belongs to
    embeddings: np.ndarray | None = None  # (windows, hidden): the classifier head's input

    def probabilities(self) -> np.ndarray:
        return softmax(self.logits)


def placement(model: torch.nn.Module) -> tuple[torch.device, torch.dtype]:
    """Where a model's weights are and in which dtype, for its inputs (e.g. bfloat16); serving forms without torch
    parameters (ONNX Runtime) take float32 on the CPU."""
    parameter = next(model.parameters(), None)
    return (parameter.device, parameter.dtype) if parameter is not None else (torch.device("cpu"), torch.float32)


@torch.inference_mode()
def iterate_predictions(
    step: Callable[[torch.Tensor], dict[str, torch.Tensor]],
    batches: Iterable[dict],
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
    accelerator=None,
) -> Iterator[dict[str, np.ndarray]]:
    """
    Run `step` on every batch, one batch at a time (for outputs too large to hold, e.g. patch embeddings).

    Args:
        step: `input_values` `(batch, frames, mel_bins)` on `device` in `dtype` -> named output tensors, one row per
            window.
        batches: dicts with `input_values` and optionally `labels` and `song_index` (passed through).
        accelerator: an `accelerate.Accelerator` whose processes each ran their share of the batches (a dataloader it
            prepared): each batch's outputs are gathered from all of them, the padding of the last one dropped.

    Yields:
        The outputs of each batch (float32 where floating) and its passed-through fields, as numpy arrays.
    """
    for batch in batches:
        outputs = step(batch["input_values"].to(device, dtype))
        outputs = {name: value.float() if value.is_floating_point() else value for name, value in outputs.items()}
        outputs |= {name: torch.as_tensor(batch[name]).to(device) for name in PASSED_THROUGH if name in batch}
        if accelerator is not None:
            outputs = accelerator.gather_for_metrics(outputs)
        yield {name: value.cpu().numpy() for name, value in outputs.items()}


def predict(
    model: torch.nn.Module, batches: Iterable[dict], embeddings: bool = False, accelerator=None
) -> WindowPredictions:
    """
    The logits of every window of `batches` (see [`iterate_predictions`]), with the windows' labels and songs where
    the batches carry them; with `embeddings`, also the input of the model's `classifier` head (the pooled SSAST
    representation, the CNN's pooled feature map), captured with a forward pre-hook.
    """
    model.eval()
    device, dtype = placement(model)

    def step(input_values: torch.Tensor) -> dict[str, torch.Tensor]:
        outputs = {"logits": model(input_values=input_values).logits}
        return outputs | ({"embeddings": captured.pop()} if embeddings else {})

    captured = []
    hook = model.classifier.register_forward_pre_hook(lambda _, args: captured.append(args[0])) if embeddings else None
    try:
        rows = list(iterate_predictions(step, batches, device, dtype, accelerator))
    finally:
        if hook is not None:
            hook.remove()
    columns = {name: np.concatenate([row[name] for row in rows]) for name in rows[0]} if rows else {}
    if not columns:
        raise UserError("No windows to predict: the dataset split is empty.")
    return WindowPredictions(**columns)
