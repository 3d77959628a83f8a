"""Atomic, exclusive writes: a temporary name unique to the writer and a lock on the final name.

Every tagseg output that another process may read or write at the same time (slice stores,
translated stores, predict outputs, the stage cache) is written as:

1. take an exclusive lock (``filelock.FileLock``: ``flock`` on Unix) on ``.<name>.lock`` next to the
   final path (a second writer of the same output fails at once with one line, or waits when asked to);
2. write into ``.<name>.<pid>-<random>.partial`` (never shared by two writers);
3. :func:`publish` it: fsync its data, ``os.replace`` it onto the final name, fsync the folder; then
   release the lock.

A reader therefore sees either the previous complete file or the new complete one, never a
half-written file, and two writers never write into the same temporary file. The fsync before
the rename means a machine that crashes after it finds the new data under the final name, not
an empty or short file. The holder removes the lock file when it is done; a writer that locked a
lock file removed meanwhile retries on a new one (filelock checks), so two writers never both hold it.
Temporary files left by a writer that was killed are removed by the next writer holding the lock.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path

import filelock

from tagseg.errors import StoreError


def lock_path(path: str | os.PathLike) -> Path:
    """The lock file guarding ``path``: ``.<name>.lock`` in the same folder."""
    path = Path(path)
    return path.with_name(f".{path.name}.lock")


def temp_path(path: str | os.PathLike, keep_suffix: bool = False) -> Path:
    """A temporary name next to ``path``, unique to this writer (pid + random).

    ``keep_suffix`` repeats the final suffixes (``.nii.gz``, ``.png``) for writers that choose the
    format from the file name.
    """
    path = Path(path)
    tail = "".join(path.suffixes[-2:] if path.name.endswith(".nii.gz") else path.suffixes[-1:]) if keep_suffix else ""
    return path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.partial{tail}")


def remove_stale_partials(path: str | os.PathLike) -> list[Path]:
    """Remove temporary files of ``path`` left by killed writers (call only while holding its lock)."""
    path = Path(path)
    removed = []
    for stale in [*path.parent.glob(f".{path.name}.*.partial"), *path.parent.glob(f".{path.name}.*.partial.*")]:
        if stale.is_dir():
            shutil.rmtree(stale, ignore_errors=True)
        else:
            stale.unlink(missing_ok=True)
        removed.append(stale)
    return removed


def fsync_tree(path: str | os.PathLike) -> None:
    """Flush a file's data, or every file's and folder's under a folder, to the disk."""
    path = Path(path)
    paths = [path] if not path.is_dir() else [path, *sorted(path.rglob("*"))]
    for item in paths:
        if item.is_symlink():
            continue
        fd = os.open(item, os.O_RDONLY | (os.O_DIRECTORY if item.is_dir() else 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def publish(tmp: str | os.PathLike, path: str | os.PathLike) -> Path:
    """Move a finished temporary file (or folder) onto its final name: fsync, ``os.replace``, fsync the folder.

    Without the first fsync a crash soon after the rename can leave the final name pointing at a file whose
    data never reached the disk (empty or short); the last one makes the rename itself durable.
    """
    path = Path(path)
    fsync_tree(tmp)
    os.replace(tmp, path)
    fsync_folder(path.parent)
    return path


def fsync_folder(folder: Path) -> None:
    """Make the renames in ``folder`` durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class OutputLock:
    """An exclusive lock on an output path (a :class:`filelock.FileLock` on :func:`lock_path`).

    Args:
        path: the final output (file or folder).
        wait: block until the other writer is done instead of failing.
        what: how the output is named in the message (e.g. ``"slice store"``).

    Raises:
        StoreError: (``acquire``) another process holds the lock and ``wait`` is false:
            ``<path>: another tagseg process is writing this <what> (lock <lock>); ...``.
    """

    def __init__(self, path: str | os.PathLike, wait: bool = False, what: str = "output") -> None:
        self.path = Path(path)
        self.lock = lock_path(self.path)
        self.wait = wait
        self.what = what
        # not thread-local, not re-entrant across instances: a second OutputLock on the same output
        # (another writer, even in this process) must be refused like another process
        self._file_lock = filelock.FileLock(self.lock, timeout=-1 if wait else 0, thread_local=False)

    def acquire(self) -> OutputLock:
        self.lock.parent.mkdir(parents=True, exist_ok=True)
        try:
            self._file_lock.acquire()
        except filelock.Timeout:
            raise StoreError(
                f"{self.path}: another tagseg process is writing this {self.what} "
                f"(lock {self.lock}); wait for it to finish or choose another output"
            ) from None
        return self

    def release(self) -> None:
        if self._file_lock.is_locked:
            try:
                # removed while still held: a writer that opened this file meanwhile sees it unlinked and
                # retries on a new one (filelock checks the link count after locking)
                self.lock.unlink(missing_ok=True)
            finally:
                self._file_lock.release(force=True)

    @property
    def held(self) -> bool:
        return self._file_lock.is_locked

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike, wait: bool = False, what: str = "output") -> Iterator[Path]:
    """Lock ``path``, yield a unique temporary path, and move it onto ``path`` if the block succeeds.

    The temporary path does not exist yet: the block creates it (a file or a folder). On an
    exception it is removed and ``path`` is left as it was.

    Example::

        with atomic_path(out / "predictions.csv") as tmp:
            tmp.write_text(text)
    """
    path = Path(path)
    with OutputLock(path, wait=wait, what=what):
        remove_stale_partials(path)
        tmp = temp_path(path)
        try:
            yield tmp
            if path.is_dir() and tmp.is_dir():
                # a folder cannot be replaced in one step: move the old one aside first
                old = temp_path(path)
                fsync_tree(tmp)
                os.replace(path, old)
                os.replace(tmp, path)
                fsync_folder(path.parent)
                shutil.rmtree(old, ignore_errors=True)
            else:
                publish(tmp, path)
        except BaseException:
            if tmp.is_dir():
                shutil.rmtree(tmp, ignore_errors=True)
            else:
                tmp.unlink(missing_ok=True)
            raise


@contextlib.contextmanager
def replaced(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary name (same suffix) for one file of an output the caller has locked; move it onto
    ``path`` when the block succeeds, remove it when it fails."""
    path = Path(path)
    tmp = temp_path(path, keep_suffix=True)
    try:
        yield tmp
        publish(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` to ``path`` through a temporary name of this writer's own (small files: JSON, CSV, YAML)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replaced(path) as tmp:
        tmp.write_text(text)
    return path


__all__ = [
    "OutputLock",
    "atomic_path",
    "atomic_write_text",
    "fsync_folder",
    "fsync_tree",
    "lock_path",
    "publish",
    "remove_stale_partials",
    "replaced",
    "temp_path",
]
