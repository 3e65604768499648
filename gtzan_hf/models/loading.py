"""
Models from a resolved source ([`gtzan_hf.models.source.ModelSource`]): what each command does with each kind of
source, in one place. `build_classifier` gives the model to fine-tune (from scratch, converted from an original
checkpoint, a pretraining folder or a transformers AST, or a saved model with a new head), `build_feature_extractor`
its feature extractor, `load_classifier` a trained classifier as it is (evaluation, the Space), and
`build_pretraining_model` the model to pretrain.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path

from huggingface_hub.errors import StrictDataclassClassValidationError
from transformers import AutoFeatureExtractor, AutoModelForAudioClassification, PreTrainedConfig, PreTrainedModel

from .checkpoints import safe_model_weights
from .configuration_ssast import SSASTConfig
from .convert import (
    classifier_from_pretraining_model,
    from_original_checkpoint,
    pretraining_model_from_original_checkpoint,
)
from .feature_extraction_ssast import SSASTFeatureExtractor
from .modeling_ssast import SSASTForAudioClassification, SSASTForPreTraining
from .registry import MODEL_TYPES, AudioClassifier, model_type
from .source import (
    AST,
    CHECKPOINT,
    CONVERTIBLE,
    CONVERTIBLE_EXPECTED,
    FOREIGN,
    MODEL,
    PRETRAINING,
    TRAINED,
    TRAINED_EXPECTED,
    ModelSource,
    require_kind,
    resolve_model,
)

logger = logging.getLogger(__name__)

# What pretraining continues from: a model with pretraining heads.
PRETRAINABLE = (CHECKPOINT, PRETRAINING)
PRETRAINABLE_EXPECTED = (
    "an original pretraining checkpoint (a .pth or a released name) or a scripts/pretrain.py folder"
)


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
    model_type: str = field(
        default="ssast", metadata={"help": f"From scratch: {' | '.join(entry.name for entry in MODEL_TYPES)}."}
    )
    model_size: str = field(default="base", metadata={"help": "From scratch: SSAST width, tiny | small | base."})
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
    pooling: str = field(
        default="mean",
        metadata={
            "help": "What the head reads. SSAST: mean (ft_avgtok) or cls (ft_cls); from scratch, the CNN: mean (the "
            "last block's average) or stats (mean and std of the input and of every block)."
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

    def resolve(self) -> ModelSource | None:
        """The resolved `model_name_or_path`, or `None` from scratch (whose configuration is then checked)."""
        if self.model_name_or_path is None:
            self.scratch_config()
            return None
        return resolve_model(self.model_name_or_path, trust_remote_code=self.trust_remote_code)

    def scratch_config(self, label_names: list[str] | None = None) -> PreTrainedConfig:
        """The configuration of a model trained from scratch: `model_type`'s, with `config_overrides` and one output
        per class of `label_names`."""
        entry = model_type(self.model_type)
        if entry is None:
            names = ", ".join(entry.name for entry in MODEL_TYPES)
            raise ValueError(f"Unknown --model_type {self.model_type!r}: choose one of {names}.")
        config = entry.scratch_config(self)
        if label_names is not None:
            config.update(label_settings(label_names))
        if self.config_overrides:
            try:
                config.update_from_string(self.config_overrides)
                config.validate()
            except (ValueError, StrictDataclassClassValidationError) as error:
                found = str(error).splitlines()[-1].strip().removeprefix("ValueError: ").rstrip(".")
                raise ValueError(
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
    model_size: str = field(default="base", metadata={"help": "From scratch: SSAST width, tiny | small | base."})
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
        return resolve_model(self.model_name_or_path, kinds=PRETRAINABLE, expected=PRETRAINABLE_EXPECTED)

    def objective(self) -> dict:
        """The objective settings given (`num_masked_patches`, `mpg_loss_weight`): the others stay the model's."""
        names = ("num_masked_patches", "mpg_loss_weight")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


def label_settings(label_names: list[str]) -> dict:
    """The config fields of a head with one output per class, named."""
    return {
        "num_labels": len(label_names),
        "id2label": dict(enumerate(label_names)),
        "label2id": {name: index for index, name in enumerate(label_names)},
    }


def build_classifier(source: ModelSource | None, args: ModelArguments, label_names: list[str]) -> AudioClassifier:
    """The classifier to fine-tune, with a head of `len(label_names)` outputs named after the classes, in training
    mode. Original checkpoints, pretraining folders and AST models are converted to `args`' strides, input length and
    pooling (strides left unset: the original recipe for the checkpoint's patch shape); a saved model keeps its
    geometry and gets a new head where its classes differ."""
    if source is None:
        config = args.scratch_config(label_names)
        return model_type(config.model_type).classifier_class(config)
    labels = label_settings(label_names)
    geometry = {
        "freq_stride": args.freq_stride,
        "time_stride": args.time_stride,
        "max_length": args.max_length,
        "pooling": args.pooling,
    }
    if source.kind in (CHECKPOINT, AST):
        return from_original_checkpoint(source, **geometry, **labels).train()
    if source.kind == PRETRAINING:
        with safe_model_weights(source.location):
            pretrained = source.model_type.pretraining_class.from_pretrained(source.location)
        return classifier_from_pretraining_model(pretrained, **geometry, **labels).train()
    model_class = source.model_type.classifier_class if source.kind == MODEL else AutoModelForAudioClassification
    with safe_model_weights(source.location):
        return model_class.from_pretrained(
            source.location, ignore_mismatched_sizes=True, trust_remote_code=source.kind == FOREIGN, **labels
        )


