"""How Dice grows with the number of seeds averaged: every k-member ensemble of the given runs
(softmax averaged, as ``tagseg predict`` / ``tagseg evaluate ckpt=[a,b,c]`` do) on the test split
and each shifted set their ``tagseg evaluate ... shifts=all`` wrote (``<run>/eval``). Each subject is
read as stored (no orientation search). Prints one JSON line per test set (min / mean / max over the
subsets of each size) and draws Dice against ensemble size. Run from the project root:

    .venv/bin/python experiments/ensemble_size.py logs/seed0 logs/seed1 logs/seed2 logs/seed3 \
        [--eval eval] [--sets test scanner low_snr] [--output docs/img/ensemble_size.png]
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np

from tagseg.conventions import MYO
from tagseg.io.store import read_slices, split_rows
from tagseg.metrics import dice
from tagseg.models.segmenter import load_segmenter, resize_bilinear, softmax


def subset_dice(probs: list[np.ndarray], truth: np.ndarray, channel: int) -> dict[int, list[float]]:
    """Mean Dice of ``channel``'s argmax mask against ``truth`` (N, H, W bool) for every subset of the
    members' softmax ``probs`` (each (N, C, H, W)), by subset size; subsets in ``itertools.combinations`` order."""
    out: dict[int, list[float]] = {}
    for k in range(1, len(probs) + 1):
        out[k] = []
        for combo in itertools.combinations(range(len(probs)), k):
            pred = np.mean([probs[i] for i in combo], axis=0).argmax(axis=1) == channel
            out[k].append(float(np.mean([dice(p, t) for p, t in zip(pred, truth)])))
    return out


def evaluated_sets(run: Path, eval_dir: str) -> dict[str, str]:
    """Test set -> store, from ``<run>/<eval_dir>/summary.json`` and ``shift/<name>/summary.json``."""
    root = run / eval_dir
    if not (root / "summary.json").is_file():
        raise SystemExit(
            f"{root}/summary.json not found: run `tagseg evaluate ckpt={run} shifts=all hydra.run.dir={root}`"
        )
    sets = {"test": json.loads((root / "summary.json").read_text())["stores"][0]}
    for folder in sorted((root / "shift").glob("*/summary.json")):
        sets[folder.parent.name] = json.loads(folder.read_text())["stores"][0]
    return sets


def member_probabilities(segmenter, images: np.ndarray, batch: int = 16) -> np.ndarray:
    """Softmax (N, C, H, W) of store images (already in [0, 1]) at the images' own size."""
    x = segmenter.preprocess(images, scaled=True)
    p = np.concatenate([softmax(segmenter.logits(x[i : i + batch])) for i in range(0, len(x), batch)])
    return resize_bilinear(p, images.shape[-2:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("runs", nargs="+", type=Path, help="run folders (checkpoints/ and an evaluate folder)")
    parser.add_argument("--eval", default="eval", help="each run's evaluate folder (default: eval)")
    parser.add_argument("--sets", nargs="+", default=None, help="test sets to draw (default: all)")
    parser.add_argument("--output", type=Path, default=None, help="PNG to write (default: no figure)")
    args = parser.parse_args()
    members = [load_segmenter(run) for run in args.runs]
    channel = list(members[0].labels).index(MYO)
    table = {}
    for name, store in evaluated_sets(args.runs[0], args.eval).items():
        images, labels = read_slices(store, split_rows(store, ["test"]))
        scores = subset_dice([member_probabilities(m, images) for m in members], labels == MYO, channel)
        table[name] = scores
        row = {
            k: {"min": min(v), "mean": float(np.mean(v)), "max": max(v), "subsets": len(v)} for k, v in scores.items()
        }
        print(json.dumps({"test_set": name, "store": store, "by_members": row}), flush=True)
    if args.output:
        draw(table, args.sets or sorted(table), args.output)
        print(f"figure: {args.output}")


def draw(table: dict[str, dict[int, list[float]]], sets: list[str], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8.5, 4.5))
    for name in sets:
        ks = sorted(table[name])
        mean = [np.mean(table[name][k]) for k in ks]
        line = ax.plot(ks, mean, marker="o", label=name)[0]
        ax.fill_between(
            ks, [min(table[name][k]) for k in ks], [max(table[name][k]) for k in ks], color=line.get_color(), alpha=0.15
        )
    ax.axhline(0.85, color="grey", lw=0.8, ls="--")
    ax.set_xticks(sorted(next(iter(table.values()))))
    ax.set_xlabel("models averaged (seeds)")
    ax.set_ylabel("mean myocardial Dice")
    ax.set_title("Dice by ensemble size: line = mean over subsets, band = min-max")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


if __name__ == "__main__":
    main()
