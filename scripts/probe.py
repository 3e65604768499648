"""A linear probe on frozen embeddings written by scripts/embed.py (see `gtzan_hf.probe`).

    python scripts/probe.py emb/base --output_dir probes/base

Writes probe_metrics.json (`{"validation": {...}, "test": {...}}`, as a fine-tuning run's metrics.json), confusion
matrices and probe_config.json (the C values tried, their validation song accuracy, the one kept).
"""

import logging
import sys
from pathlib import Path

# scripts/evaluate.py would shadow the `evaluate` library for the scripts of this folder: keep the folder off the path.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]

from transformers import HfArgumentParser

from gtzan_hf.probe import ProbeArguments, run_probe


def main() -> None:
    logging.basicConfig(format="%(asctime)s %(levelname)s %(name)s: %(message)s", level=logging.INFO)
    argv = sys.argv[1:]
    if argv and not argv[0].startswith("-"):  # `probe.py EMBEDDINGS_DIR ...`
        argv = ["--embeddings_dir", *argv]
    (probe_args,) = HfArgumentParser(ProbeArguments).parse_args_into_dataclasses(argv)
    run_probe(probe_args)


if __name__ == "__main__":
    main()
