"""
Models from a resolved source ([`gtzan_hf.models.source.ModelSource`]): what each command does with each kind of
source, in one place, and the only place where model files are read for conversion. `build_classifier` gives the
model to fine-tune (from scratch, converted from an original checkpoint, a pretraining folder or a transformers AST,
or a saved model with a new head), `build_feature_extractor` its feature extractor, `load_classifier` a trained
classifier as it is (evaluation, the Space), `build_pretraining_model` the model to pretrain and `convert_checkpoint`
a converted checkpoint. Each takes a source already resolved for what its command accepts
([`~gtzan_hf.models.source.resolve_model`]): nothing here checks its kind again.
"""

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Literal

from huggingface_hub.errors import StrictDataclassError
from transformers import (
    ASTForAudioClassification,
    AutoFeatureExtractor,
    AutoModelForAudioClassification,
    PreTrainedConfig,
    PreTrainedModel,
)

from ..errors import UserError
from .checkpoints import checkpoint_provenance, load_original_checkpoint, safe_model_weights
from .configuration_ssast import Size, SSASTConfig
from .convert import (
    classifier_from_pretraining_model,
    from_original_checkpoint,
    pretraining_model_from_original_checkpoint,
)
from .feature_extraction_ssast import AUDIOSET_MEAN, AUDIOSET_STD, SSASTFeatureExtractor
from .modeling_ssast import SSASTForAudioClassification, SSASTForPreTraining
from .registry import MODEL_TYPES, AudioClassifier, find_model_type
from .source import ANY, CONVERTIBLE, PRETRAINABLE, TRAINED, Accepted, ModelSource, SourceKind, resolve_model

logger = logging.getLogger(__name__)


@contextmanager
def settings_refused(flags: str) -> Iterator[None]:
    """Around a model built from the user's settings (`flags`, as the command line names them): what its config's
    strict validation or the model files refuse (they raise `ValueError`s, importing nothing of the package), in one
    line."""
    try:
        yield
    except UserError:
        raise
    except (StrictDataclassError, ValueError) as error:
        raise UserError(f"These settings make no valid model ({flags}): {error.__cause__ or error}") from error


