"""Read offline W&B run files (``<dir>/wandb/offline-run-*/run-*.wandb``) in tests.

The ``.wandb`` file is a LevelDB-style log of protobuf ``Record`` messages (7-byte ``:W&B`` header,
32 KiB blocks of chunks: crc32c, length, type); wandb 0.31 has no Python reader of its own, and its
offline runs write no ``files/wandb-summary.json``.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

BLOCK = 32768
HEADER = 7  # checksum (4), length (2), type (1)
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: str | Path) -> Iterator[Any]:
    """Every protobuf ``Record`` of a ``.wandb`` file, in order."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = Path(path).read_bytes()
    assert data[:4] == b":W&B", f"{path}: not a W&B run file"
    pos, pending = 7, b""
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:  # block trailer padding
            pos += left
            continue
        _, length, kind = struct.unpack("<IHB", data[pos : pos + HEADER])
        if length == 0 and kind == 0:
            pos += left
            continue
        chunk = data[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind in (FULL, FIRST):
            pending = chunk
        else:
            pending += chunk
        if kind in (FULL, LAST):
            rec = pb.Record()
            rec.ParseFromString(pending)
            yield rec


def read_run(run_dir: str | Path) -> dict[str, Any]:
    """``{"name", "group", "tags", "job_type", "summary", "config", "history"}`` of one offline run folder."""
    (path,) = Path(run_dir).glob("run-*.wandb")
    out: dict[str, Any] = {"summary": {}, "config": {}, "history": []}
    for rec in records(path):
        kind = rec.WhichOneof("record_type")
        if kind == "run":
            out.update(
                name=rec.run.display_name, group=rec.run.run_group, tags=list(rec.run.tags), job_type=rec.run.job_type
            )
            for item in rec.run.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "config":
            for item in rec.config.update:
                out["config"][item.key] = json.loads(item.value_json)
        elif kind == "summary":
            for item in rec.summary.update:
                out["summary"][item.key or "/".join(item.nested_key)] = json.loads(item.value_json)
        elif kind == "history":
            out["history"].append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item})
    return out


def offline_runs(folder: str | Path, wait_s: float = 15.0) -> list[dict[str, Any]]:
    """Every offline run below ``folder`` (``**/wandb/offline-run-*``), read with :func:`read_run`.

    W&B's writer process may still be flushing a run file just after ``finish()``: a run whose file
    has no ``run`` record yet is read again (for up to ``wait_s`` seconds).
    """
    import time

    runs = []
    for d in sorted(Path(folder).glob("**/wandb/offline-run-*")):
        if not list(d.glob("run-*.wandb")):
            continue
        deadline = time.monotonic() + wait_s
        run = read_run(d)
        while "name" not in run and time.monotonic() < deadline:
            time.sleep(0.5)
            run = read_run(d)
        runs.append(run)
    return runs
