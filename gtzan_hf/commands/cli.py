"""Command-line plumbing shared by fine-tuning, pretraining, evaluation and the other entry points: presets (YAML files
in `gtzan_hf/configs/`), config files, the argument groups every data-reading command shares, resuming, and one
clear line for user errors.

Priority of argument values, lowest first: the dataclass defaults, `--preset NAME`, `--config FILE.yaml|json`, the
command line.
"""

import argparse
import dataclasses
import functools
import json
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import yaml
from safetensors import safe_open
from transformers import HfArgumentParser

logger = logging.getLogger(__name__)

CONFIGS_DIR = Path(__file__).parents[1] / "configs"
# Exceptions that carry a user's mistake (a path, a file, a flag, a split, the Hub offline), not a bug: reported as one
# line. Anything else is a bug and keeps its traceback.
USER_ERRORS = (ValueError, OSError, yaml.YAMLError)
WEIGHTS_NAMES = ("model.safetensors", "pytorch_model.bin")
# Files the commands read: a name ending so is a path, never a Hub id.
FILE_SUFFIXES = frozenset({".pth", ".pt", ".bin", ".safetensors", ".csv", ".json", ".jsonl", ".yaml", ".yml"})


@dataclass
class AudioSourceArguments:
    """Where the audio comes from and how it is prepared: shared by fine-tuning, pretraining and evaluation."""

    dataset: str | None = field(
        default=None,
        metadata={"help": "Audio data: a folder, a CSV/JSON list or a Hub dataset id (GTZAN or any other)."},
    )
    audio_column: str = field(default="audio", metadata={"help": "Audio column of a Hub dataset."})
    dataset_stats: bool = field(
        default=False,
        metadata={"help": "Normalise with the training audio's own mean/std instead of AudioSet's (from scratch)."},
    )
    generated_corpus_dir: str | None = field(
        default=None,
        metadata={
            "help": "Folder of the generated GTZAN-shaped corpus, written there on first use and used when no "
            "--dataset is given (the offline quickstart)."
        },
    )
    generate_songs_per_genre: int = field(default=30, metadata={"help": "Songs per genre of the generated corpus."})
    generate_seconds: float = field(default=30.0, metadata={"help": "Length of generated songs."})
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for the fbank cache."})
    cache_dir: str | None = field(default=None, metadata={"help": "datasets cache folder."})


@dataclass
class DataArguments(AudioSourceArguments):
    """A labelled source, its song-level split and its windows: fine-tuning, evaluation, embeddings."""

    label_column: str = field(default="genre", metadata={"help": "Label column of a Hub dataset."})
    split: str = field(
        default="random",
        metadata={
            "help": "random | fault-filtered | course-project (the course project's 799/99/101-song lists, "
            "behind its 82.2 %%) | course-project-30s (its 800/100/100 lists of Strategy B and the CNN) | kfold"
        },
    )
    split_seed: int = field(default=0, metadata={"help": "Seed of the random and k-fold splits."})
    fold: int = field(default=0, metadata={"help": "k-fold: the fold used as test split."})
    num_folds: int = field(default=10, metadata={"help": "k-fold: the number of folds."})
    crop_strategy: str = field(default="random-crop", metadata={"help": "random-crop | static (fixed windows)."})
    crop_seconds: float = field(default=10.0, metadata={"help": "Length of training crops and evaluation windows."})
    eval_segments: int | None = field(default=3, metadata={"help": "Evaluation windows per song (none: all)."})
    eval_hop_seconds: float = field(default=10.0, metadata={"help": "Hop between evaluation windows."})
    freq_mask: int = field(default=36, metadata={"help": "SpecAugment: widest frequency mask (bins); 0 disables."})
    time_mask: int = field(default=144, metadata={"help": "SpecAugment: widest time mask (frames); 0 disables."})
    spec_augment_axes: str = field(
        default="standard",
        metadata={
            "help": "standard | swapped: the course project's masks, freq_mask spanning frames and time_mask mel "
            "bins (clipped to the bins), as its code applied them."
        },
    )
    waveform_augment: bool = field(default=False, metadata={"help": "audiomentations gain/noise/pitch/stretch."})
    mixup_alpha: float = field(default=0.0, metadata={"help": "Mixup Beta(alpha, alpha); 0 disables."})


def use_dataset_stats(args: AudioSourceArguments, model_name_or_path: str | None) -> bool:
    """Whether to normalise with the training audio's own mean/std: only from scratch. A starting model keeps the
    statistics it was trained with; new ones would shift every input its weights learned to read."""
    if args.dataset_stats and model_name_or_path is not None:
        logger.warning("--dataset_stats ignored: a pretrained model keeps the statistics it was trained with.")
    return args.dataset_stats and model_name_or_path is None


