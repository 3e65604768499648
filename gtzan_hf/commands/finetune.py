"""Fine-tuning of SSAST (or the CNN baseline) on GTZAN or any audio classification dataset: the model arguments,
model building and the run itself. `scripts/finetune.py` is its command line; the presets are the YAML files of
`gtzan_hf/configs/finetune/`."""

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import AutoConfig, AutoModelForAudioClassification, set_seed

from ..data import SSASTDataCollator, SSASTDatasets
from ..data.augmentation import spec_augment
from ..data.collator import evaluation_dataloader
from ..inference.songs import check_label_names, load_classifier
from ..inference.windowing import seconds_to_frames
from ..models.checkpoints import RELEASED_CHECKPOINTS, released_name, resolve_checkpoint
from ..models.configuration_cnn import CNNConfig
from ..models.configuration_ssast import SSASTConfig
from ..models.convert import (
    DEFAULT_FINETUNING_STRIDES,
    classifier_from_pretraining_model,
    from_original_checkpoint,
    is_pretraining_folder,
    model_type_of,
    original_checkpoint_kind,
)
from ..models.feature_extraction_ssast import SSASTFeatureExtractor
from ..models.modeling_cnn import CNNForAudioClassification
from ..models.modeling_ssast import SSASTForAudioClassification, SSASTForPreTraining
from ..reports.evaluation import predict, write_evaluation_reports, write_learning_curves, write_spectrogram_pair
from ..reports.model_card import write_model_card
from ..training.resume import finished_run, resume_checkpoint
from ..training.trainer import AudioClassificationTrainer, AudioTrainingArguments
from .cli import (
    CommandLine,
    DataArguments,
    check_model_path,
    entry_point,
    load_datasets,
    parse_args,
    resolve_dataset,
    use_dataset_stats,
)

logger = logging.getLogger(__name__)

MODEL_CLASSES = {"ssast": SSASTForAudioClassification, "gtzan_cnn": CNNForAudioClassification}
ORIGINAL_CHECKPOINT_SUFFIXES = (".pth", ".pt")


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Starting model: a released SSAST checkpoint by name (SSAST-Base-Patch-400, downloaded once) or "
            "an original .pth (pretraining or fine-tuned), converted on the fly; a saved or Hub SSAST/CNN folder; a "
            "transformers AST folder or Hub id; none trains from scratch."
        },
    )
    model_type: str = field(default="ssast", metadata={"help": "From scratch: 'ssast' or 'cnn'."})
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
        metadata={"aliases": ["--input_tdim"], "help": "Input frames of the model (10 s crops are padded)."},
    )
    pooling: str = field(default="mean", metadata={"help": "SSAST pooling: mean (ft_avgtok) or cls (ft_cls)."})
    trust_remote_code: bool = field(
        default=False, metadata={"help": "Run the code shipped inside a model folder whose type is not SSAST/CNN."}
    )


def _default_strides(model_args: ModelArguments) -> tuple[int, int]:
    """The strides asked for, else the original fine-tuning recipe's for the patch shape (10x10 patches, 128x1
    frames)."""
    kind = "frame" if model_args.patch_freq == SSASTConfig().num_mel_bins else "patch"
    freq_stride, time_stride = DEFAULT_FINETUNING_STRIDES[kind]
    return model_args.freq_stride or freq_stride, model_args.time_stride or time_stride


