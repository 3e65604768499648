"""Decoding audio to 16 kHz mono without FFmpeg, and telling unusable files apart."""

import io
from functools import lru_cache

import numpy as np
import soundfile as sf
import torch
import torchaudio

from ..models.feature_extraction_ssast import MAX_AMPLITUDE  # +60 dBFS: the feature extractor refuses more

# A file shorter than this holds no 25 ms Kaldi frame once resampled: it cannot be featurised.
MIN_DURATION_SECONDS = 0.03
# Peak amplitude at or below which a file counts as silent (-80 dBFS): digital silence, or a failed rip.
SILENCE_PEAK = 1e-4


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


def read_audio(audio: dict | str) -> tuple[np.ndarray, int]:
    """
    Read a file as it is stored.

    soundfile's bundled libsndfile handles WAV, AU, AIFF, FLAC, OGG and MP3 with no system package; other formats
    (e.g. M4A) go through torchcodec where it is installed (it needs FFmpeg).

    Returns:
        `(samples, sampling_rate)` with `samples` float32 of shape `(num_samples, num_channels)`.
    """
    try:
        samples, sampling_rate = sf.read(_source(audio), dtype="float32", always_2d=True)
        return samples, sampling_rate
    except sf.LibsndfileError as error:
        try:
            from torchcodec.decoders import AudioDecoder
        except ImportError:
            raise error from None
        decoded = AudioDecoder(_source(audio)).get_all_samples()
        return decoded.data.T.numpy().astype(np.float32), decoded.sample_rate


@lru_cache(maxsize=16)
def _resampler(orig_freq: int, new_freq: int) -> torchaudio.transforms.Resample:
    # The sinc kernel is built once per pair of rates instead of once per file.
    return torchaudio.transforms.Resample(orig_freq, new_freq)


def to_mono(samples: np.ndarray, sampling_rate: int, target_sampling_rate: int = 16000) -> np.ndarray:
    """Downmix `(num_samples, num_channels)` samples by averaging the channels and resample with torchaudio."""
    waveform = torch.from_numpy(np.ascontiguousarray(samples.mean(axis=1), dtype=np.float32))
    if sampling_rate != target_sampling_rate:
        waveform = _resampler(sampling_rate, target_sampling_rate)(waveform)
    return waveform.numpy()


def decode_audio(audio: dict | str, sampling_rate: int = 16000) -> np.ndarray:
    """Decode a file (path or `{"path", "bytes"}`) to a mono float32 waveform of shape `(num_samples,)`."""
    return to_mono(*read_audio(audio), target_sampling_rate=sampling_rate)


def audio_problem(audio: dict | str) -> str:
    """Why a file cannot be used (see [`samples_problem`], or unreadable), or `""` when it can."""
    try:
        samples, sampling_rate = read_audio(audio)
    except Exception as error:  # any decoding failure makes the file unusable: say which
        return f"unreadable: {type(error).__name__}: {error}".strip()
    return samples_problem(samples, sampling_rate)


def samples_problem(samples: np.ndarray, sampling_rate: int) -> str:
    """Why decoded `(num_samples, num_channels)` samples cannot be used (empty, too short, non-finite, far beyond
    full scale, silent), or `""` when they can: usable samples give finite features."""
    if samples.size == 0:
        return "empty: no audio samples"
    if samples.shape[0] < MIN_DURATION_SECONDS * sampling_rate:
        return f"too short: {samples.shape[0] / sampling_rate * 1000:.1f} ms"
    if not np.isfinite(samples).all():
        return "corrupt: NaN or infinite samples"
    peak = np.abs(samples).max()
    if peak > MAX_AMPLITUDE:
        return f"corrupt: peak amplitude {peak:.3g}, more than {MAX_AMPLITUDE:g} times full scale (+60 dBFS)"
    if peak <= SILENCE_PEAK:
        return "silent: peak amplitude at or below -80 dBFS"
    return ""
