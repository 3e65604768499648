"""
The released SSAST checkpoints by name: `resolve_checkpoint("SSAST-Base-Patch-400")` downloads the file once from its
official link (the "Pretrained-Models" table of https://github.com/YuanGongND/ssast) into the Hugging Face cache
folder, `$HF_HOME/ssast-checkpoints/` (`~/.cache/huggingface/ssast-checkpoints/` by default; not in the Hub cache,
whose own layout `hf cache` tools expect), and returns its path.

A download is written to a temporary file in that folder, its size checked against `Content-Length`, synced to disk
and verified as a loadable original pretraining checkpoint before it is renamed into place: a partial or corrupt file
is never used. Next to each checkpoint, `<name>.pth.provenance.json` records its provenance (official URL, where it
was downloaded from, sha256: the original repository publishes no checksum), which `gtzan_hf.models.convert` stores in
the converted model's config as `source_checkpoint`. [`load_original_checkpoint`] reads any original `.pth` safely.

`SSAST_CHECKPOINT_MIRROR=<url prefix>` fetches `<prefix>/<name>.pth` instead (clusters without Dropbox, tests).
Offline (`HF_HUB_OFFLINE=1`) the cached file is used; with nothing cached, the error says which URL to fetch by hand
and where to put the file.

PyTorch pickles are only ever read with `torch.load(weights_only=True)`. A file it refuses (one holding other Python
objects than tensors, which could run code when loaded) is reported in one line by [`refused_pickle`]: what torch
found, and what to do, never torch's own advice to pass `weights_only=False`. [`safe_model_weights`] does so for the
weights of a model given by folder or Hub id.
"""

import hashlib
import json
import logging
import os
import pickle
import re
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from contextlib import contextmanager
from http.client import HTTPException
from pathlib import Path

import torch
from filelock import FileLock
from huggingface_hub import constants, is_offline_mode
from huggingface_hub.utils import tqdm

from ..errors import UserError

logger = logging.getLogger(__name__)

# The original repository's direct links (Dropbox, `?dl=1`: no sign-in, wget works).
RELEASED_CHECKPOINTS = {
    "SSAST-Base-Patch-400": "https://www.dropbox.com/s/ewrzpco95n9jdz6/SSAST-Base-Patch-400.pth?dl=1",
    "SSAST-Base-Frame-400": "https://www.dropbox.com/s/nx6nl4d4bl71sm8/SSAST-Base-Frame-400.pth?dl=1",
    "SSAST-Base-Patch-250": "https://www.dropbox.com/s/mxrm9qog6aj8hif/SSAST-Base-Patch-250.pth?dl=1",
    "SSAST-Base-Frame-250": "https://www.dropbox.com/s/4e6l7ulhwrfoana/SSAST-Base-Frame-250.pth?dl=1",
    "SSAST-Small-Patch-400": "https://www.dropbox.com/s/i24w446rl9pkf05/SSAST-Small-Patch-400.pth?dl=1",
    "SSAST-Tiny-Patch-400": "https://www.dropbox.com/s/fkbtf78y94113wz/SSAST-Tiny-Patch-400.pth?dl=1",
    "SSAST-Tiny-Frame-400": "https://www.dropbox.com/s/rx7g60ruzawffzv/SSAST-Tiny-Frame-400.pth?dl=1",
}
MIRROR_ENV = "SSAST_CHECKPOINT_MIRROR"
CHUNK_SIZE = 1 << 20
# torch's reason for refusing a pickle, e.g. "Unsupported global: GLOBAL module.Class"; the rest of its message advises
# weights_only=False, that is, running the file's code.
REFUSAL_REASON = re.compile(r"WeightsUnpickler error: (.+?)(?: was not an allowed global|\.?$)", re.M)
MODEL_WEIGHTS_REMEDY = (
    "Expected weights of tensors only, as save_pretrained writes them (model.safetensors): if you trust this model, "
    "have it saved again with save_pretrained."
)


def released_name(name_or_path: str | os.PathLike) -> str | None:
    """The canonical released name (`SSAST-Base-Patch-400`) for `name_or_path` in any case, `.pth` or not; `None`
    for anything else, paths with a folder included."""
    text = os.fspath(name_or_path)
    if Path(text).name != text:
        return None
    stem = text[: -len(".pth")] if text.lower().endswith(".pth") else text
    return next((name for name in RELEASED_CHECKPOINTS if name.lower() == stem.lower()), None)


def cache_dir() -> Path:
    """Where released checkpoints are kept: `$HF_HOME/ssast-checkpoints`."""
    return Path(constants.HF_HOME) / "ssast-checkpoints"


def download_url(name: str) -> str:
    """The official link of a released checkpoint, or `$SSAST_CHECKPOINT_MIRROR/<name>.pth` where that is set."""
    mirror = os.environ.get(MIRROR_ENV)
    return f"{mirror.rstrip('/')}/{name}.pth" if mirror else RELEASED_CHECKPOINTS[name]