def check_model_source(model_args: ModelArguments) -> None:
    """Refuse a starting model that cannot be used before any data is prepared: a missing path, or a folder whose
    model type is neither ours nor transformers' AST (its own code would have to run)."""
    source = model_args.model_name_or_path
    if source is None:
        return
    if is_original_checkpoint(source):
        path = resolve_checkpoint(source)  # a released name is downloaded now, not after the data
        if not path.is_file():
            raise FileNotFoundError(
                f"Original SSAST checkpoint {source} not found: pass the path of a .pth file or a released name "
                f"({', '.join(RELEASED_CHECKPOINTS)})."
            )
        original_checkpoint_kind(path)  # a damaged or foreign file is refused now, not after the data
        return
    check_model_path(source, "--model_name_or_path")
    model_type = model_type_of(source)
    if model_type not in (*MODEL_CLASSES, "audio-spectrogram-transformer") and not model_args.trust_remote_code:
        raise ValueError(
            f"{source} holds a {model_type!r} model, not SSAST, the CNN or a transformers AST; loading it would run "
            "the code shipped in its folder. Pass --trust_remote_code if you trust it."
        )


def is_original_checkpoint(source: str) -> bool:
    """Whether `source` names a checkpoint of the original code: a `.pth`/`.pt` file or a released name."""
    return source.endswith(ORIGINAL_CHECKPOINT_SUFFIXES) or released_name(source) is not None


def build_model(model_args: ModelArguments, label_names: list[str]):
    """The model to fine-tune, with a head of `len(label_names)` outputs named after the classes."""
    labels = {
        "num_labels": len(label_names),
        "id2label": dict(enumerate(label_names)),
        "label2id": {name: index for index, name in enumerate(label_names)},
    }
    freq_stride, time_stride = _default_strides(model_args)
    geometry = {"freq_stride": model_args.freq_stride, "time_stride": model_args.time_stride}
    source = model_args.model_name_or_path
    if source is None:
        if model_args.model_type == "cnn":
            return CNNForAudioClassification(CNNConfig(max_length=model_args.max_length, **labels))
        config = SSASTConfig.from_size(
            model_args.model_size,
            num_hidden_layers=model_args.num_hidden_layers,
            patch_freq=model_args.patch_freq,
            patch_time=model_args.patch_time,
            freq_stride=freq_stride,
            time_stride=time_stride,
            max_length=model_args.max_length,
            pooling=model_args.pooling,
            **labels,
        )
        return SSASTForAudioClassification(config)
    # Strides left unset keep the defaults of the checkpoint's own kind (patch or frame), chosen by the converter.
    if is_original_checkpoint(source):
        model = from_original_checkpoint(
            source, **geometry, max_length=model_args.max_length, pooling=model_args.pooling, **labels
        )
        return model.train()
    if is_pretraining_folder(source):
        # A scripts/pretrain.py output: new strides and length, positions adapted as for an original checkpoint.
        model = classifier_from_pretraining_model(
            SSASTForPreTraining.from_pretrained(source),
            **geometry,
            max_length=model_args.max_length,
            pooling=model_args.pooling,
            **labels,
        )
        return model.train()
    config = AutoConfig.from_pretrained(source, trust_remote_code=model_args.trust_remote_code)
    if config.model_type == "audio-spectrogram-transformer":
        model = from_original_checkpoint(
            source, **geometry, max_length=model_args.max_length, pooling=model_args.pooling, **labels
        )
        return model.train()
    model_class = MODEL_CLASSES.get(config.model_type, AutoModelForAudioClassification)
    return model_class.from_pretrained(
        source, ignore_mismatched_sizes=True, trust_remote_code=model_args.trust_remote_code, **labels
    )


def build_feature_extractor(model_args: ModelArguments) -> SSASTFeatureExtractor:
    """The starting model's own feature extractor when it has one, else Kaldi fbank with `max_length` frames."""
    source = model_args.model_name_or_path
    if source and Path(source, "preprocessor_config.json").is_file():
        if is_pretraining_folder(source) or model_type_of(source) == "audio-spectrogram-transformer":
            # its statistics, at the fine-tuning input length
            return SSASTFeatureExtractor.from_pretrained(source, max_length=model_args.max_length)
        return SSASTFeatureExtractor.from_pretrained(source)
    return SSASTFeatureExtractor(max_length=model_args.max_length)


