"""The whole-song filter-bank cache, windows cut on the fly, augmentation, and the batch collator.

Each song's un-normalised Kaldi fbank is computed once (`Dataset.map`, several processes) and kept in the datasets
cache as float16 bytes (`fbank`, read back with `np.frombuffer`) with its `num_frames`. Training and evaluation
datasets are small index tables (`song`, `song_index`, `start`) whose `with_transform` cuts the windows from that
cache when a batch is drawn: nothing is precomputed per epoch.

Windows and padding: a window is `crop_frames` frames (100 per second: 10 s = 1000 frames) starting at `start`;
what the song lacks at its end (GTZAN's 29.x s tracks lose up to a few frames in their third 10 s window), and the
rest up to the model's `max_length` (1024), is zero-padded before normalisation, as the original SSAST did. The
random crop of a song shorter than the window takes the whole song, padded the same way.
"""

import logging
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import torch
from datasets import Dataset, Features, Value
from datasets.fingerprint import Hasher

from .audio import decode_audio
from .sources import Corpus, default_cache_dir, load_corpus
from .splits import SPLIT_NAMES, SplitInfo, split_corpus

logger = logging.getLogger(__name__)

FRAMES_PER_SECOND = 100  # Kaldi frames are shifted by 10 ms
CROP_STRATEGIES = ("random-crop", "static")
# Feature-extractor settings applied after the cached fbank (padding, normalisation): they do not key the cache.
_POST_FBANK_SETTINGS = frozenset(
    {"max_length", "do_normalize", "mean", "std", "padding_value", "padding_side", "return_attention_mask"}
    | {"feature_extractor_type", "processor_class", "auto_map"}
)
_CACHE_VERSION = 1


def fbank_settings(feature_extractor) -> dict:
    """The feature extractor's settings that change the un-normalised fbank: the cache key."""
    return {k: v for k, v in sorted(feature_extractor.to_dict().items()) if k not in _POST_FBANK_SETTINGS}


def _fbank_batch(batch: dict, feature_extractor, single_thread: bool) -> dict:
    if single_thread:  # one process per core: torch's own threads would only compete
        torch.set_num_threads(1)
    fbanks = [
        feature_extractor.fbank(decode_audio(audio, feature_extractor.sampling_rate)) for audio in batch["audio"]
    ]
    return {
        "fbank": [fbank.numpy().astype(np.float16).tobytes() for fbank in fbanks],
        "num_frames": [fbank.shape[0] for fbank in fbanks],
    }


def build_fbank_cache(
    corpus: Corpus, feature_extractor, num_proc: int | None = None, cache_dir: str | os.PathLike | None = None
) -> Dataset:
    """
    The whole-song fbank of every song of `corpus`, computed once and memory-mapped from the datasets cache.

    The cache file is named by a fingerprint of the corpus (its files' paths, sizes and modification times, or the
    Hub dataset's fingerprint) and of [`fbank_settings`]: a later run with the same audio and settings reads it back,
    a change of either builds a new one.

    Returns:
        `Dataset` with `label`, `song_id`, `fbank` (float16 bytes of a `(num_frames, num_mel_bins)` array, see
        [`fbank_array`]) and `num_frames`.
    """
    fingerprint = Hasher.hash(
        {"corpus": corpus.fingerprint, "fbank": fbank_settings(feature_extractor), "version": _CACHE_VERSION}
    )
    cache_dir = Path(cache_dir or default_cache_dir())
    cache_dir.mkdir(parents=True, exist_ok=True)
    num_proc = min(num_proc or os.cpu_count() or 1, len(corpus.songs))
    features = Features(
        {**{k: v for k, v in corpus.songs.features.items() if k != "audio"}, "fbank": Value("binary")}
        | {"num_frames": Value("int32")}
    )
    return corpus.songs.map(
        _fbank_batch,
        batched=True,
        batch_size=8,
        writer_batch_size=8,  # a 30 s song is ~0.75 MB: flush often to keep memory flat
        num_proc=num_proc if num_proc > 1 else None,
        fn_kwargs={"feature_extractor": feature_extractor, "single_thread": num_proc > 1},
        remove_columns=["audio"],
        features=features,
        cache_file_name=str(cache_dir / f"fbank-{fingerprint}.arrow"),
        new_fingerprint=fingerprint,
        desc="Computing whole-song filter banks",
    )


def fbank_array(data: bytes, num_frames: int) -> np.ndarray:
    """A cached fbank as a read-only float16 `(num_frames, num_mel_bins)` view of its bytes (no copy)."""
    return np.frombuffer(data, dtype=np.float16).reshape(num_frames, -1)


def segment_starts(
    num_frames: int, segment_frames: int, hop_frames: int | None = None, num_segments: int | None = None
) -> list[int]:
    """
    First frames of the fixed windows a song of `num_frames` frames is cut into.

    Windows start every `hop_frames` (default `segment_frames`). With `num_segments`, the first `num_segments`
    windows that start inside the song (GTZAN: 0-10, 10-20, 20-30 s); without, as many as cover the song, a last
    partial window being kept when it holds at least half a hop. Always at least one window.
    """
    hop_frames = hop_frames or segment_frames
    if num_segments is None:
        num_segments = max(1, round((num_frames - segment_frames) / hop_frames) + 1)
    return [index * hop_frames for index in range(num_segments) if index == 0 or index * hop_frames < num_frames]


