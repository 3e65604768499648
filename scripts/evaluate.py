"""Evaluate saved or Hub models on a dataset, with the reports of a fine-tuning run.

    python scripts/evaluate.py runs/ssast-gtzan --dataset /data/gtzan --output_dir runs/ssast-gtzan/eval
    python scripts/evaluate.py --ensemble runs/cnn-gtzan runs/ssast-gtzan --dataset /data/gtzan --output_dir runs/ens
    python scripts/evaluate.py --compare runs/cnn-gtzan runs/ssast-gtzan runs/ens   # the seed's Table 1 layout

Arguments: `gtzan_hf.evaluation.EvaluateArguments` and `gtzan_hf.finetune.DataArguments` (the same split, seed and
window settings as the training run); `--help` lists them.
"""

import logging
import sys
from pathlib import Path

# scripts/evaluate.py would shadow the `evaluate` library for the scripts of this folder: keep the folder off the path.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

from transformers import HfArgumentParser

from gtzan_hf.evaluation import EvaluateArguments, run_evaluate
from gtzan_hf.finetune import DataArguments


def main() -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    argv = sys.argv[1:]
    if argv and not argv[0].startswith("-"):  # `evaluate.py MODEL ...`
        argv = ["--model", *argv]
    evaluate_args, data_args = HfArgumentParser((EvaluateArguments, DataArguments)).parse_args_into_dataclasses(argv)
    run_evaluate(evaluate_args, data_args)


if __name__ == "__main__":
    main()
