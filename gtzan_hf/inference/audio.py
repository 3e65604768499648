"""Decoding audio to 16 kHz mono without FFmpeg, at a bounded cost for any file, and telling unusable files apart."""

import io
import math
from dataclasses import dataclass
from fractions import Fraction
from functools import lru_cache

import numpy as np
import soundfile as sf
import torch
import torchaudio

from ..errors import UserError
from ..models.feature_extraction_ssast import MAX_AMPLITUDE  # +60 dBFS: the feature extractor refuses more

# A file shorter than this holds no 25 ms Kaldi frame once resampled: it cannot be featurised.
MIN_DURATION_SECONDS = 0.03
# Peak amplitude at or below which a file counts as silent (-80 dBFS): digital silence, or a failed rip.
SILENCE_PEAK = 1e-4
# What a file may decode to, read from its header before any decoding: a small file can declare hours of many
# channels (a 0.4 MB FLAC of silence declares 8 channels × 96 kHz × 9 minutes, 1.6 GB of float32). Every channel is
# averaged; 16 covers 9.1.6 immersive mixes and third-order Ambisonics.
MAX_CHANNELS = 16
# Samples decoded (channels × frames): an hour of 48 kHz stereo, so that long real recordings load (the mono
# waveform is then at most 1.4 GB of float32).
MAX_DECODED_SAMPLES = 3600 * 48000 * 2
# Samples (all channels) decoded at once: the channels are averaged block by block, so that decoding holds the mono
# waveform and one block (4 MB), never the multichannel array.
BLOCK_SAMPLES = 2**20
# Resampling kernels are built for the ratio of the rates in lowest terms, new/orig = p/q: p phases of about q taps,
# so their size and the work per sample grow with p × q. Every common rate keeps its exact ratio (the largest,
# 11025 → 16000 Hz, is 640 × 441); an odd rate (16001 Hz: 16000 × 16001, a 1 GB kernel) is resampled with the
# nearest ratio of about this product instead, which changes duration and pitch by less than 0.05 % (under a cent)
# for every integer rate from 1 Hz to 768 kHz to 16 kHz. A kernel then holds at most 1.23 M floats (5 MB).
MAX_RATIO_TERMS = 2**20


class AudioTooLargeError(UserError):
    """A file whose header declares more than may be decoded; `reason` says what was found and what is expected."""

    def __init__(self, name: str, reason: str):
        super().__init__(f"{name}: {reason}")
        self.reason = reason


@dataclass(frozen=True)
class Recording:
    """A file decoded to mono at its own sampling rate (its channels averaged), with what the checks need."""

    waveform: np.ndarray  # (num_frames,) float32
    sampling_rate: int
    num_channels: int
    peak: float  # the largest absolute sample of any channel; NaN or infinite when a sample is

    @property
    def duration(self) -> float:
        return len(self.waveform) / self.sampling_rate

    @property
    def problem(self) -> str:
        """Why the recording cannot be used (see [`samples_problem`]), or `""` when it can."""
        return _problem(len(self.waveform), self.sampling_rate, self.peak)

    def resampled(self, sampling_rate: int = 16000) -> np.ndarray:
        """The mono waveform at `sampling_rate` (see [`resample`])."""
        return resample(self.waveform, self.sampling_rate, sampling_rate)


def _source(audio: dict | str):
    """A path or a file object for an `Audio(decode=False)` value (`{"path", "bytes"}`) or a plain path."""
    if isinstance(audio, str):
        return audio
    if audio.get("bytes") is not None:  # b"" is an empty file, not a cue to open `path` (a name, in Hub datasets)
        if not audio["bytes"]:
            raise ValueError("empty file: no audio bytes")
        return io.BytesIO(audio["bytes"])
    if audio.get("path"):
        return audio["path"]
    raise ValueError("The audio value has neither bytes nor a path.")


def _name(audio: dict | str) -> str:
    return audio if isinstance(audio, str) else audio.get("path") or "the audio bytes"


