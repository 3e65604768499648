"""Benchmarks of gtzan-hf against named peers, measured side by side in one run.

    python scripts/benchmark.py {model,data,train,space,space_load,space_bounds,embed,pretrain,transfer} [options]

Each suite is a file of the repository's `benchmarks/` folder (outside the package) that prints its figures and
ratios; the results are in BENCHMARKS.md.
"""

import ast
import re
import runpy
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"
SUITES = sorted(path.stem for path in BENCHMARKS.glob("*.py") if not path.stem.startswith("_"))

USAGE = f"usage: python scripts/benchmark.py {{{','.join(SUITES)}}} [options]   (SUITE --help: its options)"

if __name__ == "__main__":
    if sys.argv[1:2] in (["-h"], ["--help"]):
        print(USAGE, "", "suites:", sep="\n")
        for suite in SUITES:  # each suite's summary: its docstring up to the first colon, full stop or question mark
            summary = " ".join((ast.get_docstring(ast.parse((BENCHMARKS / f"{suite}.py").read_text())) or "").split())
            print(f"  {suite:<12} {re.split(r'(?<=[.:?]) ', summary)[0].rstrip('.:')}")
        sys.exit(0)
    if len(sys.argv) < 2 or sys.argv[1] not in SUITES:
        sys.exit(f"error: {' '.join(sys.argv[1:2]) or 'no suite'} is not a benchmark suite. {USAGE}")
    suite, sys.argv = sys.argv[1], [f"benchmarks/{sys.argv[1]}.py", *sys.argv[2:]]
    runpy.run_path(str(BENCHMARKS / f"{suite}.py"), run_name="__main__")
