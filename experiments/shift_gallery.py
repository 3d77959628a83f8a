"""Draw one subject of every shifted test set (conf/shift) at the demo scale: docs/img/shifts.png.

Mid slice, first and last frame, myocardium outlined; the column title is the shift's name.
Run from the project root:

    .venv/bin/python experiments/shift_gallery.py [--out docs/img/shifts.png] [--size 128]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tagseg.conventions import MYO  # noqa: E402
from tagseg.data.shifts import SHIFT_SEED_OFFSET, shift_data_config, shift_names  # noqa: E402
from tagseg.runtime.config import compose, instantiate  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/img/shifts.png")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    data = compose("train", ["experiment=demo", f"data.image_size={args.size}"]).data
    names = shift_names()
    fig, axes = plt.subplots(2, len(names), figsize=(1.3 * len(names), 2.9), squeeze=False)
    for col, name in enumerate(names):
        source = instantiate(shift_data_config(data, name, 1), "data")
        records = source.load(0, args.seed + SHIFT_SEED_OFFSET)
        mid = [r for r in records if r.slice == 1] or records
        for row, record in enumerate((mid[0], mid[-1])):
            ax = axes[row, col]
            h, w = record.image.shape
            crop = (slice(h // 5, h - h // 5), slice(w // 5, w - w // 5))
            ax.imshow(record.image[crop], cmap="gray")
            ax.contour((record.mask == MYO)[crop].astype(np.float32), levels=[0.5], colors="r", linewidths=0.5)
            ax.set_xticks([])
            ax.set_yticks([])
            if row == 0:
                ax.set_title(name, fontsize=7)
            if col == 0:
                ax.set_ylabel(f"frame {record.frame}", fontsize=7)
    fig.tight_layout(pad=0.2)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=90)
    # grey images and red outlines need few colours: a palette PNG is a fraction of the size
    from PIL import Image

    Image.open(args.out).convert("RGB").quantize(colors=96).save(args.out, optimize=True)
    print(args.out)


if __name__ == "__main__":
    main()