def build_feature_extractor(
    source: ModelSource | None, max_length: int, num_mel_bins: int = 128
) -> SSASTFeatureExtractor:
    """
    The feature extractor of the model [`build_classifier`] gives: a saved model's own; a pretraining folder's or an
    AST model's statistics at `max_length` frames; AudioSet's statistics at `max_length` frames for an original
    checkpoint or a new model.
    """
    if source is None or source.kind == CHECKPOINT or not source.preprocessor:
        return SSASTFeatureExtractor(num_mel_bins=num_mel_bins, max_length=max_length)
    if source.kind in (PRETRAINING, AST):
        return SSASTFeatureExtractor.from_pretrained(source.location, max_length=max_length)
    if source.kind == MODEL:
        return source.model_type.feature_extractor_class.from_pretrained(source.location)
    return AutoFeatureExtractor.from_pretrained(source.location, trust_remote_code=True)


def load_classifier(
    source: ModelSource | str, trust_remote_code: bool = False
) -> tuple[PreTrainedModel, SSASTFeatureExtractor]:
    """
    `(model, feature_extractor)` of a trained classifier as it is, in evaluation mode: a gtzan-hf folder or Hub id
    with the package's own classes, a transformers AST converted into SSAST (the same logits, its own statistics), or
    with `trust_remote_code` a folder of another type with the code it ships. Original checkpoints and pretraining
    folders have no trained head: they are refused with what to do.
    """
    if isinstance(source, ModelSource):
        require_kind(source, TRAINED, TRAINED_EXPECTED, "MODEL")
    else:
        source = resolve_model(
            source, trust_remote_code=trust_remote_code, what="MODEL", kinds=TRAINED, expected=TRAINED_EXPECTED
        )
    if source.kind in (AST, MODEL):
        if source.kind == AST:
            model = from_original_checkpoint(source)
        else:
            with safe_model_weights(source.location):
                model = source.model_type.classifier_class.from_pretrained(source.location)
        return model.eval(), build_feature_extractor(source, model.config.max_length, model.config.num_mel_bins)
    with safe_model_weights(source.location):
        model = AutoModelForAudioClassification.from_pretrained(source.location, trust_remote_code=True)
    return model.eval(), AutoFeatureExtractor.from_pretrained(source.location, trust_remote_code=True)


def check_label_names(model: PreTrainedModel, label_names: list[str], name: str) -> None:
    """Refuse to score a model on a dataset whose classes are not the ones it predicts, in the same order."""
    model_labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    if model_labels != list(label_names):
        raise ValueError(
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
    elif require_kind(source, PRETRAINABLE, PRETRAINABLE_EXPECTED, "--model_name_or_path").kind == CHECKPOINT:
        model = pretraining_model_from_original_checkpoint(source, **objective)
    else:
        with safe_model_weights(source.location):
            model = SSASTForPreTraining.from_pretrained(source.location, **objective)
        if source.preprocessor:
            return model.train(), SSASTFeatureExtractor.from_pretrained(source.location)
        logger.warning("%s has no feature extractor: using the AudioSet statistics.", source.name)
    extractor = SSASTFeatureExtractor(num_mel_bins=model.config.num_mel_bins, max_length=model.config.max_length)
    return model.train(), extractor


def convert_checkpoint(
    checkpoint: ModelSource | str | Path, output_dir: str | Path, *, for_pretraining: bool = False, **kwargs
) -> SSASTForAudioClassification | SSASTForPreTraining:
    """
    Converts an original checkpoint or a transformers AST model (see
    [`~gtzan_hf.models.convert.from_original_checkpoint`], whose keyword arguments `kwargs` are) and saves it with
    its feature extractor (its input length; an AST model's statistics) to `output_dir`, loadable with
    `from_pretrained` and the Auto classes. With `for_pretraining`, an original pretraining checkpoint becomes an
    [`SSASTForPreTraining`] instead (`kwargs`: config fields such as `num_masked_patches`).
    """
    if not isinstance(checkpoint, ModelSource):
        checkpoint = resolve_model(checkpoint, what="Checkpoint", kinds=CONVERTIBLE, expected=CONVERTIBLE_EXPECTED)
    source = require_kind(checkpoint, CONVERTIBLE, CONVERTIBLE_EXPECTED, "Checkpoint")
    if for_pretraining:
        model = pretraining_model_from_original_checkpoint(source, **kwargs)
    else:
        model = from_original_checkpoint(source, **kwargs)
    feature_extractor = build_feature_extractor(source, model.config.max_length, model.config.num_mel_bins)
    model.save_pretrained(output_dir)
    feature_extractor.save_pretrained(output_dir)
    return model
