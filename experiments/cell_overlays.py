"""One sweep cell's test overlays (truth green, prediction red) on chosen shifted sets, as one figure.

Finds the cell of a sweep folder whose overrides contain every ``key=value`` given, reads the first
test images its test stage saved (``overlays/<i>.png`` next to each set's ``test_metrics.csv``) and
lays them out one row per set. docs/img/augment_failures.png:

    .venv/bin/python experiments/cell_overlays.py logs/augment_ablation_demo/multiruns/<time> \\
        --cell seed=0 strategy=physics datamodule.n_train_subjects=16 augment=robust_no_geometry \\
        --sets pixel_size ghosting anatomy scanner --out docs/img/augment_failures.png
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image, ImageDraw


def find_cell(sweep: Path, wanted: list[str]) -> Path:
    """The ``strategy.json`` of the one cell below ``sweep`` whose overrides hold every ``key=value``."""
    found = []
    for cell in sorted(sweep.rglob("cell.json")):
        overrides = json.loads(cell.read_text())["overrides"].split(",")
        if all(w in overrides for w in wanted):
            found.append(cell.with_name("strategy.json"))
    if len(found) != 1:
        raise SystemExit(f"{sweep}: {len(found)} cells match {wanted}; expected exactly one")
    return found[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path)
    parser.add_argument("--cell", nargs="+", required=True, help="key=value overrides naming one cell")
    parser.add_argument("--sets", nargs="+", required=True)
    parser.add_argument("--images", type=int, default=4)
    parser.add_argument("--scale", type=int, default=4, help="nearest-neighbour upscaling of the overlays")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    tests = json.loads(find_cell(args.sweep, args.cell).read_text())["tests"]
    rows = []
    for name in args.sets:
        folder = Path(tests[name]["metrics_path"]).parent / "overlays"
        images = [Image.open(folder / f"{i}.png").convert("RGB") for i in range(args.images)]
        rows.append(
            (name, [im.resize((im.width * args.scale, im.height * args.scale), Image.NEAREST) for im in images])
        )
    width, height = rows[0][1][0].size
    label = 110
    canvas = Image.new("RGB", (label + args.images * width, len(rows) * height), "white")
    draw = ImageDraw.Draw(canvas)
    for r, (name, images) in enumerate(rows):
        draw.text((6, r * height + height // 2 - 6), name, fill="black")
        for c, image in enumerate(images):
            canvas.paste(image, (label + c * width, r * height))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    canvas.save(args.out)
    print(f"wrote {args.out} ({canvas.width}x{canvas.height})")


if __name__ == "__main__":
    main()
