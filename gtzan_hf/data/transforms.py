"""Windows cut on the fly from the fbank cache: the `with_transform` of the training and evaluation index tables.

Windows and padding: a window is `window_frames` filter-bank frames (10 s = 1000 frames) starting at `start`;
what the song lacks at its end (GTZAN's 29.x s tracks lose up to a few frames in their third 10 s window), and the
rest up to the model's `max_length` (1024), is zero-padded before normalisation, as the original SSAST did. The
random crop of a song shorter than the window takes the whole song, padded the same way.
"""

from collections.abc import Callable

import numpy as np
import pyarrow as pa
import torch
from datasets import Dataset

from ..inference.audio import decode_audio
from ..inference.windowing import random_start
from .augmentation import spec_augment


class FbankWindowTransform:
    """
    The `with_transform` of a training or evaluation index table: rows `{"song", "song_index", "start"}` become
    `{"input_values": (batch, max_length, num_mel_bins) float32, "labels": list[int], "song_index": list[int]}`.

    `song` is the song's row in the fbank cache, `song_index` its position in the split (shared by the segments of
    a song), `start` the window's first frame, or -1 for a new random window at every draw. Windows are cut, padded
    to the feature extractor's `max_length`, masked (SpecAugment, training) and normalised with its `mean`/`std`,
    read at call time. With `waveform_augment`, the window is recomputed from the augmented audio instead.
    `spec_augment_axes` see [`spec_augment`].
    """

    def __init__(
        self,
        fbanks: Dataset,
        feature_extractor,
        window_frames: int,
        spec_augment: tuple[int, int] | None = None,
        waveform_augment: Callable | None = None,
        audio: Dataset | None = None,
        spec_augment_axes: str = "standard",
    ):
        self.fbanks = fbanks.select_columns(["fbank", "num_frames", "label"])
        self.feature_extractor = feature_extractor
        self.window_frames = window_frames
        self.spec_augment = spec_augment
        self.spec_augment_axes = spec_augment_axes
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
        waveform = decode_audio(self.audio[song]["audio"], rate)
        waveform = waveform[self.feature_extractor.frame_samples(start, self.window_frames)]
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
                start = random_start(len(fbank), self.window_frames)
            if self.waveform_augment is not None:
                augmented[index] = self._augmented_window(song, start)
            else:
                window = fbank[start : start + self.window_frames]
                padded[index, : len(window)] = window
        input_values = torch.from_numpy(padded).float()
        for index, window in augmented.items():
            input_values[index] = extractor.pad_or_truncate(window)
        if self.spec_augment is not None:
            input_values = spec_augment(input_values, *self.spec_augment, axes=self.spec_augment_axes)
        input_values = extractor.normalize(input_values, inplace=True)  # a new batch would cost 4x the arithmetic
        return {
            "input_values": input_values,
            "labels": labels[batch["song"]].tolist(),
            "song_index": batch["song_index"],
        }
