"""
What a `model_name_or_path` is, decided once for every command and for the Space.

[`resolve_model`] turns a released SSAST name, an original `.pth`, a `scripts/pretrain.py` folder, a folder saved by
gtzan-hf, a transformers AST folder or a Hub id into a [`ModelSource`]: what it is, where it is, its config and the
windows it was trained on. No weights are loaded and no code from a folder runs. A released checkpoint is downloaded
(once) and an original file read to tell its kind, so that a bad model is refused before any data is prepared.
"""

import json
import logging
import os
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

from transformers import PreTrainedConfig
from transformers.utils import FEATURE_EXTRACTOR_NAME, cached_file

from ..errors import UserError
from .checkpoints import (
    RELEASED_CHECKPOINTS,
    check_model_weights,
    checkpoint_kind,
    load_original_checkpoint,
    released_name,
    resolve_checkpoint,
)
from .registry import ModelType, find_model_type

logger = logging.getLogger(__name__)

# Files the commands read: a name ending so is a path, never a Hub id.
FILE_SUFFIXES = frozenset({".pth", ".pt", ".bin", ".safetensors", ".csv", ".json", ".jsonl", ".yaml", ".yml"})
ORIGINAL_SUFFIXES = (".pth", ".pt")
AST_MODEL_TYPE = "audio-spectrogram-transformer"


class SourceKind(Enum):
    """What a source is; each value says it in the words of a refusal."""

    CHECKPOINT = "an original SSAST/AST checkpoint file"  # a .pth; `checkpoint_kind`: "pretraining" or "finetuned"
    PRETRAINING = "a pretraining model (scripts/pretrain.py) without a classification head"  # SSASTForPreTraining
    MODEL = "a gtzan-hf model"  # a folder of a registered model type (a fine-tuning run, a converted checkpoint)
    AST = "a transformers AST model"  # converted into SSAST when loaded
    FOREIGN = "a model of another type"  # loading it runs the code its folder ships (trust_remote_code)


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


def is_hub_id(name: str | None) -> bool:
    """Whether `name` can only be read as a Hub id: `owner/name`, no such local path, nothing local-looking."""
    return bool(name) and name.count("/") == 1 and not Path(name).exists() and not looks_local(name)


def check_local_path(name: str, what: str) -> None:
    """Refuse a local-looking path that does not exist before anything tries it as a Hub id."""
    if looks_local(name) and not Path(name).expanduser().exists():
        raise UserError(f"{what} {name}: no such file or folder. Check the path (a Hub id is 'owner/name').")


@dataclass(frozen=True)
class ModelSource:
    """A resolved `model_name_or_path` (see [`resolve_model`])."""

    name: str  # as the user gave it
    kind: SourceKind
    location: str  # the local file or folder, or the Hub id
    config: dict = field(default_factory=dict)  # config.json ({} for an original checkpoint)
    preprocessor: dict = field(default_factory=dict)  # preprocessor_config.json ({} where there is none)
    checkpoint_kind: str | None = None  # an original checkpoint's: "pretraining" or "finetuned"

    @property
    def registered_type(self) -> ModelType | None:
        """The registry entry of a gtzan-hf folder; `None` for other sources."""
        registered = self.kind in (SourceKind.MODEL, SourceKind.PRETRAINING)
        return find_model_type(self.config.get("model_type", "")) if registered else None

    @property
    def window_seconds(self) -> float | None:
        """The window length the model was trained on, as its feature extractor recorded it; `None` if it did not."""
        return self.preprocessor.get("window_seconds")

    @property
    def hop_seconds(self) -> float | None:
        """The hop between the windows it was evaluated on, as recorded; `None` if not recorded."""
        return self.preprocessor.get("hop_seconds")


def _json_file(name: str, filename: str, what: str) -> dict:
    try:
        if filename == "config.json":
            values = PreTrainedConfig.get_config_dict(name)[0]
        else:
            path = cached_file(name, filename, _raise_exceptions_for_missing_entries=False)
            values = json.loads(Path(path).read_text()) if path else {}
    except (OSError, ValueError) as error:  # not on the Hub, the Hub offline, a file that is not JSON: the user's
        raise UserError(str(error)) from error
    if not isinstance(values, dict):
        raise UserError(
            f"The {filename} of {name} holds a {type(values).__name__}; expected a mapping of {what}, as "
            "save_pretrained writes it. Save the model again, or pass another folder."
        )
    return values


@dataclass(frozen=True)
class Accepted:
    """The kinds of source a command takes, and what it expects, in the words of a refusal."""

    kinds: frozenset[SourceKind]
    expected: str

    def check(self, source: ModelSource, what: str) -> ModelSource:
        """`source`, when this command takes its kind; else one line naming `what` (the flag or argument), what the
        source is and what was expected."""
        if source.kind not in self.kinds:
            found = f" ({source.config['model_type']!r})" if source.config.get("model_type") else ""
            raise UserError(f"{what} {source.name} is {source.kind.value}{found}; expected {self.expected}.")
        return source


