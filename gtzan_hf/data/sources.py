"""Where songs come from: a local folder (GTZAN's layouts, any class-folder tree), a CSV/JSON list, or the Hub.

Every source becomes one `datasets.Dataset` of songs, one row per file, with the columns
- `audio`: `Audio(decode=False)`, i.e. `{"path", "bytes"}`: decoding is ours (soundfile, no FFmpeg needed);
- `label`: `ClassLabel` with the class (genre) names;
- `song_id`: a string unique in the corpus: the file name without extension (GTZAN: `"jazz.00054"`); for the songs
  whose name other songs share, `"<label>/<name>"`, else the row number.
Files that cannot be used are skipped with a warning naming each, and listed in `Corpus.skipped`; a class left
without songs is left out of the labels with a warning naming it, and listed in `Corpus.dropped_classes`.
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
import xxhash
from datasets import Audio, ClassLabel, Dataset, Features, Value
from datasets.fingerprint import Hasher
from filelock import FileLock

from ..errors import UserError
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
# Version of the file checks (`audio.check_recording`): a new rule makes earlier cached verdicts stale (3: the
# bounds on decoded size; 4: the content hashes).
CHECK_VERSION = 4
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


def _walk(root: Path) -> tuple[list[Path], list[Path]]:
    """
    The audio files (by extension) and the folders under `root`, hidden ones (`.git/`, macOS's `._song.wav`) aside.
    Links to folders are followed (a class folder may live on another disk), each real folder once: a link into the
    tree itself (to an ancestor, a loop, or a sibling) or to a folder reached already is not followed, with a warning.
    A broken link to a folder is warned about; a broken link named like an audio file is returned, to be reported.
    """
    own = {os.path.realpath(folder) for folder, _, _ in os.walk(root)}  # read where they are, never through a link
    reached = {os.path.realpath(root)}
    files, folders = [], []
    for folder, dirnames, filenames in os.walk(root, followlinks=True):
        folders.append(Path(folder))
        followed = []
        for name in sorted(name for name in dirnames if not name.startswith(".")):
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
            elif path.is_symlink() and not path.exists():
                logger.warning("Not reading %s: a broken link (to %s, which does not exist)", path, os.readlink(path))
    return files, folders


def _from_folder(
    root: Path, skipped: list[dict], dropped: dict[str, str], labelled: bool = True
) -> tuple[Dataset, str]:
    """
    Every audio file under `root` (recursively, through links to folders), labelled by the folder it is in: GTZAN's
    `genres/<genre>/<genre>.000NN.au`, Kaggle's `Data/genres_original/<genre>/...wav`, or any `<class>/<file>` tree.
    Other files (images, CSV features, `.mf` lists) are ignored. One file reached twice (through a link) or two files
    of one name in one class folder (say a `.au` and a `.wav` copy of the same song) would leak between splits: the
    second is skipped and reported, a file reached through no link kept first. A class folder beside others that
    holds no audio file is warned about and added to `dropped`. Unlabelled (`labelled=False`), files may lie
    anywhere under `root` and all get the label `UNLABELED`.
    """
    files, folders = _walk(root)
    real_root = Path(os.path.realpath(root))
    files.sort(key=lambda path: (Path(os.path.realpath(path)) != real_root / path.relative_to(root), path))
    found, labels = [], []
    for path in files:
        label = path.parent.name if labelled else UNLABELED
        if labelled and path.parent == root:
            _skip(skipped, path.stem, str(path), None, "not inside a class folder")
        elif not path.exists():
            _skip(
                skipped, path.stem, str(path), label, f"a broken link (to {os.readlink(path)}, which does not exist)"
            )
        else:
            found.append(path)
            labels.append(label)
    kept: dict[tuple[str, str], Path] = {}
    for index in _distinct_files(found, labels, skipped):
        path, label = found[index], labels[index]
        if (label, path.stem) in kept:
            _skip(skipped, path.stem, str(path), label, f"duplicate of {kept[(label, path.stem)]}")
        else:
            kept[(label, path.stem)] = path
    if not kept:
        raise UserError(
            f"No audio files ({', '.join(sorted(AUDIO_EXTENSIONS))}) in class folders under {root}. Expected "
            "GTZAN's layout (genres/<genre>/<genre>.000NN.wav) or <class>/<file> sub-folders."
        )
    paths = sorted(kept.values())
    labels = [p.parent.name if labelled else UNLABELED for p in paths]
    if labelled:
        class_parents = {path.parent.parent for path in paths}
        holding_audio = {folder for path in files for folder in path.parents}
        for folder in folders:
            if folder.parent in class_parents and folder not in holding_audio and folder.name not in labels:
                reason = f"its folder {folder} holds no audio files ({', '.join(sorted(AUDIO_EXTENSIONS))})"
                _leave_out(dropped, folder.name, reason)
    return _from_records([str(p) for p in paths], labels, str(root))


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

    Every file is read once: unreadable, too large (more than 16 channels or an hour of 48 kHz stereo, from its
    header), empty (shorter than 30 ms), silent (peak at or below -80 dBFS) or non-finite files are skipped with a
    warning naming each, and returned in `Corpus.skipped`. A class none of whose files can be used, or whose folder
    holds no audio, is left out of the labels with a warning naming it, and returned in `Corpus.dropped_classes`.
    Each usable file's [`content_hash`] is kept in `Corpus.content_hashes`.
    """
    skipped: list[dict] = []
    dropped: dict[str, str] = {}
    path = Path(source)
    if path.is_dir():
        songs, fingerprint = _from_folder(path, skipped, dropped, labelled=label_column is not None)
    elif path.is_file() and path.suffix.lower() in LIST_EXTENSIONS:
        songs, fingerprint = _from_list(path, path_column, label_column, skipped)
    elif path.exists():
        raise UserError(f"{source} is a file but not a list: pass a folder or a {sorted(LIST_EXTENSIONS)} list.")
    else:
        songs, fingerprint = _load_hub_source(
            str(source), audio_column, label_column, revision, num_proc, cache_dir, skipped, dropped
        )
    if not check:
        return Corpus(songs, fingerprint, str(source), skipped, dropped)
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
    return Corpus(songs, fingerprint, str(source), skipped, dropped, content_hashes)


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
