"""Fine-tuning of SSAST (or the CNN baseline) on GTZAN or any audio classification dataset: the run itself.
`scripts/finetune.py` is its command line; the presets are the YAML files of `gtzan_hf/configs/finetune/`."""

import json
import logging
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import transformers
from transformers import set_seed
from transformers.trainer_utils import speed_metrics

from ..data import Corpus, DataConfig, SplitInfo, SSASTDataCollator, SSASTDatasets, build_datasets, load_corpus
from ..data.augmentation import spec_augment
from ..data.collator import evaluation_dataloader
from ..data.splits import resolved_split
from ..errors import UserError
from ..inference.predict import predict
from ..inference.windowing import model_windows
from ..models.feature_extraction_ssast import SSASTFeatureExtractor
from ..models.loading import (
    ModelArguments,
    build_classifier,
    build_feature_extractor,
    check_label_names,
    classifier_settings,
    load_classifier,
)
from ..models.source import ANY, TRAINED, ModelSource, SourceKind
from ..reports.evaluation import write_evaluation_reports, write_learning_curves, write_spectrogram_pair
from ..reports.model_card import write_model_card
from ..training.linear_probe import fit_linear_probe
from ..training.output_dir import holds_output_dir
from ..training.resume import RUN_RECORD, check_resumed_run, finished_run, resume_checkpoint
from ..training.trainer import AudioClassificationTrainer, AudioTrainingArguments
from .cli import CommandLine, entry_point, parse_args

logger = logging.getLogger(__name__)

EVALUATED_SPLITS = (("validation", "eval"), ("test", "test"))  # (split, the Trainer's metric prefix)


def specaugment_example(
    data: SSASTDatasets, data_config: DataConfig, feature_extractor: SSASTFeatureExtractor
) -> tuple[np.ndarray, np.ndarray]:
    """The first validation song's first window, normalised, before and after SpecAugment (masked before
    normalisation, as the training transform does), each `(max_length, num_mel_bins)`."""
    fbank = next(data.fbank_arrays("validation"))[: data.windows.frames].astype(np.float32)
    window = feature_extractor.pad_or_truncate(torch.from_numpy(fbank))
    masks = (data_config.freq_mask, data_config.time_mask)
    masked = spec_augment(window[None].clone(), *masks, data_config.spec_augment_axes)[0]  # masks the copy
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
    trainer: AudioClassificationTrainer, data: SSASTDatasets, data_config: DataConfig, run_config: dict
) -> dict | None:
    """
    Evaluate the (best) model once on validation (`do_eval`, unless a linear probe was fitted on it) and test
    (`do_predict`), every process scoring its share of the windows, and write every report of the run on the main
    process: metrics.json and its figures, the Trainer's eval/test/all_results.json, splits.json, run_config.json;
    after training also the model card, and after gradient training the learning curves and a SpecAugment example.
    Returns the metrics (`None` on the other processes).
    """
    args = trainer.args
    probed = args.do_train and args.linear_probe
    splits = {
        name: predict(trainer.model, trainer.get_test_dataloader(getattr(data, name)), True, trainer.accelerator)
        for name, asked in (("validation", args.do_eval and not probed), ("test", args.do_predict))
        if asked
    }
    if not trainer.is_world_process_zero():
        return None
    output_dir = Path(args.output_dir)
    metrics = write_evaluation_reports(splits, data.label_names, output_dir, seed=args.seed)
    for name, prefix in EVALUATED_SPLITS:
        if name in metrics:
            trainer.save_metrics(prefix, flat_metrics(metrics[name], prefix))
    data.info.save(output_dir / "splits.json")
    (output_dir / RUN_RECORD).write_text(json.dumps(run_config, indent=2, default=str))
    if args.do_train and not probed:
        write_learning_curves(trainer.state.log_history, output_dir)
        before, after = specaugment_example(data, data_config, trainer.processing_class)
        write_spectrogram_pair(before, after, output_dir / "specaugment_example.png")
    if args.do_train:
        write_model_card(output_dir, args.hub_model_id)
    return metrics


def check_run_stages(model_args: ModelArguments, training_args: AudioTrainingArguments) -> None:
    """Refuse a run with nothing to do, or an evaluation-only run without a trained model to evaluate."""
    if not (training_args.do_train or training_args.do_eval or training_args.do_predict):
        raise UserError("--do_train, --do_eval and --do_predict are all false: nothing to do.")
    if not training_args.do_train and model_args.model_name_or_path is None:
        raise UserError(
            "--do_train false evaluates a trained model: pass its folder or Hub id with --model_name_or_path."
        )


def starting_model(model_args: ModelArguments, training_args: AudioTrainingArguments) -> ModelSource | None:
    """`--model_name_or_path` resolved: any model to fine-tune, a trained classifier to evaluate (`--do_train
    false`); `None` from scratch."""
    return model_args.resolve(ANY if training_args.do_train else TRAINED)


