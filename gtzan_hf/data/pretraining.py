"""Unlabelled audio for self-supervised pretraining: one random `max_length`-frame crop of every song per epoch, cut
from the whole-song fbank cache ([`cached_crops`]), or decoded and featurised as the songs are read, nothing cached
([`streamed_crops`], for corpora larger than the disk)."""

import logging
from pathlib import Path

import datasets
import torch
from datasets import Audio, Dataset, IterableDataset

from ..inference.audio import check_recording
from ..inference.windowing import random_start
from ..models.feature_extraction_ssast import SSASTFeatureExtractor
from .cache import build_fbank_cache, fbank_array
from .config import PretrainingDataConfig
from .sources import hub_archive_folder, load_corpus
from .transforms import FbankWindowTransform

logger = logging.getLogger(__name__)


def cached_crops(
    config: PretrainingDataConfig, feature_extractor: SSASTFeatureExtractor, compute_stats: bool
) -> Dataset:
    """One random `feature_extractor.max_length`-frame crop of every usable song per epoch, cut from the whole-song
    fbank cache; with `compute_stats`, the feature extractor's mean/std become the corpus' own first."""
    corpus = load_corpus(config.resolved_dataset(), label_column=None, **config.corpus_options())
    fbanks = build_fbank_cache(corpus, feature_extractor, config.preprocessing_num_workers, config.cache_dir)
    if compute_stats:
        songs = fbanks.select_columns(["fbank", "num_frames"])
        stats = SSASTFeatureExtractor.compute_stats(fbank_array(row["fbank"], row["num_frames"]) for row in songs)
        feature_extractor.mean, feature_extractor.std = stats
        logger.info("Corpus statistics: mean %.4f, std %.4f", *stats)
    rows = list(range(len(fbanks)))
    # start -1: a new random window at every draw (the transform's convention)
    table = Dataset.from_dict({"song": rows, "song_index": rows, "start": [-1] * len(rows)})
    return table.with_transform(FbankWindowTransform(fbanks, feature_extractor, feature_extractor.max_length))


def _random_crops(batch: dict, feature_extractor: SSASTFeatureExtractor, audio_column: str) -> dict:
    crops = []
    for audio in batch[audio_column]:
        recording, problem = check_recording(audio)
        if problem:  # one bad file must not end a long run: skip it, and say which
            logger.warning("Skipping %s: %s", audio["path"], problem)
            continue
        fbank = feature_extractor.fbank(recording.resampled(feature_extractor.sampling_rate))
        start = random_start(fbank.shape[0], feature_extractor.max_length)
        crop = feature_extractor.pad_or_truncate(fbank[start : start + feature_extractor.max_length])
        crops.append(feature_extractor.normalize(crop))
    return {"input_values": crops}


def streamed_crops(
    config: PretrainingDataConfig, feature_extractor: SSASTFeatureExtractor, seed: int
) -> IterableDataset:
    """One random crop of every song per pass, decoded and featurised as the songs are read, nothing cached. Local
    folders and lists, and Hub datasets holding GTZAN's archive (unpacked once), are listed (not read) up front and
    sharded over the DataLoader workers; other Hub datasets stream."""
    source, audio_column = config.resolved_dataset(), "audio"
    local = source if Path(source).exists() else hub_archive_folder(source, config.revision, config.cache_dir)
    if local is not None:
        songs = load_corpus(local, label_column=None, path_column=config.path_column, check=False).songs
        songs = songs.to_iterable_dataset(num_shards=min(len(songs), 1024))
    else:
        audio_column = config.audio_column
        songs = datasets.load_dataset(source, split=config.dataset_split, revision=config.revision, streaming=True)
        # undecoded before anything else, and never renamed (a streamed rename re-encodes): both need torchcodec
        songs = songs.cast_column(audio_column, Audio(decode=False))
    songs = songs.select_columns([audio_column]).shuffle(seed=seed, buffer_size=config.shuffle_buffer_size)
    return songs.map(
        _random_crops,
        batched=True,
        batch_size=8,
        remove_columns=[audio_column],
        fn_kwargs={"feature_extractor": feature_extractor, "audio_column": audio_column},
    )


def collate_input_values(features: list[dict]) -> dict[str, torch.Tensor]:
    """Stacks the crops into `{"input_values": (batch, max_length, num_mel_bins) float32}`: the model's only input."""
    return {"input_values": torch.stack([torch.as_tensor(f["input_values"], dtype=torch.float32) for f in features])}
