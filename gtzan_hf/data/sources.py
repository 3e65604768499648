"""Where songs come from: a local folder (GTZAN's layouts, any class-folder tree), a CSV/JSON list, or the Hub.

Every source becomes one `datasets.Dataset` of songs, one row per file, with the columns
- `audio`: `Audio(decode=False)`, i.e. `{"path", "bytes"}`: decoding is ours (soundfile, no FFmpeg needed);
- `label`: `ClassLabel` with the class (genre) names;
- `song_id`: a string unique in the corpus: the file name without extension (GTZAN: `"jazz.00054"`); for the songs
  whose name other songs share, `"<label>/<name>"`, else the row number.
Files that cannot be used are skipped with a warning naming each, and listed in `Corpus.skipped`.
"""

import logging
import os
import shutil
import tarfile
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import datasets
import huggingface_hub
from datasets import Audio, ClassLabel, Dataset, Features, Value
from datasets.fingerprint import Hasher
from filelock import FileLock

from ..inference.audio import audio_problem

logger = logging.getLogger(__name__)

AUDIO_EXTENSIONS = frozenset(
    {".wav", ".au", ".snd", ".aiff", ".aif", ".flac", ".ogg", ".oga", ".mp3", ".opus", ".m4a"}
)
LIST_EXTENSIONS = frozenset({".csv", ".json", ".jsonl"})
PATH_COLUMNS = ("path", "file", "filename", "audio")

# The Hub's `marsyas/gtzan` (and its copies) hold GTZAN's original archive and a loading script, which datasets >= 4
# refuses: a Hub dataset holding this file is read from the archive, unpacked, instead.
GTZAN_ARCHIVE = "data/genres.tar.gz"
# Version of the file checks (`audio.samples_problem`): a new rule makes earlier cached verdicts stale.
CHECK_VERSION = 2
# The one class of a corpus read without labels (`label_column=None`, for self-supervised pretraining).
UNLABELED = "unlabeled"


@dataclass
class Corpus:
    """All usable songs of a source, and what was left out."""

    songs: Dataset
    fingerprint: str  # changes when any file, label or the set of usable files changes
    source: str
    skipped: list[dict] = field(default_factory=list)  # {"song_id", "path", "reason"} per unusable file

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


def _from_folder(root: Path, skipped: list[dict], labelled: bool = True) -> tuple[Dataset, str]:
    """
    Every audio file under `root` (recursively), labelled by the folder it is in: GTZAN's
    `genres/<genre>/<genre>.000NN.au`, Kaggle's `Data/genres_original/<genre>/...wav`, or any `<class>/<file>` tree.
    Other files (images, CSV features, `.mf` lists) are ignored. Two files of one name in one class folder (say a
    `.au` and a `.wav` copy of the same song) would leak between splits: the second is skipped and reported.
    Unlabelled (`labelled=False`), files may lie anywhere under `root` and all get the label `UNLABELED`.
    """
    files = sorted(p for p in root.rglob("*") if p.suffix.lower() in AUDIO_EXTENSIONS and p.is_file())
    files = [p for p in files if not any(part.startswith(".") for part in p.relative_to(root).parts)]
    kept: dict[tuple[str, str], Path] = {}
    for path in files:
        if labelled and path.parent == root:
            skipped.append({"song_id": path.stem, "path": str(path), "reason": "not inside a class folder"})
        elif (path.parent.name, path.stem) in kept:
            first = kept[(path.parent.name, path.stem)]
            skipped.append({"song_id": path.stem, "path": str(path), "reason": f"duplicate of {first}"})
        else:
            kept[(path.parent.name, path.stem)] = path
    if not kept:
        raise ValueError(
            f"No audio files ({', '.join(sorted(AUDIO_EXTENSIONS))}) in class folders under {root}. Expected "
            "GTZAN's layout (genres/<genre>/<genre>.000NN.wav) or <class>/<file> sub-folders."
        )
    paths = sorted(kept.values())
    labels = [p.parent.name if labelled else UNLABELED for p in paths]
    return _from_records([str(p) for p in paths], labels, str(root))


