"""Song-level train/validation/test splits: always by song, deterministic, and saved with the run."""

import json
import logging
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np
from datasets import DatasetDict
from sklearn.model_selection import StratifiedKFold, train_test_split

from ..errors import UserError
from ..recipes import plugins
from .sources import Corpus, load_corpus

logger = logging.getLogger(__name__)

SPLIT_NAMES = ("train", "validation", "test")


def fault_filtered_lists() -> dict[str, list[str]]:
    """The artist-filtered GTZAN split (Kereliuk, Sturm & Larsen 2015) as torchaudio ships its lists."""
    from torchaudio.datasets.gtzan import filtered_test, filtered_train, filtered_valid

    return {"train": filtered_train, "validation": filtered_valid, "test": filtered_test}


# Fixed song lists by split name: GTZAN's artist-filtered split, then the recipes' (`gtzan_hf.recipes`).
SPLIT_LISTS = {"fault-filtered": fault_filtered_lists, **dict(plugins("SPLIT_LISTS"))}
SPLITS = ("random", *SPLIT_LISTS, "kfold")


@dataclass
class SplitInfo:
    """What a run trained and evaluated on: written next to its checkpoints as `splits.json`."""

    source: str
    split: str
    seed: int
    fold: int | None
    num_folds: int | None
    label_names: list[str]
    song_ids: dict[str, list[str]]  # per split name, in the split's row order
    skipped: list[dict] = field(default_factory=list)  # unusable files: {"song_id", "path", "label", "reason"}
    excluded: list[str] = field(default_factory=list)  # usable songs the split leaves out by design
    dropped_classes: dict[str, str] = field(default_factory=dict)  # classes without songs: why, by name
    # song id: xxh3-128 of its file's bytes (`sources.content_hash`), for the songs of every split
    content_hashes: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        sizes = ", ".join(f"{name} {len(ids)}" for name, ids in self.song_ids.items())
        dropped = ", ".join(self.dropped_classes)
        return (
            f"{self.split} split of {self.source}: {sizes} songs; {len(self.skipped)} files skipped"
            + (f"; {len(self.excluded)} songs outside the split" if self.excluded else "")
            + (f"; classes left out (no usable songs): {dropped}" if dropped else "")
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SplitInfo":
        """A saved `splits.json`. One written before a field was added gets its default: without content hashes,
        [`changes`] compares song ids only."""
        record = json.loads(Path(path).read_text())
        return cls(**{f.name: record[f.name] for f in fields(cls) if f.name in record})

    def changes(self, current: "SplitInfo", splits: Iterable[str] = SPLIT_NAMES) -> str:
        """
        How `current` (the source read and split again) differs from these songs in `splits`, in a few words naming
        a song ("test song blues.00002 holds other audio (its file's bytes changed)"), or `""` when it does not:
        songs gone, songs new, or songs whose file holds other bytes (a file replaced under the same name; compared
        where both record content hashes).
        """
        for split in splits:
            before, now = set(self.song_ids[split]), set(current.song_ids[split])
            hashes, new_hashes = self.content_hashes, current.content_hashes
            other_audio = {s for s in before & now if s in hashes and s in new_hashes and hashes[s] != new_hashes[s]}
            for songs, verbs in (
                (before - now, ("is gone", "are gone")),
                (now - before, ("is new", "are new")),
                (
                    other_audio,
                    ("holds other audio (its file's bytes changed)", "hold other audio (their files' bytes changed)"),
                ),
            ):
                if len(songs) == 1:
                    return f"{split} song {min(songs)} {verbs[0]}"
                if songs:
                    return f"{len(songs)} {split} songs ({min(songs)}, ...) {verbs[1]}"
        return ""

    def save(self, path: str | os.PathLike) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        record = asdict(self)
        record["num_songs"] = {name: len(ids) for name, ids in self.song_ids.items()}
        record["num_skipped"] = len(self.skipped)
        with open(path, "w") as handle:
            json.dump(record, handle, indent=1)


def _stratified(order: np.ndarray, labels: np.ndarray, size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    try:
        return train_test_split(order, test_size=size, stratify=labels[order], random_state=seed)
    except ValueError as error:
        classes, counts = np.unique(labels[order], return_counts=True)
        fewest = ", ".join(f"{name} {count}" for count, name in sorted(zip(counts, classes))[:3])
        raise UserError(
            f"Cannot split {len(order)} songs of {len(classes)} classes by class ({error}; fewest songs: {fewest}). "
            "Every class needs enough songs for a share in each split: add songs, or use split='kfold' with fewer "
            "folds."
        ) from error


def _listed(
    split: str, lists: dict[str, list[str]], song_ids: list[str], skipped: list[dict]
) -> tuple[dict[str, list[int]], list[str]]:
    """Rows of the songs named by fixed lists of GTZAN song ids; listed songs the corpus lacks are warned about
    (skipped files are already reported), corpus songs no list names are returned as excluded."""
    position = {song_id: index for index, song_id in enumerate(song_ids)}
    if not any(song_id in position for names in lists.values() for song_id in names):
        raise UserError(
            f"split={split!r} needs GTZAN's song ids (e.g. 'jazz.00054', from files named <genre>.000NN.wav); this "
            f"corpus has ids like {song_ids[:3]}. Use split='random' or 'kfold'."
        )
    skipped_ids = {entry["song_id"] for entry in skipped}
    missing = [s for names in lists.values() for s in names if s not in position and s not in skipped_ids]
    if missing:
        logger.warning("%d songs of the %s lists are not in this corpus, e.g. %s", len(missing), split, missing[:10])
    listed = {song_id for names in lists.values() for song_id in names}
    excluded = sorted(song_id for song_id in song_ids if song_id not in listed)
    return {name: [position[s] for s in names if s in position] for name, names in lists.items()}, excluded


def check_folds(fold: int, num_folds: int) -> None:
    """Refuse k-fold settings that no corpus can split: a test, a validation and a training fold at least."""
    if num_folds < 3:
        raise UserError(
            f"split='kfold' with {num_folds} folds: it needs 3 folds or more (test, validation, train); choose "
            "--num_folds 3 or more."
        )
    if not 0 <= fold < num_folds:
        raise UserError(f"fold must be in [0, {num_folds}), got {fold}.")


def split_indices(
    song_ids: list[str],
    labels: list,
    split: str = "random",
    seed: int = 0,
    fold: int = 0,
    num_folds: int = 10,
    validation_size: float = 0.1,
    test_size: float = 0.1,
    skipped: list[dict] | None = None,
) -> tuple[dict[str, list[int]], list[str]]:
    """
    Row indices of each split, and the song ids the split leaves out by design; `labels` are the songs' classes
    (names or ids: the same split either way, names being sorted as ids are).

    - `random`: stratified by class and seeded: `1 - validation_size - test_size` / `validation_size` / `test_size`
      (80/10/10 by default);
    - `fault-filtered`: GTZAN's artist-filtered 443/197/290 lists (songs outside them are excluded);
    - the recipes' song lists (`gtzan_hf.recipes`): `course-project`, `course-project-30s`, the course project's own
      lists (799/99/101 and 800/100/100 songs);
    - `kfold`: stratified `num_folds`-fold: fold `fold` is the test set, fold `fold + 1` (cyclically) the
      validation set, the rest the training set.
    Songs are ordered by id first, so the result does not depend on the order files were found in.
    """
    if split in SPLIT_LISTS:
        return _listed(split, SPLIT_LISTS[split](), song_ids, skipped or [])
    order = np.argsort(np.asarray(song_ids), kind="stable")
    labels_array = np.asarray(labels)
    if split == "random":
        rest, test = _stratified(order, labels_array, test_size, seed)
        train, validation = _stratified(rest, labels_array, validation_size / (1 - test_size), seed)
    elif split == "kfold":
        check_folds(fold, num_folds)
        if num_folds > len(order):
            raise UserError(
                f"split='kfold' with {num_folds} folds needs from 3 folds (test, validation, train) to as many "
                f"folds as songs ({len(order)}): choose --num_folds in that range."
            )
        folds = [order[test] for _, test in StratifiedKFold(num_folds, shuffle=True, random_state=seed).split(
            order, labels_array[order]
        )]  # fmt: skip
        test, validation = folds[fold], folds[(fold + 1) % num_folds]
        train = np.setdiff1d(order, np.concatenate([test, validation]))
    else:
        raise UserError(f"Unknown split {split!r}: choose one of {SPLITS}.")
    return {name: sorted(int(i) for i in part) for name, part in zip(SPLIT_NAMES, (train, validation, test))}, []


def split_corpus(corpus: Corpus, config) -> tuple[dict[str, list[int]], SplitInfo]:
    """`(row indices per split, SplitInfo)` of a loaded corpus under `config`'s split settings (a [`DataConfig`]:
    `split`, `split_seed`, `fold`, `num_folds`, `validation_size`, `test_size`)."""
    song_ids = list(corpus.songs["song_id"])
    indices, excluded = split_indices(
        song_ids,
        [corpus.label_names[label] for label in corpus.songs["label"]],  # by name: errors can name a class
        config.split,
        config.split_seed,
        config.fold,
        config.num_folds,
        validation_size=config.validation_size,
        test_size=config.test_size,
        skipped=corpus.skipped,
    )
    kfold = config.split == "kfold"
    split_ids = {name: [song_ids[i] for i in rows] for name, rows in indices.items()}
    info = SplitInfo(
        source=corpus.source,
        split=config.split,
        seed=config.split_seed,
        fold=config.fold if kfold else None,
        num_folds=config.num_folds if kfold else None,
        label_names=corpus.label_names,
        song_ids=split_ids,
        skipped=corpus.skipped,
        excluded=excluded,
        dropped_classes=corpus.dropped_classes,
        content_hashes={
            s: corpus.content_hashes[s] for ids in split_ids.values() for s in ids if s in corpus.content_hashes
        },
    )
    logger.log(logging.WARNING if corpus.skipped or corpus.dropped_classes else logging.INFO, info.summary())
    return indices, info


def load_splits(config, split_file: str | os.PathLike | None = None) -> DatasetDict:
    """
    Load a source and split it by song.

    Args:
        config: a [`DataConfig`]: the source (`dataset`, columns) and the split (`split`, `split_seed`, `fold`,
            `num_folds`, `validation_size`, `test_size`; see [`split_indices`]).
        split_file: where to write the song ids of every split and the skipped files (JSON), if anywhere.

    Returns:
        `DatasetDict` with `train`, `validation` and `test`, one row per song: `audio` (`{"path", "bytes"}`, decode
        with [`~gtzan_hf.inference.audio.decode_audio`]), `label` (`ClassLabel`) and `song_id`.
    """
    corpus = load_corpus(config.resolved_dataset(), label_column=config.label_column, **config.corpus_options())
    indices, info = split_corpus(corpus, config)
    if split_file is not None:
        info.save(split_file)
    return DatasetDict({name: corpus.songs.select(rows) for name, rows in indices.items()})
