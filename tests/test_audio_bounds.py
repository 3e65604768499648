"""Bounded cost for any file (gtzan_hf.inference.audio): odd sampling rates resampled with a bounded kernel, common
rates exactly as before, decompression bombs refused from their header, channels averaged block by block. The bombs
are written on the spot with soundfile, tiny."""

import logging
import struct
import sys
import types
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
import torchaudio

from gtzan_hf.data import load_corpus
from gtzan_hf.data.synthetic import generate_corpus, synthesize_song
from gtzan_hf.inference import audio
from gtzan_hf.inference.audio import (
    MAX_CHANNELS,
    MAX_RATIO_TERMS,
    AudioTooLargeError,
    audio_problem,
    decode_audio,
    read_recording,
    resample,
    resampling_ratio,
)
from gtzan_hf.serving.demo import DemoError, GenreClassifier, load_recording

COMMON_RATES = [8000, 11025, 22050, 24000, 32000, 44100, 48000, 88200, 96000, 192000]
ODD_RATES = [16001, 8009, 11127, 22254, 4001]


def _song(seconds: float, sampling_rate: int, channels: int = 1) -> np.ndarray:
    waveform = synthesize_song("rock", np.random.default_rng(0), seconds, sampling_rate)
    return np.stack([waveform * (1 - 0.1 * channel) for channel in range(channels)], axis=1)


