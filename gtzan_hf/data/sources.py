"""Where songs come from: a local folder (GTZAN's layouts, any class-folder tree, a Hugging Face `audiofolder`), a
CSV/JSON list, or the Hub.

Every source becomes one `datasets.Dataset` of songs, one row per file, with the columns
- `audio`: `Audio(decode=False)`, i.e. `{"path", "bytes"}`: decoding is ours (soundfile, no FFmpeg needed);
- `label`: `ClassLabel` with the class (genre) names;
- `song_id`: a string unique in the corpus: the file name without extension (GTZAN: `"jazz.00054"`); for the songs
  whose name other songs share, `"<label>/<name>"`, else the row number.
Files that cannot be used are skipped with a warning naming each, and listed in `Corpus.skipped`; a class left
without songs is left out of the labels with a warning naming it, and listed in `Corpus.dropped_classes`. A folder
whose sub-folders name splits as `datasets` reads them (`train/`, `validation/`, `test/`, ...) gives each song its
split in `Corpus.named_splits`.
"""

import logging
import os
import re
import shutil
import tarfile
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import huggingface_hub
import pyarrow as pa
import pyarrow.csv
import pyarrow.json
import pyarrow.parquet
import xxhash
from datasets import Audio, ClassLabel, Dataset, Features, Value
from datasets.data_files import NON_WORDS_CHARS, SPLIT_KEYWORDS
from datasets.fingerprint import Hasher
from datasets.packaged_modules.folder_based_builder.folder_based_builder import FolderBasedBuilder
from filelock import FileLock

from ..errors import UserError
from ..inference.audio import audio_problem

logger = logging.getLogger(__name__)

AUDIO_EXTENSIONS = frozenset(
    {".wav", ".au", ".snd", ".aiff", ".aif", ".flac", ".ogg", ".oga", ".mp3", ".opus", ".m4a"}
)
LIST_EXTENSIONS = frozenset({".csv", ".json", ".jsonl"})
PATH_COLUMNS = ("path", "file", "filename", "audio")
# A Hugging Face `audiofolder` (`load_dataset("audiofolder", data_dir=...)`), read by datasets' own rules: its
# metadata files (`metadata.csv`, `.jsonl` or `.parquet`, one format per dataset) list each audio file in a `file_name`
# column (or `<name>_file_name`), relative to the metadata file's folder, with its other columns (the label); a folder
# named by a split keyword, or holding one between separators (`train/`, `train-2024/`, `my_test/`; `val/` and `dev/`
# are validation, `eval/` test), gives the split of every file under it.
METADATA_NAMES = tuple(FolderBasedBuilder.METADATA_FILENAMES)
METADATA_READERS = {
    ".csv": pyarrow.csv.read_csv,
    ".jsonl": pyarrow.json.read_json,
    ".parquet": pyarrow.parquet.read_table,
}
SPLIT_FOLDERS = {
    str(split): re.compile(
        rf"(?:.*[{NON_WORDS_CHARS}])?(?:{'|'.join(map(re.escape, keywords))})(?:[{NON_WORDS_CHARS}].*)?"
    )
    for split, keywords in SPLIT_KEYWORDS.items()
}

# The Hub's `marsyas/gtzan` (and its copies) hold GTZAN's original archive and a loading script, which datasets >= 4
# refuses: a Hub dataset holding this file is read from the archive, unpacked, instead.
GTZAN_ARCHIVE = "data/genres.tar.gz"
# Version of the file checks (`audio.check_recording`): a new rule makes earlier cached verdicts stale (3: the
# bounds on decoded size; 4: the content hashes; 5: silence judged on what the model hears).
CHECK_VERSION = 5
# The one class of a corpus read without labels (`label_column=None`, for self-supervised pretraining).
UNLABELED = "unlabeled"


@dataclass
class Corpus:
    """All usable songs of a source, and what was left out."""

    songs: Dataset
    fingerprint: str  # changes when any file, label, song id or the set of usable files changes
    source: str
    skipped: list[dict] = field(default_factory=list)  # {"song_id", "path", "label", "reason"} per unusable file
    dropped_classes: dict[str, str] = field(default_factory=dict)  # class name: why it has no songs
    content_hashes: dict[str, str] = field(default_factory=dict)  # song id: `content_hash` of its file (checked)
    named_splits: dict[str, str] = field(default_factory=dict)  # song id: the split its folder names, if any

    @property
    def label_names(self) -> list[str]:
        return self.songs.features["label"].names


