"""Self-supervised pretraining of SSAST on unlabeled audio (the paper's joint masked patch classification and
reconstruction), from scratch or continued from a released or pretrained checkpoint: arguments, presets, data and
the run itself. `scripts/pretrain.py` is its command line.

Data: any folder of audio files (class sub-folders or not), a CSV/JSON list of paths or a Hub dataset, without
labels. By default every file is checked once and its whole-song fbank cached (`gtzan_hf.data`); each epoch then
draws one random `max_length`-frame crop per song. With `--streaming` nothing is cached: files are decoded and
featurised as they are read (datasets' `IterableDataset`), for corpora larger than the disk.

Output (`output_dir`): the model (`save_pretrained` of an `SSASTForPreTraining`) and its `SSASTFeatureExtractor`,
which `scripts/finetune.py --model_name_or_path OUTPUT_DIR` starts from, and `ORIGINAL_CHECKPOINT_NAME`, the same
weights in the original code's pretraining checkpoint format.
"""

import logging
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import torch
import transformers
from datasets import Audio, Dataset, IterableDataset
from transformers import Trainer, TrainerCallback, TrainingArguments, set_seed

from ..data import build_fbank_cache, fbank_array, load_corpus
from ..data.sources import hub_archive_folder
from ..data.windows import FbankWindowTransform
from ..inference.audio import check_recording
from ..inference.windowing import random_start
from ..models.configuration_ssast import SSASTConfig
from ..models.convert import is_pretraining_folder, pretraining_model_from_original_checkpoint, to_original_checkpoint
from ..models.feature_extraction_ssast import SSASTFeatureExtractor
from ..models.modeling_ssast import SSASTForPreTraining
from ..training.resume import finished_run, resume_checkpoint
from .cli import (
    AudioSourceArguments,
    CommandLine,
    check_model_path,
    entry_point,
    parse_args,
    resolve_dataset,
    use_dataset_stats,
)
from .finetune import is_original_checkpoint

logger = logging.getLogger(__name__)

ORIGINAL_CHECKPOINT_NAME = "ssast_pretrained.pth"


@dataclass
class PretrainingModelArguments:
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


@dataclass
class PretrainingDataArguments(AudioSourceArguments):
    """Unlabeled audio: a folder (any layout), a CSV/JSON list of paths or a Hub dataset id (labels are ignored)."""

    streaming: bool = field(
        default=False,
        metadata={"help": "Decode and featurise while training, caching nothing (needs --max_steps)."},
    )
    path_column: str | None = field(default=None, metadata={"help": "Path column of a list (default: guessed)."})
    dataset_split: str = field(default="train", metadata={"help": "Split of a streamed Hub dataset."})
    shuffle_buffer_size: int = field(default=1000, metadata={"help": "Streaming: songs in the shuffle buffer."})


@dataclass
class PretrainingArguments(TrainingArguments):
    # The on-the-fly crop transform reads its own index columns: the Trainer must not drop them.
    remove_unused_columns: bool = field(default=False, metadata={"help": "Keep dataset columns (see Trainer)."})


def parse_pretrain_args(argv: list[str] | None = None):
    """`(PretrainingModelArguments, PretrainingDataArguments, PretrainingArguments, CommandLine)` from, in increasing
    priority: a `--preset` (`gtzan_hf/configs/pretrain/*.yaml`), a `--config` JSON/YAML file, then the command
    line."""
    return parse_args(
        (PretrainingModelArguments, PretrainingDataArguments, PretrainingArguments), argv, preset_kind="pretrain"
    )


def build_pretraining_model(
    model_args: PretrainingModelArguments,
) -> tuple[SSASTForPreTraining, SSASTFeatureExtractor]:
    """The model to pretrain and its feature extractor: from scratch, from an original pretraining `.pth` or a released
    name (AudioSet statistics, as it was trained with) or from a saved `SSASTForPreTraining` folder (its own feature
    extractor)."""
    objective = {
        name: value
        for name in ("num_masked_patches", "mpg_loss_weight")
        if (value := getattr(model_args, name)) is not None
    }
    source = model_args.model_name_or_path
    if source is None:
        config = SSASTConfig.from_size(
            model_args.model_size,
            num_hidden_layers=model_args.num_hidden_layers,
            patch_freq=model_args.patch_freq,
            patch_time=model_args.patch_time,
            freq_stride=model_args.patch_freq,
            time_stride=model_args.patch_time,
            max_length=model_args.max_length,
            **objective,
        )
        model = SSASTForPreTraining(config)
    elif is_original_checkpoint(source):
        model = pretraining_model_from_original_checkpoint(source, **objective)
    else:
        check_model_path(source, "--model_name_or_path")
        if not is_pretraining_folder(source):
            raise ValueError(
                f"{source} holds no SSASTForPreTraining (a fine-tuned model has no pretraining heads): continue "
                "pretraining from an original pretraining .pth or a scripts/pretrain.py output folder."
            )
        model = SSASTForPreTraining.from_pretrained(source, **objective)
        try:
            return model.train(), SSASTFeatureExtractor.from_pretrained(source)
        except OSError:
            logger.warning("%s has no feature extractor: using the AudioSet statistics.", source)
    extractor = SSASTFeatureExtractor(num_mel_bins=model.config.num_mel_bins, max_length=model.config.max_length)
    return model.train(), extractor


