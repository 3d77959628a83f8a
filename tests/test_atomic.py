"""tagseg.io.atomic: data reaches the disk before the rename that publishes it; one lock (filelock) across processes."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from tagseg.errors import StoreError
from tagseg.io import atomic
from tagseg.io.atomic import OutputLock, atomic_path, atomic_write_text, lock_path, publish


@pytest.fixture()
def disk_calls(monkeypatch) -> list[tuple[str, int]]:
    """Every os.fsync and os.replace, in order: ("fsync", inode) and ("replace", inode of the source)."""
    calls: list[tuple[str, int]] = []
    fsync, replace = os.fsync, os.replace

    def recording_fsync(fd: int) -> None:
        calls.append(("fsync", os.fstat(fd).st_ino))
        fsync(fd)

    def recording_replace(src, dst) -> None:
        calls.append(("replace", os.stat(src).st_ino))
        replace(src, dst)

    monkeypatch.setattr(atomic.os, "fsync", recording_fsync)
    monkeypatch.setattr(atomic.os, "replace", recording_replace)
    return calls


def test_publish_fsyncs_the_file_before_the_rename_and_the_folder_after(tmp_path, disk_calls):
    tmp = tmp_path / ".x.partial"
    tmp.write_text("data")
    file_ino, folder_ino = tmp.stat().st_ino, tmp_path.stat().st_ino
    publish(tmp, tmp_path / "x.json")
    assert disk_calls == [("fsync", file_ino), ("replace", file_ino), ("fsync", folder_ino)]
    assert (tmp_path / "x.json").read_text() == "data" and not tmp.exists()


def test_atomic_write_text_goes_through_publish(tmp_path, disk_calls):
    atomic_write_text(tmp_path / "a" / "summary.json", "{}")
    assert [kind for kind, _ in disk_calls] == ["fsync", "replace", "fsync"]
    assert disk_calls[0][1] == disk_calls[1][1] == (tmp_path / "a" / "summary.json").stat().st_ino


def test_a_published_folder_has_every_file_synced_before_its_rename(tmp_path, disk_calls):
    with atomic_path(tmp_path / "out") as tmp:
        (tmp / "sub").mkdir(parents=True)
        (tmp / "sub" / "m.nii").write_bytes(b"1")
        (tmp / "p.csv").write_text("a")
        inodes = {p.stat().st_ino for p in [tmp, tmp / "sub", tmp / "sub" / "m.nii", tmp / "p.csv"]}
    rename = disk_calls.index(("replace", (tmp_path / "out").stat().st_ino))
    assert {ino for kind, ino in disk_calls[:rename] if kind == "fsync"} == inodes
    assert (tmp_path / "out" / "sub" / "m.nii").read_bytes() == b"1"


HOLDER = """
import sys, time
from tagseg.io.atomic import OutputLock
with OutputLock(sys.argv[1]):
    print("held", flush=True)
    time.sleep(float(sys.argv[2]))
"""


def hold_lock(path: Path, seconds: float) -> subprocess.Popen[str]:
    """Another process holding the output lock of ``path`` for ``seconds``, once it has printed ``held``."""
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": root + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(HOLDER), str(path), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
    return proc


def test_a_lock_held_by_another_process_refuses_then_waits(tmp_path):
    out = tmp_path / "store.h5"
    holder = hold_lock(out, 1.0)
    try:
        with pytest.raises(StoreError, match=r"store\.h5: another tagseg process is writing this slice store"):
            OutputLock(out, what="slice store").acquire()
        start = time.monotonic()
        with OutputLock(out, wait=True) as lock:
            assert lock.held
        waited = time.monotonic() - start
    finally:
        holder.wait(timeout=30)
    assert holder.returncode == 0 and waited > 0.2
    assert not lock_path(out).exists()  # the holder's lock file is gone after the last release
