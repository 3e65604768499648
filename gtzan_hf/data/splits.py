"""Song-level train/validation/test splits: always by song, deterministic, and saved with the run."""

import json
import logging
import os
from collections import Counter
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
KINDS = {str: "a string", int: "an integer", list: "a list", dict: "a mapping"}
RESTORE = "Restore it from a copy, or run again the command that wrote it."


def read_record(path: str | os.PathLike, expected: str) -> dict:
    """The JSON mapping a run saved in `path` (`expected` says what it holds), or one line naming the file when it is
    not one: a file cut short or edited by hand."""
    try:
        record = json.loads(Path(path).read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise UserError(
            f"{path} is not valid JSON ({error}): it was cut short or edited by hand. Expected {expected}. {RESTORE}"
        ) from None
    if not isinstance(record, dict):
        raise UserError(
            f"{path} holds {KINDS.get(type(record), type(record).__name__)}; expected {expected}. {RESTORE}"
        )
    return record


def fault_filtered_lists() -> dict[str, list[str]]:
    """The artist-filtered GTZAN split (Kereliuk, Sturm & Larsen 2015) as torchaudio ships its lists."""
    from torchaudio.datasets.gtzan import filtered_test, filtered_train, filtered_valid

    return {"train": filtered_train, "validation": filtered_valid, "test": filtered_test}


# Fixed song lists by split name: GTZAN's artist-filtered split, then the recipes' (`gtzan_hf.recipes`).
SPLIT_LISTS = {"fault-filtered": fault_filtered_lists, **dict(plugins("SPLIT_LISTS"))}
# `auto`: the dataset's own splits where its folders name them (`dataset`), else `random`.
SPLITS = ("auto", "dataset", "random", *SPLIT_LISTS, "kfold")


def resolved_split(split: str, named: dict[str, str]) -> str:
    """The split `split` stands for on a corpus whose folders name the splits `named` (song id: split): `auto` is
    `dataset` where they name any, else `random`."""
    if split == "auto":
        return "dataset" if named else "random"
    return split


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
    drawn: list[str] = field(default_factory=list)  # split "dataset": the splits drawn from its train songs
    # song id: xxh3-128 of its file's bytes (`sources.content_hash`), for the songs of every split
    content_hashes: dict[str, str] = field(default_factory=dict)

    def summary(self) -> str:
        sizes = ", ".join(f"{name} {len(ids)}" for name, ids in self.song_ids.items())
        dropped = ", ".join(self.dropped_classes)
        split = "the dataset's own split" if self.split == "dataset" else f"{self.split} split"
        drawn = f" ({' and '.join(self.drawn)} drawn from its train songs)" if self.drawn else ""
        return (
            f"{split} of {self.source}{drawn}: {sizes} songs; {len(self.skipped)} files skipped"
            + (f"; {len(self.excluded)} songs outside the split" if self.excluded else "")
            + (f"; classes left out (no usable songs): {dropped}" if dropped else "")
        )

    @classmethod
    def load(cls, path: str | os.PathLike) -> "SplitInfo":
        """
        A saved `splits.json`. One written before a field was added gets its default: without content hashes,
        [`changes`] compares song ids only. One cut short or edited by hand (not JSON, a field or a split missing or
        of another type) is refused in one line naming the file and the key.
        """
        expected = "the songs of every split of a run (train, validation, test), as fine-tuning writes them"
        record = read_record(path, expected)
        kinds = {"source": str, "split": str, "seed": int, "label_names": list, "song_ids": dict}
        optional = {"skipped": list, "excluded": list, "dropped_classes": dict, "content_hashes": dict, "drawn": list}
        values = [(name, record.get(name, ...), kind) for name, kind in kinds.items()]
        values += [(name, record[name], kind) for name, kind in optional.items() if name in record]
        if isinstance(record.get("song_ids"), dict):
            values += [(f"song_ids.{split}", record["song_ids"].get(split, ...), list) for split in SPLIT_NAMES]
        for name, value, kind in values:
            if value is ... or not isinstance(value, kind):
                found = f"lacks {name}" if value is ... else f"has {name}: {json.dumps(value)[:40]}, not {KINDS[kind]}"
                raise UserError(f"{path} {found}: it was cut short or edited by hand. Expected {expected}. {RESTORE}")
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
    named: dict[str, str] | None = None,
) -> tuple[dict[str, list[int]], list[str]]:
    """
    Row indices of each split, and the song ids the split leaves out by design; `labels` are the songs' classes
    (names or ids: the same split either way, names being sorted as ids are); `named` the split each song's folders
    name (song id: `train`, `validation` or `test`), if any.

    - `auto` (the default): `dataset` where `named` names splits, else `random`;
    - `dataset`: the splits `named` gives (an audiofolder's `train/`, `validation/`, `test/`); one it lacks is drawn
      from the train songs, stratified and seeded: `test_size` of them, then `validation_size` of those left (a
      dataset of train and test folders gives up 10 % of its train songs to validation). A dataset that names no
      train split is refused;
    - `random`: stratified by class and seeded: `1 - validation_size - test_size` / `validation_size` / `test_size`
      (80/10/10 by default), over all songs (a dataset's own splits pooled);
    - `fault-filtered`: GTZAN's artist-filtered 443/197/290 lists (songs outside them are excluded);
    - the recipes' song lists (`gtzan_hf.recipes`): `course-project`, `course-project-30s`, the course project's own
      lists (799/99/101 and 800/100/100 songs);
    - `kfold`: stratified `num_folds`-fold: fold `fold` is the test set, fold `fold + 1` (cyclically) the
      validation set, the rest the training set.
    Songs are ordered by id first, so the result does not depend on the order files were found in.
    """
    split = resolved_split(split, named or {})
    if split in SPLIT_LISTS:
        return _listed(split, SPLIT_LISTS[split](), song_ids, skipped or [])
    order = np.argsort(np.asarray(song_ids), kind="stable")
    labels_array = np.asarray(labels)
    if split == "dataset":
        return _named(order, labels_array, song_ids, named or {}, seed, validation_size, test_size), []
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


