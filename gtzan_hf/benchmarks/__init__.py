"""Benchmark suites run by `scripts/benchmark.py`; each module exposes `main(argv)`."""
