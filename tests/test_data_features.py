"""The fbank cache, crops and segments, augmentation and the collator of gtzan_hf.data, on a generated corpus."""

import os

import numpy as np
import pytest
import soundfile as sf
import torch

from gtzan_hf.data import DataConfig, SSASTDataCollator, build_datasets, fbank_array
from gtzan_hf.data.synthetic import generate_corpus
from gtzan_hf.inference.audio import decode_audio
from gtzan_hf.inference.windowing import segment_starts, window_fbank
from gtzan_hf.models.feature_extraction_ssast import SSASTFeatureExtractor

GENRES = ("classical", "disco", "metal")
# 3.2 s songs, 1 s windows: like GTZAN's 30 s songs and 10 s windows, scaled down 10x (320 frames -> 3 windows)
CROP = 1.0


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    generate_corpus(root, songs_per_genre=10, seed=0, duration=3.2, genres=GENRES, num_proc=1)
    return root


@pytest.fixture
def extractor():
    return SSASTFeatureExtractor(num_mel_bins=32, max_length=128)


def _build(corpus, extractor, cache_dir, spec_augment=(36, 144), waveform_augment=False, **settings):
    """`build_datasets` of `corpus` with 1 s windows, one process, the cache in `cache_dir`; `spec_augment` the
    masks' widths (or `None`), `waveform_augment` a flag or an augmentation callable."""
    masks = dict(zip(("freq_mask", "time_mask"), spec_augment or (0, 0)))
    augmentation = None if isinstance(waveform_augment, bool) else waveform_augment
    config = DataConfig(
        dataset=str(corpus),
        preprocessing_num_workers=1,
        cache_dir=str(cache_dir),
        waveform_augment=waveform_augment is True,
        **masks,
        **{"crop_seconds": CROP, **settings},
    )
    return build_datasets(config, extractor, augmentation)


def _reference_fbank(corpus, song_id, extractor):
    """The feature extractor's fbank of the decoded file: what the cache must hold (to float16 precision)."""
    genre = song_id.split(".")[0]
    return extractor.fbank(torch.from_numpy(decode_audio(str(corpus / genre / f"{song_id}.wav")))).numpy()


def _denormalize(input_values, extractor):
    return input_values.numpy() * 2 * extractor.std + extractor.mean


def test_random_crops_are_windows_of_the_cached_fbank(corpus, extractor, tmp_path):
    data = _build(corpus, extractor, tmp_path, spec_augment=None)
    assert len(data.train) == 24 and data.label_names == list(GENRES) and data.num_labels == 3
    song_id = data.song_ids["train"][0]
    reference = _reference_fbank(corpus, song_id, extractor)
    assert reference.shape == (318, 32)
    row = data.fbanks[data.split_rows["train"][0]]
    np.testing.assert_allclose(fbank_array(row["fbank"], row["num_frames"]), reference, atol=0.02, rtol=1e-3)
    starts = set()
    for _ in range(12):
        item = data.train[0]
        assert item["input_values"].shape == (128, 32) and item["input_values"].dtype == torch.float32
        assert item["song_index"] == 0 and data.label_names[item["labels"]] == song_id.split(".")[0]
        window = _denormalize(item["input_values"], extractor)
        start = int(np.abs(reference - window[0]).sum(1).argmin())
        starts.add(start)
        assert 0 <= start <= 318 - 100
        np.testing.assert_allclose(window[:100], reference[start : start + 100], atol=0.02, rtol=1e-3)
        np.testing.assert_allclose(window[100:], 0.0, atol=1e-5)  # zero-padded to max_length before normalising
    assert len(starts) > 1  # a new window at every draw