def _named(
    order: np.ndarray,
    labels: np.ndarray,
    song_ids: list[str],
    named: dict[str, str],
    seed: int,
    validation_size: float,
    test_size: float,
) -> dict[str, list[int]]:
    """The rows of the splits `named` gives, those it lacks drawn from its train songs."""
    if not named:
        raise UserError(
            "split='dataset' takes the splits a dataset's folders name (train/, validation/, test/, as datasets "
            "reads them), and this one names none: use split='auto' or 'random'."
        )
    rows = {name: order[[named.get(song_ids[i]) == name for i in order]] for name in SPLIT_NAMES}
    if not len(rows["train"]):
        found = ", ".join(sorted(set(named.values())))
        raise UserError(
            f"The dataset's folders name the splits {found}, but no train split: add a train/ folder, or pass "
            "--split random to split all its songs afresh."
        )
    drawn = [name for name in ("test", "validation") if not len(rows[name])]
    for name in drawn:
        try:
            rows["train"], rows[name] = _stratified(
                rows["train"], labels, test_size if name == "test" else validation_size, seed
            )
        except UserError as error:
            raise UserError(
                f"The dataset's folders name no {name} split, and one cannot be drawn from its train songs: {error} "
                f"Or add a {name}/ folder."
            ) from error
    return {name: sorted(int(i) for i in rows[name]) for name in SPLIT_NAMES}


def split_corpus(corpus: Corpus, config) -> tuple[dict[str, list[int]], SplitInfo]:
    """`(row indices per split, SplitInfo)` of a loaded corpus under `config`'s split settings (a [`DataConfig`]:
    `split`, `split_seed`, `fold`, `num_folds`, `validation_size`, `test_size`)."""
    song_ids = list(corpus.songs["song_id"])
    split = resolved_split(config.split, corpus.named_splits)
    if corpus.named_splits and split != "dataset":
        sizes = Counter(corpus.named_splits.values())
        logger.warning(
            "%s names its own splits (%s): --split %s splits all its %d songs afresh instead (--split auto keeps "
            "them).",
            corpus.source,
            ", ".join(f"{name} {sizes[name]}" for name in SPLIT_NAMES if sizes[name]),
            split,
            len(song_ids),
        )
    indices, excluded = split_indices(
        song_ids,
        [corpus.label_names[label] for label in corpus.songs["label"]],  # by name: errors can name a class
        split,
        config.split_seed,
        config.fold,
        config.num_folds,
        validation_size=config.validation_size,
        test_size=config.test_size,
        skipped=corpus.skipped,
        named=corpus.named_splits,
    )
    named = set(corpus.named_splits.values())
    drawn = [name for name in ("test", "validation") if name not in named] if split == "dataset" else []
    kfold = split == "kfold"
    split_ids = {name: [song_ids[i] for i in rows] for name, rows in indices.items()}
    info = SplitInfo(
        source=corpus.source,
        split=split,
        seed=config.split_seed,
        fold=config.fold if kfold else None,
        num_folds=config.num_folds if kfold else None,
        label_names=corpus.label_names,
        song_ids=split_ids,
        skipped=corpus.skipped,
        excluded=excluded,
        dropped_classes=corpus.dropped_classes,
        drawn=drawn,
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
