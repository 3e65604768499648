"""Fine-tune SSAST (or the CNN baseline) on GTZAN or any audio classification dataset.

    python scripts/finetune.py --preset quickstart --output_dir runs/quickstart
    python scripts/finetune.py --preset ssast-gtzan --dataset /data/gtzan \
        --model_name_or_path SSAST-Base-Patch-400.pth --output_dir runs/ssast-gtzan
    python scripts/finetune.py --config my_run.yaml --learning_rate 1e-5

Arguments: `gtzan_hf.models.loading.ModelArguments`, `gtzan_hf.data.DataConfig` and
`gtzan_hf.training.trainer.AudioTrainingArguments` (transformers' `TrainingArguments` plus `head_learning_rate` and
`layer_decay`); `--help` lists them all. Running the same command again resumes an interrupted run.
"""

from gtzan_hf.commands.finetune import cli

if __name__ == "__main__":
    cli()
