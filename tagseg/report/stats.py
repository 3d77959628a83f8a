"""Statistics of a data-efficiency sweep: bootstrap intervals, paired differences, learning curves, convergence.

A *cell* is one strategy run of the sweep (``strategy.json``: strategy, seed, ``n_train_subjects``
and its test sets, each with a per-image ``test_metrics.csv``). The unit of inference is the
**test subject**: images of one subject are not independent (slices and frames of one heart), so
every interval resamples subjects, never images.

* :func:`bootstrap_ci`: percentile bootstrap of a mean over subjects.
* :func:`learning_curve`: per (test set, strategy, n), Dice / HD95 means over seeds and subjects with
  95 % intervals (subjects resampled; each subject's value is its mean over seeds and images).
* :func:`paired_differences`: strategy minus ``scratch`` at the same n, test set, seed and test
  subject, averaged over seeds, with the subject-bootstrap interval of the mean difference.
* :func:`convergence`: epochs until the fine-tuning's validation Dice first reaches 95 % of its
  final value, per cell, and the validation curves behind it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from tagseg.errors import TagsegError

STRATEGY_FILE = "strategy.json"
#: the tagged test split's name among the test sets
IN_DISTRIBUTION = "test"
REFERENCE = "scratch"
METRICS = ("dice", "hd95_mm")


def bootstrap_ci(
    values: Sequence[float] | np.ndarray, n_boot: int = 2000, level: float = 0.95, seed: int = 0
) -> tuple[float, float, float]:
    """Mean of ``values`` (one per subject) and its percentile-bootstrap interval.

    Args:
        values: one value per independent unit (test subject).
        n_boot: bootstrap resamples.
        level: coverage of the interval.
        seed: seeds the resampling (reproducible reports).

    Returns:
        ``(mean, low, high)``; with one value the interval collapses to it.
    """
    x = np.asarray(values, dtype=np.float64)
    x = x[np.isfinite(x)]
    if x.size == 0:
        return float("nan"), float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    means = x[rng.integers(0, x.size, (n_boot, x.size))].mean(axis=1)
    tail = 100 * (1 - level) / 2
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return float(x.mean()), float(lo), float(hi)


# --------------------------------------------------------------------------- reading a sweep


def find_cells(root: str | Path) -> list[dict]:
    """Every cell record (``strategy.json``) below ``root`` that has ``n_train_subjects`` and tests.

    A cell trained with another augmentation than ``augment=paper`` (the group choice in its
    ``.hydra/hydra.yaml``) is labelled ``<strategy>@<augment>`` (``scratch@robust``), so paired
    differences against ``<strategy>`` are against ``paper``. A cell trained on a randomised
    phantom (``data.randomise`` in its ``.hydra/config.yaml``) is
    labelled ``<strategy>+<preset>`` (``+randomised`` for explicit ranges), so one report can
    compare it with the same strategy on the fixed phantom; one tested after a post-processing
    (``strategy.postprocess``) gets ``/<postprocess>`` (``scratch/largest_component``).
    """
    cells = []
    for path in sorted(Path(root).rglob(STRATEGY_FILE)):
        record = json.loads(path.read_text())
        if record.get("status", "ok") != "ok" or record.get("n_train_subjects") is None or not record.get("tests"):
            continue
        record["cell_dir"] = str(path.parent)
        augment = _augment(path.parent)
        if augment not in (None, "paper"):
            record["strategy"] = f"{record['strategy']}@{augment}"
        randomise = _randomise(path.parent)
        if randomise:
            record["strategy"] = f"{record['strategy']}+{randomise if isinstance(randomise, str) else 'randomised'}"
        if record.get("postprocess", "none") != "none":
            record["strategy"] = f"{record['strategy']}/{record['postprocess']}"
        cells.append(record)
    return cells


def _augment(cell_dir: Path) -> str | None:
    hydra_file = cell_dir / ".hydra" / "hydra.yaml"
    if not hydra_file.exists():
        return None
    hydra = (yaml.safe_load(hydra_file.read_text()) or {}).get("hydra") or {}
    choices = (hydra.get("runtime") or {}).get("choices") or {}
    return choices.get("augment")


def _randomise(cell_dir: Path) -> object:
    config = cell_dir / ".hydra" / "config.yaml"
    if not config.exists():
        return None
    data = (yaml.safe_load(config.read_text()) or {}).get("data") or {}
    return data.get("randomise") if isinstance(data, dict) else None


def load_cells(cells: Sequence[dict]) -> pd.DataFrame:
    """Per-image rows of every test set of every cell: strategy, n, seed, test_set, subject, dice, hd95_mm.

    Raises:
        TagsegError: a test table named by a cell is missing.
    """
    frames = []
    for cell in cells:
        for test_set, entry in cell["tests"].items():
            path = Path(entry["metrics_path"])
            if not path.exists():
                raise TagsegError(
                    f"{cell['cell_dir']}: its test table {path} is missing (cache folder moved or deleted?)"
                )
            df = pd.read_csv(path, usecols=lambda c: c in ("subject", "slice", "frame", "dice", "hd95_mm"))
            df["strategy"], df["n"], df["seed"], df["test_set"] = (
                cell["strategy"],
                int(cell["n_train_subjects"]),
                int(cell["seed"]),
                test_set,
            )
            frames.append(df)
    if not frames:
        raise TagsegError("no data-efficiency cells (strategy.json with n_train_subjects and tests) found")
    return pd.concat(frames, ignore_index=True)


def subject_means(images: pd.DataFrame) -> pd.DataFrame:
    """Mean Dice / HD95 per (test set, strategy, n, seed, subject)."""
    keys = ["test_set", "strategy", "n", "seed", "subject"]
    return images.groupby(keys, sort=True)[list(METRICS)].mean().reset_index()


def _order(table: pd.DataFrame) -> pd.DataFrame:
    sets = sorted(table["test_set"].unique(), key=lambda s: (s != IN_DISTRIBUTION, s))
    table["test_set"] = pd.Categorical(table["test_set"], sets, ordered=True)
    table = table.sort_values(["test_set", "strategy", "n"]).reset_index(drop=True)
    table["test_set"] = table["test_set"].astype(str)
    return table


# --------------------------------------------------------------------------- tables


def learning_curve(subjects: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Dice / HD95 per (test set, strategy, n): mean over seeds and subjects with 95 % subject-bootstrap intervals.

    Also ``dice_seed_sd``: the standard deviation of the per-seed means (the seed-to-seed spread,
    not in the interval), and the counts.
    """
    rows = []
    for (test_set, strategy, n), g in subjects.groupby(["test_set", "strategy", "n"], sort=True):
        per_subject = g.groupby("subject")[list(METRICS)].mean()
        row = {
            "test_set": test_set,
            "strategy": strategy,
            "n": int(n),
            "seeds": int(g["seed"].nunique()),
            "subjects": int(len(per_subject)),
        }
        for metric in METRICS:
            mean, lo, hi = bootstrap_ci(per_subject[metric].to_numpy(), n_boot, seed=seed)
            row.update({f"{metric}_mean": mean, f"{metric}_lo": lo, f"{metric}_hi": hi})
        seed_means = g.groupby("seed")["dice"].mean()
        row["dice_seed_sd"] = float(seed_means.std(ddof=1)) if len(seed_means) > 1 else 0.0
        rows.append(row)
    return _order(pd.DataFrame(rows))