def resolve_dataset(args: AudioSourceArguments) -> str:
    """
    The source to read: `--dataset` as given, or the generated corpus, written to `generated_corpus_dir` on first
    use. Only that folder is ever generated into: a mistyped `--dataset` is reported, never filled with songs.
    """
    if args.dataset is not None:
        check_local_path(args.dataset, "--dataset")
        return args.dataset
    if args.generated_corpus_dir is None:
        raise ValueError("No --dataset given: pass a GTZAN folder, a CSV/JSON list or a Hub dataset id.")
    folder = Path(args.generated_corpus_dir)
    if not folder.exists():
        from ..data.synthetic import generate_corpus

        logger.info("Writing a generated GTZAN-shaped corpus to %s", folder)
        generate_corpus(folder, args.generate_songs_per_genre, seed=0, duration=args.generate_seconds)
    return str(folder)


def load_datasets(data_args: DataArguments, feature_extractor):
    """[`build_datasets`] with the settings of `data_args` (its `dataset` resolved, see [`resolve_dataset`]): an
    [`SSASTDatasets`]. The data stack is imported here, so that commands that read no data start fast."""
    from ..data import build_datasets

    masks = (data_args.freq_mask, data_args.time_mask)
    return build_datasets(
        data_args.dataset,
        feature_extractor,
        split=data_args.split,
        seed=data_args.split_seed,
        fold=data_args.fold,
        num_folds=data_args.num_folds,
        crop_strategy=data_args.crop_strategy,
        crop_seconds=data_args.crop_seconds,
        eval_segments=data_args.eval_segments,
        eval_hop_seconds=data_args.eval_hop_seconds,
        spec_augment=masks if any(masks) else None,
        spec_augment_axes=data_args.spec_augment_axes,
        waveform_augment=data_args.waveform_augment,
        num_proc=data_args.preprocessing_num_workers,
        cache_dir=data_args.cache_dir,
        audio_column=data_args.audio_column,
        label_column=data_args.label_column,
    )


def looks_local(name: str) -> bool:
    """Whether `name` can only be a local path, not a Hub id (`owner/name`): absolute or explicitly relative, more
    than one `/`, the suffix of a file we read, or a first component that is a local folder (`runs/my-run` with
    `runs/` here)."""
    path = Path(name).expanduser()
    return (
        name.startswith((".", "~", os.sep))
        or name.count("/") > 1
        or path.suffix.lower() in FILE_SUFFIXES
        or (len(path.parts) > 1 and Path(path.parts[0]).is_dir())
    )


def check_local_path(name: str, what: str) -> None:
    """Refuse a local-looking path that does not exist before anything tries it as a Hub id."""
    if looks_local(name) and not Path(name).expanduser().exists():
        raise FileNotFoundError(f"{what} {name}: no such file or folder. Check the path (a Hub id is 'owner/name').")


def check_model_path(name: str, what: str) -> None:
    """Refuse, before any model is loaded or data prepared, a path that cannot hold a saved model: a local-looking
    path that does not exist, a file, or a folder without config.json. Hub ids pass."""
    check_local_path(name, what)
    path = Path(name).expanduser()
    expected = "expected a saved model folder (config.json and weights, such as a run's output_dir) or a Hub id"
    if path.is_file():
        raise ValueError(f"{what} {name} is a file; {expected}. Check the path.")
    if path.is_dir() and not (path / "config.json").is_file():
        raise FileNotFoundError(f"{what} {name} is a folder without config.json; {expected}. Check the path.")


def mixed_precision_defaults() -> dict:
    """bf16 where the GPU runs it natively (Ampere and later), fp16 on older GPUs, full precision on the CPU."""
    if not torch.cuda.is_available():
        return {}
    return {"bf16": True} if torch.cuda.is_bf16_supported(including_emulation=False) else {"fp16": True}


def preset_names(kind: str) -> list[str]:
    """The presets of `kind` (`"finetune"` or `"pretrain"`): the YAML files of `gtzan_hf/configs/<kind>/`."""
    return sorted(path.stem for path in (CONFIGS_DIR / kind).glob("*.yaml"))


def read_config_file(path: str | os.PathLike) -> dict:
    """A JSON or YAML mapping of argument names to values."""
    path = Path(path)
    expected = "expected a mapping of argument names to values, like the presets in gtzan_hf/configs/"
    if not path.is_file():
        raise FileNotFoundError(f"Config file {path} not found: check the path ({expected}).")
    try:
        text = path.read_text()
        values = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as error:
        mark = getattr(error, "problem_mark", None)  # YAML: say what is wrong where
        found = f"{error.problem}, line {mark.line + 1}" if mark else str(error).splitlines()[0]
        raise ValueError(
            f"Config file {path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'} ({found}): {expected}."
        ) from error
    if not isinstance(values, dict):
        raise ValueError(f"Config file {path} holds a {type(values).__name__}; {expected}.")
    return values


class OneLineErrors(argparse.ArgumentParser):
    """argparse whose errors (an unknown or mistyped flag, a bad value) are raised as `ValueError`, which [`run`]
    reports in one line, instead of printing the usage of every argument."""

    def error(self, message: str):
        raise ValueError(f"{message}. `--help` lists the arguments.")


class _HfArgumentParser(OneLineErrors, HfArgumentParser):
    """`HfArgumentParser` with [`OneLineErrors`]."""


