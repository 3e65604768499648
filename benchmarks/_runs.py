"""What the suites that compare recipes over folds share: folder names from flags, mean and spread in percent."""

import re

import numpy as np


def slug(flags: str) -> str:
    """A folder name for a run made with `flags` (so that a run is never reused under other flags)."""
    return re.sub(r"[^\w.]+", "_", flags).strip("_") or "default"


def mean_std(values: list[float]) -> str:
    """`values` (fractions) as 'mean +- std' in percent."""
    return f"{100 * np.mean(values):5.1f} +- {100 * np.std(values):4.1f}"
