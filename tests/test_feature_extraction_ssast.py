import logging
import warnings

import numpy as np
import pytest
import soundfile
import torch
from transformers import ASTFeatureExtractor, DataCollatorWithPadding

from gtzan_hf import SSASTFeatureExtractor
from gtzan_hf.models import feature_extraction_ssast


def tone_with_noise(seconds: float, seed: int = 0, sampling_rate: int = 16000) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sampling_rate)) / sampling_rate
    return (0.3 * np.sin(2 * np.pi * 440 * t) + 0.05 * rng.standard_normal(t.size)).astype(np.float32)


@pytest.mark.parametrize("max_length,do_normalize", [(1024, True), (128, True), (300, False)])
def test_matches_transformers_ast_feature_extractor(max_length, do_normalize):
    waveforms = [tone_with_noise(2.0, seed=0), tone_with_noise(1.3, seed=1)]
    settings = dict(num_mel_bins=128, max_length=max_length, do_normalize=do_normalize)
    ours = SSASTFeatureExtractor(**settings)(waveforms, sampling_rate=16000, return_tensors="pt")["input_values"]
    reference = ASTFeatureExtractor(**settings)(waveforms, sampling_rate=16000, return_tensors="pt")["input_values"]
    assert ours.shape == (2, max_length, 128)
    torch.testing.assert_close(ours, reference, rtol=0, atol=1e-5)