@dataclass
class ModelArguments:
    """The starting model of a fine-tuning run (or the model to embed with), and its geometry."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Starting model: a released SSAST checkpoint by name (SSAST-Base-Patch-400, downloaded once) or "
            "an original .pth (pretraining or fine-tuned), converted on the fly; a scripts/pretrain.py output; a "
            "saved or Hub gtzan-hf folder; a transformers AST folder or Hub id; none trains from scratch."
        },
    )
    model_type: Literal[tuple(entry.name for entry in MODEL_TYPES)] = field(
        default="ssast", metadata={"help": f"From scratch: {' | '.join(entry.name for entry in MODEL_TYPES)}."}
    )
    model_size: Size = field(default="base", metadata={"help": "From scratch: SSAST width, tiny | small | base."})
    num_hidden_layers: int = field(default=12, metadata={"help": "From scratch: SSAST depth."})
    patch_freq: int = field(default=16, metadata={"help": "From scratch: patch height (16, or 128 for frames)."})
    patch_time: int = field(default=16, metadata={"help": "From scratch: patch width (16, or 2 for frames)."})
    freq_stride: int | None = field(
        default=None,
        metadata={
            "aliases": ["--fstride"],
            "help": "Patch stride along frequency (default: 10 for 16x16 patches, 128 for 128x2 frames).",
        },
    )
    time_stride: int | None = field(
        default=None,
        metadata={
            "aliases": ["--tstride"],
            "help": "Patch stride along time (default: 10 for 16x16 patches, 1 for 128x2 frames).",
        },
    )
    max_length: int = field(
        default=1024,
        metadata={
            "aliases": ["--input_tdim"],
            "help": "Input frames of a new or converted model (100 per second; shorter windows are padded).",
        },
    )
    pooling: Literal["mean", "cls", "stats"] = field(
        default="mean",
        metadata={
            "help": "What the head reads. SSAST: mean (ft_avgtok) or cls (ft_cls); the CNN from scratch: mean (the "
            "last block's average) or stats (mean and std of the input, its time differences and cepstrum, and of "
            "every block)."
        },
    )
    config_overrides: str | None = field(
        default=None,
        metadata={
            "help": "From scratch: config settings to override, as transformers' examples take them, e.g. "
            "hidden_size=0,dropout=0.2 (the CNN without its dense layer)."
        },
    )
    trust_remote_code: bool = field(
        default=False,
        metadata={"help": "Run the code shipped inside a model folder whose type is not gtzan-hf's or AST."},
    )

    def resolve(self, accepts: Accepted = ANY) -> ModelSource | None:
        """The resolved `model_name_or_path`, of a kind the command `accepts`; from scratch, `None`, once the
        settings are known to make a model ([`scratch_config`])."""
        if self.model_name_or_path is None:
            self.scratch_config()
            return None
        return resolve_model(self.model_name_or_path, accepts=accepts, trust_remote_code=self.trust_remote_code)

    def scratch_config(self) -> PreTrainedConfig:
        """The config of a model trained from scratch with these settings and `config_overrides` (its classes
        aside)."""
        entry = find_model_type(self.model_type)
        if entry is None:  # the command line's choices refuse it first
            names = ", ".join(entry.name for entry in MODEL_TYPES)
            raise UserError(f"Unknown --model_type {self.model_type!r}: choose one of {names}.")
        with settings_refused(
            "--model_type, --model_size, --num_hidden_layers, --patch_*, --*_stride, --max_length, --pooling"
        ):
            config = entry.scratch_config(self)
        if self.config_overrides:
            try:
                config.update_from_string(self.config_overrides)
                config.validate()
            except (ValueError, StrictDataclassError) as error:
                found = str(error).splitlines()[-1].strip().removeprefix("ValueError: ").rstrip(".")
                raise UserError(
                    f"--config_overrides {self.config_overrides!r}: {found}. Expected key=value pairs of the "
                    f"{self.model_type} configuration's settings, separated by commas."
                ) from error
        return config


@dataclass
class PretrainingModelArguments:
    """The model of a pretraining run: continued from a checkpoint, or new; and its objective."""

    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Model to continue pretraining: a released SSAST checkpoint by name (SSAST-Base-Patch-400, "
            "downloaded once), an original pretraining .pth, or a folder/Hub id saved by scripts/pretrain.py; none "
            "pretrains from scratch."
        },
    )
    model_size: Size = field(default="base", metadata={"help": "From scratch: SSAST width, tiny | small | base."})
    num_hidden_layers: int = field(default=12, metadata={"help": "From scratch: SSAST depth."})
    patch_freq: int = field(default=16, metadata={"help": "From scratch: patch height (16, or 128 for frames)."})
    patch_time: int = field(default=16, metadata={"help": "From scratch: patch width (16, or 2 for frames)."})
    max_length: int = field(default=1024, metadata={"help": "From scratch: input frames (crop length)."})
    num_masked_patches: int | None = field(
        default=None, metadata={"help": "Patches masked per sample (default: the starting model's; 400)."}
    )
    mpg_loss_weight: float | None = field(
        default=None, metadata={"help": "Loss = mpc_loss + weight * mpg_loss (default: the starting model's; 10)."}
    )

    def resolve(self) -> ModelSource | None:
        """The resolved `model_name_or_path`, or `None` from scratch."""
        if self.model_name_or_path is None:
            return None
        return resolve_model(self.model_name_or_path, accepts=PRETRAINABLE)

    def objective(self) -> dict:
        """The objective settings given (`num_masked_patches`, `mpg_loss_weight`): the others stay the model's."""
        names = ("num_masked_patches", "mpg_loss_weight")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


def label_settings(label_names: list[str]) -> dict:
    """The config fields of a head with one output per class, named: one class per song, which the config states
    (its loss then follows it, as transformers' models do)."""
    return {
        "problem_type": "single_label_classification",
        "num_labels": len(label_names),
        "id2label": dict(enumerate(label_names)),
        "label2id": {name: index for index, name in enumerate(label_names)},
    }


def classifier_settings(source: ModelSource | None) -> tuple[str, ...]:
    """The [`ModelArguments`] fields the classifier [`build_classifier`] gives depends on, for `source`: the others
    it ignores (a saved model keeps its own size and geometry)."""
    geometry = ("freq_stride", "time_stride", "max_length", "pooling")
    if source is None:
        return (
            "model_name_or_path",
            "model_type",
            "model_size",
            "num_hidden_layers",
            "patch_freq",
            "patch_time",
            *geometry,
        )
    if source.kind in (SourceKind.CHECKPOINT, SourceKind.AST, SourceKind.PRETRAINING):
        return ("model_name_or_path", *geometry)
    return ("model_name_or_path",)


def _from_pretrained(model_class, source: ModelSource, **kwargs) -> PreTrainedModel:
    with safe_model_weights(source.location):
        return model_class.from_pretrained(source.location, **kwargs)


def _original_checkpoint(source: ModelSource) -> tuple[dict, dict]:
    """The state dict of an original checkpoint file, and its provenance (name, sha256, official link)."""
    return load_original_checkpoint(source.location), {"source_checkpoint": checkpoint_provenance(source.location)}


def _converted(source: ModelSource, **kwargs) -> SSASTForAudioClassification:
    """An original checkpoint (its provenance kept in the config) or a transformers AST model, as SSAST."""
    if source.kind is SourceKind.AST:
        return from_original_checkpoint(_from_pretrained(ASTForAudioClassification, source), **kwargs)
    state_dict, provenance = _original_checkpoint(source)
    return from_original_checkpoint(state_dict, **(provenance | kwargs))