def _flac_declaring(path: Path, channels: int, sampling_rate: int, seconds: float) -> Path:
    """A FLAC of 0.1 s of silence whose header (STREAMINFO) declares `seconds`: the figures of a decompression bomb
    without the seconds of encoding (9 minutes of 8-channel 96 kHz silence are 0.4 MB of FLAC; the `space_bounds`
    benchmark writes the real one)."""
    sf.write(path, np.zeros((sampling_rate // 10, channels), dtype=np.int16), sampling_rate, subtype="PCM_16")
    data = bytearray(path.read_bytes())
    # "fLaC", a 4-byte block header, then STREAMINFO: 10 bytes, then rate, channels, bits and 36 bits of samples
    (fields,) = struct.unpack(">Q", data[18:26])
    data[18:26] = struct.pack(">Q", fields & ~(2**36 - 1) | round(seconds * sampling_rate))
    path.write_bytes(bytes(data))
    return path


@pytest.fixture
def no_decoding(monkeypatch):
    """Decoding fails the test: a refusal must come from the header alone."""

    def read(*args, **kwargs):
        raise AssertionError("the file was decoded")

    monkeypatch.setattr(sf.SoundFile, "read", read)


@pytest.mark.parametrize("sampling_rate", COMMON_RATES)
def test_common_rates_resample_exactly_as_torchaudio(sampling_rate):
    """The fbank caches and the reference numbers stay valid: common rates give torchaudio's samples, bit for bit."""
    waveform = _song(1.0, sampling_rate)[:, 0]
    assert resampling_ratio(sampling_rate, 16000) == (sampling_rate, 16000)
    expected = torchaudio.transforms.Resample(sampling_rate, 16000)(torch.from_numpy(waveform)).numpy()
    np.testing.assert_array_equal(resample(waveform, sampling_rate), expected)


@pytest.mark.parametrize(
    "name, format_, channels",
    [("a.wav", "WAV", 6), ("a.flac", "FLAC", 2), ("a.ogg", "OGG", 2), ("a.mp3", "MP3", 2), ("m.mp3", "MP3", 1)],
)
def test_decoding_by_blocks_gives_the_samples_of_one_read(tmp_path, monkeypatch, name, format_, channels):
    """Blocks of 1000 samples, their channels averaged at once: the waveform of `soundfile.read` and a mean."""
    monkeypatch.setattr(audio, "BLOCK_SAMPLES", 1000)
    sf.write(tmp_path / name, _song(1.0, 44100, channels), 44100, format=format_)
    samples, sampling_rate = sf.read(tmp_path / name, dtype="float32", always_2d=True)
    recording = read_recording(str(tmp_path / name))
    assert (recording.sampling_rate, recording.num_channels) == (sampling_rate, channels)
    np.testing.assert_array_equal(recording.waveform, samples.mean(axis=1))
    assert recording.peak == np.abs(samples).max()
    expected = torchaudio.transforms.Resample(44100, 16000)(torch.from_numpy(samples.mean(axis=1))).numpy()
    np.testing.assert_array_equal(decode_audio(str(tmp_path / name)), expected)


@pytest.mark.parametrize("sampling_rate", ODD_RATES)
def test_odd_rates_resample_with_a_small_kernel_and_keep_their_pitch(sampling_rate):
    """16001 Hz used to build a kernel of 16000 × 16001 phases and taps (1 GB, several GB to build)."""
    orig_freq, new_freq = resampling_ratio(sampling_rate, 16000)
    if orig_freq != new_freq:
        assert audio._resampler(orig_freq, new_freq).kernel.numel() <= 1_240_000  # 5 MB
    tone = np.sin(2 * np.pi * 440 * np.arange(3 * sampling_rate) / sampling_rate).astype(np.float32)
    resampled = resample(tone, sampling_rate)
    assert abs(len(resampled) / 48000 - 1) < 5e-4  # the duration, within 0.05 %
    spectrum = np.abs(np.fft.rfft(resampled * np.hanning(len(resampled))))
    assert abs(spectrum.argmax() * 16000 / len(resampled) - 440) < 0.5  # the pitch: the FFT's bin is 0.33 Hz


def test_every_rate_gets_a_ratio_within_the_bound():
    """From 1 Hz to 768 kHz (a sample of them): at most 0.05 % off, and a ratio whose terms multiply to about
    `MAX_RATIO_TERMS` at most."""
    for sampling_rate in [*range(1, 768_001, 997), 16008, 15969]:
        orig_freq, new_freq = resampling_ratio(sampling_rate, 16000)
        assert abs(new_freq / orig_freq * sampling_rate / 16000 - 1) < 5e-4, sampling_rate
        assert new_freq * orig_freq <= 1.01 * MAX_RATIO_TERMS * np.gcd(orig_freq, new_freq) ** 2, sampling_rate


def test_an_odd_rate_upload_is_classified(tiny_ssast, tmp_path):
    sf.write(tmp_path / "odd.wav", _song(3.0, 22254, 2), 22254)
    result = GenreClassifier(str(tiny_ssast), forms=["float32"]).classify(tmp_path / "odd.wav")
    assert "22254 Hz 2 channels" in result.summary()
    assert result.prediction.duration == pytest.approx(3.0, abs=0.03)


def test_a_decompression_bomb_is_refused_from_its_header(tmp_path, no_decoding):
    """8 channels × 96 kHz × 9 minutes of silence (0.4 MB of FLAC) raised the Space's peak RSS by 3 GB before being
    refused as silent."""
    bomb = _flac_declaring(tmp_path / "bomb.flac", 8, 96000, 540)
    with pytest.raises(
        DemoError,
        match=r"^bomb.flac cannot be classified: too large: 8 channels × 96000 Hz × 540 s decode to 414.7 million "
        r"samples, expected at most 57.6 million \(10 minutes of 48 kHz stereo\); trim, downmix or resample it.$",
    ):
        load_recording(bomb)
    # the data loaders' bound is an hour of 48 kHz stereo: this one is past it too
    assert audio_problem(str(bomb)).startswith("too large: 8 channels × 96000 Hz × 540 s decode to 414.7 million")
    with pytest.raises(AudioTooLargeError, match=f"^{bomb}: too large: .* expected at most 345.6 million"):
        decode_audio(str(bomb))


def test_a_file_of_many_channels_is_refused_from_its_header(tmp_path, no_decoding):
    many = tmp_path / "many.ogg"
    sf.write(many, np.zeros((4800, 255), dtype=np.float32), 48000, format="OGG")  # Vorbis allows 255 channels
    expected = f"too many channels: 255, expected at most {MAX_CHANNELS}; downmix it"
    with pytest.raises(DemoError, match=f"^many.ogg cannot be classified: {expected}.$"):
        load_recording(many)
    assert audio_problem({"path": "many.ogg", "bytes": many.read_bytes()}) == expected


def test_long_real_recordings_are_within_the_loaders_bound():
    """Half an hour of 48 kHz stereo loads, hours of 384 kHz do not."""
    assert audio._size_problem(2, 48000, 30 * 60 * 48000) == ""
    assert audio._size_problem(6, 48000, 30 * 60 * 48000).startswith("too large")  # 5.1 for half an hour
    assert audio._size_problem(1, 384000, 2 * 3600 * 384000).startswith("too large: 1 channel × 384000 Hz × 7200 s")


def test_bombs_in_a_dataset_are_skipped_with_a_warning(tmp_path, caplog):
    generate_corpus(tmp_path, songs_per_genre=2, seed=0, duration=1.0, genres=("blues", "rock"), num_proc=1)
    _flac_declaring(tmp_path / "rock" / "rock.bomb.flac", 8, 96000, 540)
    sf.write(tmp_path / "blues" / "blues.many.ogg", np.zeros((4800, 255), dtype=np.float32), 48000)
    with caplog.at_level(logging.WARNING):
        corpus = load_corpus(tmp_path, num_proc=1, cache_dir=tmp_path / "cache")
    assert len(corpus.songs) == 4
    reasons = {entry["song_id"]: entry["reason"] for entry in corpus.skipped}
    assert reasons["rock.bomb"].startswith("too large: 8 channels × 96000 Hz × 540 s")
    assert reasons["blues.many"].startswith("too many channels: 255")
    warnings = "\n".join(record.getMessage() for record in caplog.records)
    assert "Skipping rock.bomb (" in warnings and "Skipping blues.many (" in warnings


def test_files_for_torchcodec_are_checked_against_its_header(monkeypatch, tmp_path):
    """Formats libsndfile cannot open (M4A) go through torchcodec where installed: its metadata is checked first.
    A stand-in for torchcodec's `AudioDecoder` (metadata, `get_all_samples()`), which needs FFmpeg."""

    class AudioDecoder:
        channels = 255

        def __init__(self, source):
            self.metadata = types.SimpleNamespace(
                num_channels=self.channels, sample_rate=48000, duration_seconds_from_header=1.0
            )

        def get_all_samples(self):
            if self.channels > MAX_CHANNELS:
                raise AssertionError("the file was decoded")
            data = torch.full((self.channels, 48000), 0.25)
            data[0] = 0.5
            return types.SimpleNamespace(data=data, sample_rate=48000)

    monkeypatch.setitem(sys.modules, "torchcodec", types.ModuleType("torchcodec"))
    monkeypatch.setitem(sys.modules, "torchcodec.decoders", types.SimpleNamespace(AudioDecoder=AudioDecoder))
    (tmp_path / "song.m4a").write_bytes(b"\x00\x00\x00\x20ftypM4A ")  # not a format libsndfile knows
    assert (
        audio_problem(str(tmp_path / "song.m4a"))
        == f"too many channels: 255, expected at most {MAX_CHANNELS}; downmix it"
    )
    AudioDecoder.channels = 2
    recording = read_recording(str(tmp_path / "song.m4a"))
    assert (recording.num_channels, recording.sampling_rate, recording.peak) == (2, 48000, 0.5)
    np.testing.assert_array_equal(recording.waveform, np.full(48000, 0.375, dtype=np.float32))
