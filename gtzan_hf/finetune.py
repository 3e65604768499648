"""Fine-tuning of SSAST (or the CNN baseline) on GTZAN or any audio classification dataset: arguments, presets,
model building and the run itself. `scripts/finetune.py` is its command line."""

import argparse
import json
import logging
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import yaml
from transformers import AutoConfig, HfArgumentParser, PreTrainedConfig, set_seed
from transformers.trainer_utils import get_last_checkpoint

from .configuration_cnn import CNNConfig
from .configuration_ssast import SSASTConfig
from .convert import classifier_from_pretraining_model, from_original_checkpoint
from .data import SSASTDataCollator, SSASTDatasets, build_datasets
from .data.features import FRAMES_PER_SECOND, spec_augment
from .feature_extraction_ssast import SSASTFeatureExtractor
from .model_card import write_model_card
from .modeling_cnn import CNNForAudioClassification
from .modeling_ssast import SSASTForAudioClassification, SSASTForPreTraining
from .reports import predict, write_evaluation_reports, write_learning_curves, write_spectrogram_pair
from .synthetic import generate_corpus
from .trainer import AudioClassificationTrainer, AudioTrainingArguments

logger = logging.getLogger(__name__)

MODEL_CLASSES = {"ssast": SSASTForAudioClassification, "gtzan_cnn": CNNForAudioClassification}
ORIGINAL_CHECKPOINT_SUFFIXES = (".pth", ".pt")
RELEASED_CHECKPOINTS_URL = "https://github.com/YuanGongND/ssast#pretrained-models"


@dataclass
class ModelArguments:
    model_name_or_path: str | None = field(
        default=None,
        metadata={
            "help": "Starting model: an original SSAST .pth (pretraining or fine-tuned, converted on the fly), a "
            "saved or Hub SSAST/CNN folder, a transformers AST folder or Hub id; none trains from scratch."
        },
    )
    model_type: str = field(default="ssast", metadata={"help": "From scratch: 'ssast' or 'cnn'."})
    model_size: str = field(default="base", metadata={"help": "From scratch: SSAST width, tiny | small | base."})
    num_hidden_layers: int = field(default=12, metadata={"help": "From scratch: SSAST depth."})
    patch_freq: int = field(default=16, metadata={"help": "From scratch: patch height (16, or 128 for frames)."})
    patch_time: int = field(default=16, metadata={"help": "From scratch: patch width (16, or 2 for frames)."})
    fstride: int = field(default=10, metadata={"help": "Patch stride along frequency."})
    tstride: int = field(default=10, metadata={"help": "Patch stride along time."})
    max_length: int = field(default=1024, metadata={"help": "Input frames of the model (10 s crops are padded)."})
    pooling: str = field(default="mean", metadata={"help": "SSAST pooling: mean (ft_avgtok) or cls (ft_cls)."})
    trust_remote_code: bool = field(default=False, metadata={"help": "Allow Hub code for AutoConfig."})


@dataclass
class AudioSourceArguments:
    """Where the audio comes from and how it is prepared: shared by fine-tuning and pretraining."""

    dataset: str | None = field(
        default=None,
        metadata={"help": "Audio data: a folder, a CSV/JSON list or a Hub dataset id (GTZAN or any other)."},
    )
    audio_column: str = field(default="audio", metadata={"help": "Audio column of a Hub dataset."})
    dataset_stats: bool = field(
        default=False,
        metadata={"help": "Normalise with the training audio's own mean/std instead of AudioSet's (from scratch)."},
    )
    generate_songs_per_genre: int = field(
        default=0,
        metadata={"help": "If > 0 and `dataset` is missing, write a generated GTZAN-shaped corpus there first."},
    )
    generate_seconds: float = field(default=30.0, metadata={"help": "Length of generated songs."})
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for the fbank cache."})
    cache_dir: str | None = field(default=None, metadata={"help": "datasets cache folder."})