def build_trainer(
    model_args: ModelArguments,
    data_config: DataConfig,
    training_args: AudioTrainingArguments,
    source: ModelSource | None = None,
) -> tuple[AudioClassificationTrainer, SSASTDatasets]:
    """
    The run's data and its `AudioClassificationTrainer`: the model to fine-tune
    ([`~gtzan_hf.models.loading.build_classifier`]), or with `--do_train false` the trained model of
    `--model_name_or_path` as it is (its classes must be the dataset's). `source` is `model_args` resolved (resolved
    here when not given); its windows, or the ones asked for, are recorded in the feature extractor that is saved
    with the model.
    """
    set_seed(training_args.seed)
    source = source or starting_model(model_args, training_args)
    if not training_args.do_train:  # a model that cannot be evaluated as it is is refused before any data
        model, _ = load_classifier(source)
    # The main process writes the corpus and the fbank cache; the others then read them.
    with training_args.main_process_first(desc="dataset preparation"):
        feature_extractor = build_feature_extractor(source, model_args.max_length)
        data = build_datasets(data_config, feature_extractor)  # the windows are checked before any data is read
        data_config.dataset = data_config.resolved_dataset()  # saved with the run: the corpus read
    # the split and the windows used, asked for or the dataset's and the model's own: saved with the run
    # (run_config.json)
    data_config.split = data.info.split
    data_config.crop_seconds, data_config.eval_hop_seconds = data.windows.seconds, data.windows.hop_seconds
    if data.skipped:
        logger.warning(
            "%d files (unreadable, empty, silent, corrupt, duplicate) were skipped: see splits.json", len(data.skipped)
        )
    if training_args.do_train:
        if data_config.use_dataset_stats(from_scratch=source is None):
            stats = SSASTFeatureExtractor.compute_stats(data.fbank_arrays("train"))
            feature_extractor.mean, feature_extractor.std = stats
            logger.info("Training-set statistics: mean %.4f, std %.4f", *stats)
        # and with the model, whose later users (evaluation, the Space, `pipeline`) default to them
        feature_extractor.window_seconds = data.windows.seconds
        feature_extractor.hop_seconds = data.windows.hop_seconds
        model = build_classifier(source, model_args, data.label_names)
    else:
        check_label_names(model, data.label_names, source.name)
    trainer = AudioClassificationTrainer(
        model=model,
        args=training_args,
        train_dataset=data.train,
        eval_dataset=data.validation,
        data_collator=SSASTDataCollator(data.num_labels, mixup_alpha=data_config.mixup_alpha),
        eval_data_collator=SSASTDataCollator(data.num_labels),
        processing_class=feature_extractor,
    )
    return trainer, data


def run_settings(model_args: ModelArguments, data_config: DataConfig, training_args: AudioTrainingArguments) -> dict:
    """Every setting of a run, as its `run_config.json` records them."""
    return {**asdict(model_args), **asdict(data_config), **training_args.to_dict()}


def listed_corpus(data_config: DataConfig) -> Corpus:
    """The dataset as listing it gives it, before any file is read: its classes and the splits its folders name."""
    sources = logging.getLogger("gtzan_hf.data.sources")
    level = sources.level
    sources.setLevel(logging.ERROR)  # what the listing finds is said once, when the data is prepared
    try:
        options = data_config.corpus_options()
        return load_corpus(
            data_config.resolved_dataset(), label_column=data_config.label_column, check=False, **options
        )
    finally:
        sources.setLevel(level)


def check_resumed_finetuning(
    checkpoint: str, model_args: ModelArguments, data_config: DataConfig, source: ModelSource | None
) -> None:
    """Refuse to resume `checkpoint` into a fine-tuning run of other classes, another model or other data settings
    ([`~gtzan_hf.training.resume.check_resumed_run`]), before any data is prepared: the classes from listing the
    dataset, the windows as the model resolves them."""
    windows = model_windows(
        build_feature_extractor(source, model_args.max_length), data_config.crop_seconds, data_config.eval_hop_seconds
    )
    saved_splits = Path(checkpoint).parent / "splits.json"
    # a class the run left out for want of usable songs is listed, and left out again once the files are read
    dropped = SplitInfo.load(saved_splits).dropped_classes if saved_splits.is_file() else {}
    corpus = listed_corpus(data_config)
    label_names = [name for name in corpus.label_names if name not in dropped]
    data_settings = {  # as the run recorded them: resolved
        **data_config.run_settings(),
        "dataset": data_config.resolved_dataset(),
        "split": resolved_split(data_config.split, corpus.named_splits),
        "crop_seconds": windows.seconds,
        "eval_hop_seconds": windows.hop_seconds,
    }
    model_settings = {name: getattr(model_args, name) for name in classifier_settings(source)}
    if source is None:
        model_config = model_args.scratch_config().to_dict()
    else:  # a saved model keeps its own; a converted one is told by its recorded flags
        model_config = source.config if source.kind is SourceKind.MODEL else None
    check_resumed_run(checkpoint, label_names, model_config, {**model_settings, **data_settings})


