import numpy as np
import pytest
import torch
from transformers import ASTFeatureExtractor

from gtzan_hf import SSASTFeatureExtractor


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


def test_batched_tensor_input_equals_one_by_one():
    extractor = SSASTFeatureExtractor(max_length=256)
    batch = torch.from_numpy(np.stack([tone_with_noise(1.0, seed=s) for s in range(3)]))
    together = extractor(batch, sampling_rate=16000, return_tensors="pt")["input_values"]
    for i in range(3):
        alone = extractor(batch[i], sampling_rate=16000, return_tensors="pt")["input_values"]
        torch.testing.assert_close(together[i : i + 1], alone)
    assert isinstance(extractor(batch, sampling_rate=16000)["input_values"], list)


def test_padding_and_normalisation_conventions():
    extractor = SSASTFeatureExtractor(max_length=200, mean=-3.0, std=2.0)
    waveform = tone_with_noise(1.0)  # 98 frames
    fbank = extractor.fbank(waveform)
    values = extractor(waveform, sampling_rate=16000, return_tensors="pt")["input_values"][0]
    # padded frames hold the padding value before normalisation: (0 - mean) / (2 * std)
    torch.testing.assert_close(values[fbank.shape[0] :], torch.full((200 - fbank.shape[0], 128), 0.75))
    torch.testing.assert_close(values[: fbank.shape[0]], (fbank + 3.0) / 4.0)
    truncated = extractor.pad_or_truncate(fbank, max_length=50)
    torch.testing.assert_close(truncated, fbank[:50])


def test_compute_stats_matches_numpy():
    extractor = SSASTFeatureExtractor()
    fbanks = [extractor.fbank(tone_with_noise(seconds, seed=s)) for s, seconds in enumerate((0.5, 1.0, 1.7))]
    mean, std = SSASTFeatureExtractor.compute_stats(fbanks)
    everything = np.concatenate([f.numpy().ravel() for f in fbanks]).astype(np.float64)
    assert mean == pytest.approx(everything.mean(), rel=1e-9)
    assert std == pytest.approx(everything.std(), rel=1e-6)


def test_save_and_reload_keeps_settings(tmp_path):
    extractor = SSASTFeatureExtractor(max_length=300, mean=-1.5, std=3.25, num_mel_bins=64)
    extractor.save_pretrained(tmp_path)
    reloaded = SSASTFeatureExtractor.from_pretrained(tmp_path)
    assert (reloaded.max_length, reloaded.mean, reloaded.std, reloaded.num_mel_bins) == (300, -1.5, 3.25, 64)


@pytest.mark.parametrize(
    "waveform,message",
    [
        (np.zeros(0, dtype=np.float32), "samples"),
        (np.zeros(100, dtype=np.float32), "samples"),
        (np.full(16000, np.nan, dtype=np.float32), "NaN"),
        ([np.zeros((2, 16000), dtype=np.float32)], "Downmix"),
        (np.zeros((1, 2, 16000), dtype=np.float32), "shape"),
    ],
)
def test_bad_input_gets_a_clear_error(waveform, message):
    with pytest.raises(ValueError, match=message):
        SSASTFeatureExtractor()(waveform, sampling_rate=16000)


def test_wrong_sampling_rate_is_refused():
    with pytest.raises(ValueError, match="Resample"):
        SSASTFeatureExtractor()(tone_with_noise(1.0), sampling_rate=22050)