@dataclass
class DataArguments(AudioSourceArguments):
    label_column: str = field(default="genre", metadata={"help": "Label column of a Hub dataset."})
    split: str = field(default="random", metadata={"help": "random | fault-filtered | kfold"})
    split_seed: int = field(default=0, metadata={"help": "Seed of the random and k-fold splits."})
    fold: int = field(default=0, metadata={"help": "k-fold: the fold used as test split."})
    num_folds: int = field(default=10, metadata={"help": "k-fold: the number of folds."})
    crop_strategy: str = field(default="random-crop", metadata={"help": "random-crop (Strategy B) | static (A)."})
    crop_seconds: float = field(default=10.0, metadata={"help": "Length of training crops and evaluation windows."})
    eval_segments: int = field(default=3, metadata={"help": "Evaluation windows per song."})
    eval_hop_seconds: float = field(default=10.0, metadata={"help": "Hop between evaluation windows."})
    freq_mask: int = field(default=36, metadata={"help": "SpecAugment: widest frequency mask (bins); 0 disables."})
    time_mask: int = field(default=144, metadata={"help": "SpecAugment: widest time mask (frames); 0 disables."})
    waveform_augment: bool = field(default=False, metadata={"help": "audiomentations gain/noise/pitch/stretch."})
    mixup_alpha: float = field(default=0.0, metadata={"help": "Mixup Beta(alpha, alpha); 0 disables."})


# Every preset evaluates each epoch and keeps the best model on validation song accuracy.
EPOCH_EVALUATION = dict(
    eval_strategy="epoch",
    save_strategy="epoch",
    logging_strategy="epoch",
    load_best_model_at_end=True,
    metric_for_best_model="song_accuracy",
)
# The seed's windows and augmentation on GTZAN: random 10 s crops, SpecAugment 36/144, label smoothing 0.1.
SEED_DATA_RECIPE = dict(
    max_length=1024,
    crop_strategy="random-crop",
    crop_seconds=10.0,
    freq_mask=36,
    time_mask=144,
    label_smoothing_factor=0.1,
)


PRESETS: dict[str, dict] = {
    # The seed's recipe (report.md): SSAST-Base-Patch-400, stride 10, 1024 frames, random 10 s crops, SpecAugment
    # 36/144, label smoothing 0.1, head 1e-4 / backbone 5e-6, cosine over 170 epochs, 16 x 2 accumulation.
    "ssast-gtzan": dict(
        **SEED_DATA_RECIPE,
        **EPOCH_EVALUATION,
        model_name_or_path="SSAST-Base-Patch-400.pth",
        fstride=10,
        tstride=10,
        pooling="mean",
        head_learning_rate=1e-4,
        learning_rate=5e-6,
        lr_scheduler_type="cosine",
        num_train_epochs=170,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=32,
        gradient_accumulation_steps=2,
        weight_decay=5e-7,
        save_total_limit=2,
        dataloader_num_workers=4,
    ),
    # The seed's VGG-style CNN, trained with Adam at 1e-3 on the same features, crops and splits.
    "cnn-gtzan": dict(
        **SEED_DATA_RECIPE,
        **EPOCH_EVALUATION,
        model_name_or_path=None,
        model_type="cnn",
        learning_rate=1e-3,
        head_learning_rate=1e-3,
        optim="adamw_torch",
        weight_decay=0.0,
        lr_scheduler_type="cosine",
        num_train_epochs=100,
        per_device_train_batch_size=32,
        per_device_eval_batch_size=64,
        save_total_limit=2,
        dataloader_num_workers=4,
    ),
    # Offline, on CPU, in minutes: a generated GTZAN-shaped corpus and a small SSAST trained from scratch.
    "quickstart": dict(
        **EPOCH_EVALUATION,
        dataset="data/generated-gtzan",
        generate_songs_per_genre=30,
        generate_seconds=30.0,
        model_name_or_path=None,
        model_type="ssast",
        model_size="tiny",
        num_hidden_layers=2,
        fstride=16,
        tstride=16,
        max_length=512,
        crop_seconds=5.0,
        eval_segments=3,
        eval_hop_seconds=10.0,
        freq_mask=24,
        time_mask=48,
        dataset_stats=True,
        label_smoothing_factor=0.1,
        learning_rate=1e-3,
        head_learning_rate=1e-3,
        weight_decay=0.01,
        lr_scheduler_type="cosine",
        warmup_steps=10,
        num_train_epochs=25,
        per_device_train_batch_size=16,
        per_device_eval_batch_size=32,
        save_total_limit=1,
        use_cpu=True,
        report_to="none",
    ),
}


