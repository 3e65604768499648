"""A run's output folder: one run writes in it at a time ([`RunLock`]). Fine-tuning and pretraining take it with
[`holds_output_dir`]."""

import errno
import functools
import inspect
import itertools
import json
import logging
import os
import socket
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from datetime import datetime
from pathlib import Path

import torch
from filelock import FileLock, Timeout

logger = logging.getLogger(__name__)

# `_*` files are left out of the Trainer's pushes to the Hub.
LOCK_NAME = "_run.lock"
# flock's errors on file systems without locks (NFS without lockd, some FUSE mounts)
NO_LOCKS = (errno.ENOLCK, errno.ENOSYS, errno.EOPNOTSUPP)


class RunInUseError(OSError):
    """Another run holds the lock of the output folder."""


def _holder_record() -> bytes:
    since = datetime.now().astimezone().isoformat(timespec="seconds")
    return json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "since": since}).encode()


def _describe_holder(record: bytes) -> str:
    try:
        holder = json.loads(record)
        return f"process {holder['pid']} on host {holder['host']} (since {holder['since']})"
    except (ValueError, TypeError, KeyError):  # not written yet, or not ours
        return "another process"


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
def output_dir_held(training_args) -> Iterator[None]:
    """
    Run in `training_args.output_dir` as its one writer. The processes of one `torchrun` / `accelerate launch` run
    are one writer: the main process holds the [`RunLock`] (it is the one that writes the run's files), and if it is
    refused, every process raises its error instead of waiting for it at the next barrier.
    """
    with ExitStack() as held:
        refusal = None
        if training_args.process_index == 0:
            try:
                held.enter_context(RunLock(training_args.output_dir))
            except OSError as error:
                refusal = error
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
