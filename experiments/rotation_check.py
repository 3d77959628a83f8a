"""How a model holds when the heart is turned in-plane: Dice of a store's test split rotated by each
angle, read as stored (``orientation.mode=none``) and with the orientation search (``auto``, which can
undo multiples of 90 degrees and mirrors, tagseg/models/orientation.py). Prints one JSON line per angle.
Run from the project root:

    .venv/bin/python experiments/rotation_check.py --ckpt logs/demo/runs/<time> \
        --store data/demo/phantom_tagged_128.h5 [--angles 0 20 45 70 90 135 180] [--split test]
"""

from __future__ import annotations

import argparse
import json

import numpy as np
from scipy.ndimage import rotate

from tagseg.conventions import MYO
from tagseg.io.store import read_store
from tagseg.metrics import dice
from tagseg.models.orientation import OrientationSettings, segment_in_views, subject_views
from tagseg.models.segmenter import load_segmenter


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", required=True)
    parser.add_argument("--store", required=True)
    parser.add_argument("--split", default="test")
    parser.add_argument("--angles", type=float, nargs="+", default=[0, 20, 45, 70, 90, 135, 180])
    args = parser.parse_args()
    segmenter = load_segmenter(args.ckpt)
    store = read_store(args.store, extras=False)
    store = store.subset(np.flatnonzero(np.asarray(store.meta["split"]).astype(str) == args.split))
    subjects, spacing = store.meta["subject"], store.meta["spacing_mm"]  # square pixels: a turn keeps them
    for angle in args.angles:
        images = np.stack([rotate(f, angle, reshape=False, order=1) for f in store.images]).clip(0.0, 1.0)
        truth = np.stack([rotate((m == MYO).astype(np.float32), angle, reshape=False, order=1) > 0.5 for m in store.masks])
        row: dict[str, object] = {"angle_deg": angle, "images": len(images)}
        for mode in ("none", "auto"):
            views = subject_views(segmenter, images, subjects, OrientationSettings(mode=mode), True, spacing)
            labels = segment_in_views(
                lambda f, sp, _: segmenter.segment(f, scaled=True, spacing_mm=sp), images, spacing, subjects, views
            )
            row[f"dice_{mode}"] = round(float(np.mean([dice(p == MYO, t) for p, t in zip(labels, truth)])), 3)
            if mode == "auto":
                row["views"] = sorted(v.name for v in views.values())
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
