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
from collections import Counter
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import torch
from huggingface_hub.errors import StrictDataclassError
from safetensors import SafetensorError, safe_open
from transformers import PreTrainedConfig
from transformers.utils import FEATURE_EXTRACTOR_NAME, SAFE_WEIGHTS_INDEX_NAME, SAFE_WEIGHTS_NAME, cached_file

from ..errors import UserError
from .checkpoints import (
    RELEASED_CHECKPOINTS,
    check_model_weights,
    checkpoint_kind,
    load_original_checkpoint,
    load_tensors,
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
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(
            f"The {filename} of {name} is not valid JSON ({error}): it was cut short or edited by hand. Save the "
            "model again, or copy the file again from the folder it was saved in."
        ) from None
    except (OSError, ValueError) as error:  # not on the Hub, the Hub offline, a config that is not JSON: the user's
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
    check_model_parts(source)
    if kind == SourceKind.FOREIGN and not trust_remote_code:
        raise UserError(
            f"{name} holds a {found!r} model, not one of gtzan-hf's or a transformers AST: loading it would run the "
            "code shipped in its folder. If you trust it, pass --trust_remote_code (scripts) or set "
            "TRUST_REMOTE_CODE=1 (the Space)."
        )
    return source


def _labels_problem(config: dict) -> str:
    """How a config's class names disagree with each other or with its number of classes (`""` if they do not)."""
    id2label = config.get("id2label")
    if id2label is None:  # transformers' defaults (LABEL_0, ...) from num_labels
        return ""
    if not isinstance(id2label, dict):
        return f"id2label is a {type(id2label).__name__}; expected a mapping of class ids to names"
    try:
        ids = sorted(int(key) for key in id2label)
    except (TypeError, ValueError):
        return f"id2label has the keys {sorted(map(str, id2label))}; expected the class ids 0, 1, 2, ..."
    missing = sorted(set(range(len(ids))) - set(ids))
    if missing:
        return (
            f"id2label names the classes {', '.join(map(str, ids))}: class {missing[0]} is missing (expected the ids "
            f"0 to {len(ids) - 1} without a gap, one per output of the model's head)"
        )
    num_labels = config.get("num_labels")
    if num_labels is not None and num_labels != len(ids):
        return f"num_labels is {num_labels} but id2label names {len(ids)} classes"
    names = Counter(map(str, id2label.values()))
    twice = [name for name, count in names.items() if count > 1]
    if twice:
        return f"id2label names {twice[0]!r} {names[twice[0]]} times (each class once)"
    label2id = config.get("label2id")
    if isinstance(label2id, dict) and label2id:
        for key, name in id2label.items():
            if str(label2id.get(name)) != str(key):
                return f"label2id gives {name!r} the id {label2id.get(name)}, id2label {key}"
    return ""


def _weight_shapes(folder: Path) -> tuple[Path | None, dict[str, tuple[int, ...]]]:
    """`(the weights file, the shape of each tensor)` of a saved model folder, read from the safetensors headers (no
    tensor is read) or a PyTorch `.bin` (memory-mapped, tensors only); `(None, {})` without weights. A file that
    cannot be read (cut short, not a weights file) is refused in one line naming it."""
    index = folder / SAFE_WEIGHTS_INDEX_NAME
    if (folder / SAFE_WEIGHTS_NAME).is_file():
        files = [folder / SAFE_WEIGHTS_NAME]
    elif index.is_file():
        files = [folder / name for name in sorted(set(json.loads(index.read_text())["weight_map"].values()))]
    else:
        files = sorted(folder.glob("pytorch_model*.bin"))
    shapes = {}
    for file in files:
        if file.suffix != ".safetensors":
            shapes.update({key: tuple(value.shape) for key, value in load_tensors(file, "").items()})
            continue
        try:
            with safe_open(file, framework="pt") as handle:
                shapes.update({key: tuple(handle.get_slice(key).get_shape()) for key in handle.keys()})
        except (SafetensorError, OSError) as error:
            raise UserError(
                f"{file} cannot be read ({error}): it was cut short, or is not a safetensors file. Copy or download "
                "the model again, or save it again (save_pretrained)."
            ) from None
    return (files[0] if files else None), shapes


def _shapes_problem(found: dict, expected: dict) -> str:
    """How the weights' shapes disagree with those of the model a config describes (`""` if they do not)."""
    wrong = [key for key in expected if key in found and found[key] != expected[key]]
    if wrong:
        key = wrong[0]
        more = f", and {len(wrong) - 1} more of other shapes" if len(wrong) > 1 else ""
        return f"holds {key} of shape {list(found[key])} where config.json describes {list(expected[key])}{more}"
    for keys, verb in (
        ([key for key in expected if key not in found], "lacks"),
        ([key for key in found if key not in expected], "holds weights config.json has no place for:"),
    ):
        if keys:
            listed = ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
            return f"{verb} {listed}" if verb != "lacks" else f"lacks {listed} of the model config.json describes"
    return ""


def check_model_parts(source: ModelSource) -> None:
    """
    Refuse, in one line naming the file and the disagreement, a model folder whose parts disagree, before anything is
    loaded or any data prepared: class names (`id2label`) with a gap, twice the same name, another count than
    `num_labels` or a `label2id` that does not invert them; a preprocessor of other mel bins than the model's, or of
    another input length for a model that takes its own only; weights that cannot be read (a cut `model.safetensors`)
    or whose names and shapes are not those of the model `config.json` describes (a model of the package's types,
    whose weights are read from the local files' headers only); a `config.json` whose values make no model.
    """
    problem = _labels_problem(source.config)
    if problem:
        raise UserError(
            f"The config.json of {source.name} disagrees with itself: {problem}. Correct it, or save the model again "
            "(save_pretrained writes it whole)."
        )
    if source.kind == SourceKind.MODEL and source.preprocessor:
        fixed = source.registered_type is None or source.registered_type.fixed_input_length
        for key in ("max_length", "num_mel_bins") if fixed else ("num_mel_bins",):
            model_value, extractor_value = source.config.get(key), source.preprocessor.get(key)
            if None not in (model_value, extractor_value) and model_value != extractor_value:
                raise UserError(
                    f"The parts of {source.name} disagree: its config.json reads {key} {model_value}, its "
                    f"preprocessor_config.json gives {key} {extractor_value}. Save the model and its feature "
                    "extractor again together (a run's output_dir holds both)."
                )
    entry = source.registered_type
    if entry is None:
        return
    try:  # the config's own checks (the model files raise `ValueError`s, importing nothing of the package)
        config = entry.config_class.from_dict(source.config)
    except (StrictDataclassError, ValueError) as error:
        reason = str(error.__cause__ or error).rstrip(".")
        raise UserError(
            f"The config.json of {source.name} describes no valid model: {reason}. Correct it, or save the model "
            "again (save_pretrained writes it whole)."
        ) from error
    folder = Path(source.location)
    if not folder.is_dir():
        return
    file, found = _weight_shapes(folder)
    model_class = entry.pretraining_class if source.kind == SourceKind.PRETRAINING else entry.classifier_class
    if file is None or model_class is None:
        return
    with torch.device("meta"):  # shapes only: no memory, no initialisation
        model = model_class(config)
    problem = _shapes_problem(found, {key: tuple(value.shape) for key, value in model.state_dict().items()})
    if problem:
        raise UserError(
            f"{file} {problem}: the weights and config.json are of two different models. Save the model again "
            "(save_pretrained writes both together), or restore the file that was replaced."
        )