def window_fbank(
    fbank: torch.Tensor,
    segment_frames: int = 1000,
    hop_frames: int | None = None,
    num_segments: int | None = None,
    pad_to: int | None = None,
) -> torch.Tensor:
    """
    Cut a whole-song fbank `(num_frames, num_mel_bins)` into its fixed windows ([`segment_starts`]), each padded
    with zeros (before normalisation) to `pad_to` frames (default `segment_frames`).

    Returns:
        `torch.Tensor` of shape `(num_windows, pad_to, num_mel_bins)`.
    """
    pad_to = pad_to or segment_frames
    windows = []
    for start in segment_starts(fbank.shape[0], segment_frames, hop_frames, num_segments):
        window = fbank[start : start + min(segment_frames, pad_to)]
        windows.append(torch.nn.functional.pad(window, (0, 0, 0, pad_to - window.shape[0])))
    return torch.stack(windows)


def spec_augment(input_values: torch.Tensor, freq_mask: int, time_mask: int) -> torch.Tensor:
    """
    SpecAugment, in place, on a batch `(batch, frames, mel_bins)`: per example, one band of mel bins and one span
    of frames set to 0 (before normalisation, as the original SSAST), drawn independently for every example with
    the distribution of torchaudio's `FrequencyMasking(freq_mask, iid_masks=True)` and
    `TimeMasking(time_mask, iid_masks=True)` (`mask_along_axis_iid`: width uniform in [0, mask), start uniform where
    the mask fits). Those rewrite the whole batch through a `masked_fill` (measured 3x slower per clip here); this
    zeroes only the masked cells.
    """
    batch_size = input_values.shape[0]
    for axis, mask_param in ((2, freq_mask), (1, time_mask)):
        size = input_values.shape[axis]
        if not mask_param:
            continue
        width = torch.rand(batch_size) * min(mask_param, size)
        start = torch.rand(batch_size) * (size - width)
        for example, (first, count) in enumerate(zip(start.long().tolist(), width.long().tolist())):
            input_values[example].narrow(axis - 1, first, count).zero_()
    return input_values


def default_waveform_augmentation():
    """Gain, noise, pitch shift and time stretch (audiomentations), each applied to half the samples or fewer."""
    from audiomentations import AddGaussianSNR, Compose, Gain, PitchShift, TimeStretch

    return Compose(
        [
            Gain(min_gain_db=-6.0, max_gain_db=6.0, p=0.5),
            AddGaussianSNR(min_snr_db=15.0, max_snr_db=40.0, p=0.5),
            PitchShift(min_semitones=-2.0, max_semitones=2.0, p=0.3),
            TimeStretch(min_rate=0.9, max_rate=1.1, leave_length_unchanged=True, p=0.3),
        ]
    )


