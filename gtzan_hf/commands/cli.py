"""Command-line plumbing shared by every entry point: presets (YAML files in `gtzan_hf/configs/`), config files,
argument parsing into dataclasses, and one clear line for user errors ([`~gtzan_hf.errors.UserError`]).

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
import types
import typing
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from pathlib import Path

import torch
import yaml
from transformers import HfArgumentParser
from transformers.hf_argparser import string_to_bool

from ..errors import UserError

logger = logging.getLogger(__name__)

CONFIGS_DIR = Path(__file__).parents[1] / "configs"


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
        raise UserError(f"Config file {path} not found: check the path ({expected}).")
    try:
        text = path.read_text()
        values = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as error:
        mark = getattr(error, "problem_mark", None)  # YAML: say what is wrong where
        found = f"{error.problem}, line {mark.line + 1}" if mark else str(error).splitlines()[0]
        raise UserError(
            f"Config file {path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'} ({found}): {expected}."
        ) from error
    if not isinstance(values, dict):
        raise UserError(f"Config file {path} holds a {type(values).__name__}; {expected}.")
    return values


# how the command line reads a string given for a number or a switch
READ_FROM_STRING = {int: int, float: float, bool: string_to_bool}
IN_WORDS = {bool: "true or false", int: "an integer", float: "a number", str: "a string", type(None): "null"}


def _is_enum(annotation) -> bool:
    return isinstance(annotation, type) and issubclass(annotation, Enum)


def _spelled_by_strings(annotations: tuple) -> tuple:
    """The members of a union that its `str` spells: an enum's values (transformers' `SchedulerType | str`)."""
    return tuple(a for a in annotations if _is_enum(a)) if str in annotations else ()


def value_fits(value, annotation) -> bool:
    """Whether `value`, read from a config file, is a value of a dataclass field typed `annotation`: an integer for a
    float, `None` for an optional field, a string as the command line would read it (`"1e-3"` for a number)."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        spelled = _spelled_by_strings(args) if isinstance(value, str) else ()
        return any(value_fits(value, member) for member in spelled or args)
    if origin is typing.Literal:
        return any(value == choice and type(value) is type(choice) for choice in args)
    if origin in (list, dict):
        if not isinstance(value, origin):
            return False
        items = value.values() if origin is dict else value
        return not args or all(value_fits(item, args[-1]) for item in items)
    if annotation is typing.Any:
        return True
    if _is_enum(annotation):
        return isinstance(value, annotation) or value in {member.value for member in annotation}
    if annotation in READ_FROM_STRING and isinstance(value, str):
        try:
            READ_FROM_STRING[annotation](value)
            return True
        except (ValueError, argparse.ArgumentTypeError):
            return False
    if annotation in (int, float) and isinstance(value, bool):
        return False
    return isinstance(value, (int, float) if annotation is float else origin or annotation)


def in_words(annotation) -> str:
    """A field type as an error message says it: `float | None` is "a number or null"."""
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        members = [a for a in args if not (a is str and _spelled_by_strings(args))]
        return " or ".join(dict.fromkeys(in_words(member) for member in members))
    if origin is typing.Literal or _is_enum(annotation):
        choices = args if origin is typing.Literal else [member.value for member in annotation]
        return "one of " + ", ".join(json.dumps(choice) for choice in choices)
    if origin is list:
        return f"a list (each {in_words(args[0])})" if args else "a list"
    if origin is dict or annotation is dict:
        return "a mapping"
    return IN_WORDS.get(annotation, getattr(annotation, "__name__", str(annotation)))


def check_values(values: dict, field_types: dict, source: str) -> dict:
    """`values` (from `source`: a preset, a config file, saved settings), each checked against its field's type
    before any work is done; names the first that does not fit. Unknown names are left to the caller."""
    for name, value in values.items():
        if name in field_types and not value_fits(value, field_types[name]):
            raise UserError(
                f"{source} sets {name}: {json.dumps(value, default=str)}; expected {in_words(field_types[name])}. "
                "Correct it there."
            )
    return values


class OneLineErrors(argparse.ArgumentParser):
    """argparse whose errors (an unknown or mistyped flag, a bad value) are raised as a `UserError`, which [`run`]
    reports in one line, instead of printing the usage of every argument."""

    def error(self, message: str):
        raise UserError(f"{message}. `--help` lists the arguments.")


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

    field_types = {
        field.name: typing.get_type_hints(dataclass_type)[field.name]
        for dataclass_type in dataclass_types
        for field in dataclasses.fields(dataclass_type)
    }
    defaults = dict(check_values(defaults or {}, field_types, "The run's saved configuration"))
    preset = getattr(known, "preset", None)
    if preset:
        path = CONFIGS_DIR / preset_kind / f"{preset}.yaml"
        defaults.update(check_values(read_config_file(path), field_types, f"Preset {preset} ({path})"))
        if not defaults.get("use_cpu") and not {"bf16", "fp16"} & set(defaults):
            defaults.update(mixed_precision_defaults())
    if known.config:
        defaults.update(check_values(read_config_file(known.config), field_types, f"Config file {known.config}"))
    unknown = set(defaults) - set(field_types)
    if unknown:
        raise UserError(f"Unknown arguments in the config file: {sorted(unknown)}. `--help` lists the arguments.")

    parser = _HfArgumentParser(dataclass_types, parents=[extra])
    parser.set_defaults(**defaults)
    try:
        # The extra flags come back as a trailing namespace: they were parsed above.
        *arguments, unknown = parser.parse_args_into_dataclasses(args=remaining, return_remaining_strings=True)
    except UserError:
        raise
    except ValueError as error:  # the arguments' own checks (`TrainingArguments.__post_init__`): the user's to fix
        raise UserError(str(error)) from error
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return (*arguments[: len(dataclass_types)], CommandLine(preset, known.traceback, known.overwrite_output_dir))


def run(main: Callable[[Sequence[str] | None], object], argv: Sequence[str] | None = None) -> None:
    """
    Run an entry point: log to the console, and report a user error ([`~gtzan_hf.errors.UserError`]: a missing path,
    a damaged file, a bad flag, the Hub offline) as one `error:` line with exit status 1 and no traceback
    (`--traceback` or `GTZAN_HF_TRACEBACK=1` shows it). Anything else is a fault and keeps its traceback.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--traceback" in argv or os.environ.get("GTZAN_HF_TRACEBACK") == "1"
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    try:
        main(argv)
    except UserError as error:
        if debug:
            raise
        message = " ".join(str(error).split()) or type(error).__name__
        sys.exit(f"error: {message}")


def entry_point(main: Callable[[Sequence[str] | None], object]) -> Callable[[], None]:
    """The console entry point (`gtzan-finetune`, ...) and script body of `main`: [`run`] on `sys.argv`."""
    return functools.partial(run, main)
