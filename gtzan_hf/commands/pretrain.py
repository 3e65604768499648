"""Self-supervised pretraining of SSAST on unlabeled audio (the paper's joint masked patch classification and
reconstruction), from scratch or continued from a released or pretrained checkpoint: the run itself.
`scripts/pretrain.py` is its command line; the presets are the YAML files of `gtzan_hf/configs/pretrain/`.

Data (`gtzan_hf.data.pretraining`): any folder of audio files (class sub-folders or not), a CSV/JSON list of paths or
a Hub dataset, without labels. By default every file is checked once and its whole-song fbank cached; each epoch then
draws one random `max_length`-frame crop per song. With `--streaming` nothing is cached: files are decoded and
featurised as they are read (datasets' `IterableDataset`), for corpora larger than the disk.

Output (`output_dir`): the model (`save_pretrained` of an `SSASTForPreTraining`) and its `SSASTFeatureExtractor`,
which `scripts/finetune.py --model_name_or_path OUTPUT_DIR` starts from, and `ORIGINAL_CHECKPOINT_NAME`, the same
weights in the original code's pretraining checkpoint format.
"""

import logging
from pathlib import Path

import torch
import transformers
from transformers import TrainerCallback, set_seed

from ..data.config import PretrainingDataConfig
from ..data.pretraining import cached_crops, collate_input_values, streamed_crops
from ..errors import UserError
from ..models.convert import to_original_checkpoint
from ..models.loading import PretrainingModelArguments, build_pretraining_model
from ..training.output_dir import holds_output_dir
from ..training.pretraining import PretrainingArguments, PretrainingTrainer
from ..training.resume import finished_run, resume_checkpoint
from .cli import CommandLine, entry_point, parse_args

logger = logging.getLogger(__name__)

ORIGINAL_CHECKPOINT_NAME = "ssast_pretrained.pth"


def parse_pretrain_args(argv: list[str] | None = None):
    """`(PretrainingModelArguments, PretrainingDataConfig, PretrainingArguments, CommandLine)` from, in increasing
    priority: a `--preset` (`gtzan_hf/configs/pretrain/*.yaml`), a `--config` JSON/YAML file, then the command
    line."""
    return parse_args(
        (PretrainingModelArguments, PretrainingDataConfig, PretrainingArguments), argv, preset_kind="pretrain"
    )


@holds_output_dir
def run_pretrain(
    model_args: PretrainingModelArguments,
    data_config: PretrainingDataConfig,
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
    if data_config.streaming and training_args.max_steps <= 0:
        raise UserError("--streaming reads a corpus of unknown length: set the run's length with --max_steps.")
    set_seed(training_args.seed)
    source = model_args.resolve()
    model, feature_extractor = build_pretraining_model(source, model_args)
    compute_stats = data_config.use_dataset_stats(from_scratch=source is None)
    if data_config.streaming and compute_stats:
        raise UserError("--dataset_stats needs the fbank cache: drop --streaming, or pass neither.")
    with training_args.main_process_first(desc="dataset preparation"):
        data_config.dataset = data_config.resolved_dataset()
        if data_config.streaming:
            train_dataset = streamed_crops(data_config, feature_extractor, training_args.seed)
        else:
            train_dataset = cached_crops(data_config, feature_extractor, compute_stats)
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
        # written aside, renamed once whole: the export marks a finished run, which a cut one (a full disk) must not
        partial = export.with_suffix(".pth.partial")
        torch.save(to_original_checkpoint(trainer.accelerator.unwrap_model(trainer.model)), partial)
        partial.replace(export)
        logger.info("Saved %s and, in the original checkpoint format, %s", training_args.output_dir, export)
    return trainer


def main(argv: list[str] | None = None) -> None:
    model_args, data_config, training_args, command_line = parse_pretrain_args(argv)
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    run_pretrain(model_args, data_config, training_args, command_line)


cli = entry_point(main)

if __name__ == "__main__":
    cli()