def _size_problem(
    num_channels: int, sampling_rate: int, num_frames: int, max_samples: int = MAX_DECODED_SAMPLES
) -> str:
    """
    Why a file of this header cannot be decoded within bounds ([`MAX_CHANNELS`], `max_samples` decoded samples), or
    `""` when it can. `max_samples` defaults to [`MAX_DECODED_SAMPLES`] (an hour of 48 kHz stereo).
    """
    if num_channels > MAX_CHANNELS:
        return f"too many channels: {num_channels}, expected at most {MAX_CHANNELS}; downmix it"
    decoded = num_channels * num_frames
    if decoded > max_samples:
        return (
            f"too large: {num_channels} channel{'s' if num_channels > 1 else ''} × {sampling_rate} Hz × "
            f"{num_frames / sampling_rate:.0f} s decode to {decoded / 1e6:.1f} million samples, expected at most "
            f"{max_samples / 1e6:.1f} million ({max_samples / 96000 / 60:g} minutes of 48 kHz stereo); trim, downmix "
            "or resample it"
        )
    return ""


def read_recording(audio: dict | str, max_samples: int = MAX_DECODED_SAMPLES) -> Recording:
    """
    Decode a file (path or `{"path", "bytes"}`) to mono at its own sampling rate, checking its header first.

    soundfile's bundled libsndfile handles WAV, AU, AIFF, FLAC, OGG and MP3 with no system package; the file is
    decoded by blocks of [`BLOCK_SAMPLES`] whose channels are averaged at once. Other formats (e.g. M4A) go through
    torchcodec where it is installed (it needs FFmpeg), checked against the header it reads, decoded whole.

    Raises:
        `AudioTooLargeError` when the header declares more than [`_size_problem`] allows (nothing is decoded);
        soundfile's or torchcodec's error for a file they cannot read.
    """
    source = _source(audio)
    try:
        file = sf.SoundFile(source)
    except sf.LibsndfileError as error:
        try:
            from torchcodec.decoders import AudioDecoder
        except ImportError:
            raise error from None
        if isinstance(source, io.BytesIO):
            source.seek(0)
        return _read_with_torchcodec(AudioDecoder(source), _name(audio), max_samples)
    with file:
        problem = _size_problem(file.channels, file.samplerate, file.frames, max_samples)
        if problem:
            raise AudioTooLargeError(_name(audio), problem)
        if file.seekable():
            file.seek(0)  # as `soundfile.read` does: libsndfile's MP3 decoder gives other last bits without it
        # at most the frames the header declares, as `soundfile.read` reads
        waveform = np.empty(file.frames, dtype=np.float32)
        if file.channels == 1:  # the samples are the waveform: read at once, as `soundfile.read` does
            waveform = file.read(out=waveform)
            return Recording(waveform, file.samplerate, 1, _peak(waveform))
        block = np.empty((max(1, BLOCK_SAMPLES // file.channels), file.channels), dtype=np.float32)
        peak, position = 0.0, 0
        while position < file.frames:
            samples = file.read(out=block[: file.frames - position])
            if not len(samples):
                break
            peak = float(np.maximum(peak, _peak(samples)))  # NaN stays NaN
            samples.mean(axis=1, out=waveform[position : position + len(samples)])
            position += len(samples)
        return Recording(waveform[:position], file.samplerate, file.channels, peak)


def _peak(samples: np.ndarray) -> float:
    """The largest absolute sample (NaN or infinite when a sample is), without a copy of `samples`."""
    return float(np.maximum(samples.max(), -samples.min())) if samples.size else 0.0


def _read_with_torchcodec(decoder, name: str, max_samples: int) -> Recording:
    metadata = decoder.metadata
    declared = round((metadata.duration_seconds_from_header or 0) * metadata.sample_rate)
    problem = _size_problem(metadata.num_channels, metadata.sample_rate, declared, max_samples)
    if problem:
        raise AudioTooLargeError(name, problem)
    decoded = decoder.get_all_samples()
    samples = decoded.data.T.numpy().astype(np.float32, copy=False)
    problem = _size_problem(samples.shape[1], decoded.sample_rate, samples.shape[0], max_samples)  # a header can lie
    if problem:
        raise AudioTooLargeError(name, problem)
    return Recording(samples.mean(axis=1, dtype=np.float32), decoded.sample_rate, samples.shape[1], _peak(samples))


def resampling_ratio(orig_freq: int, new_freq: int) -> tuple[int, int]:
    """
    The `(orig_freq, new_freq)` pair to resample with: the rates themselves when their ratio in lowest terms is
    small enough ([`MAX_RATIO_TERMS`]: all common rates), else the nearest ratio that is, which changes duration
    and pitch by less than 0.05 % to 16 kHz.
    """
    ratio = Fraction(new_freq, orig_freq)
    if ratio.numerator * ratio.denominator <= MAX_RATIO_TERMS:
        return orig_freq, new_freq
    # p/q ≈ ratio with p × q ≈ ratio × q² at most about MAX_RATIO_TERMS
    ratio = ratio.limit_denominator(max(1, math.isqrt(MAX_RATIO_TERMS * orig_freq // new_freq)))
    return ratio.denominator, ratio.numerator


@lru_cache(maxsize=16)
def _resampler(orig_freq: int, new_freq: int) -> torchaudio.transforms.Resample:
    # The sinc kernel is built once per pair of rates instead of once per file; each holds at most a few MB.
    return torchaudio.transforms.Resample(orig_freq, new_freq)


def resample(waveform: np.ndarray, orig_freq: int, new_freq: int = 16000) -> np.ndarray:
    """Resample a mono float32 waveform with torchaudio's sinc interpolation, at a bounded cost for any rates (see
    [`resampling_ratio`])."""
    orig_freq, new_freq = resampling_ratio(orig_freq, new_freq)
    if orig_freq == new_freq:
        return waveform
    return _resampler(orig_freq, new_freq)(torch.from_numpy(waveform)).numpy()


def to_mono(samples: np.ndarray, sampling_rate: int, target_sampling_rate: int = 16000) -> np.ndarray:
    """Downmix `(num_samples, num_channels)` samples by averaging the channels and [`resample`] them."""
    mono = np.ascontiguousarray(samples.mean(axis=1), dtype=np.float32)
    return resample(mono, sampling_rate, target_sampling_rate)


def decode_audio(audio: dict | str, sampling_rate: int = 16000) -> np.ndarray:
    """Decode a file (path or `{"path", "bytes"}`) to a mono float32 waveform of shape `(num_samples,)`, within the
    bounds of [`read_recording`]."""
    return read_recording(audio).resampled(sampling_rate)


def check_recording(audio: dict | str) -> tuple[Recording | None, str]:
    """`(recording, "")` for a usable file, or `(None, why it cannot be used)`: too large, unreadable, or any
    problem of [`samples_problem`]."""
    try:
        recording = read_recording(audio)
    except AudioTooLargeError as error:
        return None, error.reason
    except Exception as error:  # any decoding failure makes the file unusable: say which
        return None, f"unreadable: {type(error).__name__}: {error}".strip()
    problem = recording.problem
    return (None, problem) if problem else (recording, "")


def audio_problem(audio: dict | str) -> str:
    """Why a file cannot be used (see [`check_recording`]), or `""` when it can."""
    return check_recording(audio)[1]


def samples_problem(samples: np.ndarray, sampling_rate: int) -> str:
    """Why decoded `(num_samples, num_channels)` samples cannot be used (empty, too short, non-finite, far beyond
    full scale, silent), or `""` when they can: usable samples give finite features."""
    return _problem(samples.shape[0] if samples.size else 0, sampling_rate, _peak(samples))


def _problem(num_frames: int, sampling_rate: int, peak: float) -> str:
    if num_frames == 0:
        return "empty: no audio samples"
    if num_frames < MIN_DURATION_SECONDS * sampling_rate:
        return f"too short: {num_frames / sampling_rate * 1000:.1f} ms"
    if not math.isfinite(peak):
        return "corrupt: NaN or infinite samples"
    if peak > MAX_AMPLITUDE:
        return f"corrupt: peak amplitude {peak:.3g}, more than {MAX_AMPLITUDE:g} times full scale (+60 dBFS)"
    if peak <= SILENCE_PEAK:
        return "silent: peak amplitude at or below -80 dBFS"
    return ""
