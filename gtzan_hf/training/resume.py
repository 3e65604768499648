"""Resuming a run: which checkpoint of an output folder a run continues from, whether the folder already holds a
finished run, and what of a checkpoint can be restored: its pickled files are read as tensors only, and one that holds
other Python objects is refused in one line (the random state is left out instead, with a warning). Shared by
fine-tuning and pretraining."""

import json
import logging
import os
import pickle
import zipfile
from pathlib import Path

import torch
from safetensors import safe_open

from ..errors import UserError
from ..models.checkpoints import check_model_weights, load_tensors, refused_pickle

logger = logging.getLogger(__name__)

WEIGHTS_NAMES = ("model.safetensors", "pytorch_model.bin")
# The Trainer state that resuming unpickles besides the weights and the random state.
STATE_NAMES = ("optimizer.pt", "scheduler.pt", "scaler.pt")
NOT_RESUMABLE = (
    "This checkpoint cannot be resumed: resume from another one (--resume_from_checkpoint), or start again "
    "(--overwrite_output_dir)."
)


def is_complete_checkpoint(folder: Path) -> bool:
    """Whether a `checkpoint-N` folder was written to the end: its trainer state parses and its weights open."""
    try:
        json.loads((folder / "trainer_state.json").read_text())
        weights = next((folder / name for name in WEIGHTS_NAMES if (folder / name).is_file()), None)
        if weights is None:
            return False
        if weights.suffix == ".safetensors":
            with safe_open(weights, framework="pt") as handle:
                handle.keys()
        else:
            torch.load(weights, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(weights))
        return True
    except pickle.UnpicklingError:  # written whole, but not as tensors only: check_resumable says so
        return True
    except Exception:  # whatever the reader raises (SafetensorError, EOFError, JSONDecodeError...): not usable
        return False


def check_resumable(folder: str | os.PathLike) -> None:
    """
    Refuse, in one line naming the file, a checkpoint whose weights or Trainer state (`optimizer.pt`, `scheduler.pt`,
    `scaler.pt`) hold Python objects that could run code when loaded: resuming reads them as tensors only. The random
    state is not checked here: [`RandomStateOptional`] resumes without it.
    """
    folder = Path(folder)
    check_model_weights(folder, NOT_RESUMABLE)
    for name in STATE_NAMES:
        if (folder / name).is_file():
            load_tensors(folder / name, NOT_RESUMABLE)


class RandomStateOptional:
    """
    `Trainer` mixin: a checkpoint's random state (`rng_state*.pth`) that holds Python objects besides its numbers is
    left out with a warning instead of stopping the run. Resuming without it changes only the random draws from then
    on (dropout, crops, masks), as the Trainer itself does for a checkpoint without one; refusing would cost the whole
    run for that. transformers has no public hook for this: the one private `Trainer` method the package overrides,
    checked by name against the installed release (tests/test_trainer.py).
    """

    def _load_rng_state(self, checkpoint):
        try:
            super()._load_rng_state(checkpoint)
        except pickle.UnpicklingError as error:
            remedy = (
                "Resuming without it: the weights, optimizer and schedule are restored; only the random draws "
                "(dropout, crops, masks) differ from an uninterrupted run."
            )
            logger.warning("%s", refused_pickle(f"The random state saved in {checkpoint}", error, remedy))


def resume_checkpoint(
    output_dir: str | os.PathLike, resume_from_checkpoint: str | None = None, overwrite: bool = False
) -> str | None:
    """
    The checkpoint a run continues from: `resume_from_checkpoint` when given, else (unless `overwrite`) the newest
    complete `checkpoint-N` of `output_dir` (an incomplete one, left by a save that was killed, is skipped with a
    warning), else `None`. Logs which. A checkpoint that holds Python objects where tensors belong is refused
    ([`check_resumable`]), not skipped as an interrupted save is.
    """
    if overwrite and not resume_from_checkpoint:
        logger.info("Starting a fresh run in %s (--overwrite_output_dir): its checkpoints are overwritten", output_dir)
        return None
    if resume_from_checkpoint:
        if not is_complete_checkpoint(Path(resume_from_checkpoint)):
            raise UserError(
                f"--resume_from_checkpoint {resume_from_checkpoint} is not a complete checkpoint (trainer_state.json "
                "and model weights): name another checkpoint-N folder."
            )
        check_resumable(resume_from_checkpoint)
        logger.info("Resuming from %s", resume_from_checkpoint)
        return resume_from_checkpoint
    folders = sorted(
        (p for p in Path(output_dir).glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()),
        key=lambda p: int(p.name.split("-")[-1]),
        reverse=True,
    )
    for folder in folders:
        if is_complete_checkpoint(folder):
            check_resumable(folder)
            logger.info("Resuming from %s", folder)
            return str(folder)
        logger.warning("Skipping %s: incomplete (a save that was interrupted); it will be overwritten.", folder)
    logger.info("Starting a fresh run in %s", output_dir)
    return None


def finished_run(output_dir: str | os.PathLike, marker: str, training_args, overwrite: bool) -> bool:
    """
    Whether `output_dir` holds a run that already went as far as `training_args` ask (its final `marker` file and a
    final `trainer_state.json` at or past `max_steps`, or else `num_train_epochs`), and `overwrite` does not ask to
    redo it; says so. Asking for more steps or epochs than were run continues the run instead.
    """
    output_dir = Path(output_dir)
    state_file = output_dir / "trainer_state.json"
    if overwrite or not (output_dir / marker).is_file() or not state_file.is_file():
        return False
    state = json.loads(state_file.read_text())
    if training_args.max_steps > 0:
        done = state.get("global_step", 0) >= training_args.max_steps
    else:
        done = state.get("epoch", 0) >= training_args.num_train_epochs - 1e-6
    if done:
        logger.warning(
            "%s holds a finished run (%s): nothing to do. Pass --overwrite_output_dir to train it again, or choose "
            "another --output_dir.",
            output_dir,
            marker,
        )
    return done