def test_evaluation_segments_carry_their_song(corpus, extractor, tmp_path):
    data = _build(corpus, extractor, tmp_path)
    assert len(data.validation) == 3 * len(data.song_ids["validation"])
    items = [data.validation[i] for i in range(len(data.validation))]
    assert [item["song_index"] for item in items] == [i for i in range(3) for _ in range(3)]
    reference = _reference_fbank(corpus, data.song_ids["validation"][1], extractor)
    for segment, item in enumerate(items[3:6]):
        window = _denormalize(item["input_values"], extractor)
        real = min(100, 318 - 100 * segment)  # the third window lacks 2 frames: padded like the rest
        np.testing.assert_allclose(
            window[:real], reference[100 * segment : 100 * segment + real], atol=0.02, rtol=1e-3
        )
        np.testing.assert_allclose(window[real:], 0.0, atol=1e-5)
    expected = extractor.normalize(extractor.pad_or_truncate(torch.from_numpy(reference[:100])))
    torch.testing.assert_close(items[3]["input_values"], expected, atol=0.02 / (2 * extractor.std), rtol=0)
    # validation and test items are never augmented: the same item twice is the same tensor
    assert torch.equal(data.test[4]["input_values"], data.test[4]["input_values"])

    overlapping = _build(corpus, extractor, tmp_path, eval_segments=None, eval_hop_seconds=0.5)
    assert len(overlapping.test) == 5 * len(overlapping.song_ids["test"])  # starts 0, 50, 100, 150, 200 frames


def test_static_training_uses_the_fixed_segments(corpus, extractor, tmp_path):
    data = _build(corpus, extractor, tmp_path, crop_strategy="static", spec_augment=None)
    assert len(data.train) == 3 * 24
    assert torch.equal(data.train[5]["input_values"], data.train[5]["input_values"])
    with pytest.raises(ValueError, match="crop_strategy"):
        _build(corpus, extractor, tmp_path, crop_strategy="random")
    with pytest.raises(ValueError, match="reads at most 128 frames"):
        _build(corpus, extractor, tmp_path, crop_seconds=2.0)


def test_segment_windows_of_a_gtzan_song():
    assert segment_starts(2998, 1000) == [0, 1000, 2000]  # a 29.98 s song: the third window is 2 frames short
    assert segment_starts(2998, 1000, num_segments=None) == [0, 1000, 2000]
    assert segment_starts(1198, 1000, num_segments=None) == [0]  # a 12 s song: one window
    assert segment_starts(500, 1000, num_segments=3) == [0]
    assert segment_starts(17998, 1000, 500, None) == list(range(0, 17001, 500))  # the last is 2 frames short
    fbank = torch.arange(2998, dtype=torch.float32)[:, None].repeat(1, 4) + 1
    windows = window_fbank(fbank, 1000, pad_to=1024)
    assert windows.shape == (3, 1024, 4)
    assert torch.equal(windows[2, :998], fbank[2000:]) and not windows[2, 998:].any() and not windows[0, 1000:].any()


def test_cache_is_reused_then_rebuilt_after_a_settings_or_audio_change(corpus, extractor, tmp_path):
    first = _build(corpus, extractor, tmp_path)
    files = [f["filename"] for f in first.fbanks.cache_files]
    assert files and all(f.startswith(str(tmp_path)) for f in files)
    modified = [os.stat(f).st_mtime_ns for f in files]
    second = _build(corpus, SSASTFeatureExtractor(num_mel_bins=32, max_length=128, mean=0.0, std=1.0), tmp_path)
    assert [f["filename"] for f in second.fbanks.cache_files] == files  # normalisation is applied on the fly
    assert [os.stat(f).st_mtime_ns for f in files] == modified

    other = _build(corpus, SSASTFeatureExtractor(num_mel_bins=16, max_length=128), tmp_path)
    assert not {f["filename"] for f in other.fbanks.cache_files} & set(files)
    assert other.train[0]["input_values"].shape == (128, 16)

    copy = tmp_path / "copy"
    generate_corpus(copy, songs_per_genre=10, seed=0, duration=3.2, genres=GENRES, num_proc=1)
    before = [f["filename"] for f in _build(copy, extractor, tmp_path).fbanks.cache_files]
    path = copy / "disco" / "disco.00003.wav"
    samples, rate = sf.read(path)
    sf.write(path, samples[::-1], rate)  # same size, other audio
    after = _build(copy, extractor, tmp_path)
    assert not {f["filename"] for f in after.fbanks.cache_files} & set(before)
    index = after.song_ids["train"].index("disco.00003") if "disco.00003" in after.song_ids["train"] else None
    if index is not None:
        row = after.fbanks[after.split_rows["train"][index]]
        np.testing.assert_allclose(
            fbank_array(row["fbank"], row["num_frames"]), _reference_fbank(copy, "disco.00003", extractor), atol=0.02
        )


