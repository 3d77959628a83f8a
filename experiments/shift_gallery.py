"""Draw one subject of every shifted test set (conf/shift) at the demo scale: docs/img/shifts.png;
and each transform of augment=robust on one phantom image: docs/img/augment.png.

Shifts: mid slice, first and last frame, myocardium outlined; the column title is the shift's name.
Augment: each transform of conf/augment/robust.yaml forced to fire (prob 1), same seed.
Run from the project root:

    .venv/bin/python experiments/shift_gallery.py [--out docs/img/shifts.png] [--augment-out docs/img/augment.png]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from omegaconf import OmegaConf  # noqa: E402

from tagseg.augment.compose import BatchAugment  # noqa: E402
from tagseg.conventions import MYO  # noqa: E402
from tagseg.data.shifts import SHIFT_SEED_OFFSET, shift_data_config, shift_names  # noqa: E402
from tagseg.runtime.config import CONF_DIR, compose, instantiate  # noqa: E402


def save_small(fig: plt.Figure, out: str) -> None:
    """Save ``fig`` as a palette PNG (grey images and red outlines need few colours)."""
    from PIL import Image

    Path(out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=90)
    Image.open(out).convert("RGB").quantize(colors=96).save(out, optimize=True)
    print(out)


def augment_gallery(data, out: str, seed: int) -> None:
    """Each transform of ``augment=robust`` forced on the mid slice of one fixed-phantom subject."""
    source = instantiate(OmegaConf.merge(data, {"n_subjects": 1, "store": None}), "data")
    records = [r for r in source.load(0, seed) if r.slice == 1]
    record = records[len(records) // 2]
    robust = OmegaConf.to_container(OmegaConf.load(Path(CONF_DIR) / "augment" / "robust.yaml").datamodule.batch_augment)
    image = torch.from_numpy(record.image / record.image.max()).float()[None, None]
    label = torch.from_numpy(record.mask == MYO)[None, None].long()
    batch = {
        "image": image,
        "label": label,
        "si": label.float(),
        "spacing_mm": torch.tensor([record.spacing_mm], dtype=torch.float32),
        "frame": torch.tensor([record.frame]),
        "slice": torch.tensor([record.slice]),
        "subject": [record.subject],
    }
    names = list(robust["transforms"])
    fig, axes = plt.subplots(2, (len(names) + 2) // 2, figsize=(1.3 * ((len(names) + 2) // 2), 2.9), squeeze=False)
    panels = [("input", batch)]
    for name in names:
        node = {**robust["transforms"][name], "prob": 1.0}
        panels.append((name, BatchAugment({name: node}, seed=seed, mean=0.0, std=1.0)(batch, count=1)))
    for ax, (name, out_batch) in zip(axes.flat, panels):
        h, w = out_batch["image"].shape[-2:]
        crop = (slice(h // 5, h - h // 5), slice(w // 5, w - w // 5))
        ax.imshow(out_batch["image"][0, 0][crop], cmap="gray")
        ax.contour(out_batch["label"][0, 0][crop].float().numpy(), levels=[0.5], colors="r", linewidths=0.5)
        ax.set_title(name, fontsize=7)
    for ax in axes.flat:
        ax.set_xticks([])
        ax.set_yticks([])
    fig.tight_layout(pad=0.2)
    save_small(fig, out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="docs/img/shifts.png")
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--augment-out", default="docs/img/augment.png")
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
    save_small(fig, args.out)
    augment_gallery(data, args.augment_out, args.seed)


if __name__ == "__main__":
    main()
