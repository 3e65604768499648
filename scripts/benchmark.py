"""Benchmarks of gtzan-hf against named peers, measured side by side in one run.

    python scripts/benchmark.py {model,data,train,space,space_load,embed,pretrain,transfer,real_music} [options]

Each suite is a file of the repository's `benchmarks/` folder (outside the package) that prints its figures and
ratios; the results are in BENCHMARKS.md.
"""

import runpy
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SUITES = sorted(path.stem for path in BENCHMARKS.glob("*.py") if not path.stem.startswith("_"))

if __name__ == "__main__":
    if len(sys.argv) < 2 or sys.argv[1] not in SUITES:
        sys.exit(f"usage: python scripts/benchmark.py {{{','.join(SUITES)}}} [options]")
    suite, sys.argv = sys.argv[1], [f"benchmarks/{sys.argv[1]}.py", *sys.argv[2:]]
    runpy.run_path(str(BENCHMARKS / f"{suite}.py"), run_name="__main__")