def _from_list(list_file: Path, path_column: str | None, label_column: str | None) -> tuple[Dataset, str]:
    """A CSV/JSON(L) table of (path, label) rows (or paths only, `label_column=None`); relative paths are relative to
    the list file's folder."""
    table = (Dataset.from_csv if list_file.suffix.lower() == ".csv" else Dataset.from_json)(
        str(list_file), keep_in_memory=True
    )
    path_column = path_column or next((c for c in PATH_COLUMNS if c in table.column_names), None)
    if path_column not in table.column_names or label_column not in (*table.column_names, None):
        raise ValueError(
            f"{list_file} has columns {table.column_names}; expected a path column (one of {PATH_COLUMNS}, or "
            f"set `path_column`) and the label column {label_column!r} (set `label_column`)."
        )
    paths = [str(list_file.parent / p) for p in table[path_column]]
    labels = [UNLABELED] * len(paths) if label_column is None else [str(label) for label in table[label_column]]
    missing = [p for p in paths if not os.path.exists(p)]
    if missing:
        raise FileNotFoundError(f"{len(missing)} files listed in {list_file} do not exist, e.g. {missing[:3]}.")
    return _from_records(paths, labels, str(list_file))


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
            raise ValueError(
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
    file_names = songs["file"] if "file" in songs.column_names else [a["path"] for a in songs[audio_column]]
    names = [Path(name).stem if name else "" for name in file_names]
    ordered = sorted(set(label_names))
    songs = songs.select_columns([audio_column])
    if audio_column != "audio":
        songs = songs.rename_column(audio_column, "audio")
    songs = songs.add_column("label", [ordered.index(label) for label in label_names])
    songs = songs.add_column("song_id", _song_ids(names, label_names)).cast(_features(ordered))
    return songs, Hasher.hash((repo_id, revision, songs._fingerprint))


def _check(batch: dict) -> dict:
    return {"problem": [audio_problem(audio) for audio in batch["audio"]]}


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
        source: a local folder (GTZAN in any published layout, or `<class>/<file>` sub-folders), a `.csv`,
            `.json` or `.jsonl` list of (path, label), or a Hub dataset id: one holding GTZAN's `genres.tar.gz`
            (`marsyas/gtzan`) is read from that archive, any other through `datasets.load_dataset`.
        audio_column, label_column: columns of a Hub dataset, or the label column of a list. `label_column=None`
            reads audio without labels (self-supervised pretraining): a folder's files need no class folder, a list
            or Hub dataset no label column, and every song gets the one label `UNLABELED`.
        path_column: the path column of a list (default: the first of `path`, `file`, `filename`, `audio`).
        revision: Hub revision (branch, tag or commit).
        num_proc: processes that read the files (default: all cores).
        cache_dir: where file checks are cached and Hub archives are unpacked (default: `gtzan_hf` in the datasets
            cache).
        check: read every file now (below); `False` lists the songs only, for callers that check each file as they
            stream it.

    Every file is read once: unreadable, empty (shorter than 30 ms), silent (peak at or below -80 dBFS) or non-finite
    files are skipped with a warning naming each, and returned in `Corpus.skipped`.
    """
    skipped: list[dict] = []
    path = Path(source)
    if path.is_dir():
        songs, fingerprint = _from_folder(path, skipped, labelled=label_column is not None)
    elif path.is_file() and path.suffix.lower() in LIST_EXTENSIONS:
        songs, fingerprint = _from_list(path, path_column, label_column)
    elif path.exists():
        raise ValueError(f"{source} is a file but not a list: pass a folder or a {sorted(LIST_EXTENSIONS)} list.")
    else:
        songs, fingerprint = _load_hub_source(
            str(source), audio_column, label_column, revision, num_proc, cache_dir, skipped
        )
    if not check:
        return Corpus(songs, fingerprint, str(source), skipped)
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
    problems = list(checked["problem"])
    usable = [index for index, problem in enumerate(problems) if not problem]
    for index, problem in enumerate(problems):
        if problem:
            audio = songs[index]["audio"]
            skipped.append({"song_id": songs[index]["song_id"], "path": audio["path"], "reason": problem})
    for entry in skipped:
        logger.warning("Skipping %s (%s): %s", entry["song_id"], entry["path"], entry["reason"])
    if not usable:
        raise ValueError(f"None of the {len(songs)} files of {source} could be used; see the warnings above.")
    songs = songs.select(usable)
    counts = Counter(songs.features["label"].int2str(label) for label in songs["label"])
    logger.info(
        "%s: %d songs in %d classes (%s); %d skipped", source, len(songs), len(counts), dict(counts), len(skipped)
    )
    return Corpus(songs, Hasher.hash((fingerprint, usable)), str(source), skipped)


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
    source, audio_column, label_column, revision, num_proc, cache_dir, skipped: list[dict]
) -> tuple[Dataset, str]:
    try:
        folder = hub_archive_folder(source, revision, cache_dir)
        if folder is not None:
            return _from_folder(folder, skipped, labelled=label_column is not None)
        return _from_hub(source, audio_column, label_column, revision, num_proc)
    except (OSError, ConnectionError, datasets.exceptions.DatasetNotFoundError) as error:
        if datasets.config.HF_HUB_OFFLINE:
            raise ValueError(
                f"{source!r} is not a local folder or list, and could not be loaded from the Hugging Face Hub: "
                f"HF_HUB_OFFLINE=1 and it is not in the cache ({huggingface_hub.constants.HF_HUB_CACHE}). Load it "
                "once online, or pass a local folder (genres/<genre>/<genre>.000NN.wav)."
            ) from error
        first_line = str(error).partition("\n")[0]  # huggingface_hub's messages run over several lines
        raise ValueError(
            f"{source!r} is not a local folder or list, and could not be loaded from the Hugging Face Hub "
            f"({type(error).__name__}: {first_line}). Without internet, download GTZAN elsewhere and pass its folder "
            "(genres/<genre>/<genre>.000NN.wav), or generate a corpus with "
            "`python -m gtzan_hf.data.synthetic OUT_DIR`."
        ) from error
