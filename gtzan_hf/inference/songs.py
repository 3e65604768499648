"""Whole-song inference: cut a song into the model's windows ([`~gtzan_hf.inference.windowing.model_windows`]),
classify them in batches with the prediction loop and vote. Used by the Gradio Space and by anyone classifying a
recording (`classify_song`), or showing it as it is classified (`iter_classify_song`)."""

from collections.abc import Iterator
from dataclasses import dataclass
from itertools import islice

import numpy as np
import torch

from ..models.feature_extraction_ssast import SSASTFeatureExtractor
from .audio import to_mono
from .predict import iterate_predictions, placement
from .voting import vote
from .windowing import model_windows, segment_starts, window_fbank


@dataclass
class SongPrediction:
    """A song's windows and what the model made of them."""

    label_names: list[str]
    window_starts: np.ndarray  # (windows,) start of each window, seconds
    window_probabilities: np.ndarray  # (windows, labels)
    probabilities: np.ndarray  # (labels,) soft vote: mean of the window probabilities
    fbank: (
        np.ndarray | None
    )  # (frames, mel_bins) the song's normalised filter bank, as the model saw it (None in a partial one)
    duration: float  # seconds of audio covered by the filter bank
    window_seconds: float = 10.0
    vote: str = "soft"  # the rule of `label` ([`~gtzan_hf.inference.voting.vote_rules`])
    num_windows: int | None = None  # the song's windows, of which the first `len(window_starts)` are classified

    @property
    def complete(self) -> bool:
        """Whether every window of the song is classified (not a partial prediction of `iter_classify_song`)."""
        return self.num_windows is None or len(self.window_starts) == self.num_windows

    @property
    def window_ends(self) -> np.ndarray:
        """`(windows,)` end of each window, seconds: the last ones stop where the song does."""
        return np.minimum(self.window_starts + self.window_seconds, self.duration)

    @property
    def label(self) -> str:
        """The song's class under the `vote` rule."""
        return self.label_names[vote(self.window_probabilities, self.vote)]

    def top(self, k: int = 5) -> dict[str, float]:
        """The `k` most probable classes, most probable first."""
        order = np.argsort(-self.probabilities)[:k]
        return {self.label_names[i]: float(self.probabilities[i]) for i in order}


# Windows held at once by `classify_song`: the model's input for 16 windows of 1024 frames is 8 MB, and with it the
# memory of a request stays that of its audio and filter bank, however long the song.
CHUNK_WINDOWS = 16
# Filter-bank frames computed at once: torchaudio's Kaldi fbank holds several float32 copies of the framed signal
# while it works (frames, FFT, power spectrum); 30 s at a time keeps them to tens of MB, whatever the song's length.
CHUNK_FRAMES = 3000


def fbank_chunks(waveform: torch.Tensor, feature_extractor: SSASTFeatureExtractor) -> Iterator[torch.Tensor]:
    """
    [`SSASTFeatureExtractor.fbank`] of a whole mono song, `CHUNK_FRAMES` frames at a time, first to last, so that its
    working memory stays bounded and its first frames come at once. Kaldi frames are independent (no dither, no
    whole-song mean), so the chunks give the same frames as the whole.
    """
    num_frames = feature_extractor.num_frames(waveform.numel())
    for first in range(0, max(num_frames, 1), CHUNK_FRAMES):
        yield feature_extractor.fbank(
            waveform[feature_extractor.frame_samples(first, min(CHUNK_FRAMES, num_frames - first))]
        )


def classify_song(
    waveform: np.ndarray,
    sampling_rate: int,
    model: torch.nn.Module,
    feature_extractor: SSASTFeatureExtractor,
    window_seconds: float | None = None,
    hop_seconds: float | None = None,
    batch_size: int = 8,
    vote: str = "soft",
) -> SongPrediction:
    """
    Classify a whole recording by fixed windows and a song-level vote, as the evaluation does. The song's filter bank
    is computed once; its windows are cut, normalised and classified `CHUNK_WINDOWS` at a time.

    Args:
        waveform: `(num_samples,)` mono or `(num_samples, num_channels)` audio, float in [-1, 1], any rate.
        sampling_rate: its sampling rate; it is downmixed and resampled to the feature extractor's.
        model: a classifier, or a serving form of one ([`gtzan_hf.serving.forms`]): `model(input_values=...).logits`.
        window_seconds, hop_seconds: the windows (default: those the model was trained and evaluated on, else its
            whole input without overlap; see [`~gtzan_hf.inference.windowing.model_windows`]).
        batch_size: windows per forward pass.
        vote: the song-level vote of `SongPrediction.label` (`probabilities` are always the soft vote's).
    """
    *_, prediction = iter_classify_song(
        waveform, sampling_rate, model, feature_extractor, window_seconds, hop_seconds, batch_size, vote
    )
    return prediction


