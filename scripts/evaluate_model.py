"""Evaluate saved or Hub models on a dataset, with the reports of a fine-tuning run.

    python scripts/evaluate_model.py runs/ssast-gtzan --dataset /data/gtzan --output_dir runs/ssast-gtzan/eval
    python scripts/evaluate_model.py --ensemble runs/cnn-gtzan runs/ssast-gtzan --dataset /data/gtzan \
        --output_dir runs/ensemble
    python scripts/evaluate_model.py --compare runs/cnn-gtzan runs/ssast-gtzan runs/ensemble  # as Table 1

Arguments: `gtzan_hf.commands.evaluate.EvaluateArguments` and `gtzan_hf.data.DataConfig` (by default a run's own
split, seed and window settings; for another model, its own windows); `--help` lists them.
"""

from gtzan_hf.commands.evaluate import cli

if __name__ == "__main__":
    cli()