@dataclass
class CommandLine:
    """What every entry point parses besides its dataclasses."""

    preset: str | None = None
    traceback: bool = False
    overwrite_output_dir: bool = False


def parse_args(
    dataclass_types: Sequence[type],
    argv: Sequence[str] | None = None,
    preset_kind: str | None = None,
    defaults: dict | None = None,
) -> tuple:
    """
    One instance of each of `dataclass_types`, then a [`CommandLine`], from (in increasing priority) `defaults`
    (e.g. the settings saved with a run), a `--preset` (a YAML file of `gtzan_hf/configs/<preset_kind>/`), a
    `--config` JSON/YAML file and the command line. Presets that do not set `use_cpu` get
    [`mixed_precision_defaults`] unless they set `bf16` or `fp16`.
    """
    presets = preset_names(preset_kind) if preset_kind else []
    extra = OneLineErrors(add_help=False)
    if presets:
        extra.add_argument("--preset", choices=presets, help="Named recipe (gtzan_hf/configs/); flags override it.")
    extra.add_argument("--config", help="JSON or YAML file of arguments; the command line overrides it.")
    # not --debug: TrainingArguments has one (underflow/overflow detection)
    extra.add_argument("--traceback", action="store_true", help="Show the traceback of errors.")
    extra.add_argument(
        "--overwrite_output_dir", action="store_true", help="Start again in an output_dir that holds a run."
    )
    known, remaining = extra.parse_known_args(argv)

    defaults = dict(defaults or {})
    preset = getattr(known, "preset", None)
    if preset:
        defaults.update(read_config_file(CONFIGS_DIR / preset_kind / f"{preset}.yaml"))
        if not defaults.get("use_cpu") and not {"bf16", "fp16"} & set(defaults):
            defaults.update(mixed_precision_defaults())
    if known.config:
        defaults.update(read_config_file(known.config))
    names = {f.name for dataclass_type in dataclass_types for f in dataclasses.fields(dataclass_type)}
    unknown = set(defaults) - names
    if unknown:
        raise ValueError(f"Unknown arguments in the config file: {sorted(unknown)}. `--help` lists the arguments.")

    parser = _HfArgumentParser(dataclass_types, parents=[extra])
    parser.set_defaults(**defaults)
    # The extra flags come back as a trailing namespace: they were parsed above.
    *arguments, unknown = parser.parse_args_into_dataclasses(args=remaining, return_remaining_strings=True)
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return (*arguments[: len(dataclass_types)], CommandLine(preset, known.traceback, known.overwrite_output_dir))


def run(main: Callable[[Sequence[str] | None], object], argv: Sequence[str] | None = None) -> None:
    """
    Run an entry point: log to the console, and report a user error (a missing path, a damaged file, a bad flag,
    the Hub offline) as one `error:` line with exit status 1 and no traceback (`--traceback` or
    `GTZAN_HF_TRACEBACK=1` shows it). Other exceptions are bugs and keep their traceback.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--traceback" in argv or os.environ.get("GTZAN_HF_TRACEBACK") == "1"
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:
        main(argv)
    except (*USER_ERRORS, SystemExit) as error:
        if debug or isinstance(error, SystemExit):
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        sys.exit(f"error: {message}")


def entry_point(main: Callable[[Sequence[str] | None], object]) -> Callable[[], None]:
    """The console entry point (`gtzan-finetune`, ...) and script body of `main`: [`run`] on `sys.argv`."""
    return functools.partial(run, main)


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
            torch.load(weights, map_location="cpu", weights_only=True)
        return True
    except Exception:  # whatever the reader raises (SafetensorError, EOFError, JSONDecodeError...): not usable
        return False


def resume_checkpoint(
    output_dir: str | os.PathLike, resume_from_checkpoint: str | None = None, overwrite: bool = False
) -> str | None:
    """
    The checkpoint a run continues from: `resume_from_checkpoint` when given, else (unless `overwrite`) the newest
    complete `checkpoint-N` of `output_dir` (an incomplete one, left by a save that was killed, is skipped with a
    warning), else `None`. Logs which.
    """
    if overwrite and not resume_from_checkpoint:
        logger.info("Starting a fresh run in %s (--overwrite_output_dir): its checkpoints are overwritten", output_dir)
        return None
    if resume_from_checkpoint:
        if not is_complete_checkpoint(Path(resume_from_checkpoint)):
            raise ValueError(
                f"--resume_from_checkpoint {resume_from_checkpoint} is not a complete checkpoint (trainer_state.json "
                "and model weights): name another checkpoint-N folder."
            )
        logger.info("Resuming from %s", resume_from_checkpoint)
        return resume_from_checkpoint
    folders = sorted(
        (p for p in Path(output_dir).glob("checkpoint-*") if p.is_dir() and p.name.split("-")[-1].isdigit()),
        key=lambda p: int(p.name.split("-")[-1]),
        reverse=True,
    )
    for folder in folders:
        if is_complete_checkpoint(folder):
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