def cached_crops(
    data_args: PretrainingDataArguments, feature_extractor: SSASTFeatureExtractor, compute_stats: bool
) -> Dataset:
    """One random `feature_extractor.max_length`-frame crop of every usable song per epoch, cut from the whole-song
    fbank cache; with `compute_stats`, the feature extractor's mean/std become the corpus' own first."""
    corpus = load_corpus(
        data_args.dataset,
        audio_column=data_args.audio_column,
        label_column=None,
        path_column=data_args.path_column,
        num_proc=data_args.preprocessing_num_workers,
        cache_dir=data_args.cache_dir,
    )
    fbanks = build_fbank_cache(corpus, feature_extractor, data_args.preprocessing_num_workers, data_args.cache_dir)
    if compute_stats:
        songs = fbanks.select_columns(["fbank", "num_frames"])
        stats = SSASTFeatureExtractor.compute_stats(fbank_array(row["fbank"], row["num_frames"]) for row in songs)
        feature_extractor.mean, feature_extractor.std = stats
        logger.info("Corpus statistics: mean %.4f, std %.4f", *stats)
    rows = list(range(len(fbanks)))
    # start -1: a new random window at every draw (the transform's convention)
    table = Dataset.from_dict({"song": rows, "song_index": rows, "start": [-1] * len(rows)})
    return table.with_transform(FbankWindowTransform(fbanks, feature_extractor, feature_extractor.max_length))


def _random_crops(batch: dict, feature_extractor: SSASTFeatureExtractor, audio_column: str) -> dict:
    crops = []
    for audio in batch[audio_column]:
        recording, problem = check_recording(audio)
        if problem:  # one bad file must not end a long run: skip it, and say which
            logger.warning("Skipping %s: %s", audio["path"], problem)
            continue
        fbank = feature_extractor.fbank(recording.resampled(feature_extractor.sampling_rate))
        start = random_start(fbank.shape[0], feature_extractor.max_length)
        crop = feature_extractor.pad_or_truncate(fbank[start : start + feature_extractor.max_length])
        crops.append(feature_extractor.normalize(crop))
    return {"input_values": crops}


def streamed_crops(
    data_args: PretrainingDataArguments, feature_extractor: SSASTFeatureExtractor, seed: int
) -> IterableDataset:
    """One random crop of every song per pass, decoded and featurised as the songs are read, nothing cached. Local
    folders and lists, and Hub datasets holding GTZAN's archive (unpacked once), are listed (not read) up front and
    sharded over the DataLoader workers; other Hub datasets stream."""
    source, audio_column = data_args.dataset, "audio"
    local = source if Path(source).exists() else hub_archive_folder(source, None, data_args.cache_dir)
    if local is not None:
        songs = load_corpus(local, label_column=None, path_column=data_args.path_column, check=False).songs
        songs = songs.to_iterable_dataset(num_shards=min(len(songs), 1024))
    else:
        audio_column = data_args.audio_column
        songs = datasets.load_dataset(source, split=data_args.dataset_split, streaming=True)
        # undecoded before anything else, and never renamed (a streamed rename re-encodes): both need torchcodec
        songs = songs.cast_column(audio_column, Audio(decode=False))
    songs = songs.select_columns([audio_column]).shuffle(seed=seed, buffer_size=data_args.shuffle_buffer_size)
    return songs.map(
        _random_crops,
        batched=True,
        batch_size=8,
        remove_columns=[audio_column],
        fn_kwargs={"feature_extractor": feature_extractor, "audio_column": audio_column},
    )


def collate_input_values(features: list[dict]) -> dict[str, torch.Tensor]:
    """Stacks the crops into `{"input_values": (batch, max_length, num_mel_bins) float32}`: the model's only input."""
    return {"input_values": torch.stack([torch.as_tensor(f["input_values"], dtype=torch.float32) for f in features])}


