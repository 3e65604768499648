"""The whole-song filter-bank cache: each song's un-normalised Kaldi fbank, computed once (`Dataset.map`, several
processes) and kept in the datasets cache as float16 bytes (`fbank`, read back with `np.frombuffer`) with its
`num_frames`, memory-mapped by every later run with the same audio and feature settings."""

import logging
import os
from pathlib import Path

import numpy as np
import torch
from datasets import Dataset, Features, Value
from datasets.fingerprint import Hasher

from ..audio import decode_audio
from .sources import Corpus, default_cache_dir

logger = logging.getLogger(__name__)

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
