"""Cross-validate a fine-tuning recipe over folds and/or seeds: mean ± std of the test figures.

    python scripts/crossval.py --preset ssast-gtzan --dataset /data/gtzan --num_folds 10 --output_dir runs/ssast-cv
    python scripts/crossval.py --preset course-project-exact --dataset /data/gtzan --seeds 0 1 2 \
        --output_dir runs/course-project-seeds

Arguments: those of `scripts/finetune.py`, plus `--num_folds K` and/or `--seeds S1 S2 ...` (see
`gtzan_hf.commands.crossval`). Running the same command again skips finished sub-runs.
"""

from gtzan_hf.commands.crossval import cli

if __name__ == "__main__":
    cli()