def mixed_precision_defaults() -> dict:
    """bf16 where the GPU has it, fp16 on older GPUs, full precision on CPU."""
    if not torch.cuda.is_available():
        return {}
    return {"bf16": True} if torch.cuda.is_bf16_supported() else {"fp16": True}


def parse_args_with_presets(dataclass_types: tuple, presets: dict[str, dict], argv: list[str] | None, cpu_presets=()):
    """
    One instance of each of `dataclass_types` from, in increasing priority: a `--preset` (named in `presets`; those
    not in `cpu_presets` also get [`mixed_precision_defaults`]), a `--config` JSON/YAML file, then the command line.
    """
    pre_parser = argparse.ArgumentParser(add_help=False)
    pre_parser.add_argument("--preset", choices=sorted(presets))
    pre_parser.add_argument("--config")
    known, remaining = pre_parser.parse_known_args(argv)

    defaults = {}
    if known.preset:
        defaults.update(presets[known.preset])
        if known.preset not in cpu_presets:
            defaults.update(mixed_precision_defaults())
    if known.config:
        text = Path(known.config).read_text()
        defaults.update(yaml.safe_load(text) if known.config.endswith((".yaml", ".yml")) else json.loads(text))

    parser = HfArgumentParser(dataclass_types)
    parser.add_argument("--preset", choices=sorted(presets), help="Named recipe; any argument overrides it.")
    parser.add_argument("--config", help="JSON or YAML file of arguments; the command line overrides it.")
    unknown = set(defaults) - {action.dest for action in parser._actions}
    if unknown:
        raise ValueError(f"Unknown arguments in the preset or config file: {sorted(unknown)}.")
    parser.set_defaults(**defaults)
    *arguments, _ = parser.parse_args_into_dataclasses(args=remaining)
    return tuple(arguments)


def parse_finetune_args(argv: list[str] | None = None):
    """
    `(ModelArguments, DataArguments, AudioTrainingArguments)` from, in increasing priority: a `--preset`, a
    `--config` JSON/YAML file, then the command line.
    """
    return parse_args_with_presets(
        (ModelArguments, DataArguments, AudioTrainingArguments), PRESETS, argv, cpu_presets=("quickstart",)
    )