def paired_differences(
    subjects: pd.DataFrame, reference: str = REFERENCE, n_boot: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """Each strategy minus ``reference`` at the same test set, n, seed and test subject.

    The per-(subject, seed) differences are averaged over the seeds both strategies ran, then the
    mean over subjects gets a subject-bootstrap 95 % interval. A strategy trained on another phantom
    randomisation than ``reference`` is not paired on the tagged test split (each store has its own
    test hearts): compare it on the shifted sets, ``none`` being the fixed phantom. ``dice_better`` / ``hd95_better``
    say whether the interval excludes 0 in the strategy's favour (Dice up, HD95 down).
    """
    ref = subjects[subjects["strategy"] == reference].drop(columns="strategy")
    keys = ["test_set", "n", "seed", "subject"]
    rows = []
    for strategy in sorted(set(subjects["strategy"]) - {reference}):
        merged = subjects[subjects["strategy"] == strategy].merge(ref, on=keys, suffixes=("", "_ref"))
        if _randomisation(strategy) != _randomisation(reference):
            # each phantom has its own test split: same subject names, other hearts; not a pair
            merged = merged[merged["test_set"] != IN_DISTRIBUTION]
        for (test_set, n), g in merged.groupby(["test_set", "n"], sort=True):
            per_subject = (
                g.assign(**{f"d_{m}": g[m] - g[f"{m}_ref"] for m in METRICS})
                .groupby("subject")[[f"d_{m}" for m in METRICS]]
                .mean()
            )
            row = {
                "test_set": test_set,
                "strategy": strategy,
                "n": int(n),
                "seeds": int(g["seed"].nunique()),
                "subjects": int(len(per_subject)),
            }
            for metric in METRICS:
                mean, lo, hi = bootstrap_ci(per_subject[f"d_{metric}"].to_numpy(), n_boot, seed=seed)
                row.update({f"d_{metric}": mean, f"d_{metric}_lo": lo, f"d_{metric}_hi": hi})
            row["dice_better"] = bool(row["d_dice_lo"] > 0)
            row["hd95_better"] = bool(row["d_hd95_mm_hi"] < 0)
            rows.append(row)
    if not rows:
        return pd.DataFrame(
            columns=["test_set", "strategy", "n", "seeds", "subjects", "d_dice", "d_dice_lo", "d_dice_hi"]
        )
    return _order(pd.DataFrame(rows))


def _randomisation(label: str) -> str:
    """The randomisation part of a strategy label (``scratch+mixed/largest_component`` -> ``mixed``; none -> ``''``)."""
    return label.partition("/")[0].partition("+")[2]


def epochs_to_fraction(values: Sequence[float], fraction: float = 0.95) -> int | None:
    """1-based epoch at which ``values`` (per-epoch validation Dice) first reach ``fraction`` of the last value."""
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return None
    hit = np.flatnonzero(v >= fraction * v[-1])
    return int(hit[0]) + 1


def validation_curve(run_dir: str | Path) -> pd.Series | None:
    """Per-epoch validation Dice of a fine-tuning run (its Lightning CSV log), or ``None``."""
    logs = sorted(Path(run_dir).rglob("metrics.csv"))
    for log in logs:
        df = pd.read_csv(log)
        if "val/dice" in df.columns and "epoch" in df.columns:
            s = df[["epoch", "val/dice"]].dropna().groupby("epoch")["val/dice"].mean()
            if len(s):
                return s
    return None


def convergence(cells: Sequence[dict], fraction: float = 0.95) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Epochs to reach ``fraction`` of the final validation Dice, per cell and per (strategy, n).

    Returns:
        ``(per_cell, curves)``: per cell strategy, n, seed, epochs, final_val_dice, epochs_to_95;
        and every validation curve (strategy, n, seed, epoch, val_dice).
    """
    per_cell, curves = [], []
    for cell in cells:
        s = validation_curve(cell.get("run_dir", ""))
        if s is None:
            continue
        base = {"strategy": cell["strategy"], "n": int(cell["n_train_subjects"]), "seed": int(cell["seed"])}
        per_cell.append(
            {
                **base,
                "epochs": int(len(s)),
                "final_val_dice": float(s.iloc[-1]),
                "epochs_to_95": epochs_to_fraction(s.to_numpy(), fraction),
            }
        )
        curves += [{**base, "epoch": int(e) + 1, "val_dice": float(v)} for e, v in s.items()]
    columns = ["strategy", "n", "seed", "epochs", "final_val_dice", "epochs_to_95"]
    return (
        pd.DataFrame(per_cell, columns=columns).sort_values(["strategy", "n", "seed"]).reset_index(drop=True),
        pd.DataFrame(curves, columns=["strategy", "n", "seed", "epoch", "val_dice"]),
    )


def convergence_summary(per_cell: pd.DataFrame) -> pd.DataFrame:
    """Mean (min-max over seeds) epochs to 95 % and final validation Dice per (strategy, n)."""
    if per_cell.empty:
        return pd.DataFrame(
            columns=[
                "strategy",
                "n",
                "seeds",
                "epochs_to_95_mean",
                "epochs_to_95_min",
                "epochs_to_95_max",
                "final_val_dice_mean",
            ]
        )
    g = per_cell.groupby(["strategy", "n"], sort=True)
    return g.agg(
        seeds=("seed", "nunique"),
        epochs_to_95_mean=("epochs_to_95", "mean"),
        epochs_to_95_min=("epochs_to_95", "min"),
        epochs_to_95_max=("epochs_to_95", "max"),
        final_val_dice_mean=("final_val_dice", "mean"),
    ).reset_index()


__all__ = [
    "bootstrap_ci",
    "convergence",
    "convergence_summary",
    "epochs_to_fraction",
    "find_cells",
    "learning_curve",
    "load_cells",
    "paired_differences",
    "subject_means",
    "validation_curve",
]
