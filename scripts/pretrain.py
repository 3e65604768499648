"""Self-supervised pretraining of SSAST on unlabeled audio: from scratch, or continued from a released checkpoint.

    python scripts/pretrain.py --preset tiny --output_dir runs/pretrain-tiny
    python scripts/pretrain.py --preset base --dataset /data/fma_large \
        --model_name_or_path SSAST-Base-Patch-400.pth --output_dir runs/ssast-fma
    accelerate launch scripts/pretrain.py --preset base --dataset /data/fma_full --streaming --max_steps 100000 \
        --output_dir runs/ssast-fma-full

Arguments: `gtzan_hf.models.loading.PretrainingModelArguments`, `gtzan_hf.data.config.PretrainingDataConfig` and
`gtzan_hf.training.pretraining.PretrainingArguments` (transformers' `TrainingArguments`); `--help` lists them all.
Running the same command again resumes from the last checkpoint in `output_dir`. The output folder is a starting model
for `scripts/finetune.py --model_name_or_path`.
"""

from gtzan_hf.commands.pretrain import cli

if __name__ == "__main__":
    cli()
