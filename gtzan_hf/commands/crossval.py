"""
Cross-validation of a fine-tuning recipe: one sub-run per fold and/or seed, then the mean ± standard deviation of
their test figures. `scripts/crossval.py` is its command line; it takes `scripts/finetune.py`'s arguments plus

- `--num_folds K`: a k-fold split (`--split kfold`), every fold once the test set (fold K+1 the validation set);
- `--seeds S1 S2 ...`: the training seed (initialisation, batch order, augmentation); the split stays fixed.

Both together give every (fold, seed) pair. Sub-runs go to `<output_dir>/fold-K`, `seed-S` or `fold-K-seed-S`;
`crossval.json` holds `{"runs": [...], "mean": {...}, "std": {...}}` and `crossval.md` the table in the course
project's Table 1 layout; each sub-run's model card gets the summary. Running the same command again skips finished
sub-runs and resumes an interrupted one. With several GPUs visible, sub-runs run in parallel, one process per GPU
(`CUDA_VISIBLE_DEVICES`); otherwise in sequence, in this process.
"""

import argparse
import json
import logging
import os
import queue
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch

from ..errors import UserError
from ..reports.evaluation import accuracy_table, metric_keys, table_keys
from ..reports.model_card import write_model_card
from .cli import entry_point
from .finetune import parse_finetune_args, run_finetune, starting_model

logger = logging.getLogger(__name__)


def sub_runs(num_folds: int | None, seeds: list[int] | None) -> list[tuple[str, list[str]]]:
    """`(name, extra finetune flags)` of every sub-run, folds first."""
    folds = [(f"fold-{k}", ["--split", "kfold", "--num_folds", str(num_folds), "--fold", str(k)])
             for k in range(num_folds)] if num_folds else [("", [])]  # fmt: skip
    seeded = [(f"seed-{s}", ["--seed", str(s)]) for s in seeds] if seeds else [("", [])]
    return [
        ("-".join(filter(None, (f, s))), fold_flags + seed_flags)
        for f, fold_flags in folds
        for s, seed_flags in seeded
    ]


def summarize(runs: list[dict]) -> dict:
    """Mean and sample standard deviation (ddof=1) of every test metric over `runs`."""
    keys = [key for key in metric_keys() if key != "per_genre_accuracy"]
    values = {key: np.array([run["test"][key] for run in runs]) for key in keys}
    return {
        "mean": {key: float(v.mean()) for key, v in values.items()},
        "std": {key: float(v.std(ddof=1)) for key, v in values.items()},
    }


def _run_on_gpus(jobs: list[tuple[str, list[str]]]) -> None:
    """Every job as its own `gtzan_hf.commands.finetune` process, one per visible GPU at a time."""
    devices = queue.Queue()
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    for device in visible.split(",") if visible else range(torch.cuda.device_count()):
        devices.put(str(device))

    def launch(job):
        name, argv = job
        device = devices.get()
        try:
            logger.info("%s on GPU %s", name, device)
            command = [sys.executable, "-m", "gtzan_hf.commands.finetune", *argv]
            subprocess.run(command, check=True, env={**os.environ, "CUDA_VISIBLE_DEVICES": device})
        finally:
            devices.put(device)

    with ThreadPoolExecutor(devices.qsize()) as pool:
        list(pool.map(launch, jobs))


def crossval_parser() -> argparse.ArgumentParser:
    """The arguments of cross-validation itself; every other argument is fine-tuning's."""
    # `--seed` is finetune's, not an abbreviation of `--seeds`
    description = "Cross-validation of a fine-tuning recipe: one sub-run per fold and/or seed, then mean ± std."
    parser = argparse.ArgumentParser(prog="crossval.py", add_help=False, allow_abbrev=False, description=description)
    parser.add_argument("--num_folds", type=int, help="k-fold split: every fold once the test set (K >= 2).")
    parser.add_argument("--seeds", type=int, nargs="+", help="training seeds, one sub-run each.")
    parser.add_argument("--output_dir", required=True, help="the sub-runs' parent folder.")
    return parser


def run_crossval(argv: list[str]) -> dict:
    """Run (or resume) every sub-run of `argv` (finetune's flags plus --num_folds / --seeds), then summarise."""
    parser = crossval_parser()
    known, finetune_argv = parser.parse_known_args(argv)
    if known.num_folds is not None and known.num_folds < 2:
        raise UserError(f"--num_folds {known.num_folds}: k-fold needs 2 folds or more.")
    runs = sub_runs(known.num_folds, known.seeds)
    if len(runs) < 2:
        raise UserError("Cross-validation needs --num_folds K (K >= 2) and/or two or more --seeds.")
    output_dir = Path(known.output_dir)
    jobs = [(name, [*finetune_argv, *flags, "--output_dir", str(output_dir / name)]) for name, flags in runs]
    # a bad flag or model is reported now, not after the first sub-run
    model_args, _, training_args, _ = parse_finetune_args(jobs[0][1])
    starting_model(model_args, training_args)
    if torch.cuda.device_count() > 1 and "LOCAL_RANK" not in os.environ:
        _run_on_gpus(jobs)
    else:
        for name, job_argv in jobs:
            logger.info("Sub-run %s", name)
            run_finetune(*parse_finetune_args(job_argv))

    results = []
    for name, _ in runs:
        metrics_file = output_dir / name / "metrics.json"
        if not metrics_file.is_file():
            raise UserError(f"Sub-run {name} left no {metrics_file}: see its log.")
        results.append(
            {"name": name, "folder": str(output_dir / name), "test": json.loads(metrics_file.read_text())["test"]}
        )
    description = ", ".join(
        part for part in (
            f"{known.num_folds}-fold cross-validation" if known.num_folds else "",
            f"seeds {' '.join(map(str, known.seeds))}" if known.seeds else "",
        ) if part
    )  # fmt: skip
    summary = {"description": description, "runs": results, **summarize(results)}
    (output_dir / "crossval.json").write_text(json.dumps(summary, indent=2))
    settings = json.loads((output_dir / runs[0][0] / "run_config.json").read_text())
    cells = {key: f"{100 * summary['mean'][key]:.2f} ± {100 * summary['std'][key]:.2f} %" for key in table_keys()}
    table = accuracy_table([(f"{output_dir.name} ({description})", settings, cells)])
    (output_dir / "crossval.md").write_text(table + "\n")
    print(table)
    for result in results:
        write_model_card(result["folder"], crossval=summary)
    return summary


def main(argv: list[str] | None = None) -> None:
    argv = list(sys.argv[1:] if argv is None else argv)
    if {"-h", "--help"} & set(argv):
        print(crossval_parser().format_help())
        print("Every other argument is scripts/finetune.py's, passed to each sub-run:\n")
        parse_finetune_args(["--help"])  # prints fine-tuning's arguments and exits
    run_crossval(argv)


cli = entry_point(main)

if __name__ == "__main__":
    cli()