# What each command takes, decided when the name is resolved ([`resolve_model`]), once, at the command's edge.
ANY = Accepted(frozenset(SourceKind), "a model")  # fine-tuning, embeddings
TRAINED = Accepted(  # evaluation, serving: a model with a trained head
    frozenset({SourceKind.MODEL, SourceKind.AST, SourceKind.FOREIGN}),
    "a trained classifier: a saved model folder (config.json and weights, such as a run's output_dir) or a Hub id "
    "(fine-tune an original checkpoint or a pretraining model first: scripts/finetune.py)",
)
CONVERTIBLE = Accepted(  # conversion
    frozenset({SourceKind.CHECKPOINT, SourceKind.AST}),
    "an original SSAST/AST .pth checkpoint, a released name, or a transformers AST folder or Hub id",
)
PRETRAINABLE = Accepted(  # pretraining: a model with pretraining heads
    frozenset({SourceKind.CHECKPOINT, SourceKind.PRETRAINING}),
    "an original pretraining checkpoint (a .pth or a released name) or a scripts/pretrain.py folder",
)


def resolve_model(
    name: str | os.PathLike,
    *,
    accepts: Accepted = ANY,
    trust_remote_code: bool = False,
    what: str = "--model_name_or_path",
) -> ModelSource:
    """
    What `name` is, without loading any weights or running any code from a folder.

    - a released SSAST name (`SSAST-Base-Patch-400`, any case, `.pth` or not; a local file of that name first) or a
      path to an original `.pth`/`.pt`: `SourceKind.CHECKPOINT`, downloaded first if needed, and read (safely) to
      tell a pretraining checkpoint from a fine-tuned one;
    - a folder or Hub id: its `config.json` (and `preprocessor_config.json`) tell `PRETRAINING`, `MODEL` (a registered
      model type), `AST` (transformers' Audio Spectrogram Transformer) or `FOREIGN`, which is refused unless
      `trust_remote_code`, since loading it would run the code shipped with it.

    A kind the command does not take (`accepts`) is refused in one line naming `what` (the flag or argument), as are
    a local-looking path that does not exist, a file that is not a checkpoint and a folder without `config.json`,
    before the Hub is asked anything. What comes back is what the command takes: nothing checks it again.
    """
    name = os.fspath(name)
    path = Path(name).expanduser()
    is_checkpoint = bool(released_name(name)) or path.suffix.lower() in ORIGINAL_SUFFIXES
    if is_checkpoint and SourceKind.CHECKPOINT not in accepts.kinds:
        raise UserError(f"{what} {name} is {SourceKind.CHECKPOINT.value}; expected {accepts.expected}.")
    if is_checkpoint:
        file = resolve_checkpoint(name)  # a released name is downloaded now, not after the data
        if not file.is_file():
            raise UserError(
                f"Original SSAST checkpoint {name} not found: pass the path of a .pth file or a released name "
                f"({', '.join(RELEASED_CHECKPOINTS)})."
            )
        kind = checkpoint_kind(load_original_checkpoint(file))  # a damaged or foreign file is refused now
        return ModelSource(name, SourceKind.CHECKPOINT, str(file), checkpoint_kind=kind)
    check_local_path(name, what)
    folder = "a saved model folder (config.json and weights, such as a run's output_dir) or a Hub id"
    if path.is_file():
        raise UserError(f"{what} {name} is a file; expected {folder}. Check the path.")
    if path.is_dir() and not (path / "config.json").is_file():
        raise UserError(f"{what} {name} is a folder without config.json; expected {folder}. Check the path.")
    location = str(path) if path.is_dir() else name
    config = _json_file(location, "config.json", "model settings")
    preprocessor = _json_file(location, FEATURE_EXTRACTOR_NAME, "feature extractor settings")
    found = config.get("model_type")
    entry = find_model_type(found or "")
    if entry is not None:
        pretraining = entry.pretraining_class is not None and entry.pretraining_class.__name__ in (
            config.get("architectures") or ()
        )
        kind = SourceKind.PRETRAINING if pretraining else SourceKind.MODEL
    else:
        kind = SourceKind.AST if found == AST_MODEL_TYPE else SourceKind.FOREIGN
    source = accepts.check(ModelSource(name, kind, location, config, preprocessor), what)
    check_model_weights(location)  # a local folder's PyTorch weights that pickle objects: refused now, in one line
    if kind == SourceKind.FOREIGN and not trust_remote_code:
        raise UserError(
            f"{name} holds a {found!r} model, not one of gtzan-hf's or a transformers AST: loading it would run the "
            "code shipped in its folder. If you trust it, pass --trust_remote_code (scripts) or set "
            "TRUST_REMOTE_CODE=1 (the Space)."
        )
    return source
