"""A model's masks on a slice store, one panel per slice at one frame: truth green, prediction red,
the slice's Dice in the title (read as stored: no orientation search).

    python experiments/store_overlays.py data/foreign.h5 logs/demo/runs/<time> --frame 8 \
        --output docs/img/foreign_phantom.png
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tagseg.conventions import MYO  # noqa: E402
from tagseg.io.store import read_meta, read_slices  # noqa: E402
from tagseg.metrics import dice  # noqa: E402
from tagseg.models.segmenter import load_segmenters  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("store", type=Path)
    parser.add_argument("runs", nargs="+", help="run folders or checkpoints (several: an ensemble)")
    parser.add_argument("--frame", type=int, default=8)
    parser.add_argument("--max-panels", type=int, default=12)
    parser.add_argument("--columns", type=int, default=6)
    parser.add_argument("--window-mm", type=float, default=140.0, help="panel side around the heart (0: the whole image)")
    parser.add_argument("--output", type=Path, required=True)
    args = parser.parse_args()

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    meta = read_meta(args.store)
    rows = np.flatnonzero(np.asarray(meta["frame"]) == args.frame)[: args.max_panels]
    if not len(rows):
        raise SystemExit(f"{args.store}: no image at frame {args.frame}")
    images, truth = read_slices(args.store, rows)
    # each slice at its own pixel size, so a model trained at one pixel size sees it on its grid, as
    # `tagseg evaluate` and `tagseg predict` place it (resizing a whole field of view would not)
    spacing = np.asarray(meta["spacing_mm"], np.float32).reshape(-1, 2)[rows]
    pred = load_segmenters(args.runs).segment(images.astype(np.float32), scaled=True, spacing_mm=spacing)
    n_rows = -(-len(rows) // args.columns)
    fig, axes = plt.subplots(n_rows, args.columns, figsize=(2.2 * args.columns, 2.3 * n_rows), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for ax, image, p, t, row, sp in zip(axes.flat, images, pred, truth, rows, spacing):
        ax.imshow(image, cmap="gray")
        if args.window_mm and (t == MYO).any():
            centre = np.argwhere(t == MYO).mean(axis=0)
            half = args.window_mm / 2 / sp
            ax.set_xlim(centre[1] - half[1], centre[1] + half[1])
            ax.set_ylim(centre[0] + half[0], centre[0] - half[0])
        ax.contour(t == MYO, [0.5], colors="lime", linewidths=0.7)
        ax.contour(p == MYO, [0.5], colors="red", linewidths=0.7)
        ax.set_title(f"{meta['subject'][row]} s{meta['slice'][row]}  {dice(p == MYO, t == MYO):.2f}", fontsize=7)
    fig.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=80)
    print(args.output)


if __name__ == "__main__":
    main()
