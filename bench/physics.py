"""Benchmark of the physics transform: naive per-image Bloch vs tagseg's cached pattern, and
``translate`` of a 1000-slice store end to end. Prints one JSON object.

(a) naive: the authors' style, per image: every pixel's magnetisation vector rotated pulse by
    pulse with ``scipy.spatial.transform.Rotation`` (RF about x, per-pixel gradient about z).
(b) tagseg: ``apply_tagging`` on a batch, ``|image| * P`` with the cached pattern ``P``.
Both give the same image (the max abs difference is asserted < 1e-5). Times are the best of
several runs (medians reported too): the benchmark machine may be shared.

Usage: ``python bench/physics.py [--n-slices 1000] [--naive-images 4] [--size 256]``
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from scipy.spatial.transform import Rotation

from tagseg.io.store import write_store
from tagseg.physics.tagging import apply_tagging
from tagseg.translate.physics import PhysicsTranslator

SPACING_PX, FLIP_DEG, PATTERN, ANGLE_DEG = 5.0, 70.0, (1.0, 3.0, 3.0, 1.0), 45.0


def naive_tagging(image: np.ndarray) -> np.ndarray:
    """One image, the authors' way: per-pixel vectors, one scipy Rotation per pulse and gradient."""
    h, w = image.shape
    x, y = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64), indexing="ij")
    m = np.zeros((h * w, 3))
    m[:, 2] = np.abs(image).reshape(-1)
    for angle in (ANGLE_DEG, ANGLE_DEG - 90.0):
        a = math.radians(angle)
        theta = (2 * math.pi / SPACING_PX) * (x * math.cos(a) + y * math.sin(a))
        gradient = Rotation.from_rotvec(np.outer(theta.reshape(-1), [0.0, 0.0, 1.0]))
        for i, wgt in enumerate(PATTERN):
            m = Rotation.from_euler("x", math.radians(FLIP_DEG) * wgt / sum(PATTERN)).apply(m)
            if i < len(PATTERN) - 1:
                m = gradient.apply(m)
        m[:, :2] = 0.0  # crusher
    return np.abs(m[:, 2]).reshape(h, w)


def cine_like(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` smooth random images in [0, 1] with a ring myocardium mask."""
    rng = np.random.default_rng(seed)
    r, c = np.mgrid[:size, :size]
    rad = np.hypot(r - size / 2, c - size / 2)
    base = np.clip(1.0 - rad / size, 0, 1).astype(np.float32)
    images = np.clip(base[None] + 0.1 * rng.standard_normal((n, size, size), dtype=np.float32), 0, 1)
    masks = np.broadcast_to(np.where((rad > size / 10) & (rad < size / 6), 2, 0).astype(np.uint8), images.shape)
    return images, np.ascontiguousarray(masks)


def _timed(fn, repeats: int) -> tuple[list[float], object]:
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return times, out


def bench_patterns(size: int, naive_images: int, batch: int = 64, repeats: int = 20) -> dict:
    """Per-image time of (a) and (b); best of several runs (the machine may be shared), medians too."""
    images, _ = cine_like(max(batch, naive_images), size)
    naive, naive_times = [], []
    for k in range(naive_images):
        (dt,), out = _timed(lambda k=k: naive_tagging(images[k]), 1)
        naive.append(out)
        naive_times.append(dt)
    batch_t = torch.from_numpy(images[:batch])
    t = time.perf_counter()
    first = apply_tagging(batch_t, SPACING_PX, FLIP_DEG, PATTERN, ANGLE_DEG)
    first_call_s = time.perf_counter() - t
    fast_times, out = _timed(lambda: apply_tagging(batch_t, SPACING_PX, FLIP_DEG, PATTERN, ANGLE_DEG), repeats)
    fast_times = [dt / batch for dt in fast_times]
    diff = max(float(np.abs(out[k].numpy() - naive[k]).max()) for k in range(naive_images))
    assert diff < 1e-5, f"cached pattern differs from the naive simulation by {diff}"
    assert torch.equal(first, out)
    naive_best, fast_best = min(naive_times), min(fast_times)
    return {
        "size": size,
        "naive_images_per_s": 1.0 / naive_best,
        "tagseg_images_per_s": 1.0 / fast_best,
        "ratio": naive_best / fast_best,
        "ratio_median": float(np.median(naive_times) / np.median(fast_times)),
        "tagseg_first_batch_ms": first_call_s * 1e3,
        "batch": batch,
        "max_abs_diff": diff,
    }


def bench_translate(n_slices: int, size: int) -> dict:
    with tempfile.TemporaryDirectory() as d:
        src, out = Path(d) / "cine.h5", Path(d) / "physics_cine.h5"
        images, masks = cine_like(n_slices, size)
        meta = {
            "subject": [f"s{i // 10}" for i in range(n_slices)],
            "slice": [i % 10 for i in range(n_slices)],
            "frame": [0] * n_slices,
            "n_frames": [1] * n_slices,
            "phase": ["ED"] * n_slices,
            "group": ["NOR"] * n_slices,
            "spacing_mm": [[1.4, 1.4]] * n_slices,
            "source": ["bench"] * n_slices,
            "split": ["train"] * n_slices,
        }
        t = time.perf_counter()
        write_store(src, images, masks, meta, name="bench")
        write_input_s = time.perf_counter() - t
        del images, masks
        report = PhysicsTranslator(progress=False).run(src, out)
        return {
            "n_slices": n_slices,
            "translate_s": report.seconds["total"],
            "seconds": {k: round(v, 3) for k, v in report.seconds.items()},
            "slices_per_s": n_slices / report.seconds["total"],
            "input_write_s": write_input_s,
            "input_mb": src.stat().st_size / 2**20,
            "output_mb": out.stat().st_size / 2**20,
        }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-slices", type=int, default=1000)
    parser.add_argument("--naive-images", type=int, default=4)
    parser.add_argument("--size", type=int, default=256)
    args = parser.parse_args()
    result = {
        "benchmark": "physics",
        "threads": torch.get_num_threads(),
        "cpus": os.cpu_count(),
        "pattern": bench_patterns(args.size, args.naive_images),
        "translate": bench_translate(args.n_slices, args.size),
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "goals": {"ratio": ">= 100", "translate_1000_s": "< 10"},
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