def test_spec_augment_masks_training_items_only(corpus, extractor, tmp_path):
    data = _build(corpus, extractor, tmp_path, spec_augment=(8, 30))
    masked_value = (0.0 - extractor.mean) / (2 * extractor.std)  # a masked cell is 0 before normalisation
    masked_bins = masked_frames = 0
    for index in range(len(data.train)):
        values = data.train[index]["input_values"][:100]  # the crop, without the padding
        is_masked = torch.isclose(values, torch.tensor(masked_value), atol=1e-6)
        masked_bins += int(is_masked.all(0).sum())
        masked_frames += int(is_masked.all(1).sum())
    assert masked_bins > 0 and masked_frames > 0
    assert masked_bins <= 8 * len(data.train) and masked_frames <= 30 * len(data.train)


def test_waveform_augmentation_recomputes_the_window_from_audio(corpus, extractor, tmp_path):
    def identity(samples, sample_rate):
        assert sample_rate == 16000
        return samples

    data = _build(corpus, extractor, tmp_path, spec_augment=None, waveform_augment=identity, crop_strategy="static")
    cached = _build(corpus, extractor, tmp_path, spec_augment=None, crop_strategy="static")
    for index in (0, 2, 7):  # the window through the audio path equals the cached window
        torch.testing.assert_close(data.train[index]["input_values"], cached.train[index]["input_values"], atol=3e-3,
                                   rtol=0)  # fmt: skip
    louder = _build(corpus, extractor, tmp_path, spec_augment=None, waveform_augment=True)
    assert louder.train[0]["input_values"].shape == (128, 32)


def test_collator_and_mixup(corpus, extractor, tmp_path):
    data = _build(corpus, extractor, tmp_path)
    items = [data.validation[i] for i in range(6)]
    plain = SSASTDataCollator(data.num_labels)(items)
    assert plain["input_values"].shape == (6, 128, 32) and plain["labels"].dtype == torch.int64
    assert plain["song_index"].tolist() == [0, 0, 0, 1, 1, 1]

    items = [data.validation[3 * i] for i in range(3)]  # one segment of each validation song: three classes
    torch.manual_seed(0)
    mixed = SSASTDataCollator(data.num_labels, mixup_alpha=0.4)(items)
    labels, inputs = mixed["labels"], torch.stack([item["input_values"] for item in items])
    assert labels.shape == (3, 3) and labels.dtype == torch.float32
    torch.testing.assert_close(labels.sum(1), torch.ones(3))
    classes = [item["labels"] for item in items]
    for row in range(3):  # each input is the blend its soft label describes
        expected = sum(labels[row, classes[k]] * inputs[k] for k in range(3))
        torch.testing.assert_close(mixed["input_values"][row], expected, atol=1e-5, rtol=1e-5)


def test_dataloader_with_workers(corpus, extractor, tmp_path):
    data = _build(corpus, extractor, tmp_path)
    loader = torch.utils.data.DataLoader(
        data.train, batch_size=5, shuffle=True, num_workers=2, collate_fn=SSASTDataCollator(data.num_labels)
    )
    batches = list(loader)
    assert sum(len(b["labels"]) for b in batches) == 24
    assert sorted(torch.cat([b["song_index"] for b in batches]).tolist()) == list(range(24))
    assert all(b["input_values"].shape[1:] == (128, 32) for b in batches)