def build_model(model_args: ModelArguments, label_names: list[str]):
    """The model to fine-tune, with a head of `len(label_names)` outputs named after the classes."""
    labels = {
        "num_labels": len(label_names),
        "id2label": dict(enumerate(label_names)),
        "label2id": {name: index for index, name in enumerate(label_names)},
    }
    source = model_args.model_name_or_path
    if source is None:
        if model_args.model_type == "cnn":
            return CNNForAudioClassification(CNNConfig(max_length=model_args.max_length, **labels))
        config = SSASTConfig.from_size(
            model_args.model_size,
            num_hidden_layers=model_args.num_hidden_layers,
            patch_freq=model_args.patch_freq,
            patch_time=model_args.patch_time,
            freq_stride=model_args.fstride,
            time_stride=model_args.tstride,
            max_length=model_args.max_length,
            pooling=model_args.pooling,
            **labels,
        )
        return SSASTForAudioClassification(config)
    if source.endswith(ORIGINAL_CHECKPOINT_SUFFIXES):
        if not Path(source).is_file():
            raise FileNotFoundError(
                f"Original SSAST checkpoint {source} not found. Download a released one (e.g. "
                f"SSAST-Base-Patch-400.pth) from {RELEASED_CHECKPOINTS_URL} and pass its path with "
                "--model_name_or_path."
            )
        model = from_original_checkpoint(
            source,
            fstride=model_args.fstride,
            tstride=model_args.tstride,
            input_tdim=model_args.max_length,
            pooling=model_args.pooling,
            **labels,
        )
        return model.train()
    if is_pretraining_folder(source):
        # A scripts/pretrain.py output: new strides and length, positions adapted as for an original checkpoint.
        model = classifier_from_pretraining_model(
            SSASTForPreTraining.from_pretrained(source),
            fstride=model_args.fstride,
            tstride=model_args.tstride,
            input_tdim=model_args.max_length,
            pooling=model_args.pooling,
            **labels,
        )
        return model.train()
    config = AutoConfig.from_pretrained(source, trust_remote_code=model_args.trust_remote_code)
    if config.model_type == "audio-spectrogram-transformer":
        return from_original_checkpoint(source, pooling=model_args.pooling, **labels).train()
    if config.model_type not in MODEL_CLASSES:
        raise ValueError(
            f"{source} is a {config.model_type!r} model; expected an SSAST or CNN folder (model_type 'ssast' or "
            "'gtzan_cnn'), a transformers AST model or an original SSAST .pth checkpoint."
        )
    return MODEL_CLASSES[config.model_type].from_pretrained(source, ignore_mismatched_sizes=True, **labels)


def is_pretraining_folder(source: str) -> bool:
    """Whether `source` holds an `SSASTForPreTraining` (the output of scripts/pretrain.py)."""
    return "SSASTForPreTraining" in (PreTrainedConfig.get_config_dict(source)[0].get("architectures") or ())


def build_feature_extractor(model_args: ModelArguments) -> SSASTFeatureExtractor:
    """The starting model's own feature extractor when it has one, else Kaldi fbank with `max_length` frames."""
    source = model_args.model_name_or_path
    if source and Path(source, "preprocessor_config.json").is_file():
        if is_pretraining_folder(source):  # its statistics, at the fine-tuning input length
            return SSASTFeatureExtractor.from_pretrained(source, max_length=model_args.max_length)
        return SSASTFeatureExtractor.from_pretrained(source)
    return SSASTFeatureExtractor(max_length=model_args.max_length)


def last_checkpoint(training_args: AudioTrainingArguments) -> str | None:
    """The checkpoint to resume from: `--resume_from_checkpoint`, else the last one in output_dir, so that running
    the same command again after an interruption continues the run (use a new output_dir to start afresh)."""
    if training_args.resume_from_checkpoint:
        return training_args.resume_from_checkpoint
    if os.path.isdir(training_args.output_dir):
        return get_last_checkpoint(training_args.output_dir)
    return None


def prepare_dataset(data_args: DataArguments) -> None:
    """Write the generated corpus on first use (the quickstart), or fail early on a missing local folder."""
    if data_args.dataset is None:
        raise ValueError("No --dataset given: pass a GTZAN folder, a CSV/JSON list or a Hub dataset id.")
    if data_args.generate_songs_per_genre > 0 and not Path(data_args.dataset).exists():
        logger.info("Writing a generated GTZAN-shaped corpus to %s", data_args.dataset)
        generate_corpus(
            data_args.dataset, data_args.generate_songs_per_genre, seed=0, duration=data_args.generate_seconds
        )


def load_datasets(data_args: DataArguments, feature_extractor: SSASTFeatureExtractor) -> SSASTDatasets:
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
        waveform_augment=data_args.waveform_augment,
        num_proc=data_args.preprocessing_num_workers,
        cache_dir=data_args.cache_dir,
        audio_column=data_args.audio_column,
        label_column=data_args.label_column,
    )


def evaluation_dataloader(dataset, batch_size: int, num_labels: int) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader(dataset, batch_size=batch_size, collate_fn=SSASTDataCollator(num_labels))