def default_cache_dir() -> Path:
    """The toolkit's folder in the datasets cache (`HF_DATASETS_CACHE`): feature caches, unpacked archives."""
    return Path(datasets.config.HF_DATASETS_CACHE) / "gtzan_hf"


def _features(label_names: list[str]) -> Features:
    return Features({"audio": Audio(decode=False), "label": ClassLabel(names=label_names), "song_id": Value("string")})


def _song_ids(names: list[str], labels: list[str]) -> list[str]:
    """
    The file name without extension (GTZAN: `jazz.00054`); `label/name` for only the songs whose name other songs
    share (`pop/intro`, `rock/intro`), with a warning naming them, so that one clash leaves every other id (and the
    split lists of GTZAN ids) as it is; the row number for a song without a name, or whose `label/name` is shared too.
    """
    counts = Counter(names)
    ids = [f"{label}/{name}" if name and counts[name] > 1 else name for name, label in zip(names, labels)]
    counts = Counter(ids)
    ids = [song_id if song_id and counts[song_id] == 1 else f"{index:06d}" for index, song_id in enumerate(ids)]
    renamed = [song_id for song_id, name in zip(ids, names) if name and song_id != name]
    if renamed:
        more = f" and {len(renamed) - 10} more" if len(renamed) > 10 else ""
        logger.warning(
            "%d songs share their file name (without extension) with another song: they are named <class>/<name> "
            "instead (or by row number where that is shared too): %s%s",
            len(renamed),
            ", ".join(renamed[:10]),
            more,
        )
    return ids


def _from_records(paths: list[str], labels: list[str], source: str) -> tuple[Dataset, str]:
    """Songs from local files; the fingerprint covers each file's path, size and modification time."""
    _refuse_case_clash(set(labels), source)
    label_names = sorted(set(labels))
    stats = [os.stat(path) for path in paths]
    fingerprint = Hasher.hash(
        [(os.path.abspath(p), s.st_size, s.st_mtime_ns, label) for p, s, label in zip(paths, stats, labels)]
    )
    features = _features(label_names)
    # built as a plain struct and cast: datasets' Audio encoder needs torchcodec even for paths
    songs = Dataset.from_dict(
        {
            "audio": [{"bytes": None, "path": os.path.abspath(path)} for path in paths],
            "label": [label_names.index(label) for label in labels],
            "song_id": _song_ids([Path(path).stem for path in paths], labels),
        },
        features=Features({**features, "audio": {"bytes": Value("binary"), "path": Value("string")}}),
    ).cast(features)
    return songs, fingerprint


def _skip(skipped: list[dict], song_id: str, path: str | None, label: str | None, reason: str) -> None:
    """Record, and say, that a file is skipped; `label` is the class it would have had (`None`: none)."""
    skipped.append({"song_id": song_id, "path": path, "label": label, "reason": reason})
    logger.warning("Skipping %s (%s): %s", song_id, path, reason)


def _distinct_files(paths: list, labels: list[str | None], skipped: list[dict]) -> list[int]:
    """The indices of `paths` that are not the same file as an earlier one (a symbolic or hard link to it, or the
    same path twice): those are skipped and reported, else one recording would be two songs, perhaps in two splits."""
    first: dict[tuple[int, int], str] = {}
    kept = []
    for index, (path, label) in enumerate(zip(paths, labels)):
        stat = os.stat(path)
        key = (stat.st_dev, stat.st_ino)  # what `os.path.samefile` compares
        if key in first:
            _skip(skipped, Path(path).stem, str(path), label, f"duplicate of {first[key]} (the same file)")
        else:
            first[key] = str(path)
            kept.append(index)
    return kept


