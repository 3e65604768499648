"""The commands (`scripts/*.py`, `gtzan-*`): argument parsing, presets, one-line errors, and the runs that tie the
layers below together. Nothing below imports them."""
