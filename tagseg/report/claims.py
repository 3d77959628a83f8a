"""Claims of a data-efficiency sweep: each paired difference as a verdict, with the seeds it rests on.

A *claim* is "``strategy`` beats ``reference``" at one test set and n, on one metric (Dice up,
HD95 down). Its evidence is the paired difference and its interval over seeds and test subjects
(:func:`tagseg.report.stats.paired_differences`). The rule (docs/experiments.md, "How many seeds a
claim needs"):

* **held**: the interval excludes 0 in the claimed direction;
* **contradicted**: it excludes 0 in the other direction;
* **not shown**: it includes 0 (or there is no interval).

A claim **needs more seeds** while it rests on fewer than ``min_seeds`` seeds (with 3 seeds no
interval over seeds reaches 95 % coverage) or while the interval's half-width exceeds
``max(|effect|, limit)``: the effect is then neither resolved nor bounded below the smallest
difference that matters (``limit``: 0.01 Dice, 0.5 mm HD95 by default).
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import pandas as pd

from tagseg.errors import ConfigError

#: +1 where a larger value is better, -1 where a smaller one is
DIRECTION = {"dice": 1, "hd95_mm": -1}
#: the smallest difference worth resolving, per metric (Dice, mm)
LIMITS = {"dice": 0.01, "hd95_mm": 0.5}
#: fewer seeds than this always need more (the interval's coverage falls short of 95 % below it)
MIN_SEEDS = 5
VERDICTS = ("held", "not shown", "contradicted")
COLUMNS = [
    "test_set",
    "strategy",
    "reference",
    "n",
    "metric",
    "effect",
    "low",
    "high",
    "half_width",
    "n_seeds",
    "n_subjects",
    "unit",
    "verdict",
    "more_seeds",
    "seeds_needed",
]


def claim_rule(
    limits: Mapping[str, object] | None, min_seeds: object, n_boot: object = 2000
) -> tuple[dict[str, float], int]:
    """The rule's settings from a config (``claims.limits``, ``claims.min_seeds``, ``n_boot``), checked.

    Returns:
        ``(limits, min_seeds)``: every metric's limit (defaults :data:`LIMITS`) and the seed minimum.

    Raises:
        ConfigError: a limit that is not a number >= 0 or names no metric, a ``min_seeds`` that is not
            an integer >= 1, an ``n_boot`` that is not an integer >= 100.
    """
    checked = dict(LIMITS)
    for metric, value in (limits or {}).items():
        if metric not in DIRECTION:
            raise ConfigError(f"claims.limits.{metric}: not a metric; expected some of {sorted(DIRECTION)}")
        try:
            limit = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            limit = float("nan")
        if not limit >= 0:
            raise ConfigError(f"claims.limits.{metric}: expected a number >= 0 (a {metric} difference), got {value!r}")
        checked[str(metric)] = limit
    if isinstance(min_seeds, bool) or not isinstance(min_seeds, int) or min_seeds < 1:
        raise ConfigError(f"claims.min_seeds: expected an integer >= 1, got {min_seeds!r}")
    if isinstance(n_boot, bool) or not isinstance(n_boot, int) or n_boot < 100:
        raise ConfigError(f"n_boot: expected an integer >= 100 (bootstrap resamples), got {n_boot!r}")
    return checked, min_seeds


def verdict(low: float, high: float, direction: int = 1) -> str:
    """``held`` / ``contradicted`` when ``[low, high]`` excludes 0 in / against ``direction``, else ``not shown``."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return "not shown"
    if (direction > 0 and low > 0) or (direction < 0 and high < 0):
        return "held"
    if (direction > 0 and high < 0) or (direction < 0 and low > 0):
        return "contradicted"
    return "not shown"


def needs_more_seeds(effect: float, half_width: float, n_seeds: int, limit: float, min_seeds: int = MIN_SEEDS) -> bool:
    """Whether a claim needs more seeds: fewer than ``min_seeds``, no interval, or a half-width above ``max(|effect|, limit)``."""
    if n_seeds < min_seeds or not math.isfinite(half_width):
        return True
    return half_width > max(abs(effect), limit)