def _walk(root: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """
    The audio files (by extension), the folders and the `audiofolder` metadata files (`METADATA_NAMES`) under `root`,
    hidden ones (`.git/`, macOS's `._song.wav`) and `__MACOSX/`-like folders aside, as `datasets` leaves them out.
    Links to folders are followed (a class folder may live on another disk), each real folder once: a link into the
    tree itself (to an ancestor, a loop, or a sibling) or to a folder reached already is not followed, with a warning.
    A broken link to a folder is warned about; a broken link named like an audio file is returned, to be reported.
    """
    own = {os.path.realpath(folder) for folder, _, _ in os.walk(root)}  # read where they are, never through a link
    reached = {os.path.realpath(root)}
    files, folders, metadata = [], [], []
    for folder, dirnames, filenames in os.walk(root, followlinks=True):
        folders.append(Path(folder))
        followed = []
        for name in sorted(name for name in dirnames if not name.startswith((".", "__"))):
            path = os.path.join(folder, name)
            real = os.path.realpath(path)
            if real in reached or (os.path.islink(path) and real in own):
                logger.warning(
                    "Not reading %s: it leads to %s, a folder read elsewhere (its files count once)", path, real
                )
            else:
                reached.add(real)
                followed.append(name)
        dirnames[:] = followed
        for name in sorted(name for name in filenames if not name.startswith(".")):
            path = Path(folder, name)
            if path.suffix.lower() in AUDIO_EXTENSIONS:
                files.append(path)
            elif name in METADATA_NAMES:
                metadata.append(path)
            elif path.is_symlink() and not path.exists():
                logger.warning("Not reading %s: a broken link (to %s, which does not exist)", path, os.readlink(path))
    return files, folders, metadata


def _split_of(path: Path, root: Path) -> tuple[str, Path] | None:
    """`(split, its folder)` when a folder between `root` and `path` names a split by datasets' rules
    (`SPLIT_FOLDERS`; the outermost such folder), else `None`."""
    relative = path.relative_to(root)
    for index, part in enumerate(relative.parts[:-1]):
        for split, pattern in SPLIT_FOLDERS.items():
            if pattern.fullmatch(part):
                return split, root.joinpath(*relative.parts[: index + 1])
    return None


def _skip_many(skipped: list[dict], paths: list[Path], reason: str, summary: str) -> None:
    """Record files skipped for one reason, said in one warning (`summary`, then a few of them)."""
    for path in paths:
        skipped.append({"song_id": path.stem, "path": str(path), "label": None, "reason": reason})
    if paths:
        more = f" and {len(paths) - 5} more" if len(paths) > 5 else ""
        logger.warning("%s: %s%s", summary, ", ".join(str(path) for path in paths[:5]), more)


def _in_splits(root: Path, paths: list[Path], skipped: list[dict]) -> list[Path]:
    """The `paths` that lie in a split folder; the others are skipped and said, as `datasets` leaves them out."""
    outside = [path for path in paths if not _split_of(path, root)]
    _skip_many(
        skipped,
        outside,
        "in no split folder (train, validation, test)",
        f"{len(outside)} audio files of {root} lie in no split folder beside its split folders (train, validation, "
        "test), and are not read (as datasets reads only the files of its splits)",
    )
    return [path for path in paths if _split_of(path, root)]


def _case_clash(names) -> tuple[str, str] | None:
    """Two of `names` that differ only by case, if any."""
    seen: dict[str, str] = {}
    for name in sorted(names):
        if name.casefold() in seen and seen[name.casefold()] != name:
            return seen[name.casefold()], name
        seen.setdefault(name.casefold(), name)
    return None


def _refuse_case_clash(names, source: str) -> None:
    clash = _case_clash(names)
    if clash:
        raise UserError(
            f"The classes {clash[0]!r} and {clash[1]!r} of {source} differ only by case: they would be two classes "
            "here and one on a system whose file names ignore case (macOS, Windows). Give them one spelling, or "
            "rename one."
        )


def _metadata_labels(
    root: Path, files: list[Path], tables: list[Path], path_column: str | None, label_column: str, skipped: list[dict]
) -> list[tuple[Path, str]]:
    """
    `(path, label)` of every file an `audiofolder`'s metadata files list (`file_name`, or `path_column`, relative to
    the metadata file's folder; the label from `label_column`, else from `label`). A listed file that does not exist
    or has no label is skipped; an audio file no metadata file lists is skipped too (`datasets` leaves it out), each
    said. A path that leads outside the metadata file's folder is refused, as `datasets` refuses it.
    """
    formats = sorted({table.suffix for table in tables})
    if len(formats) > 1:
        raise UserError(
            f"{root} holds metadata files of {len(formats)} formats ({', '.join(str(t) for t in tables[:3])}): an "
            "audiofolder's metadata is in one format (metadata.csv, metadata.jsonl or metadata.parquet). Keep one."
        )
    pairs = []
    for table_path in tables:
        try:
            table = METADATA_READERS[table_path.suffix](str(table_path))
        except (pa.ArrowException, OSError) as error:
            raise UserError(
                f"{table_path} could not be read ({str(error).splitlines()[0]}): expected a table of a file_name "
                "column and a label column, as datasets' audiofolder reads it. Correct it, or remove it."
            ) from None
        columns = table.column_names
        named = [column for column in columns if column.endswith("_file_name")]  # `audio_file_name`: one of them
        candidates = (path_column, "file_name", *(named if len(named) == 1 else ()))
        file_column = next((c for c in candidates if c in columns), None)
        column = next((c for c in (label_column, "label") if c in columns), None)
        if file_column is None or column is None:
            wanted = "a file_name column (each audio file's path, relative to it)" if file_column is None else ""
            names = " or ".join(dict.fromkeys((repr(label_column), "'label'")))
            wanted = wanted or f"a {names} column of the classes (name another with --label_column)"
            raise UserError(f"{table_path} has the columns {', '.join(columns)}: expected {wanted}.")
        if column != label_column:
            logger.info("%s has no %r column: its classes are its %r column", table_path, label_column, column)
        for row, (name, label) in enumerate(zip(table[file_column].to_pylist(), table[column].to_pylist()), 1):
            where = f"{table_path} (row {row})"
            relative = os.path.normpath(name) if isinstance(name, str) else ""
            if not relative or "://" in name or os.path.isabs(name) or relative == ".." or relative.startswith("../"):
                raise UserError(
                    f"{where}: {file_column} {name!r} is not a path inside {table_path.parent}; expected the audio "
                    "file's path relative to the metadata file, as datasets' audiofolder requires. Correct it."
                )
            path = table_path.parent / relative
            if label is None or not str(label).strip():
                _skip(skipped, path.stem, str(path), None, f"no label in {where}")
            elif not path.is_file():
                _skip(skipped, path.stem, str(path), str(label), f"listed in {where}, but there is no such file")
            else:
                pairs.append((path, str(label)))
    listed = {os.path.realpath(path) for path, _ in pairs}
    listed |= {os.path.realpath(entry["path"]) for entry in skipped if entry["path"]}
    unlisted = [path for path in files if os.path.realpath(path) not in listed]
    names = ", ".join(sorted({table.name for table in tables}))
    _skip_many(
        skipped,
        unlisted,
        f"listed in no metadata file ({names})",
        f"{len(unlisted)} audio files under {root} are listed in no metadata file ({names}), and are not read (as "
        "datasets' audiofolder reads only the files its metadata lists)",
    )
    return pairs


def _folder_labels(
    root: Path, files: list[Path], folders: list[Path], skipped: list[dict], dropped: dict[str, str]
) -> list[tuple[Path, str]]:
    """
    `(path, label)` of every audio file by its class folder: the folders directly under the deepest folder common to
    all files (`genres/` in GTZAN's archive, `Data/genres_original/` in Kaggle's), or, where `files` lie under split
    folders, under each split folder. A folder inside a class folder belongs to that class, with a warning; a file
    beside the class folders is skipped; class folders whose names differ only by case are refused; a class folder
    that holds no audio file is warned about and added to `dropped`.
    """
    by_base: dict[Path, list[Path]] = {}
    for path in files:
        split = _split_of(path, root)
        by_base.setdefault(split[1] if split else root, []).append(path)
    pairs, nested, class_folders = [], Counter(), {}
    for base, members in by_base.items():
        parents = {path.parent for path in members}
        class_root = Path(os.path.commonpath(parents))
        if class_root != base and class_root in parents:  # the common folder holds songs: it is a class itself
            class_root = class_root.parent
        for path in members:
            parts = path.parent.relative_to(class_root).parts
            if not parts:
                _skip(skipped, path.stem, str(path), None, "not inside a class folder")
                continue
            pairs.append((path, parts[0]))
            class_folders.setdefault(parts[0], class_root / parts[0])
            if len(parts) > 1:
                nested[(class_root / parts[0] / parts[1], parts[0])] += 1
        holding_audio = {folder for path in members for folder in path.parents}
        for folder in folders:
            if folder.parent == class_root and folder not in holding_audio and folder.name not in class_folders:
                class_folders.setdefault(folder.name, folder)
                reason = f"its folder {folder} holds no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))})"
                _leave_out(dropped, folder.name, reason)
    clash = _case_clash(class_folders)
    if clash:
        raise UserError(
            f"The class folders {class_folders[clash[0]]} and {class_folders[clash[1]]} differ only by case: they "
            "would be two classes here and one folder on a system whose file names ignore case (macOS, Windows). "
            "Merge them, or rename one."
        )
    if nested:
        found = "; ".join(
            f"{folder} ({count} file{'s' if count > 1 else ''}): class {label!r}"
            for (folder, label), count in nested.items()
        )
        logger.warning(
            "Folders inside class folders are read as part of their class: %s. A class is a folder of its own beside "
            "the others: move a folder there to make it a class.",
            found,
        )
    return pairs


def _from_folder(
    root: Path,
    skipped: list[dict],
    dropped: dict[str, str],
    labelled: bool = True,
    label_column: str = "label",
    path_column: str | None = None,
    named: list[str | None] | None = None,
) -> tuple[Dataset, str]:
    """
    Every audio file under `root` (recursively, through links to folders), labelled by its class folder (GTZAN's
    `genres/<genre>/<genre>.000NN.au`, Kaggle's `Data/genres_original/<genre>/...wav`, any `<class>/<file>` tree:
    [`_folder_labels`]), or as a Hugging Face `audiofolder` holding metadata files lists them ([`_metadata_labels`]).
    Sub-folders that name splits as `datasets` reads them (`SPLIT_FOLDERS`: `train/`, `test/`, ...) give each song's
    split, appended to `named` in row order (`None` for none); files outside them are skipped, as `datasets` leaves
    them out. Other files (images, CSV features, `.mf` lists) are ignored. One file reached twice (through a link) or
    two files of one name in one folder (say a `.au` and a `.wav` copy of the same song) would leak between splits:
    the second is skipped and reported, a file reached through no link kept first. Unlabelled (`labelled=False`),
    files may lie anywhere under `root` and all get the label `UNLABELED`.
    """
    files, folders, tables = _walk(root)
    real_root = Path(os.path.realpath(root))
    files.sort(key=lambda path: (Path(os.path.realpath(path)) != real_root / path.relative_to(root), path))
    split_layout = labelled and any(_split_of(path, root) for path in [*files, *tables])
    if not labelled:
        pairs = [(path, UNLABELED) for path in files]
    elif tables:
        pairs = _metadata_labels(root, files, tables, path_column, label_column, skipped)
        if split_layout:
            inside = set(_in_splits(root, [path for path, _ in pairs], skipped))
            pairs = [(path, label) for path, label in pairs if path in inside]
    else:
        files = _in_splits(root, files, skipped) if split_layout else files
        pairs = _folder_labels(root, files, folders, skipped, dropped)
    found = []
    for path, label in pairs:
        if not path.exists():
            reason = f"a broken link (to {os.readlink(path)}, which does not exist)"
            _skip(skipped, path.stem, str(path), label, reason)
        else:
            found.append((path, label))
    kept: dict[tuple[Path, str], tuple[Path, str]] = {}
    for index in _distinct_files([path for path, _ in found], [label for _, label in found], skipped):
        path, label = found[index]
        if (path.parent, path.stem) in kept:
            _skip(skipped, path.stem, str(path), label, f"duplicate of {kept[(path.parent, path.stem)][0]}")
        else:
            kept[(path.parent, path.stem)] = (path, label)
    if not kept:
        raise UserError(
            f"No audio files ({', '.join(sorted(AUDIO_EXTENSIONS))}) in class folders under {root}. Expected "
            "GTZAN's layout (genres/<genre>/<genre>.000NN.wav), <class>/<file> sub-folders, or an audiofolder "
            "(metadata.csv with file_name and label columns)."
        )
    songs = sorted(kept.values())
    if named is not None:
        splits = [_split_of(path, root) if split_layout else None for path, _ in songs]
        named.extend(split[0] if split else None for split in splits)
    return _from_records([str(path) for path, _ in songs], [label for _, label in songs], str(root))


def _leave_out(dropped: dict[str, str], name: str, reason: str) -> None:
    """Record, and say, that class `name` has no songs and so no label."""
    dropped[name] = reason
    logger.warning("Class %r is left out of the labels: %s", name, reason)


def _from_list(
    list_file: Path, path_column: str | None, label_column: str | None, skipped: list[dict]
) -> tuple[Dataset, str]:
    """A CSV/JSON(L) table of (path, label) rows (or paths only, `label_column=None`); relative paths are relative to
    the list file's folder. A file listed twice (or through a link) is one song: the later rows are skipped."""
    table = (Dataset.from_csv if list_file.suffix.lower() == ".csv" else Dataset.from_json)(
        str(list_file), keep_in_memory=True
    )
    path_column = path_column or next((c for c in PATH_COLUMNS if c in table.column_names), None)
    if path_column not in table.column_names or label_column not in (*table.column_names, None):
        raise UserError(
            f"{list_file} has columns {table.column_names}; expected a path column (one of {PATH_COLUMNS}, or "
            f"set `path_column`) and the label column {label_column!r} (set `label_column`)."
        )
    paths = [str(list_file.parent / p) for p in table[path_column]]
    labels = [UNLABELED] * len(paths) if label_column is None else [str(label) for label in table[label_column]]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise UserError(f"{len(missing)} files listed in {list_file} do not exist, e.g. {missing[:3]}.")
    kept = _distinct_files(paths, labels, skipped)
    return _from_records([paths[i] for i in kept], [labels[i] for i in kept], str(list_file))


def _hub_archive(repo_id: str, revision: str | None) -> str | None:
    """The local path of a Hub dataset's GTZAN archive (downloaded once, 1.2 GB for `marsyas/gtzan`; offline, from
    the Hub cache), or `None` for a dataset without one (or, offline, without one cached)."""
    try:
        return huggingface_hub.hf_hub_download(
            repo_id,
            GTZAN_ARCHIVE,
            repo_type="dataset",
            revision=revision,
            local_files_only=datasets.config.HF_HUB_OFFLINE,  # datasets' offline switch, which `_from_hub` obeys
        )
    except huggingface_hub.errors.EntryNotFoundError:
        return None


def _unpack(archive: str, target: Path) -> None:
    """
    Unpack `archive` into `target` atomically: into a temporary sibling folder first, renamed when complete, so that
    `target` exists only whole. Other entries beside `target` (an unpack cut short, or of an older commit) are
    removed first, under a lock that keeps concurrent runs from removing each other's.
    """
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{target.parent}.lock"):
        if target.is_dir():
            return
        for stale in target.parent.iterdir():
            logger.info("Removing %s (an interrupted or superseded unpack)", stale)
            shutil.rmtree(stale)
        logger.info("Unpacking %s into %s", archive, target)
        partial = tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}-")
        with tarfile.open(archive) as tar:
            tar.extractall(partial, filter="data")
        os.rename(partial, target)