class PretrainingTrainer(Trainer):
    """`Trainer` for [`SSASTForPreTraining`] that logs, next to the joint `loss`, its two parts (`mpc_loss`,
    `mpg_loss`) and the masked patch classification accuracy (`mpc_accuracy`), averaged since the last log over
    every step and process."""

    OBJECTIVES = ("mpc_loss", "mpg_loss", "mpc_accuracy")

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._objective_sums = torch.zeros(len(self.OBJECTIVES))
        self._objective_steps = 0

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        outputs = model(**inputs)
        if model.training:
            values = torch.stack([outputs[name].detach().float() for name in self.OBJECTIVES])
            self._objective_sums = self._objective_sums.to(values.device) + values
            self._objective_steps += 1
        return (outputs.loss, outputs) if return_outputs else outputs.loss

    def log(self, logs: dict[str, float], *args, **kwargs) -> None:
        # Training logs come on every process at the same step: the reduction is collective-safe here.
        if "loss" in logs and self._objective_steps:
            means = self.accelerator.reduce(self._objective_sums.clone(), reduction="mean") / self._objective_steps
            logs.update({name: round(value, 4) for name, value in zip(self.OBJECTIVES, means.tolist())})
            self._objective_sums.zero_()
            self._objective_steps = 0
        super().log(logs, *args, **kwargs)


def run_pretrain(
    model_args: PretrainingModelArguments,
    data_args: PretrainingDataArguments,
    training_args: PretrainingArguments,
    command_line: CommandLine | None = None,
    callbacks: list[TrainerCallback] | None = None,
) -> PretrainingTrainer | None:
    """Pretrain (resuming from the newest complete checkpoint in `output_dir`, if any), then save the model, its
    feature extractor and the original-format export to `output_dir`. Returns the trainer (its `state.log_history`
    holds the curves), or `None` when `output_dir` holds a finished run (`--overwrite_output_dir` trains it again)."""
    overwrite_output_dir = command_line is not None and command_line.overwrite_output_dir
    if finished_run(training_args.output_dir, ORIGINAL_CHECKPOINT_NAME, training_args, overwrite_output_dir):
        return None
    if data_args.streaming and training_args.max_steps <= 0:
        raise ValueError("--streaming reads a corpus of unknown length: set the run's length with --max_steps.")
    set_seed(training_args.seed)
    model, feature_extractor = build_pretraining_model(model_args)
    compute_stats = use_dataset_stats(data_args, model_args.model_name_or_path)
    with training_args.main_process_first(desc="dataset preparation"):
        data_args.dataset = resolve_dataset(data_args)
        if data_args.streaming:
            if compute_stats:
                raise ValueError("--dataset_stats needs the fbank cache: drop --streaming, or pass neither.")
            train_dataset = streamed_crops(data_args, feature_extractor, training_args.seed)
        else:
            train_dataset = cached_crops(data_args, feature_extractor, compute_stats)
    logger.info(
        "Pretraining %.1fM parameters on %d x %d crops, %d of %d patches masked",
        model.num_parameters() / 1e6,
        feature_extractor.max_length,
        feature_extractor.num_mel_bins,
        model.config.num_masked_patches,
        model.config.num_patches,
    )
    trainer = PretrainingTrainer(
        model=model,
        args=training_args,
        train_dataset=train_dataset,
        data_collator=collate_input_values,
        processing_class=feature_extractor,
        callbacks=callbacks,
    )
    resume = resume_checkpoint(training_args.output_dir, training_args.resume_from_checkpoint, overwrite_output_dir)
    trainer.train(resume_from_checkpoint=resume)
    trainer.save_model()
    trainer.save_state()
    if trainer.is_world_process_zero():
        export = Path(training_args.output_dir) / ORIGINAL_CHECKPOINT_NAME
        torch.save(to_original_checkpoint(trainer.accelerator.unwrap_model(trainer.model)), export)
        logger.info("Saved %s and, in the original checkpoint format, %s", training_args.output_dir, export)
    return trainer


def main(argv: list[str] | None = None) -> None:
    model_args, data_args, training_args, command_line = parse_pretrain_args(argv)
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    run_pretrain(model_args, data_args, training_args, command_line)


cli = entry_point(main)

if __name__ == "__main__":
    cli()


__all__ = [
    "PretrainingArguments",
    "PretrainingDataArguments",
    "PretrainingModelArguments",
    "PretrainingTrainer",
    "build_pretraining_model",
    "parse_pretrain_args",
    "run_pretrain",
]
