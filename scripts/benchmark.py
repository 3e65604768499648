"""Benchmarks of gtzan-hf against named peers, measured side by side in one run.

Usage: python scripts/benchmark.py {model,data,train,space,pretrain} [options]
Each suite lives in `gtzan_hf.benchmarks.<suite>` and prints its figures and ratios; see BENCHMARKS.md.
"""

import importlib
import sys
from pathlib import Path

# scripts/evaluate.py would shadow the `evaluate` library for the scripts of this folder: keep the folder off the path.
sys.path[:] = [entry for entry in sys.path if Path(entry or ".").resolve() != Path(__file__).resolve().parent]


SUITES = ("model", "data", "train", "space", "pretrain")


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in SUITES:
        sys.exit(f"usage: python scripts/benchmark.py {{{','.join(SUITES)}}} [options]")
    suite = importlib.import_module(f"gtzan_hf.benchmarks.{sys.argv[1]}")
    suite.main(sys.argv[2:])


if __name__ == "__main__":
    main()