def resolve_checkpoint(name_or_path: str | os.PathLike) -> Path:
    """
    The local file of an original SSAST checkpoint. An existing path, or anything that is not a released name, is
    returned as is; a released name (see `RELEASED_CHECKPOINTS`, any case, `.pth` or not) gives its cached file,
    downloaded and verified on first use. A cached file without a provenance record (put there by hand) is verified
    once; one that fails is downloaded again.

    Raises:
        `ConnectionError`: offline or unreachable with nothing cached (the message says what to fetch, and where to).
        `OSError`: an incomplete download; `ValueError`: a downloaded file that is not an SSAST checkpoint.
    """
    path = Path(name_or_path).expanduser()
    name = released_name(name_or_path)
    if path.exists() or name is None:
        return path
    target = cache_dir() / f"{name}.pth"
    target.parent.mkdir(parents=True, exist_ok=True)
    # One download when several processes (torchrun) start together.
    with FileLock(f"{target}.lock"):
        if target.is_file():
            if _read_record(target) is not None:
                return target
            try:
                _write_record(target, {**_verified(target, name), "sha256": _sha256(target)})
                return target
            except ValueError as error:
                logger.warning("%s is not a usable checkpoint (%s): downloading it again.", target, error)
                target.unlink()
        _download(name, target)
    return target


def checkpoint_provenance(path: str | os.PathLike) -> dict:
    """`{"name", "sha256"}` of an original checkpoint file, plus `"url"` (the official link) and `"downloaded_from"`
    for a released one, as recorded when it was downloaded."""
    path = Path(path)
    record = _read_record(path)
    if record is not None:
        return record
    return {"name": path.name, "sha256": _sha256(path)}


def load_original_checkpoint(path: str | Path) -> dict[str, torch.Tensor]:
    """Loads an original `.pth` state dict safely (`weights_only=True`), with clear errors for other files."""
    path = Path(path)
    expected = "Expected a .pth state dict of tensors saved by the original SSAST/AST code"
    if not path.is_file():
        raise UserError(f"No checkpoint file at {path}: check the path. {expected}.")
    with open(path, "rb") as handle:
        head = handle.read(8)
    if not head:
        raise UserError(f"{path} is empty (0 bytes): download or copy the checkpoint again. {expected}.")
    try:
        state_dict = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        remedy = f"{expected}: if you trust this file, save its tensors alone (torch.save(model.state_dict(), PATH))"
        raise refused_pickle(str(path), error, f"{remedy} and pass that file.") from None
    except Exception as error:  # any other failure: not a (whole) PyTorch file
        found = str(error).strip().splitlines()[0] if str(error).strip() else "no message"
        raise UserError(
            f"Could not read {path} as a PyTorch checkpoint (it begins with {head!r}; {type(error).__name__}: "
            f"{found}). {expected}; the file may be damaged or truncated: download it again, or check that it is the "
            "right file."
        ) from None
    if not isinstance(state_dict, dict) or not all(isinstance(value, torch.Tensor) for value in state_dict.values()):
        raise UserError(
            f"{path} holds a {type(state_dict).__name__}, not a state dict of tensors. {expected} "
            "(`model.state_dict()`): pass such a file."
        )
    return state_dict


def checkpoint_kind(state_dict: dict[str, torch.Tensor]) -> str:
    """`"pretraining"` or `"finetuned"`: the kind of an original state dict (`module.` prefixes or not). Other state
    dicts are refused with a message saying what they hold."""
    keys = {key.removeprefix("module.") for key in state_dict}
    if {"p_input_fdim", "v.pos_embed"} <= keys:
        return "pretraining"
    if {"mlp_head.1.weight", "v.pos_embed"} <= keys:
        return "finetuned"
    found = ", ".join(sorted(keys)[:8]) or "no keys"
    raise UserError(
        f"Unknown checkpoint format: found keys {found}{' ...' if len(keys) > 8 else ''}. Expected an original SSAST "
        "pretraining checkpoint (module.v.*, module.p_input_fdim, module.cpredlayer.*) or a fine-tuned SSAST/AST "
        "checkpoint (v.*, mlp_head.*), or a transformers ASTForAudioClassification folder or Hub id: check that this "
        "is the checkpoint you meant."
    )


def refused_pickle(what: str, error: pickle.UnpicklingError, remedy: str) -> UserError:
    """
    The one-line error for `what` (a file, or a model's weights) refused by `torch.load(weights_only=True)` with
    `error`: the reason torch gives, then `remedy` (what to do) instead of torch's advice to pass `weights_only=False`.
    """
    reason = REFUSAL_REASON.search(str(error))
    return UserError(
        f"{what} was refused: it holds Python objects that could run code when loaded "
        f"({reason.group(1) if reason else 'not only tensors'}), and only tensors are read. {remedy}"
    )


