"""Audio classification data through `datasets`: sources, song-level splits, a cached fbank, on-the-fly windows.

One module per concern: `config` (the data settings), `sources` (where songs come from), `splits` (song-level
splits), `cache` (the whole-song filter banks), `transforms` (windows cut on the fly), `augmentation`, `collator`,
`build` (the assembly) and `synthetic` (the generated corpus). The high-level entry point is [`build_datasets`];
[`load_splits`] gives the song-level splits with their audio.
"""

from .build import SSASTDatasets, build_datasets
from .cache import build_fbank_cache, fbank_array
from .collator import SSASTDataCollator
from .config import AudioSourceConfig, DataConfig
from .sources import Corpus, load_corpus
from .splits import SplitInfo, load_splits, split_indices

__all__ = [
    "AudioSourceConfig",
    "Corpus",
    "DataConfig",
    "SSASTDataCollator",
    "SSASTDatasets",
    "SplitInfo",
    "build_datasets",
    "build_fbank_cache",
    "fbank_array",
    "load_corpus",
    "load_splits",
    "split_indices",
]
