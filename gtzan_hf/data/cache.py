"""The whole-song filter-bank cache: each song's un-normalised Kaldi fbank, computed once (`Dataset.map`, several
processes) and kept in the datasets cache as float16 bytes (`fbank`, read back with `np.frombuffer`) with its
`num_frames`, memory-mapped by every later run with the same audio and feature settings.

On disk, in the cache folder:
- `fbank-<fingerprint>/`: a finished cache, one `.arrow` file per process that built it, in song order;
- `fbank-<fingerprint>.partial-*/`: a build under way, renamed to the above when it is complete. One left behind by
  a build that was killed (no process holds its lock any more) is removed by the next build.
"""

import logging
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch
from datasets import Dataset, Features, Value, concatenate_datasets
from datasets.fingerprint import Hasher
from filelock import FileLock, Timeout

from ..errors import UserError
from ..inference.audio import decode_audio
from .sources import Corpus, default_cache_dir

logger = logging.getLogger(__name__)

# Feature-extractor settings applied after the cached fbank (padding, normalisation): they do not key the cache.
_POST_FBANK_SETTINGS = frozenset(
    {"max_length", "do_normalize", "mean", "std", "padding_value", "padding_side", "return_attention_mask"}
    | {"window_seconds", "hop_seconds", "feature_extractor_type", "processor_class", "auto_map"}
)
_CACHE_VERSION = 2  # 2: a folder of .arrow files, renamed into place when complete
_LOCK_NAME = ".lock"


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


def _cache_problem(fbanks: Dataset, corpus: Corpus, num_mel_bins: int) -> str:
    """What is wrong with a cache read back for `corpus` (`""` if nothing): the row count, the song ids and each
    row's byte length against its `num_frames`. Reads no fbank bytes, only the columns' offsets."""
    if len(fbanks) != len(corpus.songs):
        return f"{len(fbanks)} songs instead of {len(corpus.songs)}"
    if list(fbanks["song_id"]) != list(corpus.songs["song_id"]):
        return "its song ids differ from the source's"
    num_frames = np.asarray(fbanks.data.column("num_frames"))
    num_bytes = pc.binary_length(fbanks.data.column("fbank")).to_numpy()
    if (num_frames < 1).any() or (num_bytes != num_frames * num_mel_bins * 2).any():
        return "the byte length of some fbanks does not match their number of frames"
    return ""


def _read_cache(folder: Path, corpus: Corpus, num_mel_bins: int) -> Dataset | None:
    """The cache in `folder`, memory-mapped, or `None` when there is none. A damaged one (unreadable, cut short, or
    not one row per song of `corpus`) is deleted with a warning naming it, to be built again."""
    if not folder.is_dir():
        return None
    try:
        files = sorted(folder.glob("*.arrow"))
        if not files:
            raise ValueError("no .arrow file")
        fbanks = concatenate_datasets([Dataset.from_file(str(file)) for file in files])
        problem = _cache_problem(fbanks, corpus, num_mel_bins)
    except (OSError, ValueError, KeyError, pa.ArrowException) as error:
        problem = f"unreadable ({type(error).__name__}: {error})"
    if not problem:
        return fbanks
    logger.warning("The fbank cache %s is damaged (%s): building it again.", folder, problem)
    shutil.rmtree(folder)
    return None


def _remove_abandoned_builds(cache_dir: Path) -> None:
    """Delete the partial folders of killed builds: those whose lock no live process holds."""
    for folder in cache_dir.glob("fbank-*.partial-*"):
        try:
            with FileLock(folder / _LOCK_NAME, timeout=0):
                shutil.rmtree(folder)
            logger.info("Removed %s, left by an interrupted fbank cache build.", folder)
        except Timeout:  # a build under way in another process
            continue
        except FileNotFoundError:  # removed meanwhile by another process
            continue


def build_fbank_cache(
    corpus: Corpus, feature_extractor, num_proc: int | None = None, cache_dir: str | os.PathLike | None = None
) -> Dataset:
    """
    The whole-song fbank of every song of `corpus`, computed once and memory-mapped from the datasets cache.

    The cache folder is named by a fingerprint of the corpus (its files' paths, sizes and modification times, or the
    Hub dataset's fingerprint) and of [`fbank_settings`]: a later run with the same audio and settings reads it back,
    a change of either builds a new one. A cache is only used whole: it is built in a partial folder renamed into
    place when complete, and checked when read back (one row per song of `corpus`, in order, each as long as its
    `num_frames` says); a damaged one is built again, with a warning.

    Returns:
        `Dataset` with `label`, `song_id`, `fbank` (float16 bytes of a `(num_frames, num_mel_bins)` array, see
        [`fbank_array`]) and `num_frames`.
    """
    fingerprint = Hasher.hash(
        {"corpus": corpus.fingerprint, "fbank": fbank_settings(feature_extractor), "version": _CACHE_VERSION}
    )
    cache_dir = Path(cache_dir or default_cache_dir())
    cache_dir.mkdir(parents=True, exist_ok=True)
    _remove_abandoned_builds(cache_dir)
    folder = cache_dir / f"fbank-{fingerprint}"
    fbanks = _read_cache(folder, corpus, feature_extractor.num_mel_bins)
    if fbanks is not None:
        return fbanks

    num_proc = min(num_proc or os.cpu_count() or 1, len(corpus.songs))
    features = Features(
        {**{k: v for k, v in corpus.songs.features.items() if k != "audio"}, "fbank": Value("binary")}
        | {"num_frames": Value("int32")}
    )
    partial = Path(tempfile.mkdtemp(prefix=f"{folder.name}.partial-", dir=cache_dir))
    try:
        with FileLock(partial / _LOCK_NAME):
            corpus.songs.map(
                _fbank_batch,
                batched=True,
                batch_size=8,
                writer_batch_size=8,  # a 30 s song is ~0.75 MB: flush often to keep memory flat
                num_proc=num_proc if num_proc > 1 else None,
                fn_kwargs={"feature_extractor": feature_extractor, "single_thread": num_proc > 1},
                remove_columns=["audio"],
                features=features,
                cache_file_name=str(partial / "fbank.arrow"),
                new_fingerprint=fingerprint,
                desc="Computing whole-song filter banks",
            )
            try:  # renamed while locked: a cleanup in another process never takes it for an abandoned build
                partial.rename(folder)
            except OSError:  # another process finished the same cache first: use it
                if not folder.is_dir():
                    raise
    finally:
        shutil.rmtree(partial, ignore_errors=True)
    (folder / _LOCK_NAME).unlink(missing_ok=True)
    fbanks = _read_cache(folder, corpus, feature_extractor.num_mel_bins)
    if fbanks is None:
        raise UserError(f"The fbank cache {folder} could not be built whole (see the warning above): check the disk.")
    return fbanks


def fbank_array(data: bytes, num_frames: int) -> np.ndarray:
    """A cached fbank as a read-only float16 `(num_frames, num_mel_bins)` view of its bytes (no copy)."""
    return np.frombuffer(data, dtype=np.float16).reshape(num_frames, -1)