def load_tensors(path: str | os.PathLike, remedy: str):
    """
    `torch.load(path, weights_only=True)` on the CPU, memory-mapped where the file's format allows (checking a file
    then costs little memory); a file it refuses raises [`refused_pickle`]'s `ValueError` with `remedy`.
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=zipfile.is_zipfile(path))
    except pickle.UnpicklingError as error:
        raise refused_pickle(str(path), error, remedy) from None


def check_model_weights(folder: str | os.PathLike, remedy: str = MODEL_WEIGHTS_REMEDY) -> None:
    """
    Refuse, in one line naming the file, a saved model folder (or a Trainer checkpoint) whose PyTorch weights hold
    Python objects that could run code when loaded: the `pytorch_model*.bin` files, which `from_pretrained` and the
    Trainer read when there are no safetensors weights. Anything else (a Hub id, safetensors weights) passes.
    """
    folder = Path(folder)
    if not folder.is_dir() or any(folder.glob("model*.safetensors*")):
        return
    for path in sorted(folder.glob("pytorch_model*.bin")):
        load_tensors(path, remedy)


@contextmanager
def safe_model_weights(model_id: str | os.PathLike) -> Iterator[None]:
    """
    Around a `from_pretrained(model_id)`: weights that hold Python objects besides tensors are refused in one line
    ([`refused_pickle`]), checked beforehand for a local folder ([`check_model_weights`], which names the file), and
    as they are read for a Hub id; files that cannot be had (missing from the folder or the Hub, the Hub offline) are
    the user's to fix too.
    """
    check_model_weights(model_id)
    try:
        yield
    except pickle.UnpicklingError as error:
        raise refused_pickle(f"A PyTorch weights file of {model_id}", error, MODEL_WEIGHTS_REMEDY) from None
    except OSError as error:
        raise UserError(str(error)) from error


def _download(name: str, target: Path) -> None:
    url = download_url(name)
    by_hand = f"download {url} by hand and save it as {target}"
    if is_offline_mode():
        raise UserError(f"{name} is not cached and the Hub is offline (HF_HUB_OFFLINE=1): {by_hand}.")
    descriptor, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    try:
        with os.fdopen(descriptor, "wb") as file:
            sha256 = _fetch(url, file, name, by_hand)
            file.flush()
            os.fsync(file.fileno())
        try:
            record = _verified(Path(partial), name, url)
        except ValueError as error:
            raise UserError(f"The file from {url} is not an SSAST checkpoint, discarded: {error}") from None
        os.replace(partial, target)
    finally:
        Path(partial).unlink(missing_ok=True)
    _write_record(target, {**record, "sha256": sha256})
    logger.info("Downloaded %s from %s to %s (sha256 %s).", name, url, target, sha256)


def _fetch(url: str, file, name: str, by_hand: str) -> str:
    """Streams `url` into `file` with a progress bar; returns the sha256 of the bytes received."""
    digest, received = hashlib.sha256(), 0
    request = urllib.request.Request(url, headers={"User-Agent": "gtzan-hf"})
    try:
        with urllib.request.urlopen(request, timeout=constants.HF_HUB_DOWNLOAD_TIMEOUT) as response:
            expected = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=expected, unit="B", unit_scale=True, unit_divisor=1024, desc=f"{name}.pth") as progress:
                while chunk := response.read(CHUNK_SIZE):
                    file.write(chunk)
                    digest.update(chunk)
                    received += len(chunk)
                    progress.update(len(chunk))
    except (urllib.error.URLError, HTTPException, TimeoutError, ConnectionError) as error:
        raise UserError(f"Could not download {name} ({error}): {by_hand}, or set {MIRROR_ENV}.") from error
    if expected is not None and received != expected:
        raise UserError(
            f"Incomplete download of {name}: {received} of {expected} bytes from {url}; run again to download it "
            f"again, or {by_hand}."
        )
    return digest.hexdigest()


def _verified(path: Path, name: str, url: str | None = None) -> dict:
    """Loads `path` as an original pretraining checkpoint (raises `ValueError` if it is not); returns its record."""
    if "module.p_input_fdim" not in load_original_checkpoint(path):
        raise UserError(f"{path.name} holds no module.p_input_fdim: not an original SSAST pretraining checkpoint.")
    record = {"name": name, "url": RELEASED_CHECKPOINTS[name]}
    return {**record, "downloaded_from": url} if url else record


def _record_path(path: Path) -> Path:
    return path.with_name(f"{path.name}.provenance.json")


def _read_record(path: Path) -> dict | None:
    """The provenance record of a downloaded checkpoint, if there is one for this very file (same size)."""
    try:
        record = json.loads(_record_path(path).read_text())
        size = path.stat().st_size
    except (OSError, ValueError):
        return None
    return record if record.pop("size", None) == size else None


def _write_record(path: Path, record: dict) -> None:
    partial = _record_path(path).with_suffix(".partial")
    partial.write_text(json.dumps({**record, "size": path.stat().st_size}, indent=2))
    os.replace(partial, _record_path(path))


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as file:
        while chunk := file.read(CHUNK_SIZE):
            digest.update(chunk)
    return digest.hexdigest()