def _from_hub(
    repo_id: str, audio_column: str, label_column: str | None, revision: str | None, num_proc: int | None
) -> tuple[Dataset, str]:
    """All splits of a Hub dataset with an audio column and a label column (class names or integers), or no label
    column (`label_column=None`)."""
    loaded = datasets.load_dataset(repo_id, revision=revision, num_proc=num_proc)
    songs = datasets.concatenate_datasets(list(loaded.values())) if isinstance(loaded, dict) else loaded
    for column in (audio_column, label_column):
        if column is not None and column not in songs.column_names:
            raise UserError(
                f"{repo_id} has columns {songs.column_names}; set `audio_column` and `label_column` to its audio "
                f"and label columns (got {audio_column!r} and {label_column!r})."
            )
    songs = songs.cast_column(audio_column, Audio(decode=False))
    if label_column is None:
        label_names = [UNLABELED] * len(songs)
    elif isinstance(songs.features[label_column], ClassLabel):
        label_names = [songs.features[label_column].int2str(int(label)) for label in songs[label_column]]
    else:
        label_names = [str(label) for label in songs[label_column]]
    _refuse_case_clash(set(label_names), repo_id)
    file_names = songs["file"] if "file" in songs.column_names else [a["path"] for a in songs[audio_column]]
    names = [Path(name).stem if name else "" for name in file_names]
    ordered = sorted(set(label_names))
    songs = songs.select_columns([audio_column])
    if audio_column != "audio":
        songs = songs.rename_column(audio_column, "audio")
    songs = songs.add_column("label", [ordered.index(label) for label in label_names])
    songs = songs.add_column("song_id", _song_ids(names, label_names)).cast(_features(ordered))
    return songs, Hasher.hash((repo_id, revision, songs._fingerprint))


