"""
Named recipes whose quirks plug into the general registries rather than being written into general modules.

A recipe module may define, each optional:
- `VOTE_RULES`: [`~gtzan_hf.inference.vote_types.VoteRule`]s (reported in metrics.json, tables and model cards);
- `SPLIT_LISTS`: `{split name: callable returning {"train": [song ids], "validation": [...], "test": [...]}}`,
  usable as `--split NAME`;
- `SPEC_AUGMENT_AXES`: `{name: (axis of freq_mask, axis of time_mask)}` in `(batch, frames, mel_bins)`, usable as
  `--spec_augment_axes NAME`.

Recipe modules import only numpy, the standard library and the inference layer, so that every layer can read them.
"""

from importlib import import_module

# The recipe modules, in the order their entries are listed.
RECIPES = ("course_project",)


def plugins(name: str) -> list:
    """The entries every recipe module defines under `name`: a list, or a dict's items, in recipe order."""
    entries = []
    for recipe in RECIPES:
        value = getattr(import_module(f"{__name__}.{recipe}"), name, ())
        entries.extend(value.items() if isinstance(value, dict) else value)
    return entries
