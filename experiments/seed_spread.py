"""Dice of each seed, per test set and recipe, from strategy sweeps (``tagseg train -m experiment=...``):
one dot per seed, a bar at the mean. Shows where a mean rests on one collapsed seed. Prints one JSON
line per recipe and test set. Run from the project root:

    .venv/bin/python experiments/seed_spread.py logs/tagged_demo/multiruns/<time> [more sweep dirs] \
        [--sets test scanner low_resolution] [--output docs/img/seed_spread.png]
"""

from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

from tagseg.report.stats import find_cells


def read_cells(sweeps: list[Path]) -> dict[str, dict[str, dict[str, float]]]:
    """recipe -> test set -> seed -> mean Dice, from the cells ``tagseg report`` reads below each sweep
    (labelled as it labels them: ``physics@tagged_rotate n=16``; failed cells left out)."""
    table: dict[str, dict[str, dict[str, float]]] = defaultdict(lambda: defaultdict(dict))
    for sweep in sweeps:
        for cell in find_cells(sweep):
            label = f"{cell['strategy']} n={cell['n_train_subjects']}"
            for name, test in cell["tests"].items():
                table[label][name][str(cell["seed"])] = float(test["dice_mean"])
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweeps", nargs="+", type=Path)
    parser.add_argument("--sets", nargs="+", default=None, help="test sets to show (default: all)")
    parser.add_argument("--output", type=Path, default=None, help="PNG to write (default: no figure)")
    args = parser.parse_args()
    table = read_cells(args.sweeps)
    if not table:
        raise SystemExit(f"no strategy.json below {[str(s) for s in args.sweeps]}")
    recipes = sorted(table)
    sets = args.sets or sorted({name for sets in table.values() for name in sets})
    for label in recipes:
        for name in sets:
            seeds = table[label].get(name, {})
            if seeds:
                mean = sum(seeds.values()) / len(seeds)
                print(json.dumps({"recipe": label, "test_set": name, "mean": round(mean, 4), "seeds": seeds}))
    if args.output is None:
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(1.4 + 1.1 * len(sets), 3.6))
    width = 0.8 / len(recipes)
    for i, label in enumerate(recipes):
        color = f"C{i}"
        for j, name in enumerate(sets):
            values = list(table[label].get(name, {}).values())
            if not values:
                continue
            x = j - 0.4 + width * (i + 0.5)
            ax.scatter([x] * len(values), values, s=12, color=color, alpha=0.8, label=label if j == 0 else None)
            ax.hlines(sum(values) / len(values), x - width / 2.5, x + width / 2.5, color=color, lw=2)
    ax.set_xticks(range(len(sets)), sets, rotation=30, ha="right")
    ax.set_ylabel("Dice (set mean), one dot per seed")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="lower left")
    fig.tight_layout()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.output, dpi=110)
    print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
