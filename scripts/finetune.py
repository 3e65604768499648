"""Fine-tune SSAST (or the CNN baseline) on GTZAN or any audio classification dataset.

    python scripts/finetune.py --preset quickstart --output_dir runs/quickstart
    python scripts/finetune.py --preset ssast-gtzan --dataset /data/gtzan \
        --model_name_or_path SSAST-Base-Patch-400.pth --output_dir runs/ssast-gtzan
    python scripts/finetune.py --config my_run.yaml --learning_rate 1e-5

Arguments: `gtzan_hf.finetune.ModelArguments`, `DataArguments` and `gtzan_hf.trainer.AudioTrainingArguments`
(transformers' `TrainingArguments` plus `head_learning_rate` and `layer_decay`); `--help` lists them all.
"""

import logging
import sys
from pathlib import Path

# scripts/evaluate.py would shadow the `evaluate` library for the scripts of this folder: keep the folder off the path.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

import transformers

from gtzan_hf.finetune import parse_finetune_args, run_finetune


def main() -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    model_args, data_args, training_args = parse_finetune_args(sys.argv[1:])
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    run_finetune(model_args, data_args, training_args)


if __name__ == "__main__":
    main()
