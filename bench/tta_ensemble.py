"""Benchmark of test-time flips and ensembles on a phantom store's test split. Prints JSON.

For each configuration (each single model, each with ``tta=flip``, the ensemble of all models,
the ensemble with ``tta=flip``): mean / std of the per-image myocardium Dice on the store's
``test`` rows and the segmentation time per image (best of ``--repeat``; the machine may be shared).

Usage: ``python bench/tta_ensemble.py --store <phantom store.h5> --ckpt a.ckpt b.ckpt c.ckpt [--repeat 2]``
(``make demo``-style runs: ``logs/<task>/runs/<time>/checkpoints/best.ckpt``).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from tagseg.data.records import MYO
from tagseg.io.store import read_store
from tagseg.metrics import dice_batch
from tagseg.models.segmenter import Ensemble, load_segmenter


def measure(model, images: np.ndarray, truth: np.ndarray, tta: bool, repeat: int) -> dict[str, float]:
    best, labels = float("inf"), None
    for _ in range(repeat):
        t0 = time.perf_counter()
        labels = model.segment(images, batch_size=16, scaled=True, tta=tta)
        best = min(best, time.perf_counter() - t0)
    scores = dice_batch(labels == MYO, truth)
    return {
        "dice_mean": round(float(scores.mean()), 4),
        "dice_std": round(float(scores.std()), 4),
        "ms_per_image": round(1000 * best / len(images), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--store", required=True)
    parser.add_argument("--ckpt", nargs="+", required=True)
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    store = read_store(args.store, extras=False)
    test = np.asarray([str(s) == "test" for s in store.meta["split"]])
    images, truth = store.images[test], store.masks[test] == MYO
    models = {f"model{i + 1}": load_segmenter(p) for i, p in enumerate(args.ckpt)}
    if len(models) > 1:
        models["ensemble"] = Ensemble(list(models.values()))
    out = {
        "store": args.store,
        "n_test_images": int(test.sum()),
        "checkpoints": args.ckpt,
        "threads": args.threads,
        "results": {},
    }
    for name, model in models.items():
        knows_flips = all(m.flips for m in getattr(model, "members", [model]))
        for tta in (False, True) if knows_flips else (False,):  # tta=flip is refused for a model without flips
            out["results"][name + ("+tta_flip" if tta else "")] = measure(model, images, truth, tta, args.repeat)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