def content_hash(audio: dict) -> str:
    """xxh3-128 of a file's bytes (`{"path", "bytes"}`: the bytes where a Hub row holds them, else the file at
    `path`): any change to the file changes it. 0.3 ms for a 30 s WAV (1.3 MB), against 2-5 ms to decode it."""
    return xxhash.xxh3_128_hexdigest(
        audio["bytes"] if audio.get("bytes") is not None else Path(audio["path"]).read_bytes()
    )


def _check(batch: dict) -> dict:
    problems = [audio_problem(audio) for audio in batch["audio"]]
    return {
        "problem": problems,
        "content": ["" if problem else content_hash(audio) for audio, problem in zip(batch["audio"], problems)],
    }


def _keep_classes(songs: Dataset, label_names: list[str]) -> Dataset:
    """`songs` labelled with the classes `label_names` only; songs of other classes get -1 (none of them is kept)."""
    names = songs.features["label"].names
    labels = [label_names.index(names[label]) if names[label] in label_names else -1 for label in songs["label"]]
    songs = songs.remove_columns("label").add_column("label", labels, feature=ClassLabel(names=label_names))
    return songs.select_columns(["audio", "label", "song_id"])


def load_corpus(
    source: str | os.PathLike,
    audio_column: str = "audio",
    label_column: str | None = "label",
    path_column: str | None = None,
    revision: str | None = None,
    num_proc: int | None = None,
    cache_dir: str | os.PathLike | None = None,
    check: bool = True,
) -> Corpus:
    """
    Read every song of `source` and check that each can be used.

    Args:
        source: a local folder (GTZAN in any published layout, `<class>/<file>` sub-folders, or a Hugging Face
            `audiofolder`: metadata files and split folders read as `load_dataset("audiofolder", data_dir=...)`
            reads them), a `.csv`, `.json` or `.jsonl` list of (path, label), or a Hub dataset id: one holding
            GTZAN's `genres.tar.gz` (`marsyas/gtzan`) is read from that archive, any other through
            `datasets.load_dataset`.
        audio_column, label_column: columns of a Hub dataset, or the label column of a list or of an audiofolder's
            metadata (which falls back on its `label` column). `label_column=None` reads audio without labels
            (self-supervised pretraining): a folder's files need no class folder, a list or Hub dataset no label
            column, and every song gets the one label `UNLABELED`.
        path_column: the path column of a list (default: the first of `path`, `file`, `filename`, `audio`) or of an
            audiofolder's metadata (default: `file_name`).
        revision: Hub revision (branch, tag or commit).
        num_proc: processes that read the files (default: all cores).
        cache_dir: where file checks are cached and Hub archives are unpacked (default: `gtzan_hf` in the datasets
            cache).
        check: read every file now (below); `False` lists the songs only, for callers that check each file as they
            stream it.

    Every file is read once: unreadable, too large (more than 16 channels or an hour of 48 kHz stereo, from its
    header), empty (shorter than 30 ms), silent (peak at or below -80 dBFS) or non-finite files are skipped with a
    warning naming each, and returned in `Corpus.skipped`. A class none of whose files can be used, or whose folder
    holds no audio, is left out of the labels with a warning naming it, and returned in `Corpus.dropped_classes`.
    Each usable file's [`content_hash`] is kept in `Corpus.content_hashes`.
    """
    skipped: list[dict] = []
    dropped: dict[str, str] = {}
    named: list[str | None] = []
    path = Path(source)
    if path.is_dir():
        songs, fingerprint = _from_folder(
            path, skipped, dropped, label_column is not None, label_column or "label", path_column, named
        )
    elif path.is_file() and path.suffix.lower() in LIST_EXTENSIONS:
        songs, fingerprint = _from_list(path, path_column, label_column, skipped)
    elif path.exists():
        raise UserError(f"{source} is a file but not a list: pass a folder or a {sorted(LIST_EXTENSIONS)} list.")
    else:
        songs, fingerprint = _load_hub_source(
            str(source), audio_column, label_column, revision, num_proc, cache_dir, skipped, dropped
        )
    named_splits = {song_id: split for song_id, split in zip(songs["song_id"], named) if split}
    if not check:
        return Corpus(songs, fingerprint, str(source), skipped, dropped, named_splits=named_splits)
    num_proc = min(num_proc or os.cpu_count() or 1, len(songs))
    # only the audio goes in and only the verdicts come out (a Hub dataset's audio bytes are not copied); they are
    # cached under the corpus fingerprint, so a later run with unchanged files reads no audio here
    cache_dir = Path(cache_dir or default_cache_dir())
    cache_dir.mkdir(parents=True, exist_ok=True)
    checked = songs.select_columns(["audio"]).map(
        _check,
        batched=True,
        batch_size=8,
        remove_columns=["audio"],
        num_proc=num_proc if num_proc > 1 else None,
        cache_file_name=str(cache_dir / f"check-v{CHECK_VERSION}-{fingerprint}.arrow"),
        new_fingerprint=f"check-v{CHECK_VERSION}-{fingerprint}",
        desc="Checking audio files",
    )
    problems, contents = list(checked["problem"]), list(checked["content"])
    song_ids, labels, names = list(songs["song_id"]), list(songs["label"]), songs.features["label"].names
    usable = [index for index, problem in enumerate(problems) if not problem]
    for index, problem in enumerate(problems):
        if problem:
            _skip(skipped, song_ids[index], songs[index]["audio"]["path"], names[labels[index]], problem)
    if not usable:
        raise UserError(f"None of the {len(songs)} files of {source} could be used; see the warnings above.")
    # the labels are the classes with songs: one without would be a head output never trained nor scored
    kept_names = [names[label] for label in sorted({labels[index] for index in usable})]
    files_skipped = Counter(entry["label"] for entry in skipped if entry["label"] is not None)
    for name in sorted(set(files_skipped) - set(kept_names)):
        _leave_out(dropped, name, f"all its {files_skipped[name]} files are skipped (see the warnings above)")
    if len(kept_names) < len(names):
        songs = _keep_classes(songs, kept_names)
    songs = songs.select(usable)
    counts = Counter(songs.features["label"].int2str(label) for label in songs["label"])
    logger.info(
        "%s: %d songs in %d classes (%s); %d skipped", source, len(songs), len(counts), dict(counts), len(skipped)
    )
    content_hashes = {song_ids[index]: contents[index] for index in usable}
    # the labels and song ids too: the rules that derive them may change, and the fbank cache stores them
    fingerprint = Hasher.hash((fingerprint, usable, kept_names, [song_ids[index] for index in usable]))
    named_splits = {
        song_ids[index]: named_splits[song_ids[index]] for index in usable if song_ids[index] in named_splits
    }
    return Corpus(songs, fingerprint, str(source), skipped, dropped, content_hashes, named_splits)