class FbankWindowTransform:
    """
    The `with_transform` of a training or evaluation index table: rows `{"song", "song_index", "start"}` become
    `{"input_values": (batch, max_length, num_mel_bins) float32, "labels": list[int], "song_index": list[int]}`.

    `song` is the song's row in the fbank cache, `song_index` its position in the split (shared by the segments of
    a song), `start` the window's first frame, or -1 for a new random window at every draw. Windows are cut, padded
    to the feature extractor's `max_length`, masked (SpecAugment, training) and normalised with its `mean`/`std`,
    read at call time. With `waveform_augment`, the window is recomputed from the augmented audio instead.
    """

    def __init__(
        self,
        fbanks: Dataset,
        feature_extractor,
        window_frames: int,
        spec_augment: tuple[int, int] | None = None,
        waveform_augment: Callable | None = None,
        audio: Dataset | None = None,
    ):
        self.fbanks = fbanks.select_columns(["fbank", "num_frames", "label"])
        self.feature_extractor = feature_extractor
        self.window_frames = window_frames
        self.spec_augment = spec_augment
        self.waveform_augment = waveform_augment
        self.audio = audio
        self._songs = None

    def __getstate__(self) -> dict:
        # DataLoader workers rebuild the views on their side of the memory map
        return {**self.__dict__, "_songs": None}

    def songs(self) -> tuple[list[np.ndarray], np.ndarray]:
        """
        Zero-copy float16 `(num_frames, num_mel_bins)` views of every song's cached fbank, straight into the
        memory-mapped Arrow buffers, and the songs' labels: a training window then copies only its own frames
        instead of the whole song's bytes. Built once per process.
        """
        if self._songs is None:
            table = self.fbanks.data
            views = []
            for chunk in table.column("fbank").chunks:
                _, offsets, data = chunk.buffers()
                offset_type = np.int64 if pa.types.is_large_binary(chunk.type) else np.int32
                offsets = np.frombuffer(offsets, dtype=offset_type)[chunk.offset : chunk.offset + len(chunk) + 1]
                data = np.frombuffer(data, dtype=np.uint8)
                views.extend(data[begin:end].view(np.float16) for begin, end in zip(offsets[:-1], offsets[1:]))
            num_frames = table.column("num_frames").to_numpy()
            views = [view.reshape(frames, -1) for view, frames in zip(views, num_frames)]
            labels = table.column("label").to_numpy()
            if self.fbanks._indices is not None:  # rows of the dataset -> rows of the Arrow table
                order = self.fbanks._indices.column(0).to_numpy()
                views, labels = [views[row] for row in order], labels[order]
            self._songs = views, labels
        return self._songs

    def _augmented_window(self, song: int, start: int) -> torch.Tensor:
        rate = self.feature_extractor.sampling_rate
        hop, length = rate // FRAMES_PER_SECOND, rate * 25 // 1000  # 10 ms shift, 25 ms frames
        waveform = decode_audio(self.audio[song]["audio"], rate)
        waveform = waveform[start * hop : (start + self.window_frames - 1) * hop + length]
        waveform = self.waveform_augment(samples=waveform, sample_rate=rate)
        return self.feature_extractor.fbank(torch.from_numpy(np.ascontiguousarray(waveform)))[: self.window_frames]

    def __call__(self, batch: dict) -> dict:
        fbanks, labels = self.songs()
        extractor = self.feature_extractor
        # windows are copied as float16 into one zero-padded batch, converted to float32 at once
        padded = np.full((len(batch["song"]), extractor.max_length, extractor.num_mel_bins), extractor.padding_value,
                         dtype=np.float16)  # fmt: skip
        augmented = {}
        for index, (song, start) in enumerate(zip(batch["song"], batch["start"])):
            fbank = fbanks[song]
            if start < 0:
                start = int(torch.randint(0, max(len(fbank) - self.window_frames, 0) + 1, ()))
            if self.waveform_augment is not None:
                augmented[index] = self._augmented_window(song, start)
            else:
                window = fbank[start : start + self.window_frames]
                padded[index, : len(window)] = window
        input_values = torch.from_numpy(padded).float()
        for index, window in augmented.items():
            input_values[index] = extractor.pad_or_truncate(window)
        if self.spec_augment is not None:
            input_values = spec_augment(input_values, *self.spec_augment)
        if extractor.do_normalize:  # `extractor.normalize` in place: allocating a new batch costs 4x the arithmetic
            input_values.sub_(extractor.mean).div_(extractor.std * 2)
        return {
            "input_values": input_values,
            "labels": labels[batch["song"]].tolist(),
            "song_index": batch["song_index"],
        }


class SSASTDataCollator:
    """
    Stacks items of [`FbankWindowTransform`] into a batch, with optional mixup for training.

    Returns `{"input_values": (B, T, F) float32, "labels": (B,) int64, "song_index": (B,) int64}`. With
    `mixup_alpha > 0`, each example is blended with another of the batch with a weight drawn from
    Beta(alpha, alpha) (one per example), and `labels` become `(B, num_labels)` float32 soft labels (each row sums
    to 1). Use a collator without mixup for evaluation.
    """

    def __init__(self, num_labels: int, mixup_alpha: float = 0.0):
        self.num_labels = num_labels
        self.mixup_alpha = mixup_alpha

    def __call__(self, features: list[dict]) -> dict[str, torch.Tensor]:
        input_values = torch.stack([torch.as_tensor(f["input_values"], dtype=torch.float32) for f in features])
        labels = torch.tensor([int(f["labels"]) for f in features], dtype=torch.int64)
        song_index = torch.tensor([int(f["song_index"]) for f in features], dtype=torch.int64)
        if self.mixup_alpha > 0:
            weight = torch.distributions.Beta(self.mixup_alpha, self.mixup_alpha).sample((len(features),))
            partner = torch.randperm(len(features))
            input_values = torch.lerp(input_values[partner], input_values, weight[:, None, None])
            one_hot = torch.nn.functional.one_hot(labels, self.num_labels).float()
            labels = torch.lerp(one_hot[partner], one_hot, weight[:, None])
        return {"input_values": input_values, "labels": labels, "song_index": song_index}


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
    if crop_strategy not in CROP_STRATEGIES:
        raise ValueError(f"Unknown crop_strategy {crop_strategy!r}: choose one of {CROP_STRATEGIES}.")
    window_frames = round(crop_seconds * FRAMES_PER_SECOND)
    if window_frames > feature_extractor.max_length:
        raise ValueError(
            f"crop_seconds={crop_seconds} gives {window_frames} frames, more than the feature extractor's "
            f"max_length={feature_extractor.max_length}: shorten the crop or use a longer model input."
        )
    hop_frames = round((eval_hop_seconds or crop_seconds) * FRAMES_PER_SECOND)
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
        fbanks, feature_extractor, window_frames, spec_augment, waveform_augment or None, corpus.songs
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