def seeds_needed(effect: float, half_width: float, n_seeds: int, limit: float, min_seeds: int = MIN_SEEDS) -> int:
    """A rough seed count at which the half-width would reach ``max(|effect|, limit)``.

    Assumes the half-width shrinks as ``1 / sqrt(seeds)``, as it does when the seeds dominate the
    uncertainty; the test subjects' share does not shrink with seeds, so this is a lower bound.
    Never below ``min_seeds`` nor below ``n_seeds``.
    """
    if n_seeds < 2 or not math.isfinite(half_width):
        return max(min_seeds, n_seeds)
    target = max(abs(effect), limit)
    return max(min_seeds, n_seeds, math.ceil(n_seeds * (half_width / target) ** 2))


def claims(
    diff: pd.DataFrame,
    reference: str,
    limits: Mapping[str, float] | None = None,
    min_seeds: int = MIN_SEEDS,
) -> pd.DataFrame:
    """One row per paired difference and metric: effect, interval, half-width, counts, verdict, seeds.

    Args:
        diff: :func:`~tagseg.report.stats.paired_differences` against ``reference``.
        reference: the strategy every claim is set against.
        limits: the smallest difference worth resolving per metric (default :data:`LIMITS`).
        min_seeds: fewer seeds than this always need more.

    Returns:
        Columns :data:`COLUMNS`.
    """
    limits = {**LIMITS, **(limits or {})}
    rows = []
    for r in diff.to_dict("records"):
        for metric, direction in DIRECTION.items():
            if f"d_{metric}" not in r:
                continue
            effect, low, high = (float(r[f"d_{metric}{s}"]) for s in ("", "_lo", "_hi"))
            half = float(r[f"d_{metric}_half"])
            n_seeds, limit = int(r["seeds"]), float(limits[metric])
            rows.append(
                {
                    "test_set": r["test_set"],
                    "strategy": r["strategy"],
                    "reference": reference,
                    "n": int(r["n"]),
                    "metric": metric,
                    "effect": effect,
                    "low": low,
                    "high": high,
                    "half_width": half,
                    "n_seeds": n_seeds,
                    "n_subjects": int(r["subjects"]),
                    "unit": r["unit"],
                    "verdict": verdict(low, high, direction),
                    "more_seeds": needs_more_seeds(effect, half, n_seeds, limit, min_seeds),
                    "seeds_needed": seeds_needed(effect, half, n_seeds, limit, min_seeds),
                }
            )
    return pd.DataFrame(rows, columns=COLUMNS)


def drop_mirrors(table: pd.DataFrame) -> pd.DataFrame:
    """The claims without their mirrors: "B beats A" is left out where "A beats B" (same set, n, metric) came first.

    With several references (``references=[scratch,cine]``) the second one's comparison with the first
    is the first one's, negated: the same interval, stated twice with opposite verdicts.
    """
    seen: set[tuple] = set()
    keep = []
    for r in table.itertuples(index=False):
        key = (r.test_set, r.n, r.metric)
        keep.append((r.reference, r.strategy, *key) not in seen)
        seen.add((r.strategy, r.reference, *key))
    return table[keep].reset_index(drop=True)


def claims_markdown(table: pd.DataFrame, metric: str = "dice") -> str:
    """The claims on ``metric``: effect [interval], half-width, seeds and subjects beside each verdict."""
    sel = table[table["metric"] == metric]
    if sel.empty:
        return f"(no paired {metric} differences)\n"
    unit = "Dice" if metric == "dice" else "HD95 (mm)"
    lines = [
        f"| claim | test set | n | {unit} difference [95 % interval] | half-width | seeds | subjects | verdict | more seeds |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in sel.itertuples():
        interval = (
            f"{r.effect:+.3f} [no interval]"
            if pd.isna(r.low) or pd.isna(r.high)
            else f"{r.effect:+.3f} [{r.low:+.3f}, {r.high:+.3f}]"
        )
        half = "-" if pd.isna(r.half_width) else f"{r.half_width:.3f}"
        more = f"yes (>= {r.seeds_needed})" if r.more_seeds else "no"
        lines.append(
            f"| {r.strategy} beats {r.reference} | {r.test_set} | {r.n} | {interval} | {half} "
            f"| {r.n_seeds} | {r.n_subjects} | {r.verdict} | {more} |"
        )
    return "\n".join(lines) + "\n"


__all__ = [
    "COLUMNS",
    "DIRECTION",
    "LIMITS",
    "MIN_SEEDS",
    "VERDICTS",
    "claim_rule",
    "claims",
    "claims_markdown",
    "needs_more_seeds",
    "seeds_needed",
    "verdict",
]
