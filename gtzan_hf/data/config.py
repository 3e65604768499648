"""
The data settings, one dataclass for each use: [`AudioSourceConfig`] (where audio comes from and how it is cached:
every command that reads audio) and [`DataConfig`] (a labelled source, its song-level split, its windows and the
training augmentation: fine-tuning, evaluation, cross-validation, embeddings). The commands parse them as
`HfArgumentParser` groups, [`~gtzan_hf.data.build_datasets`] and pretraining take them as they are, and a run saves
them in its `run_config.json`. Adding a data option is one field here.
"""

import logging
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Literal

from ..errors import UserError
from ..models.source import check_local_path
from .augmentation import SPEC_AUGMENT_AXES
from .splits import SPLITS, check_folds

logger = logging.getLogger(__name__)

CROP_STRATEGIES = ("random-crop", "static")


@dataclass
class AudioSourceConfig:
    """Where the audio comes from and how it is prepared: fine-tuning, pretraining, evaluation, embeddings."""

    dataset: str | None = field(
        default=None,
        metadata={"help": "Audio data: a folder, a CSV/JSON list or a Hub dataset id (GTZAN or any other)."},
    )
    audio_column: str = field(default="audio", metadata={"help": "Audio column of a Hub dataset."})
    path_column: str | None = field(
        default=None, metadata={"help": "Path column of a CSV/JSON list (default: path, file, filename or audio)."}
    )
    revision: str | None = field(default=None, metadata={"help": "Hub dataset revision (branch, tag or commit)."})
    dataset_stats: bool = field(
        default=False,
        metadata={"help": "Normalise with the training audio's own mean/std instead of AudioSet's (from scratch)."},
    )
    generated_corpus_dir: str | None = field(
        default=None,
        metadata={
            "help": "Folder of the generated GTZAN-shaped corpus, written there on first use and used when no "
            "--dataset is given (the offline quickstart)."
        },
    )
    generate_songs_per_genre: int = field(default=30, metadata={"help": "Songs per genre of the generated corpus."})
    generate_seconds: float = field(default=30.0, metadata={"help": "Length of generated songs."})
    preprocessing_num_workers: int | None = field(default=None, metadata={"help": "Processes for the fbank cache."})
    cache_dir: str | None = field(default=None, metadata={"help": "datasets cache folder."})

    def resolved_dataset(self) -> str:
        """
        The source to read: `dataset` as given (a local-looking path that does not exist is refused), or the generated
        corpus, written to `generated_corpus_dir` on first use. Only that folder is ever generated into: a mistyped
        `--dataset` is reported, never filled with songs.
        """
        if self.dataset is not None:
            check_local_path(self.dataset, "--dataset")
            return self.dataset
        if self.generated_corpus_dir is None:
            raise UserError("No --dataset given: pass a GTZAN folder, a CSV/JSON list or a Hub dataset id.")
        folder = Path(self.generated_corpus_dir)
        if not folder.exists():
            from .synthetic import generate_corpus

            logger.info("Writing a generated GTZAN-shaped corpus to %s", folder)
            generate_corpus(folder, self.generate_songs_per_genre, seed=0, duration=self.generate_seconds)
        return str(folder)

    def corpus_options(self) -> dict:
        """The keyword arguments of [`~gtzan_hf.data.load_corpus`] these settings give (the label column aside)."""
        return {
            "audio_column": self.audio_column,
            "path_column": self.path_column,
            "revision": self.revision,
            "num_proc": self.preprocessing_num_workers,
            "cache_dir": self.cache_dir,
        }

    def use_dataset_stats(self, from_scratch: bool) -> bool:
        """Whether to normalise with the training audio's own mean/std: only from scratch. A starting model keeps
        the statistics it was trained with; new ones would shift every input its weights learned to read."""
        if self.dataset_stats and not from_scratch:
            logger.warning("--dataset_stats ignored: a pretrained model keeps the statistics it was trained with.")
        return self.dataset_stats and from_scratch