def test_fbank_matches_kaldi_native_fbank():
    knf = pytest.importorskip("kaldi_native_fbank")
    waveform = tone_with_noise(2.0)
    options = knf.FbankOptions()
    options.frame_opts.dither = 0
    options.frame_opts.window_type = "hanning"
    options.frame_opts.samp_freq = 16000
    options.htk_compat = True
    options.use_energy = False
    # Kaldi refuses 128 bins at 16 kHz (its lowest filters are empty): compare with 80.
    options.mel_opts.num_bins = 80
    online = knf.OnlineFbank(options)
    online.accept_waveform(16000, waveform.tolist())
    online.input_finished()
    reference = np.stack([online.get_frame(i) for i in range(online.num_frames_ready)])

    ours = SSASTFeatureExtractor(num_mel_bins=80).fbank(torch.from_numpy(waveform)).numpy()
    assert ours.shape == reference.shape == (1 + (32000 - 400) // 160, 80)
    np.testing.assert_allclose(ours, reference, atol=2e-3)


@pytest.mark.parametrize("sampling_rate", [16000, 22050])
def test_frame_arithmetic_is_kaldis(sampling_rate):
    """Frame counts, frame samples and seconds: the numbers torchaudio's Kaldi fbank gives (25 ms every 10 ms)."""
    extractor = SSASTFeatureExtractor(sampling_rate=sampling_rate)
    assert (extractor.frame_length, extractor.hop_length) == (int(sampling_rate * 0.025), int(sampling_rate * 0.01))
    waveform = torch.from_numpy(tone_with_noise(1.3, sampling_rate=sampling_rate))
    fbank = extractor.fbank(waveform)
    assert fbank.shape[0] == extractor.num_frames(waveform.numel()) == 128
    # frames 40 to 69 from their own samples: the same frames as the whole waveform's
    torch.testing.assert_close(extractor.fbank(waveform[extractor.frame_samples(40, 30)]), fbank[40:70])
    assert extractor.seconds_to_frames(10.24) == 1024 and extractor.frames_to_seconds(1000) == 10.0


def test_a_list_batch_equals_one_by_one():
    extractor = SSASTFeatureExtractor(max_length=256)
    batch = [torch.from_numpy(tone_with_noise(seconds, seed=s)) for s, seconds in enumerate((1.0, 0.7, 1.2))]
    together = extractor(batch, sampling_rate=16000, return_tensors="pt")["input_values"]
    for i in range(3):
        alone = extractor(batch[i], sampling_rate=16000, return_tensors="pt")["input_values"]
        torch.testing.assert_close(together[i : i + 1], alone)
    assert isinstance(extractor(batch, sampling_rate=16000)["input_values"], list)


@pytest.mark.parametrize(
    "array", [np.zeros((2, 16000), dtype=np.float32), torch.zeros(16000, 2), np.zeros((3, 16000), dtype=np.float32)]
)
def test_two_dimensional_arrays_are_never_taken_for_a_batch(array):
    shape = tuple(array.shape)
    with pytest.raises(ValueError, match=rf"shape \({shape[0]}, {shape[1]}\).*downmix.*list\(batch\)"):
        SSASTFeatureExtractor()(array, sampling_rate=16000)


@pytest.mark.parametrize("subtype,dtype", [("PCM_16", "int16"), ("PCM_32", "int32")])
def test_integer_pcm_is_scaled_as_soundfile_reads_it(tmp_path, subtype, dtype):
    path = tmp_path / "tone.wav"
    soundfile.write(path, tone_with_noise(1.0), 16000, subtype=subtype)
    as_float, _ = soundfile.read(path, dtype="float32")
    as_integers, _ = soundfile.read(path, dtype=dtype)
    assert as_integers.dtype == np.dtype(dtype) and np.abs(as_integers).max() > 1000
    extractor = SSASTFeatureExtractor(max_length=128)
    expected = extractor(as_float, sampling_rate=16000, return_tensors="pt")["input_values"]
    for integers in (as_integers, torch.from_numpy(as_integers)):
        torch.testing.assert_close(
            extractor(integers, sampling_rate=16000, return_tensors="pt")["input_values"], expected
        )


@pytest.mark.parametrize("samples", [np.zeros(16000, dtype=np.int64), np.zeros(16000, dtype=np.uint8)])
def test_other_integer_types_are_refused(samples):
    with pytest.raises(ValueError, match=f"Got torch.{samples.dtype} samples.*int16 / int32 PCM"):
        SSASTFeatureExtractor()(samples, sampling_rate=16000)


def test_a_missing_sampling_rate_is_warned_about(caplog):
    extractor = SSASTFeatureExtractor(max_length=128)
    with caplog.at_level(logging.WARNING):
        extractor(tone_with_noise(1.0), sampling_rate=16000)
        assert caplog.text == ""
        extractor(tone_with_noise(1.0))
    assert "pass the `sampling_rate` argument to `SSASTFeatureExtractor()`" in caplog.text


def test_amplitude_far_beyond_full_scale_is_refused():
    extractor = SSASTFeatureExtractor(max_length=128)
    square = np.sign(np.sin(np.arange(16000) / 5)).astype(np.float32)
    with pytest.raises(ValueError, match=r"peaks at 1e\+20, far beyond full scale"):
        extractor(square * np.float32(1e20), sampling_rate=16000)
    with pytest.raises(ValueError, match=r"peaks at 1\.05e\+03"):
        extractor(square * np.float32(1050), sampling_rate=16000)
    # Up to the bound, the features stay finite.
    assert torch.isfinite(extractor(square * 1000, sampling_rate=16000, return_tensors="pt")["input_values"]).all()


def test_settings_and_defaults_are_ast_s():
    """AST's settings and defaults, plus the windows a fine-tuning run records (none by default)."""
    ours, ast = SSASTFeatureExtractor().to_dict(), ASTFeatureExtractor().to_dict()
    assert ours.pop("feature_extractor_type") == "SSASTFeatureExtractor"
    assert ast.pop("feature_extractor_type") == "ASTFeatureExtractor"
    assert (ours.pop("window_seconds"), ours.pop("hop_seconds")) == (None, None)
    assert ours == ast and ours["return_attention_mask"] is False
    assert SSASTFeatureExtractor.model_input_names == ASTFeatureExtractor.model_input_names


@pytest.mark.parametrize("return_attention_mask", [False, True])
def test_the_default_collator_adds_a_mask_of_ones_only_when_asked(return_attention_mask):
    # True is what folders saved before the default became AST's hold, and what the example scripts ask for.
    extractor = SSASTFeatureExtractor(max_length=128, return_attention_mask=return_attention_mask)
    features = extractor([tone_with_noise(1.0), tone_with_noise(0.5, seed=1)], sampling_rate=16000)
    assert set(features) == {"input_values"}
    batch = DataCollatorWithPadding(extractor)([{"input_values": values} for values in features["input_values"]])
    assert batch["input_values"].shape == (2, 128, 128)
    if return_attention_mask:
        assert batch["attention_mask"].shape == (2, 128) and bool(batch["attention_mask"].all())
    else:
        assert "attention_mask" not in batch


def without_torchaudio(monkeypatch):
    monkeypatch.setattr(feature_extraction_ssast, "is_speech_available", lambda: False)


@pytest.mark.parametrize("num_mel_bins", [128, 80])
def test_without_torchaudio_numpy_gives_the_same_features(monkeypatch, num_mel_bins):
    settings = dict(num_mel_bins=num_mel_bins, max_length=400)
    square = np.sign(np.sin(np.arange(48000) / 5)).astype(np.float32)  # full scale
    waveforms = [tone_with_noise(3.0), tone_with_noise(2.0, seed=1) * 1e-4, square, np.zeros(16000, np.float32)]
    expected = SSASTFeatureExtractor(**settings)(waveforms, sampling_rate=16000, return_tensors="pt")["input_values"]
    without_torchaudio(monkeypatch)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the empty mel filter, Kaldi's too, is not worth a warning
        extractor = SSASTFeatureExtractor(**settings)
    assert extractor.window.shape == (400,) and extractor.mel_filters.shape == (257, num_mel_bins)
    assert "window" not in extractor.to_dict() and "mel_filters" not in extractor.to_dict()
    actual = extractor(waveforms, sampling_rate=16000, return_tensors="pt")["input_values"]
    assert actual.dtype == torch.float32
    torch.testing.assert_close(actual, expected, rtol=0, atol=5e-4)