def specaugment_example(
    data: SSASTDatasets, data_args: DataArguments, feature_extractor: SSASTFeatureExtractor
) -> tuple[np.ndarray, np.ndarray]:
    """The first validation song's first window, normalised, before and after SpecAugment (masked before
    normalisation, as the training transform does), each `(max_length, num_mel_bins)`."""
    window_frames = seconds_to_frames(data_args.crop_seconds)
    fbank = next(data.fbank_arrays("validation"))[:window_frames].astype(np.float32)
    window = feature_extractor.pad_or_truncate(torch.from_numpy(fbank))
    masked = spec_augment(window[None].clone(), data_args.freq_mask, data_args.time_mask, data_args.spec_augment_axes)
    masked = masked[0]  # spec_augment masks in place: a copy keeps `window` intact
    return feature_extractor.normalize(window).numpy(), feature_extractor.normalize(masked).numpy()


def flat_metrics(metrics: dict, prefix: str) -> dict:
    """A metrics.json entry as the Trainer's `*_results.json` keys: `eval_song_accuracy`, ...,
    `eval_per_genre_accuracy_<name>`."""
    flat = {f"{prefix}_{key}": value for key, value in metrics.items() if key != "per_genre_accuracy"}
    flat.update(
        {f"{prefix}_per_genre_accuracy_{name}": value for name, value in metrics["per_genre_accuracy"].items()}
    )
    return flat


def write_run_reports(
    trainer: AudioClassificationTrainer,
    data: SSASTDatasets,
    data_args: DataArguments,
    run_config: dict,
) -> dict:
    """
    Evaluate the (best) model once on validation (`do_eval`) and test (`do_predict`), and write every report of the
    run: metrics.json and its figures, the Trainer's eval/test/all_results.json, splits.json, run_config.json; after
    training also the learning curves, a SpecAugment example and the model card.
    """
    args = trainer.args
    output_dir = Path(args.output_dir)
    batch_size = args.per_device_eval_batch_size
    splits = {
        name: predict(
            trainer.model, evaluation_dataloader(getattr(data, name), batch_size, data.num_labels), args.device
        )
        for name, asked in (("validation", args.do_eval), ("test", args.do_predict))
        if asked
    }
    metrics = write_evaluation_reports(splits, data.label_names, output_dir, seed=args.seed)
    for name, prefix in (("validation", "eval"), ("test", "test")):
        if name in metrics:
            trainer.save_metrics(prefix, flat_metrics(metrics[name], prefix))
    data.info.save(output_dir / "splits.json")
    (output_dir / "run_config.json").write_text(json.dumps(run_config, indent=2, default=str))
    if args.do_train:
        write_learning_curves(trainer.state.log_history, output_dir)
        before, after = specaugment_example(data, data_args, trainer.processing_class)
        write_spectrogram_pair(before, after, output_dir / "specaugment_example.png")
        write_model_card(output_dir, args.hub_model_id)
    return metrics


def check_run_stages(model_args: ModelArguments, training_args: AudioTrainingArguments) -> None:
    """Refuse a run with nothing to do, or an evaluation-only run without a trained model to evaluate."""
    if not (training_args.do_train or training_args.do_eval or training_args.do_predict):
        raise ValueError("--do_train, --do_eval and --do_predict are all false: nothing to do.")
    if not training_args.do_train and model_args.model_name_or_path is None:
        raise ValueError(
            "--do_train false evaluates a trained model: pass its folder or Hub id with --model_name_or_path."
        )


