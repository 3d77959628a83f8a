"""How well the predicted Dice tells good masks from failed ones, measured against the true Dice.

* AUROC of ``1 - predicted_dice`` for detecting a failed image (true Dice < :data:`FAILED_BELOW`);
* Spearman rank correlation of predicted and true Dice;
* mean absolute error of the predicted Dice;
* the share of failed images caught when 5 % of good images are flagged (the threshold set at
  the 95th percentile of the good images' ``1 - predicted_dice``);
* calibration: mean predicted against mean true Dice in bins of predicted Dice.

Intervals resample **subjects** (images of one heart are not independent):
:func:`subject_bootstrap` draws subjects with replacement and recomputes a statistic on their images.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy.stats import rankdata, spearmanr

#: an image with a true Dice below this has failed
FAILED_BELOW = 0.80
#: the share of good images flagged at which :func:`caught_at_false_flags` reads the failed ones caught
FALSE_FLAG_RATE = 0.05


def auroc(scores: np.ndarray, positive: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U with mid-ranks for ties); NaN without both classes."""
    scores, positive = np.asarray(scores, np.float64), np.asarray(positive, bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(scores)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def caught_at_false_flags(scores: np.ndarray, positive: np.ndarray, rate: float = FALSE_FLAG_RATE) -> float:
    """Share of positives scoring above the ``1 - rate`` quantile of the negatives' scores."""
    scores, positive = np.asarray(scores, np.float64), np.asarray(positive, bool)
    if positive.sum() == 0 or (~positive).sum() == 0:
        return float("nan")
    cut = np.quantile(scores[~positive], 1 - rate)
    return float((scores[positive] > cut).mean())


def qc_statistics(predicted: np.ndarray, true: np.ndarray, failed_below: float = FAILED_BELOW) -> dict[str, float]:
    """AUROC, Spearman, MAE, failed caught at 5 % false flags, and the counts, of one set of images."""
    predicted, true = np.asarray(predicted, np.float64), np.asarray(true, np.float64)
    ok = np.isfinite(predicted) & np.isfinite(true)
    predicted, true = predicted[ok], true[ok]
    failed = true < failed_below
    rho = (
        spearmanr(predicted, true).statistic if len(true) > 2 and np.ptp(true) > 0 and np.ptp(predicted) > 0 else np.nan
    )
    return {
        "auroc": auroc(1 - predicted, failed),
        "spearman": float(rho),
        "mae": float(np.abs(predicted - true).mean()) if len(true) else float("nan"),
        "caught_at_5pct": caught_at_false_flags(1 - predicted, failed),
        "n_images": int(len(true)),
        "n_failed": int(failed.sum()),
        "dice_mean": float(true.mean()) if len(true) else float("nan"),
        "predicted_dice_mean": float(predicted.mean()) if len(true) else float("nan"),
    }


def subject_bootstrap(
    subjects: Sequence[Any],
    statistic: Callable[[np.ndarray], dict[str, float]],
    n_boot: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> dict[str, tuple[float, float]]:
    """Percentile intervals of the numbers ``statistic(image index)`` returns, over resampled subjects.

    Args:
        subjects: the subject of each image.
        statistic: maps an index array of images (subjects drawn with replacement, all their
            images) to named numbers; NaN draws (e.g. no failed image drawn) are dropped per name.
        n_boot: resamples.
        level: coverage.
        seed: seeds the resampling.

    Returns:
        name -> (low, high).
    """
    subjects = np.asarray([str(s) for s in subjects])
    names = np.unique(subjects)
    members = [np.flatnonzero(subjects == s) for s in names]
    rng = np.random.default_rng(seed)
    draws: dict[str, list[float]] = {}
    for _ in range(n_boot):
        pick = rng.integers(0, len(names), len(names))
        for key, v in statistic(np.concatenate([members[i] for i in pick])).items():
            if np.isfinite(v):
                draws.setdefault(key, []).append(float(v))
    tail = 100 * (1 - level) / 2
    out = {}
    for key, values in draws.items():
        lo, hi = np.percentile(values, [tail, 100 - tail])
        out[key] = (float(lo), float(hi))
    return out


#: the rates :func:`qc_table_row` gives intervals for
RATES = ("auroc", "spearman", "mae", "caught_at_5pct")


def qc_table_row(
    predicted: np.ndarray, true: np.ndarray, subjects: Sequence[Any], n_boot: int = 1000, seed: int = 0
) -> dict[str, Any]:
    """:func:`qc_statistics` with a subject-bootstrap interval (``<name>_lo``, ``<name>_hi``) for each of :data:`RATES`."""
    predicted, true = np.asarray(predicted, np.float64), np.asarray(true, np.float64)
    row: dict[str, Any] = qc_statistics(predicted, true)

    def rates(idx: np.ndarray) -> dict[str, float]:
        stats = qc_statistics(predicted[idx], true[idx])
        return {k: stats[k] for k in RATES}

    intervals = subject_bootstrap(subjects, rates, n_boot=n_boot, seed=seed)
    for name in RATES:
        row[f"{name}_lo"], row[f"{name}_hi"] = intervals.get(name, (float("nan"), float("nan")))
    return row


def calibration(predicted: np.ndarray, true: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Mean predicted and mean true Dice per bin of predicted Dice (equal widths over [0, 1]; empty bins left out)."""
    predicted, true = np.asarray(predicted, np.float64), np.asarray(true, np.float64)
    edges = np.linspace(0, 1, bins + 1)
    which = np.clip(np.digitize(predicted, edges) - 1, 0, bins - 1)
    out = []
    for b in range(bins):
        sel = which == b
        if sel.any():
            out.append(
                {
                    "bin_low": float(edges[b]),
                    "bin_high": float(edges[b + 1]),
                    "n": int(sel.sum()),
                    "predicted": float(predicted[sel].mean()),
                    "true": float(true[sel].mean()),
                }
            )
    return out


__all__ = [
    "FAILED_BELOW",
    "FALSE_FLAG_RATE",
    "RATES",
    "auroc",
    "calibration",
    "caught_at_false_flags",
    "qc_statistics",
    "qc_table_row",
    "subject_bootstrap",
]