def iter_classify_song(
    waveform: np.ndarray,
    sampling_rate: int,
    model: torch.nn.Module,
    feature_extractor: SSASTFeatureExtractor,
    window_seconds: float | None = None,
    hop_seconds: float | None = None,
    batch_size: int = 8,
    vote: str = "soft",
) -> Iterator[SongPrediction]:
    """
    [`classify_song`] batch by batch, for a page that shows the song as it is classified: after each forward pass,
    the prediction of the windows classified so far (`complete` false, `fbank` not yet given); the last one is the
    whole song's, the same as [`classify_song`]'s. The first window is classified alone, the others `batch_size` at a
    time. Arguments as [`classify_song`]'s.
    """
    windows = model_windows(feature_extractor, window_seconds, hop_seconds)
    samples = np.asarray(waveform, dtype=np.float32)
    mono = to_mono(samples[:, None] if samples.ndim == 1 else samples, sampling_rate, feature_extractor.sampling_rate)
    del waveform, samples
    # The filter bank is computed as the windows reach it, so that the first window is classified as soon as its
    # frames are there, however long the song.
    chunks = fbank_chunks(torch.from_numpy(mono), feature_extractor)
    fbank = next(chunks)
    num_frames = max(feature_extractor.num_frames(mono.size), fbank.shape[0])
    starts = segment_starts(num_frames, windows.frames, windows.hop_frames)
    id2label = model.config.id2label

    def batches() -> Iterator[dict]:
        nonlocal fbank
        for first in range(0, len(starts), CHUNK_WINDOWS):
            chunk = starts[first : first + CHUNK_WINDOWS]
            needed = min(chunk[-1] + windows.frames, num_frames)
            if fbank.shape[0] < needed:
                missing = -(-(needed - fbank.shape[0]) // CHUNK_FRAMES)  # chunks of frames, rounded up
                fbank = torch.cat([fbank, *islice(chunks, missing)])
            # the chunk's windows, padded before normalisation as in training
            chunk_windows = window_fbank(
                fbank[chunk[0] : chunk[-1] + windows.frames],
                windows.frames,
                windows.hop_frames,
                num_segments=len(chunk),
                pad_to=feature_extractor.max_length,
            )
            chunk_windows = feature_extractor.normalize(chunk_windows, inplace=True)
            # the song's first window alone: its genre is on the page after one window's work
            parts = (chunk_windows[:1], chunk_windows[1:]) if first == 0 else (chunk_windows,)
            for part in filter(len, parts):
                for batch in part.split(batch_size):
                    yield {"input_values": batch}

    def step(input_values: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"probabilities": model(input_values=input_values).logits.float().softmax(-1)}

    def prediction(rows: list[np.ndarray], normalised_fbank: np.ndarray | None) -> SongPrediction:
        probabilities = np.concatenate(rows)
        return SongPrediction(
            label_names=[id2label[i] for i in range(len(id2label))],
            window_starts=feature_extractor.frames_to_seconds(np.asarray(starts[: len(probabilities)])),
            window_probabilities=probabilities,
            probabilities=probabilities.mean(axis=0),
            fbank=normalised_fbank,
            duration=feature_extractor.frames_to_seconds(num_frames),
            window_seconds=windows.seconds,
            vote=vote,
            num_windows=len(starts),
        )

    rows, done = [], 0
    for row in iterate_predictions(step, batches(), *placement(model)):
        rows.append(row["probabilities"])
        done += len(row["probabilities"])
        if done < len(starts):
            yield prediction(rows, None)
    # the windows are all cut: the filter bank is normalised in place for the figure
    fbank = torch.cat([fbank, *chunks])
    yield prediction(rows, feature_extractor.normalize(fbank, inplace=True).numpy())