def build_trainer(
    model_args: ModelArguments, data_args: DataArguments, training_args: AudioTrainingArguments
) -> tuple[AudioClassificationTrainer, SSASTDatasets]:
    """
    The run's data and its `AudioClassificationTrainer`: the model to fine-tune ([`build_model`]), or with
    `--do_train false` the trained model of `--model_name_or_path` as it is (its classes must be the dataset's).
    """
    set_seed(training_args.seed)
    check_model_source(model_args)
    # The main process writes the corpus and the fbank cache; the others then read them.
    with training_args.main_process_first(desc="dataset preparation"):
        data_args.dataset = resolve_dataset(data_args)
        feature_extractor = build_feature_extractor(model_args)
        data = load_datasets(data_args, feature_extractor)
    if data.skipped:
        logger.warning(
            "%d unusable files (unreadable, empty, silent, corrupt) were skipped: see splits.json", len(data.skipped)
        )
    if training_args.do_train:
        if use_dataset_stats(data_args, model_args.model_name_or_path):
            stats = SSASTFeatureExtractor.compute_stats(data.fbank_arrays("train"))
            feature_extractor.mean, feature_extractor.std = stats
            logger.info("Training-set statistics: mean %.4f, std %.4f", *stats)
        model = build_model(model_args, data.label_names)
    else:
        model, _ = load_classifier(model_args.model_name_or_path, trust_remote_code=model_args.trust_remote_code)
        check_label_names(model, data.label_names, model_args.model_name_or_path)
    trainer = AudioClassificationTrainer(
        model=model,
        args=training_args,
        train_dataset=data.train,
        eval_dataset=data.validation,
        data_collator=SSASTDataCollator(data.num_labels, mixup_alpha=data_args.mixup_alpha),
        eval_data_collator=SSASTDataCollator(data.num_labels),
        processing_class=feature_extractor,
    )
    return trainer, data


def run_finetune(
    model_args: ModelArguments,
    data_args: DataArguments,
    training_args: AudioTrainingArguments,
    command_line: CommandLine | None = None,
) -> dict | None:
    """Fine-tune, keep the best model on validation song accuracy, evaluate it once on validation and test, write
    the reports and optionally push to the Hub; with `--do_train false`, only evaluate `--model_name_or_path`.
    Returns `{"validation": {...}, "test": {...}}` as in metrics.json, or `None` when `output_dir` holds a finished
    run (`--overwrite_output_dir` trains it again)."""
    overwrite_output_dir = command_line is not None and command_line.overwrite_output_dir
    check_run_stages(model_args, training_args)
    if training_args.do_train and finished_run(
        training_args.output_dir, "metrics.json", training_args, overwrite_output_dir
    ):
        return None
    trainer, data = build_trainer(model_args, data_args, training_args)
    if training_args.do_train:
        resume = resume_checkpoint(
            training_args.output_dir, training_args.resume_from_checkpoint, overwrite_output_dir
        )
        train_result = trainer.train(resume_from_checkpoint=resume)
        trainer.save_model()
        trainer.save_state()
        trainer.log_metrics("train", train_result.metrics)
        trainer.save_metrics("train", train_result.metrics)

    run_config = {**asdict(model_args), **asdict(data_args), **training_args.to_dict()}
    metrics = None
    if trainer.is_world_process_zero():
        metrics = write_run_reports(trainer, data, data_args, run_config)
        for split, figures in metrics.items():
            logger.info(
                "%s: clip accuracy %.4f, song accuracy %.4f (soft vote), %.4f (the course project's vote)",
                split,
                figures["clip_accuracy"],
                figures["song_accuracy"],
                figures["song_accuracy_course_project"],
            )
    if training_args.push_to_hub and training_args.do_train:
        trainer.push_to_hub(commit_message="gtzan-hf fine-tuning run")
    return metrics


def parse_finetune_args(argv: list[str] | None = None):
    """`(ModelArguments, DataArguments, AudioTrainingArguments, CommandLine)` from, in increasing priority: a
    `--preset` (`gtzan_hf/configs/finetune/*.yaml`), a `--config` JSON/YAML file, then the command line."""
    return parse_args((ModelArguments, DataArguments, AudioTrainingArguments), argv, preset_kind="finetune")


def main(argv: list[str] | None = None) -> None:
    model_args, data_args, training_args, command_line = parse_finetune_args(argv)
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    run_finetune(model_args, data_args, training_args, command_line)


cli = entry_point(main)

if __name__ == "__main__":
    cli()