def fit_probe(trainer: AudioClassificationTrainer, data: SSASTDatasets) -> dict:
    """`--linear_probe`: fit the model's head on the fixed windows of the training and validation songs (see
    [`~gtzan_hf.training.linear_probe.fit_linear_probe`]), save the model and what was chosen
    (`linear_probe.json`). Every process fits the same probe on all the windows, so that each holds the model it
    then evaluates its share of the test windows with. Returns the fit's `train_*` speed metrics, as `train()`'s."""
    args = trainer.args
    start = time.time()
    windows = data.fixed_windows("train", "validation")
    batches = evaluation_dataloader(windows, args.per_device_eval_batch_size, data.num_labels)
    fit = fit_linear_probe(trainer.model, batches, args.probe_c_values, args.probe_cv_folds, args.seed)
    trainer.save_model()
    if trainer.is_world_process_zero():
        (Path(args.output_dir) / "linear_probe.json").write_text(json.dumps(fit.to_json(), indent=2))
    return speed_metrics("train", start)


@holds_output_dir
def run_finetune(
    model_args: ModelArguments,
    data_config: DataConfig,
    training_args: AudioTrainingArguments,
    command_line: CommandLine | None = None,
) -> dict | None:
    """Fine-tune, keep the best model on validation song accuracy, evaluate it once on validation and test, write
    the reports and optionally push to the Hub; with `--do_train false`, only evaluate `--model_name_or_path`.
    Returns `{"validation": {...}, "test": {...}}` as in metrics.json (on the main process), or `None` when
    `output_dir` holds a finished run (`--overwrite_output_dir` trains it again)."""
    overwrite_output_dir = command_line is not None and command_line.overwrite_output_dir
    check_run_stages(model_args, training_args)
    if training_args.do_train and finished_run(
        training_args.output_dir, "metrics.json", training_args, overwrite_output_dir
    ):
        return None
    source = starting_model(model_args, training_args)  # a bad model is refused before any data is prepared
    resume = None
    if training_args.do_train and not training_args.linear_probe:
        resume = resume_checkpoint(
            training_args.output_dir, training_args.resume_from_checkpoint, overwrite_output_dir
        )
        if resume:  # a checkpoint of another run is refused before any data is prepared
            check_resumed_finetuning(resume, model_args, data_config, source)
    trainer, data = build_trainer(model_args, data_config, training_args, source)
    if training_args.do_train:
        if resume:  # the classes with usable songs, now that every file is checked
            check_resumed_run(resume, label_names=data.label_names)
        if trainer.is_world_process_zero():  # what a resumed run is checked against, recorded before the first save
            data.info.save(Path(training_args.output_dir) / "splits.json")
            (Path(training_args.output_dir) / RUN_RECORD).write_text(
                json.dumps(run_settings(model_args, data_config, training_args), indent=2, default=str)
            )
    if training_args.do_train and training_args.linear_probe:
        train_metrics = fit_probe(trainer, data)
    elif training_args.do_train:
        train_metrics = trainer.train(resume_from_checkpoint=resume).metrics
        trainer.save_model()
        trainer.save_state()
    if training_args.do_train:
        trainer.log_metrics("train", train_metrics)
        trainer.save_metrics("train", train_metrics)

    metrics = write_run_reports(trainer, data, data_config, run_settings(model_args, data_config, training_args))
    for split, figures in (metrics or {}).items():
        clip, song = figures["clip_accuracy"], figures["song_accuracy"]
        logger.info("%s: clip accuracy %.4f, song accuracy %.4f (soft vote)", split, clip, song)
    if training_args.push_to_hub and training_args.do_train:
        trainer.push_to_hub(commit_message="gtzan-hf fine-tuning run")
    return metrics


def parse_finetune_args(argv: list[str] | None = None):
    """`(ModelArguments, DataConfig, AudioTrainingArguments, CommandLine)` from, in increasing priority: a
    `--preset` (`gtzan_hf/configs/finetune/*.yaml`), a `--config` JSON/YAML file, then the command line."""
    return parse_args((ModelArguments, DataConfig, AudioTrainingArguments), argv, preset_kind="finetune")


def main(argv: list[str] | None = None) -> None:
    model_args, data_config, training_args, command_line = parse_finetune_args(argv)
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    run_finetune(model_args, data_config, training_args, command_line)


cli = entry_point(main)

if __name__ == "__main__":
    cli()
