"""Recipes compared on one external test set, paired by seed and test subject.

Each recipe is a list of ``tagseg evaluate`` output folders (one per seed, in seed order; each holds
``test_metrics.csv``). Per folder the Dice of every subject is the mean over its images; a recipe is
the seed x subject matrix of those, and its interval resamples seeds and subjects
(:func:`tagseg.report.stats.seed_subject_interval`). Each candidate is also compared with the first
recipe (the reference) on the seeds both have, as the matrix of paired differences. One JSON line
per recipe and per comparison; ``--output`` writes a dot plot (one dot per seed).

    python experiments/recipe_compare.py --recipe tagged logs/foreign/tagged_{0,1,2,3} \
        --recipe tagged_blood logs/foreign/blood_{0,1,2,3} --output docs/img/foreign_recipes.png
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tagseg.report.stats import seed_subject_interval  # noqa: E402


def subject_dice(folder: Path, metric: str = "dice") -> pd.Series:
    """Mean ``metric`` per subject of one evaluate folder."""
    path = Path(folder) / "test_metrics.csv"
    if not path.is_file():
        raise SystemExit(f"{path}: not found; expected the output folder of `tagseg evaluate`")
    table = pd.read_csv(path)
    missing = {"subject", metric} - set(table.columns)
    if missing:
        raise SystemExit(f"{path}: no column(s) {sorted(missing)}; expected a tagseg evaluate test_metrics.csv")
    return table.groupby("subject")[metric].mean()


def recipe_matrix(folders: list[Path], metric: str = "dice") -> pd.DataFrame:
    """Seeds (rows, in the order given) x subjects (the subjects every folder has)."""
    rows = [subject_dice(f, metric) for f in folders]
    frame = pd.DataFrame(rows, index=range(len(rows)))
    return frame.dropna(axis=1)


def compare(recipes: dict[str, list[Path]], metric: str = "dice", n_boot: int = 2000) -> list[dict]:
    """One record per recipe (mean, interval, each seed's mean) and per candidate against the first."""
    matrices = {name: recipe_matrix(folders, metric) for name, folders in recipes.items()}
    out = []
    for name, m in matrices.items():
        iv = seed_subject_interval(m.to_numpy(), n_boot)
        seeds = [round(float(v), 4) for v in m.mean(axis=1)]
        out.append(dict(recipe=name, metric=metric, mean=round(iv.mean, 4), low=round(iv.low, 4), high=round(iv.high, 4), seeds=seeds, n_subjects=m.shape[1]))
    reference, ref = next(iter(matrices.items()))
    for name, m in list(matrices.items())[1:]:
        n = min(len(ref), len(m))
        subjects = ref.columns.intersection(m.columns)
        diff = m.iloc[:n][subjects].to_numpy() - ref.iloc[:n][subjects].to_numpy()
        iv = seed_subject_interval(diff, n_boot)
        out.append(dict(recipe=name, against=reference, metric=metric, diff=round(iv.mean, 4), low=round(iv.low, 4), high=round(iv.high, 4), n_seeds=n, n_subjects=len(subjects)))
    return out


def plot(records: list[dict], output: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [r for r in records if "seeds" in r]
    fig, ax = plt.subplots(figsize=(1.4 + 1.2 * len(rows), 3.2))
    for i, r in enumerate(rows):
        ax.scatter(np.full(len(r["seeds"]), i), r["seeds"], color="tab:blue", zorder=3)
        ax.plot([i - 0.25, i + 0.25], [r["mean"]] * 2, color="black")
        ax.plot([i, i], [r["low"], r["high"]], color="grey", lw=4, alpha=0.4)
    ax.set_xticks(range(len(rows)), [r["recipe"] for r in rows], rotation=20, ha="right")
    ax.set_ylabel(rows[0]["metric"].replace("dice", "Dice"))
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(output, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--recipe", nargs="+", action="append", required=True, metavar=("NAME", "FOLDER"),
                        help="a recipe's name, then its evaluate folders in seed order; the first is the reference")
    parser.add_argument("--metric", default="dice")
    parser.add_argument("--n-boot", type=int, default=2000)
    parser.add_argument("--output", type=Path, default=None)
    args = parser.parse_args()
    recipes = {}
    for name, *folders in args.recipe:
        if not folders:
            raise SystemExit(f"--recipe {name}: no evaluate folders given")
        recipes[name] = [Path(f) for f in folders]
    records = compare(recipes, args.metric, args.n_boot)
    for r in records:
        print(json.dumps(r))
    if args.output:
        plot(records, args.output)


if __name__ == "__main__":
    main()
