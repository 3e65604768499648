"""Embeddings of every window of a dataset from a frozen SSAST model, as parquet (see `gtzan_hf.embeddings`).

    python scripts/embed.py SSAST-Base-Patch-400 --dataset /data/gtzan --split fault-filtered --output_dir emb/base
    python scripts/embed.py runs/ssast-gtzan --dataset /data/gtzan --pooling patches --layer 6 --output_dir emb/l6

MODEL: a fine-tuned or converted SSAST folder or Hub id, a scripts/pretrain.py output, an original .pth (converted on
the fly with --fstride/--tstride/--max_length) or a released name. Arguments: `gtzan_hf.embeddings.EmbedArguments`
and `gtzan_hf.finetune.DataArguments` (split and window settings); `--help` lists them.
"""

import logging
import sys
from pathlib import Path

# scripts/evaluate.py would shadow the `evaluate` library for the scripts of this folder: keep the folder off the path.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

from transformers import HfArgumentParser

from gtzan_hf.embeddings import EmbedArguments, run_embed
from gtzan_hf.finetune import DataArguments


def main() -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    argv = sys.argv[1:]
    if argv and not argv[0].startswith("-"):  # `embed.py MODEL ...`
        argv = ["--model", *argv]
    embed_args, data_args = HfArgumentParser((EmbedArguments, DataArguments)).parse_args_into_dataclasses(argv)
    run_embed(embed_args, data_args)


if __name__ == "__main__":
    main()
