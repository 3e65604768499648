"""Audio classification data through `datasets`: sources, song-level splits, a cached fbank, on-the-fly windows.

The high-level entry point is [`build_datasets`]; [`load_splits`] gives the song-level splits with their audio.
"""

from .audio import decode_audio
from .features import (
    SSASTDataCollator,
    SSASTDatasets,
    build_datasets,
    build_fbank_cache,
    fbank_array,
    segment_starts,
    window_fbank,
)
from .sources import Corpus, load_corpus
from .splits import SplitInfo, load_splits, split_indices

__all__ = [
    "Corpus",
    "SSASTDataCollator",
    "SSASTDatasets",
    "SplitInfo",
    "build_datasets",
    "build_fbank_cache",
    "decode_audio",
    "fbank_array",
    "load_corpus",
    "load_splits",
    "segment_starts",
    "split_indices",
    "window_fbank",
]
