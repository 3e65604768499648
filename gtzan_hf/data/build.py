"""Everything fine-tuning needs from a source, assembled: load, check, split by song, cache the filter banks, and
wrap each split's index table (`song`, `song_index`, `start`) in its on-the-fly window transform: nothing is
precomputed per epoch."""

from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
from datasets import Dataset

from ..inference.windowing import Windows, model_windows, segment_starts
from .augmentation import default_waveform_augmentation
from .cache import build_fbank_cache, fbank_array
from .config import DataConfig
from .sources import load_corpus
from .splits import SplitInfo, split_corpus
from .transforms import FbankWindowTransform


@dataclass
class SSASTDatasets:
    """What [`build_datasets`] returns: torch-ready splits and what a run reports about them."""

    info: SplitInfo  # song ids per split, skipped and excluded files; `info.save(path)` writes splits.json
    fbanks: Dataset  # the fbank cache of the whole corpus
    split_rows: dict[str, list[int]]  # rows of `fbanks` in each split, in song_index order
    windows: Windows  # the training crops' and evaluation windows' length, and the evaluation hop
    eval_segments: int | None  # evaluation windows per song (`None`: all)
    eval_transform: FbankWindowTransform  # fixed windows, unaugmented
    train: Dataset | None = None  # random crops (or the fixed windows, `crop_strategy="static"`), augmented
    validation: Dataset | None = None  # fixed windows
    test: Dataset | None = None  # fixed windows

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

    def window_starts(self, num_frames: int) -> list[int]:
        """The first frame of each fixed (evaluation) window of a song of `num_frames` frames."""
        return segment_starts(num_frames, self.windows.frames, self.windows.hop_frames, self.eval_segments)

    def fixed_windows(self, *splits: str) -> Dataset:
        """The fixed windows of the songs of `splits`, unaugmented, their `song_index` numbering the songs of all of
        them in order: what a linear probe is fitted on (`gtzan_hf.training.linear_probe`)."""
        rows = [row for split in splits for row in self.split_rows[split]]
        num_frames = np.asarray(self.fbanks["num_frames"])
        return _index_table(rows, num_frames, self.window_starts).with_transform(self.eval_transform)

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
    config: DataConfig, feature_extractor, waveform_augmentation: Callable | None = None
) -> SSASTDatasets:
    """
    Everything fine-tuning needs from a source: load, check, split by song, cache the fbanks, and wrap each split
    in its on-the-fly transform.

    Args:
        config: the data settings ([`DataConfig`]): the source (`dataset`, resolved with
            [`~DataConfig.resolved_dataset`]), its columns, the split, the windows (`crop_seconds`,
            `eval_hop_seconds`: by default the model's, see [`~gtzan_hf.inference.windowing.model_windows`];
            `crop_strategy`, `eval_segments`) and the training augmentation (`freq_mask`, `time_mask`,
            `spec_augment_axes`, `waveform_augment`).
        feature_extractor: an `SSASTFeatureExtractor`; its fbank settings key the cache, its `max_length`, `mean`
            and `std` shape the items, and its recorded windows are the default ones.
        waveform_augmentation: a callable `(samples=..., sample_rate=...) -> samples` (an audiomentations `Compose`)
            to use instead of [`default_waveform_augmentation`]; training windows are then recomputed from augmented
            audio at every draw (slower).

    Returns:
        [`SSASTDatasets`]: `train`, `validation`, `test` datasets whose items are
        `{"input_values": (max_length, num_mel_bins) float32, "labels": int, "song_index": int}` (batch them with
        [`SSASTDataCollator`]), plus label names, song ids per split, the skipped files and the windows.
    """
    windows = model_windows(feature_extractor, config.crop_seconds, config.eval_hop_seconds)
    corpus = load_corpus(config.resolved_dataset(), label_column=config.label_column, **config.corpus_options())
    split_rows, info = split_corpus(corpus, config)
    num_proc = config.preprocessing_num_workers
    fbanks = build_fbank_cache(corpus, feature_extractor, num_proc, config.cache_dir)
    num_frames = np.asarray(list(fbanks["num_frames"]))

    if config.waveform_augment and waveform_augmentation is None:
        waveform_augmentation = default_waveform_augmentation()
    masks = (config.freq_mask, config.time_mask)
    train_transform = FbankWindowTransform(
        fbanks,
        feature_extractor,
        windows.frames,
        masks if any(masks) else None,
        waveform_augmentation,
        corpus.songs,
        spec_augment_axes=config.spec_augment_axes,
    )
    eval_transform = FbankWindowTransform(fbanks, feature_extractor, windows.frames)
    data = SSASTDatasets(info, fbanks, split_rows, windows, config.eval_segments, eval_transform)
    train_starts = (lambda frames: [-1]) if config.crop_strategy == "random-crop" else data.window_starts
    data.train = _index_table(split_rows["train"], num_frames, train_starts).with_transform(train_transform)
    data.validation, data.test = (data.fixed_windows(name) for name in ("validation", "test"))
    return data