CONVERSION_FLAGS = "--freq_stride, --time_stride, --max_length, --pooling"


def build_classifier(source: ModelSource | None, args: ModelArguments, label_names: list[str]) -> AudioClassifier:
    """The classifier to fine-tune, with a head of `len(label_names)` outputs named after the classes, in training
    mode. Original checkpoints, pretraining folders and AST models are converted to `args`' strides, input length and
    pooling (strides left unset: the original recipe for the checkpoint's patch shape); a saved model keeps its
    geometry and gets a new head where its classes differ."""
    if source is None:
        config = args.scratch_config()
        config.update(label_settings(label_names))
        return find_model_type(args.model_type).classifier_class(config)
    labels = label_settings(label_names)
    geometry = {
        "freq_stride": args.freq_stride,
        "time_stride": args.time_stride,
        "max_length": args.max_length,
        "pooling": args.pooling,
    }
    new_head = {"ignore_mismatched_sizes": True, **labels}
    match source.kind:
        case SourceKind.CHECKPOINT | SourceKind.AST:
            with settings_refused(CONVERSION_FLAGS):
                return _converted(source, **geometry, **labels).train()
        case SourceKind.PRETRAINING:
            pretrained = _from_pretrained(source.registered_type.pretraining_class, source)
            with settings_refused(CONVERSION_FLAGS):
                return classifier_from_pretraining_model(pretrained, **geometry, **labels).train()
        case SourceKind.MODEL:
            return _from_pretrained(source.registered_type.classifier_class, source, **new_head)
        case SourceKind.FOREIGN:
            return _from_pretrained(AutoModelForAudioClassification, source, trust_remote_code=True, **new_head)


def build_feature_extractor(
    source: ModelSource | None, max_length: int, num_mel_bins: int = 128
) -> SSASTFeatureExtractor:
    """
    The feature extractor of the model [`build_classifier`] gives: a saved model's own; a pretraining folder's or an
    AST model's statistics at `max_length` frames; AudioSet's statistics at `max_length` frames for an original
    checkpoint or a new model. A folder without `preprocessor_config.json` gets AudioSet's statistics (at its own input
    length for a saved model), with a warning that says so.
    """
    if source is not None and source.kind is not SourceKind.CHECKPOINT and not source.preprocessor:
        if source.kind is SourceKind.MODEL:  # a saved model keeps its geometry
            max_length = source.config.get("max_length", max_length)
            num_mel_bins = source.config.get("num_mel_bins", num_mel_bins)
        logger.warning(
            "%s has no preprocessor_config.json: assuming AudioSet's statistics (mean %g, std %g) and windows of its "
            "whole input (%d frames, %g s). If it was trained with others, copy its preprocessor_config.json into "
            "the folder.",
            source.name,
            AUDIOSET_MEAN,
            AUDIOSET_STD,
            max_length,
            SSASTFeatureExtractor.frames_to_seconds(max_length),
        )
    match None if source is None or not source.preprocessor else source.kind:
        case SourceKind.PRETRAINING | SourceKind.AST:
            return SSASTFeatureExtractor.from_pretrained(source.location, max_length=max_length)
        case SourceKind.MODEL:
            return source.registered_type.feature_extractor_class.from_pretrained(source.location)
        case SourceKind.FOREIGN:
            return AutoFeatureExtractor.from_pretrained(source.location, trust_remote_code=True)
        case _:  # none to read: a new model, an original checkpoint, a folder without one
            return SSASTFeatureExtractor(num_mel_bins=num_mel_bins, max_length=max_length)


def load_classifier(
    source: ModelSource | str, trust_remote_code: bool = False
) -> tuple[PreTrainedModel, SSASTFeatureExtractor]:
    """
    `(model, feature_extractor)` of a trained classifier as it is, in evaluation mode: a gtzan-hf folder or Hub id
    with the package's own classes, a transformers AST converted into SSAST (the same logits, its own statistics), or
    with `trust_remote_code` a folder of another type with the code it ships. A name is resolved here for what this
    takes ([`~gtzan_hf.models.source.TRAINED`]): original checkpoints and pretraining folders, which have no trained
    head, are refused with what to do.
    """
    if not isinstance(source, ModelSource):
        source = resolve_model(source, accepts=TRAINED, trust_remote_code=trust_remote_code, what="MODEL")
    if source.kind is SourceKind.MODEL and not source.preprocessor:
        length = SSASTFeatureExtractor.frames_to_seconds(source.config.get("max_length", 1024))
        raise UserError(
            f"{source.name} has no preprocessor_config.json: a gtzan-hf model folder carries its feature extractor "
            f"(its normalisation and windows), and without it the model would be fed AudioSet's statistics and "
            f"{length:g} s windows, not those it was trained on. Copy preprocessor_config.json from the folder "
            "the model was saved in (a run's output_dir), or save the model with its feature extractor."
        )
    match source.kind:
        case SourceKind.AST:
            model = _converted(source)
        case SourceKind.MODEL:
            model = _from_pretrained(source.registered_type.classifier_class, source)
        case SourceKind.FOREIGN:
            model = _from_pretrained(AutoModelForAudioClassification, source, trust_remote_code=True)
            return model.eval(), AutoFeatureExtractor.from_pretrained(source.location, trust_remote_code=True)
        case _:
            raise TypeError(f"load_classifier takes a source resolved with accepts=TRAINED, not {source.kind.value}.")
    return model.eval(), build_feature_extractor(source, model.config.max_length, model.config.num_mel_bins)