@dataclass
class DataConfig(AudioSourceConfig):
    """A labelled source, its song-level split, its windows and the training augmentation."""

    label_column: str = field(default="genre", metadata={"help": "Label column of a Hub dataset or a list."})
    split: Literal[SPLITS] = field(
        default="random",
        metadata={
            "help": f"{' | '.join(SPLITS)}: random (stratified 80/10/10), fault-filtered (GTZAN's artist-filtered "
            "split), course-project / course-project-30s (the course project's song lists), kfold."
        },
    )
    split_seed: int = field(default=0, metadata={"help": "Seed of the random and k-fold splits."})
    fold: int = field(default=0, metadata={"help": "k-fold: the fold used as test split."})
    num_folds: int = field(default=10, metadata={"help": "k-fold: the number of folds."})
    validation_size: float = field(default=0.1, metadata={"help": "random: the validation share of the songs."})
    test_size: float = field(default=0.1, metadata={"help": "random: the test share of the songs."})
    crop_strategy: Literal[CROP_STRATEGIES] = field(
        default="random-crop",
        metadata={
            "help": f"{' | '.join(CROP_STRATEGIES)}: a new random window of each song per epoch, or the fixed"
            " windows as separate samples."
        },
    )
    crop_seconds: float | None = field(
        default=None,
        metadata={
            "help": "Length of training crops and evaluation windows (default: the windows the model was trained "
            "on, else its whole input, e.g. 10.24 s for 1024 frames)."
        },
    )
    eval_segments: int | None = field(default=3, metadata={"help": "Evaluation windows per song (none: all)."})
    eval_hop_seconds: float | None = field(
        default=None,
        metadata={"help": "Hop between evaluation windows (default: the model's evaluation hop, else the window)."},
    )
    freq_mask: int = field(default=36, metadata={"help": "SpecAugment: widest frequency mask (bins); 0 disables."})
    time_mask: int = field(default=144, metadata={"help": "SpecAugment: widest time mask (frames); 0 disables."})
    spec_augment_axes: Literal[tuple(SPEC_AUGMENT_AXES)] = field(
        default="standard",
        metadata={
            "help": f"{' | '.join(SPEC_AUGMENT_AXES)}: swapped is the course project's masks, freq_mask spanning "
            "frames and time_mask mel bins (clipped to the bins), as its code applied them."
        },
    )
    waveform_augment: bool = field(default=False, metadata={"help": "audiomentations gain/noise/pitch/stretch."})
    mixup_alpha: float = field(default=0.0, metadata={"help": "Mixup Beta(alpha, alpha); 0 disables."})

    @classmethod
    def saved_values(cls, settings: dict) -> dict:
        """The data settings among a run's saved settings (its run_config.json)."""
        return {f.name: settings[f.name] for f in fields(cls) if f.name in settings}

    def __post_init__(self):
        # What the settings alone decide, refused before any data is read: the command line's choices do the same for
        # its flags, this for the settings given from Python.
        types = typing.get_type_hints(DataConfig)
        for name in ("split", "crop_strategy", "spec_augment_axes"):
            choices = typing.get_args(types[name])
            if getattr(self, name) not in choices:
                raise UserError(f"Unknown {name} {getattr(self, name)!r}: choose one of {', '.join(choices)}.")
        if self.split == "kfold":
            check_folds(self.fold, self.num_folds)
        elif self.split == "random" and not (
            0 < self.validation_size and 0 < self.test_size and self.validation_size + self.test_size < 1
        ):
            raise UserError(
                f"--validation_size {self.validation_size:g} and --test_size {self.test_size:g}: each a share of the "
                "songs above 0, together below 1 (the rest is the training set)."
            )


@dataclass
class PretrainingDataConfig(AudioSourceConfig):
    """Unlabelled audio: a folder (any layout), a CSV/JSON list of paths or a Hub dataset id (labels are ignored)."""

    streaming: bool = field(
        default=False,
        metadata={"help": "Decode and featurise while training, caching nothing (needs --max_steps)."},
    )
    dataset_split: str = field(default="train", metadata={"help": "Split of a streamed Hub dataset."})
    shuffle_buffer_size: int = field(default=1000, metadata={"help": "Streaming: songs in the shuffle buffer."})
