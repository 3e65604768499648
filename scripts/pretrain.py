"""Self-supervised pretraining of SSAST on unlabeled audio: from scratch, or continued from a released checkpoint.

    python scripts/pretrain.py --preset tiny --output_dir runs/pretrain-tiny
    python scripts/pretrain.py --preset base --dataset /data/fma_large \
        --model_name_or_path SSAST-Base-Patch-400.pth --output_dir runs/ssast-fma
    accelerate launch scripts/pretrain.py --preset base --dataset /data/fma_full --streaming --max_steps 100000 \
        --output_dir runs/ssast-fma-full

Arguments: `gtzan_hf.pretrain.PretrainingModelArguments`, `PretrainingDataArguments` and `PretrainingArguments`
(transformers' `TrainingArguments`); `--help` lists them all. Running the same command again resumes from the last
checkpoint in `output_dir`. The output folder is a starting model for `scripts/finetune.py --model_name_or_path`.
"""

import logging
import sys
from pathlib import Path

# scripts/evaluate.py would shadow the `evaluate` library for the scripts of this folder: keep the folder off the path.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

import transformers

from gtzan_hf.pretrain import parse_pretrain_args, run_pretrain


def main() -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    model_args, data_args, training_args = parse_pretrain_args(sys.argv[1:])
    transformers.utils.logging.set_verbosity(training_args.get_process_log_level())
    run_pretrain(model_args, data_args, training_args)


if __name__ == "__main__":
    main()
