"""Atomic, exclusive writes: a temporary name unique to the writer and a lock on the final name.

Every tagseg output that another process may read or write at the same time (slice stores,
translated stores, predict outputs, the stage cache) is written as:

1. take an exclusive ``fcntl.flock`` on ``.<name>.lock`` next to the final path (a second writer of
   the same output fails at once with one line, or waits when asked to);
2. write into ``.<name>.<pid>-<random>.partial`` (never shared by two writers);
3. ``os.replace`` it onto the final name, then release the lock.

A reader therefore sees either the previous complete file or the new complete one, never a
half-written file, and two writers never write into the same temporary file. The holder
removes the (empty) lock file when it is done; a writer that locked a lock file removed meanwhile
retries on the new one, so two writers never both hold the lock.
Temporary files left by a writer that was killed are removed by the next writer holding the lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import IO

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


class OutputLock:
    """An exclusive lock on an output path (``fcntl.flock`` on :func:`lock_path`).

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
        self._fh: IO[str] | None = None

    def acquire(self) -> OutputLock:
        self.lock.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fh = open(self.lock, "a")
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                if not self.wait:
                    fh.close()
                    raise StoreError(
                        f"{self.path}: another tagseg process is writing this {self.what} "
                        f"(lock {self.lock}); wait for it to finish or choose another output"
                    ) from None
                fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                same = os.fstat(fh.fileno()).st_ino == os.stat(self.lock).st_ino
            except FileNotFoundError:
                same = False
            if same:
                self._fh = fh
                return self
            fh.close()  # the holder removed this lock file as we took it: lock the new one

    def release(self) -> None:
        if self._fh is not None:
            try:
                self.lock.unlink(missing_ok=True)
                fcntl.flock(self._fh, fcntl.LOCK_UN)
            finally:
                self._fh.close()
                self._fh = None

    @property
    def held(self) -> bool:
        return self._fh is not None

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
                os.replace(path, old)
                os.replace(tmp, path)
                shutil.rmtree(old, ignore_errors=True)
            else:
                os.replace(tmp, path)
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
        os.replace(tmp, path)
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
    "lock_path",
    "remove_stale_partials",
    "replaced",
    "temp_path",
]
