"""A run's output folder: one run writes in it at a time ([`RunLock`]), and a save that fails for want of disk space
is one clear error ([`full_disk_reported`]). Fine-tuning and pretraining get both from [`holds_output_dir`]."""

import errno
import functools
import inspect
import itertools
import json
import logging
import os
import shutil
import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path

import torch
from filelock import FileLock, Timeout

from ..errors import UserError

logger = logging.getLogger(__name__)

# `_*` files are left out of the Trainer's pushes to the Hub.
LOCK_NAME = "_run.lock"
# flock's errors on file systems without locks (NFS without lockd, some FUSE mounts)
NO_LOCKS = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP)
# A save that fails with less than this left is taken for a full disk: torch's and safetensors' writers report it
# without an errno, and the partial file they leave holds what space there was.
FULL_DISK_MARGIN = 64 * 2**20


class RunInUseError(UserError, OSError):
    """Another run holds the lock of the output folder."""


class DiskFullError(UserError, OSError):
    """A save failed: the output folder's file system is full."""


def _holder_record() -> bytes:
    since = datetime.now().astimezone().isoformat(timespec="seconds")
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": since}).encode()


def _describe_holder(record: bytes) -> str:
    try:
        holder = json.loads(record)
        return f"process {holder['pid']} on host {holder['host']} (since {holder['since']})"
    except (ValueError, TypeError, KeyError):  # not written yet, or not ours
        return "another process"


def _size(num_bytes: int) -> str:
    if num_bytes < 1000:
        return f"{num_bytes} B"
    exponent = min((len(str(num_bytes)) - 1) // 3, 4)  # kB to TB
    return f"{num_bytes / 1000**exponent:.1f} {'kMGT'[exponent - 1]}B"


class RunLock:
    """
    The lock of a run's output folder (`LOCK_NAME` in it), as a context manager. While a run holds it, another one
    on the folder is refused with a [`RunInUseError`] that names the holder: its process id, host and start, which
    the holder writes in the lock file.

    The lock is an flock (`filelock`): the operating system releases it when its process ends, however it ends (on
    another host of a network file system too), so a lock file left by a killed run is free and is taken over, with
    a warning naming the run that left it. A release removes the lock file, and the folders that taking the lock
    created if nothing else was written in them. On a file system without locks the run goes on unlocked, with a
    warning.
    """

    def __init__(self, output_dir: str | os.PathLike):
        self.output_dir = Path(output_dir)
        self.path = self.output_dir / LOCK_NAME
        self._lock = FileLock(self.path, timeout=0, on_acquired=self._record_holder)
        self._created: list[Path] = []

    def _record_holder(self, fd: int) -> None:
        # A release removes the file: a record in it was left by a run that never released its lock.
        left = os.pread(fd, 4096, 0)
        if left:
            logger.warning(
                "Taking over the lock of %s, left by %s: that run ended without releasing it (it was killed, or its "
                "machine stopped).",
                self.output_dir,
                _describe_holder(left),
            )
        os.ftruncate(fd, 0)
        os.pwrite(fd, _holder_record(), 0)

    def __enter__(self) -> "RunLock":
        folders = (self.output_dir, *self.output_dir.parents)
        self._created = list(itertools.takewhile(lambda folder: not folder.exists(), folders))
        self.output_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._lock.acquire()
        except Timeout:
            try:
                holder = _describe_holder(self.path.read_bytes())
            except FileNotFoundError:  # released since
                holder = "another process"
            raise RunInUseError(
                f"{self.output_dir} is in use by another run: {holder} holds its lock ({self.path}). Wait for that "
                "run to end (or stop it), or choose another --output_dir."
            ) from None
        except OSError as error:
            if error.errno not in NO_LOCKS:
                raise
            logger.warning(
                "Cannot lock %s (%s): its file system has no locks, so nothing stops another run from writing in it "
                "at the same time.",
                self.output_dir,
                error.strerror,
            )
        return self

    def __exit__(self, *exc_info) -> None:
        # removed while still held: a lock file that stays behind is one a run did not release
        self.path.unlink(missing_ok=True)
        if self._lock.is_locked:
            self._lock.release()
        for folder in self._created:  # deepest first; one that holds anything stays, and so do its parents
            try:
                folder.rmdir()
            except OSError:
                break


@contextmanager
def full_disk_reported(folder: str | os.PathLike) -> Iterator[None]:
    """
    Raise an error of the block as a [`DiskFullError`] naming `folder` and its free space when `folder`'s file system
    is full: a write that failed with `ENOSPC`, or an error without an errno (torch's writer raises C++ errors such as
    `basic_ios::clear` or `inline_container.cc ... unexpected pos`, safetensors a `SafetensorError`) with less than
    `FULL_DISK_MARGIN` left. Other errors go through as they are.
    """
    try:
        yield
    except Exception as error:
        if isinstance(error, ValueError) or (isinstance(error, OSError) and error.errno != errno.ENOSPC):
            raise  # a user error of its own, or another I/O error
        folder = Path(folder)
        usage = shutil.disk_usage(next(p for p in (folder, *folder.parents) if p.exists()))
        if usage.free >= FULL_DISK_MARGIN:
            raise  # another disk (a cache folder), or not a full disk
        raise DiskFullError(
            f"No space left for {folder}: a save failed with {_size(usage.free)} free of {_size(usage.total)} on its "
            "file system. Free some space, then run the same command again: it resumes from the last complete "
            "checkpoint (one left incomplete by the failed save is skipped)."
        ) from error


@contextmanager
def output_dir_held(training_args) -> Iterator[None]:
    """
    Run in `training_args.output_dir` as its one writer, with a full disk reported by [`full_disk_reported`]. The
    processes of one `torchrun` / `accelerate launch` run are one writer: the main process holds the [`RunLock`]
    (it is the one that writes the run's files), and if it is refused, every process raises its error instead of
    waiting for it at the next barrier.
    """
    with full_disk_reported(training_args.output_dir), ExitStack() as held:
        refusal = None
        if training_args.process_index == 0:
            try:
                held.enter_context(RunLock(training_args.output_dir))
            except RunInUseError as error:
                refusal = error
            except OSError as error:  # a folder that cannot be written: the user's to fix
                refusal = UserError(
                    f"Cannot write in --output_dir {training_args.output_dir}: {error.strerror or error}. Fix its "
                    "permissions, or choose another --output_dir."
                )
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            shared = [refusal]
            torch.distributed.broadcast_object_list(shared, src=0)
            refusal = shared[0]
        if refusal is not None:
            raise refusal
        yield


def holds_output_dir(run: Callable) -> Callable:
    """Decorate `run(..., training_args, ...)` (fine-tuning, pretraining) to run inside
    [`output_dir_held`]`(training_args)`."""
    signature = inspect.signature(run)

    @functools.wraps(run)
    def held(*args, **kwargs):
        with output_dir_held(signature.bind(*args, **kwargs).arguments["training_args"]):
            return run(*args, **kwargs)

    return held