def check_label_names(model: PreTrainedModel, label_names: list[str], name: str) -> None:
    """Refuse to score a model on a dataset whose classes are not the ones it predicts, in the same order."""
    model_labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    if model_labels != list(label_names):
        raise UserError(
            f"{name} predicts {model_labels} but the dataset's classes are {list(label_names)}: evaluate on the "
            "dataset the model was trained for."
        )


def build_pretraining_model(
    source: ModelSource | None, args: PretrainingModelArguments
) -> tuple[SSASTForPreTraining, SSASTFeatureExtractor]:
    """
    The model to pretrain and its feature extractor, in training mode: from scratch (`args`' size, depth, patch
    shape and input length; non-overlapping patches), from an original pretraining checkpoint (AudioSet statistics,
    as it was trained with), or from a pretraining folder (its own feature extractor); `args.objective()` on top.
    """
    objective = args.objective()
    if source is None:
        with settings_refused("--model_size, --num_hidden_layers, --patch_*, --max_length, --num_masked_patches"):
            config = SSASTConfig.from_size(
                args.model_size,
                num_hidden_layers=args.num_hidden_layers,
                patch_freq=args.patch_freq,
                patch_time=args.patch_time,
                freq_stride=args.patch_freq,
                time_stride=args.patch_time,
                max_length=args.max_length,
                **objective,
            )
            model = SSASTForPreTraining(config)
    elif source.kind is SourceKind.CHECKPOINT:
        state_dict, provenance = _original_checkpoint(source)
        with settings_refused("--num_masked_patches, --mpg_loss_weight"):
            model = pretraining_model_from_original_checkpoint(state_dict, **(provenance | objective))
    else:
        with settings_refused("--num_masked_patches, --mpg_loss_weight"):
            model = _from_pretrained(SSASTForPreTraining, source, **objective)
        if source.preprocessor:
            return model.train(), SSASTFeatureExtractor.from_pretrained(source.location)
        logger.warning("%s has no feature extractor: using the AudioSet statistics.", source.name)
    extractor = SSASTFeatureExtractor(num_mel_bins=model.config.num_mel_bins, max_length=model.config.max_length)
    return model.train(), extractor


def convert_checkpoint(
    checkpoint: ModelSource | str | os.PathLike,
    output_dir: str | os.PathLike | None = None,
    *,
    for_pretraining: bool = False,
    **kwargs,
) -> SSASTForAudioClassification | SSASTForPreTraining:
    """
    Converts an original checkpoint (a `.pth` file or a released name) or a transformers AST model (a folder or a Hub
    id), resolved here unless given resolved, with [`~gtzan_hf.models.convert.from_original_checkpoint`] (whose
    keyword arguments `kwargs` are); with `output_dir`, saves it there with its feature extractor (its input length;
    an AST model's statistics), loadable with `from_pretrained` and the Auto classes. With `for_pretraining`, an
    original pretraining checkpoint becomes an [`SSASTForPreTraining`] instead (`kwargs`: config fields such as
    `num_masked_patches`). A file's provenance is kept in the config as `source_checkpoint`.
    """
    source = checkpoint
    if not isinstance(source, ModelSource):
        source = resolve_model(checkpoint, accepts=CONVERTIBLE, what="Checkpoint")
    if not for_pretraining:
        with settings_refused(CONVERSION_FLAGS):
            model = _converted(source, **kwargs)
    elif source.kind is SourceKind.CHECKPOINT:
        state_dict, provenance = _original_checkpoint(source)
        with settings_refused("--num_masked_patches"):
            model = pretraining_model_from_original_checkpoint(state_dict, **(provenance | kwargs))
    else:
        raise UserError(
            f"{source.name} is {source.kind.value}, without pretraining heads: expected an original pretraining "
            "checkpoint."
        )
    if output_dir is not None:
        model.save_pretrained(output_dir)
        build_feature_extractor(source, model.config.max_length, model.config.num_mel_bins).save_pretrained(output_dir)
    return model
