"""Everything fine-tuning needs from a source, assembled: load, check, split by song, cache the filter banks, and
wrap each split's index table (`song`, `song_index`, `start`) in its on-the-fly window transform: nothing is
precomputed per epoch."""

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from datasets import Dataset

from ..inference.windowing import seconds_to_frames, segment_starts
from .augmentation import SPEC_AUGMENT_AXES, default_waveform_augmentation
from .cache import build_fbank_cache, fbank_array
from .sources import load_corpus
from .splits import SPLIT_NAMES, SplitInfo, split_corpus
from .windows import FbankWindowTransform

CROP_STRATEGIES = ("random-crop", "static")


@dataclass
class SSASTDatasets:
    """What [`build_datasets`] returns: torch-ready splits and what a run reports about them."""

    train: Dataset
    validation: Dataset
    test: Dataset
    info: SplitInfo  # song ids per split, skipped and excluded files; `info.save(path)` writes splits.json
    fbanks: Dataset  # the fbank cache of the whole corpus
    split_rows: dict[str, list[int]]  # rows of `fbanks` in each split, in song_index order

    @property
    def label_names(self) -> list[str]:
        return self.info.label_names

    @property
    def num_labels(self) -> int:
        return len(self.info.label_names)

    @property
    def song_ids(self) -> dict[str, list[str]]:
        """Song ids per split, indexed by the items' `song_index`."""
        return self.info.song_ids

    @property
    def skipped(self) -> list[dict]:
        return self.info.skipped

    def fbank_arrays(self, split: str = "train") -> Iterator[np.ndarray]:
        """The whole-song fbank of each song of `split`, e.g. for `SSASTFeatureExtractor.compute_stats`."""
        for row in self.fbanks.select(self.split_rows[split]).select_columns(["fbank", "num_frames"]):
            yield fbank_array(row["fbank"], row["num_frames"])


def _index_table(rows: list[int], num_frames: np.ndarray, starts: Callable[[int], list[int]]) -> Dataset:
    table = {"song": [], "song_index": [], "start": []}
    for song_index, row in enumerate(rows):
        for start in starts(int(num_frames[row])):
            table["song"].append(row)
            table["song_index"].append(song_index)
            table["start"].append(start)
    return Dataset.from_dict(table)


def build_datasets(
    source: str | os.PathLike,
    feature_extractor,
    split: str = "random",
    seed: int = 0,
    fold: int = 0,
    num_folds: int = 10,
    crop_strategy: str = "random-crop",
    crop_seconds: float = 10.0,
    eval_segments: int | None = 3,
    eval_hop_seconds: float | None = None,
    spec_augment: tuple[int, int] | None = (36, 144),
    spec_augment_axes: str = "standard",
    waveform_augment: bool | Callable = False,
    num_proc: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    validation_size: float = 0.1,
    test_size: float = 0.1,
    **corpus_kwargs,
) -> SSASTDatasets:
    """
    Everything fine-tuning needs from a source: load, check, split by song, cache the fbanks, and wrap each split
    in its on-the-fly transform.

    Args:
        source: local folder, CSV/JSON list or Hub dataset id (see [`load_corpus`]).
        feature_extractor: an `SSASTFeatureExtractor`; its fbank settings key the cache, its `max_length`, `mean`
            and `std` shape the items.
        split, seed, fold, num_folds, validation_size, test_size: the song-level split (see [`split_indices`]).
        crop_strategy: training windows: `"random-crop"` (a new random `crop_seconds` window at every draw, one item
            per song) or `"static"` (the fixed evaluation windows as separate items).
        crop_seconds: window length (10 s = 1000 frames, padded to `max_length`).
        eval_segments: fixed windows per song for validation and test (default 3: 0-10, 10-20, 20-30 s); `None`
            for as many as cover each song.
        eval_hop_seconds: distance between fixed windows (default `crop_seconds`).
        spec_augment: `(freq_mask, time_mask)` maximum widths in mel bins and frames for training items, or `None`.
        spec_augment_axes: `"standard"`, or `"swapped"` for the course project's masks (see [`spec_augment`]).
        waveform_augment: `True` for [`default_waveform_augmentation`], or any callable
            `(samples=..., sample_rate=...) -> samples` (an audiomentations `Compose`): training windows are then
            recomputed from augmented audio at every draw (slower). Off by default.
        num_proc: processes for checking files and building the cache (default: all cores).
        cache_dir: where the fbank cache lives (default: `gtzan_hf` in the datasets cache).
        **corpus_kwargs: `audio_column`, `label_column`, `path_column`, `revision` for [`load_corpus`].

    Returns:
        [`SSASTDatasets`]: `train`, `validation`, `test` datasets whose items are
        `{"input_values": (max_length, num_mel_bins) float32, "labels": int, "song_index": int}` (batch them with
        [`SSASTDataCollator`]), plus label names, song ids per split and the skipped files.
    """
    if spec_augment_axes not in SPEC_AUGMENT_AXES:
        raise ValueError(f"Unknown spec_augment_axes {spec_augment_axes!r}: choose one of {tuple(SPEC_AUGMENT_AXES)}.")
    if crop_strategy not in CROP_STRATEGIES:
        raise ValueError(f"Unknown crop_strategy {crop_strategy!r}: choose one of {CROP_STRATEGIES}.")
    window_frames = seconds_to_frames(crop_seconds)
    if window_frames > feature_extractor.max_length:
        raise ValueError(
            f"crop_seconds={crop_seconds} gives {window_frames} frames, more than the feature extractor's "
            f"max_length={feature_extractor.max_length}: shorten the crop or use a longer model input."
        )
    hop_frames = seconds_to_frames(eval_hop_seconds or crop_seconds)
    corpus = load_corpus(source, num_proc=num_proc, cache_dir=cache_dir, **corpus_kwargs)
    split_rows, info = split_corpus(
        corpus, split, seed, fold, num_folds, validation_size=validation_size, test_size=test_size
    )
    fbanks = build_fbank_cache(corpus, feature_extractor, num_proc, cache_dir)
    num_frames = np.asarray(list(fbanks["num_frames"]))

    def fixed(frames: int) -> list[int]:
        return segment_starts(frames, window_frames, hop_frames, eval_segments)

    if waveform_augment is True:
        waveform_augment = default_waveform_augmentation()
    train_transform = FbankWindowTransform(
        fbanks,
        feature_extractor,
        window_frames,
        spec_augment,
        waveform_augment or None,
        corpus.songs,
        spec_augment_axes=spec_augment_axes,
    )
    eval_transform = FbankWindowTransform(fbanks, feature_extractor, window_frames)
    train_starts = (lambda frames: [-1]) if crop_strategy == "random-crop" else fixed
    splits = {
        name: _index_table(split_rows[name], num_frames, train_starts if name == "train" else fixed).with_transform(
            train_transform if name == "train" else eval_transform
        )
        for name in SPLIT_NAMES
    }
    return SSASTDatasets(**splits, info=info, fbanks=fbanks, split_rows=split_rows)