def hub_archive_folder(repo_id: str, revision: str | None, cache_dir: str | os.PathLike | None) -> Path | None:
    """The unpacked GTZAN archive of a Hub dataset holding one (`GTZAN_ARCHIVE`), or `None` for other datasets.
    Each commit's archive is unpacked once, into `cache_dir` (default: `default_cache_dir()`); a new commit is
    unpacked anew, replacing the older unpack."""
    archive = _hub_archive(repo_id, revision)
    if archive is None:
        return None
    commit = Path(archive).parents[1].name  # the Hub cache's layout: snapshots/<commit sha>/data/genres.tar.gz
    target = Path(cache_dir or default_cache_dir()) / "hub-archives" / repo_id.replace("/", "--") / commit
    _unpack(archive, target)
    return target


def _load_hub_source(
    source, audio_column, label_column, revision, num_proc, cache_dir, skipped: list[dict], dropped: dict[str, str]
) -> tuple[Dataset, str]:
    try:
        folder = hub_archive_folder(source, revision, cache_dir)
        if folder is not None:
            return _from_folder(folder, skipped, dropped, labelled=label_column is not None)
        return _from_hub(source, audio_column, label_column, revision, num_proc)
    except (OSError, ConnectionError, datasets.exceptions.DatasetNotFoundError) as error:
        if datasets.config.HF_HUB_OFFLINE:
            raise UserError(
                f"{source!r} is not a local folder or list, and could not be loaded from the Hugging Face Hub: "
                f"HF_HUB_OFFLINE=1 and it is not in the cache ({huggingface_hub.constants.HF_HUB_CACHE}). Load it "
                "once online, or pass a local folder (genres/<genre>/<genre>.000NN.wav)."
            ) from error
        first_line = str(error).partition("\n")[0]  # huggingface_hub's messages run over several lines
        raise UserError(
            f"{source!r} is not a local folder or list, and could not be loaded from the Hugging Face Hub "
            f"({type(error).__name__}: {first_line}). Without internet, download GTZAN elsewhere and pass its folder "
            "(genres/<genre>/<genre>.000NN.wav), or generate a corpus with "
            "`python -m gtzan_hf.data.synthetic OUT_DIR`."
        ) from error
