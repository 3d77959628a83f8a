"""Benchmark of the per-epoch validation metrics: tagseg's Dice + HD95 vs MONAI's HD95. Prints JSON.

A validation-like batch of myocardial rings (prediction = the ground truth moved and resized a
little) and a batch of noisy early-training predictions, at 256x256 with anisotropic spacing:

* ``tagseg_auto``: :func:`tagseg.metrics.hd95_batch` (KD-tree for short boundaries, distance
  transforms for long ones);
* ``tagseg_kdtree`` / ``tagseg_edt``: each nearest-distance path forced;
* ``monai``: ``monai.metrics.compute_hausdorff_distance(percentile=95)`` on the same batch.

The values of every method are asserted equal. Times are the best of ``--repeat`` runs (the
machine may be shared), in ms per image.

Usage: ``python bench/metrics.py [--n 64] [--size 256] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch
from monai.metrics import compute_hausdorff_distance

from tagseg import metrics

SPACING = (1.43, 1.25)


def rings(n: int, size: int, rng: np.random.Generator, jitter: float) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    out = np.zeros((n, size, size), bool)
    for i in range(n):
        cy, cx = size / 2 + rng.uniform(-jitter, jitter, 2)
        r_in = size * (0.12 + rng.uniform(-0.01, 0.01))
        r_out = r_in + size * (0.07 + rng.uniform(-0.01, 0.01))
        r = np.hypot(yy - cy, xx - cx)
        out[i] = (r < r_out) & (r >= r_in)
    return out


def best_ms(fn, repeat: int, n: int) -> tuple[float, np.ndarray]:
    times, value = [], None
    for _ in range(repeat):
        t = time.perf_counter()
        value = fn()
        times.append(time.perf_counter() - t)
    return 1e3 * min(times) / n, np.asarray(value)


def run_case(pred: np.ndarray, target: np.ndarray, repeat: int) -> dict:
    n = len(pred)
    out: dict = {}
    values = {}
    for name, fraction in (("tagseg_auto", metrics.EDT_BOUNDARY_FRACTION), ("tagseg_kdtree", 1.0), ("tagseg_edt", 0.0)):
        saved = metrics.EDT_BOUNDARY_FRACTION
        metrics.EDT_BOUNDARY_FRACTION = fraction
        try:
            out[f"{name}_ms_per_image"], values[name] = best_ms(
                lambda: metrics.hd95_batch(pred, target, SPACING), repeat, n
            )
        finally:
            metrics.EDT_BOUNDARY_FRACTION = saved
    p_t, g_t = torch.from_numpy(pred[:, None]).float(), torch.from_numpy(target[:, None]).float()
    out["monai_ms_per_image"], monai = best_ms(
        lambda: compute_hausdorff_distance(p_t, g_t, include_background=True, percentile=95, spacing=SPACING)[
            :, 0
        ].numpy(),
        repeat,
        n,
    )
    out["dice_ms_per_image"], _ = best_ms(lambda: metrics.dice_batch(pred, target), repeat, n)
    for name, v in values.items():
        np.testing.assert_allclose(v, monai, rtol=1e-5, err_msg=name)
    out["speedup_auto_vs_monai"] = round(out["monai_ms_per_image"] / out["tagseg_auto_ms_per_image"], 2)
    out["hd95_mm_mean"] = round(float(values["tagseg_auto"].mean()), 3)
    return {k: round(v, 3) if isinstance(v, float) else v for k, v in out.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=64)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    target = rings(args.n, args.size, rng, jitter=2)
    pred = rings(args.n, args.size, rng, jitter=4)
    noisy = pred ^ (rng.random(pred.shape) < 0.05)
    result = {
        "n_images": args.n,
        "size": args.size,
        "spacing_mm": SPACING,
        "contours": run_case(pred, target, args.repeat),
        "noisy_predictions": run_case(noisy, target, args.repeat),
        "torch_threads": torch.get_num_threads(),
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
