"""Resuming a run: which checkpoint of an output folder a run continues from, whether the folder already holds a
finished run, whether the checkpoint was saved by a run like this one (its classes, its model, its data settings),
and what of a checkpoint can be restored: its pickled files are read as tensors only, and one that holds other Python
objects is refused in one line (the random state is left out instead, with a warning). Shared by fine-tuning and
pretraining."""

import json
import logging
import os
import pickle
import zipfile
from pathlib import Path

import torch
from safetensors import safe_open

from ..data.splits import read_record
from ..errors import UserError
from ..models.checkpoints import check_model_weights, load_tensors, refused_pickle

logger = logging.getLogger(__name__)

WEIGHTS_NAMES = ("model.safetensors", "pytorch_model.bin")
# The Trainer state that resuming unpickles besides the weights and the random state.
STATE_NAMES = ("optimizer.pt", "scheduler.pt", "scaler.pt")
# The config fields that make a model's shape and kind: a checkpoint of other values cannot be resumed into it.
ARCHITECTURE = (
    "model_type",
    "hidden_size",
    "num_hidden_layers",
    "num_attention_heads",
    "intermediate_size",
    "channels",
    "patch_freq",
    "patch_time",
    "freq_stride",
    "time_stride",
    "max_length",
    "num_mel_bins",
    "num_cls_tokens",
    "pooling",
)
RUN_RECORD = "run_config.json"
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
    state = read_record(state_file, "the Trainer's state at the end of a run")
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


def _shown(value) -> str:
    return json.dumps(value, default=str)


def _same(name: str, saved, now) -> bool:
    if name in ("dataset", "model_name_or_path") and isinstance(saved, str) and isinstance(now, str):
        return os.path.normpath(saved) == os.path.normpath(now)  # `data/x/` is `data/x`
    return saved == now


def _class_changes(saved: list[str], now: list[str]) -> str:
    gone, new = [name for name in saved if name not in now], [name for name in now if name not in saved]
    changes = [f"{', '.join(names)} {verb}" for names, verb in ((gone, "gone"), (new, "new")) if names]
    changes = [change.replace(" gone", " is gone" if len(gone) == 1 else " are gone") for change in changes]
    changes = [change.replace(" new", " is new" if len(new) == 1 else " are new") for change in changes]
    return "; ".join(changes) or "the same classes in another order"


def check_resumed_run(
    checkpoint: str | os.PathLike,
    label_names: list[str] | None = None,
    model_config: dict | None = None,
    settings: dict | None = None,
) -> None:
    """
    Refuse, in one line naming every difference, to resume `checkpoint` into a run unlike the one that saved it:
    other classes than its head's (`label_names`, the dataset's: each output would be trained under another class's
    name), another model (`model_config`, the config the run builds: its `ARCHITECTURE` fields; a size mismatch would
    only show once the weights are loaded), or other settings than those the run recorded in its output folder's
    `run_config.json` (`settings`: the values of the flags that shape the model and the data, by name). The caller
    checks before any data is prepared, and the classes again once the files are checked.
    """
    checkpoint = Path(checkpoint)
    differences = []
    saved = read_record(
        checkpoint / "config.json", "the model settings of a checkpoint, as save_pretrained writes them"
    )
    if label_names is not None and saved.get("id2label") is not None:
        saved_labels = [saved["id2label"][str(i)] for i in range(len(saved["id2label"]))]
        if saved_labels != list(label_names):
            differences.append(
                f"the classes {', '.join(saved_labels)}, where the dataset now has {', '.join(label_names)} "
                f"({_class_changes(saved_labels, list(label_names))})"
            )
    record, flags = checkpoint.parent / RUN_RECORD, []
    if settings and record.is_file():
        recorded = read_record(record, "the settings of the run")
        flags = [
            f"--{name} {_shown(recorded[name])} (now {_shown(value)})"
            for name, value in settings.items()
            if name in recorded and not _same(name, recorded[name], value)
        ]
    differences += flags
    if model_config is not None and not flags:  # no recorded flag tells the models apart: their configs do
        shape = [key for key in ARCHITECTURE if saved.get(key) != model_config.get(key)]
        if "hidden_size" in shape:  # a model size sets its heads and MLP width too
            shape = [key for key in shape if key not in ("num_attention_heads", "intermediate_size")]
        differences += [
            f"{key} {_shown(saved.get(key))} (this run builds {_shown(model_config.get(key))})" for key in shape
        ]
    if differences:
        raise UserError(
            f"{checkpoint} cannot be resumed by this run: it was saved with {'; '.join(differences)}. Resuming would "
            "train it under other settings than its own: run with those it was saved with, or start again "
            "(--overwrite_output_dir) or in another --output_dir."
        )
