"""A linear probe on frozen embeddings written by scripts/embed.py (see `gtzan_hf.commands.probe`).

    python scripts/probe.py emb/base --output_dir probes/base

Writes probe_metrics.json (`{"validation": {...}, "test": {...}}`, as a fine-tuning run's metrics.json), confusion
matrices and probe_config.json (the C values tried, their validation song accuracy, the one kept).
"""

from gtzan_hf.commands.probe import cli

if __name__ == "__main__":
    cli()
