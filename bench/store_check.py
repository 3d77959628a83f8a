"""Cost of validating a slice store where it is opened, and of the full check. Prints JSON.

Writes a store of ``--n`` noisy ring slices at ``--size`` px (gzip, as ``tagseg prepare`` writes;
``--n 4096 --size 256`` is ~1 GB of images + masks uncompressed), then times, best of ``--repeat``:

Wall and CPU seconds (CPU is the fairer figure on a shared machine):

* ``check_store``: the check run on every open (layout, dtypes, meta lengths, split values);
* ``h5py_read``: reading ``/images`` and ``/masks`` whole with h5py (no checks: the old ``read_store``);
* ``read_store``: tagseg's read, block by block, with the value checks (finite, [0, 1], labels);
* ``verify_store``: the full check (``tagseg store check`` and every writer before its rename).

Usage: ``python bench/store_check.py [--n 4096] [--size 256] [--repeat 2] [--dir /tmp]``
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from tagseg.io.store import StoreWriter, check_store, read_store, verify_store


def rings(n: int, size: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[:size, :size]
    r = np.hypot(yy - size / 2, xx - size / 2)
    masks = np.where(r < size * 0.12, 3, np.where(r < size * 0.2, 2, 0)).astype(np.uint8)
    base = np.where(masks == 3, 0.9, np.where(masks == 2, 0.4, 0.1)).astype(np.float32)
    images = np.clip(base + rng.normal(0, 0.03, (n, size, size)).astype(np.float32), 0, 1)
    return images, np.broadcast_to(masks, (n, size, size))


def write(path: Path, n: int, size: int) -> float:
    rng = np.random.default_rng(0)
    start = time.perf_counter()
    with StoreWriter(path, (size, size), name="bench", verify=False) as w:
        for i in range(0, n, 256):
            k = min(256, n - i)
            images, masks = rings(k, size, rng)
            meta = {
                "subject": [f"s{(i + j) // 50}" for j in range(k)],
                "slice": [0] * k,
                "frame": [(i + j) % 25 for j in range(k)],
                "n_frames": [25] * k,
                "phase": [""] * k,
                "group": ["control"] * k,
                "spacing_mm": [[1.4, 1.4]] * k,
                "source": ["bench"] * k,
                "split": ["train"] * k,
            }
            w.append(images, masks, meta)
    return time.perf_counter() - start


def best(fn, repeat: int) -> dict[str, float]:
    """Best wall and CPU seconds of ``repeat`` runs (CPU time is the fairer figure on a shared machine)."""
    wall, cpu = [], []
    for _ in range(repeat):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return {"wall_s": round(min(wall), 3), "cpu_s": round(min(cpu), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4096)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--dir", default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(dir=args.dir) as d:
        path = Path(d) / "bench.h5"
        write_s = write(path, args.n, args.size)

        def h5py_read() -> None:
            with h5py.File(path, "r") as f:
                f["images"][...], f["masks"][...]

        result = {
            "n_slices": args.n,
            "size": args.size,
            "uncompressed_mb": round(args.n * args.size**2 * 5 / 1e6, 1),
            "file_mb": round(path.stat().st_size / 1e6, 1),
            "write_s": round(write_s, 2),
            "check_store": best(lambda: check_store(path), args.repeat),
            "h5py_read": best(h5py_read, args.repeat),
            "read_store": best(lambda: read_store(path, extras=False), args.repeat),
            "verify_store": best(lambda: verify_store(path), args.repeat),
        }
        result["read_checks_overhead_cpu_pct"] = round(
            100 * (result["read_store"]["cpu_s"] / result["h5py_read"]["cpu_s"] - 1), 1
        )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