def specaugment_example(
    data: SSASTDatasets, data_args: DataArguments, feature_extractor: SSASTFeatureExtractor
) -> tuple[np.ndarray, np.ndarray]:
    """The first validation song's first window, normalised, before and after SpecAugment (masked before
    normalisation, as the training transform does), each `(max_length, num_mel_bins)`."""
    window_frames = round(data_args.crop_seconds * FRAMES_PER_SECOND)
    fbank = next(data.fbank_arrays("validation"))[:window_frames].astype(np.float32)
    window = feature_extractor.pad_or_truncate(torch.from_numpy(fbank))
    masked = spec_augment(window[None].clone(), data_args.freq_mask, data_args.time_mask)[0]  # masks in place
    return feature_extractor.normalize(window).numpy(), feature_extractor.normalize(masked).numpy()


def write_run_reports(
    trainer: AudioClassificationTrainer,
    data: SSASTDatasets,
    data_args: DataArguments,
    run_config: dict,
) -> dict:
    """Evaluate the (best) model on validation and test once, and write every report of the run."""
    output_dir = Path(trainer.args.output_dir)
    batch_size = trainer.args.per_device_eval_batch_size
    splits = {
        name: predict(trainer.model, evaluation_dataloader(dataset, batch_size, data.num_labels), trainer.args.device)
        for name, dataset in (("validation", data.validation), ("test", data.test))
    }
    metrics = write_evaluation_reports(splits, data.label_names, output_dir, seed=trainer.args.seed)
    write_learning_curves(trainer.state.log_history, output_dir)
    before, after = specaugment_example(data, data_args, trainer.processing_class)
    write_spectrogram_pair(before, after, output_dir / "specaugment_example.png")
    data.info.save(output_dir / "splits.json")
    (output_dir / "run_config.json").write_text(json.dumps(run_config, indent=2, default=str))
    write_model_card(output_dir, metrics, run_config, data.label_names, trainer.args.hub_model_id)
    return metrics


def run_finetune(model_args: ModelArguments, data_args: DataArguments, training_args: AudioTrainingArguments) -> dict:
    """Fine-tune, keep the best model on validation song accuracy, evaluate it once on test, write the reports and
    optionally push to the Hub. Returns `{"validation": {...}, "test": {...}}` as in metrics.json."""
    set_seed(training_args.seed)
    # The main process writes the corpus and the fbank cache; the others then read them.
    with training_args.main_process_first(desc="dataset preparation"):
        prepare_dataset(data_args)
        feature_extractor = build_feature_extractor(model_args)
        data = load_datasets(data_args, feature_extractor)
    if data_args.dataset_stats:
        feature_extractor.mean, feature_extractor.std = SSASTFeatureExtractor.compute_stats(data.fbank_arrays("train"))
        logger.info("Training-set statistics: mean %.4f, std %.4f", feature_extractor.mean, feature_extractor.std)
    if data.skipped:
        logger.warning("%d unreadable, empty or silent files were skipped: see splits.json", len(data.skipped))

    model = build_model(model_args, data.label_names)
    trainer = AudioClassificationTrainer(
        model=model,
        args=training_args,
        train_dataset=data.train,
        eval_dataset=data.validation,
        data_collator=SSASTDataCollator(data.num_labels, mixup_alpha=data_args.mixup_alpha),
        eval_data_collator=SSASTDataCollator(data.num_labels),
        processing_class=feature_extractor,
    )
    trainer.train(resume_from_checkpoint=last_checkpoint(training_args))
    trainer.save_model()
    trainer.save_state()

    run_config = {**asdict(model_args), **asdict(data_args), **training_args.to_dict()}
    metrics = None
    if trainer.is_world_process_zero():
        metrics = write_run_reports(trainer, data, data_args, run_config)
        logger.info(
            "Test: clip accuracy %.4f, song accuracy %.4f",
            metrics["test"]["clip_accuracy"],
            metrics["test"]["song_accuracy"],
        )
    if training_args.push_to_hub:
        trainer.push_to_hub(commit_message="gtzan-hf fine-tuning run")
    return metrics
