"""Statistics of a data-efficiency sweep: intervals over seeds and test subjects, paired differences, convergence.

A *cell* is one strategy run of the sweep (``strategy.json``: strategy, seed, ``n_train_subjects``
and its test sets, each with a per-image ``test_metrics.csv``). Two sources of chance make a result:
the **training seed** (initialisation, the chosen labelled subjects, augmentation) and the **test
subjects** (images of one heart are not independent, so a subject is one unit, never an image).
Every test set is one store, shared by all seeds: the seeds and the subjects are *crossed* (each
seed is tested on the same hearts).

* :func:`seed_subject_interval`: the one interval every table uses: a mean over a seed x subject
  matrix and its BCa bootstrap interval, resampling seeds and subjects (``scipy.stats.bootstrap``).
* :func:`learning_curve`: per (test set, strategy, n), Dice / HD95 means over seeds and subjects
  with that interval.
* :func:`paired_differences`: strategy minus ``scratch`` at the same n, test set, seed and test
  subject; the seed x subject matrix of differences gets that interval, so both arms are resampled
  with the same seeds and subjects.
* :func:`convergence`: epochs until the fine-tuning's validation Dice first reaches 95 % of its
  final value, per cell, and the validation curves behind it.
"""

from __future__ import annotations

import json
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml
from scipy import stats as sps
from scipy.special import ndtr

from tagseg.errors import TagsegError
from tagseg.io.run_dir import hydra_config_path

STRATEGY_FILE = "strategy.json"
#: the tagged test split's name among the test sets
IN_DISTRIBUTION = "test"
REFERENCE = "scratch"
METRICS = ("dice", "hd95_mm")  # the data-efficiency statistics compare the two built-in metrics
#: what an interval resamples, by which factors have more than one level (see :func:`seed_subject_interval`)
UNITS = {
    (True, True): "seeds and subjects",
    (False, True): "subjects (1 seed)",
    (True, False): "seeds (1 subject)",
    (False, False): "none (1 seed, 1 subject)",
}


@dataclass(frozen=True)
class Interval:
    """A mean over seeds and test subjects with its interval.

    Attributes:
        mean: the mean over the seed x subject matrix.
        low, high: the interval's ends (NaN when nothing can be resampled).
        n_seeds, n_subjects: the units it rests on.
        unit: what was resampled (:data:`UNITS`).
    """

    mean: float
    low: float
    high: float
    n_seeds: int
    n_subjects: int
    unit: str

    @property
    def half_width(self) -> float:
        """Half the interval's width (NaN without an interval)."""
        return (self.high - self.low) / 2


def expanded_level(matrix: np.ndarray, level: float = 0.95, n_resamples: int = 2000) -> float:
    """The nominal level widened for few units (an *expanded* bootstrap interval).

    A bootstrap over n units has variance (n - 1) / n of the unbiased one and normal tails, so with
    10 seeds a 95 % interval covers about 90 %. The level is widened so that its normal quantile is
    ``sqrt(inflation) * t(df)``: ``inflation`` undoes the (n - 1) / n of each factor, weighted by
    its jackknife variance, and ``df`` is the Satterthwaite degrees of freedom of the two variances
    (Hesterberg 2015, "What teachers should know about the bootstrap", for one factor). It is capped
    at the bootstrap's most extreme resamples (``1 - 2 / n_resamples``): with 2-3 seeds no resampling
    can reach further than the spread of what was run.
    """
    parts = []
    for axis in (0, 1):
        n = matrix.shape[axis]
        if n > 1:
            loo = _leave_one_out_means(matrix, axis)
            var = (n - 1) / n * float(((loo - loo.mean()) ** 2).sum())
            if var > 0:
                parts.append((var, n))
    if not parts:
        return level
    total = sum(v for v, _ in parts)
    df = total**2 / sum(v * v / (n - 1) for v, n in parts)
    inflation = total / sum(v * (n - 1) / n for v, n in parts)
    z = np.sqrt(inflation) * sps.t.ppf(0.5 + level / 2, df)
    return float(min(2 * ndtr(z) - 1, 1 - 2 / n_resamples))


def _leave_one_out_means(matrix: np.ndarray, axis: int) -> np.ndarray:
    """The matrix mean without each row (``axis=0``) or column (``axis=1``)."""
    n, other = matrix.shape[axis], matrix.shape[1 - axis]
    return (matrix.sum() - matrix.sum(axis=1 - axis)) / ((n - 1) * other)


def seed_subject_interval(
    matrix: Sequence[Sequence[float]] | np.ndarray, n_resamples: int = 2000, level: float = 0.95, seed: int = 0
) -> Interval:
    """Mean of a seed x subject matrix and its 95 % interval, resampling seeds and test subjects.

    Each bootstrap resample draws seeds with replacement and test subjects with replacement, the
    same subjects for every drawn seed (the test hearts are shared by the seeds: a crossed design;
    drawing subjects anew within each seed would count each heart once per seed and shrink its
    share of the variance by the number of seeds). ``scipy.stats.bootstrap`` does both draws, as two
    unpaired samples of row and column indices, and its BCa interval takes the acceleration from
    the jackknife over seeds and over subjects. The level is widened for few units
    (:func:`expanded_level`).

    Degenerate inputs give a result, never a warning: a factor with one level is not resampled
    (``unit`` says which one was); one seed and one subject give a NaN interval; identical values
    give the interval ``[value, value]`` (every resample has that mean); where the jackknife leaves
    BCa undefined (a 2 x 2 matrix of pure interaction: every leave-one-out mean is the same), the
    percentile interval of the same resamples is given; an empty matrix gives NaN.

    Args:
        matrix: rows = seeds, columns = test subjects; a paired difference passes the matrix of
            differences, so both arms get the same seeds and subjects.
        n_resamples: bootstrap resamples.
        level: nominal coverage.
        seed: seeds the resampling (reproducible reports).

    Returns:
        The :class:`Interval`.

    Raises:
        ValueError: ``matrix`` is not 2-D or holds NaN.
    """
    y = np.asarray(matrix, dtype=np.float64)
    if y.ndim != 2 or not np.isfinite(y).all():
        raise ValueError(f"expected a finite seeds x subjects matrix, got shape {y.shape}")
    n_seeds, n_subjects = y.shape
    unit = UNITS[(n_seeds > 1, n_subjects > 1)]
    if y.size == 0:
        return Interval(float("nan"), float("nan"), float("nan"), n_seeds, n_subjects, "none (no complete seed)")
    mean = float(y.mean())
    if y.size == 1:
        return Interval(mean, float("nan"), float("nan"), n_seeds, n_subjects, unit)
    if np.ptp(y) == 0:
        return Interval(mean, mean, mean, n_seeds, n_subjects, unit)
    # resample only the factors with more than one level (a jackknife of one unit is empty)
    factors = [axis for axis in (0, 1) if y.shape[axis] > 1]
    data = tuple(np.arange(y.shape[axis]) for axis in factors)

    def matrix_mean(*indices: np.ndarray, axis: int = -1) -> np.ndarray:
        rows = indices[factors.index(0)] if 0 in factors else np.zeros((*indices[0].shape[:-1], 1), dtype=int)
        cols = indices[factors.index(1)] if 1 in factors else np.zeros((*indices[0].shape[:-1], 1), dtype=int)
        return y[rows[..., :, None], cols[..., None, :]].mean(axis=(-2, -1))

    confidence = expanded_level(y, level, n_resamples)
    low = high = float("nan")
    for method in ("BCa", "percentile"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # scipy warns, then returns NaN, where BCa is undefined
            try:
                result = sps.bootstrap(
                    data,
                    matrix_mean,
                    n_resamples=n_resamples,
                    batch=max(1, min(n_resamples, 200_000 // y.size)),
                    vectorized=True,
                    paired=False,
                    confidence_level=confidence,
                    method=method,
                    rng=np.random.default_rng(seed),
                )
            except (Warning, ValueError):
                continue
        low, high = float(result.confidence_interval.low), float(result.confidence_interval.high)
        break
    return Interval(mean, low, high, n_seeds, n_subjects, unit)


def seed_subject_matrix(rows: pd.DataFrame, value: str) -> np.ndarray:
    """``rows`` (one per seed and subject) as a seeds x subjects matrix of ``value``.

    A subject that is missing for every seed is dropped, then every seed that still lacks a
    subject (a test that did not finish): the interval rests on a complete crossing.
    """
    finite = rows.assign(**{value: rows[value].where(np.isfinite(rows[value]))})
    table = finite.pivot_table(index="seed", columns="subject", values=value, aggfunc="mean", sort=True, dropna=False)
    table = table.dropna(axis=1, how="all").dropna(axis=0, how="any")
    return table.to_numpy(dtype=np.float64)


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
    config = hydra_config_path(cell_dir)
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
            df = pd.read_csv(path, usecols=lambda c: c in ("subject", "slice", "frame", *METRICS))
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


def interval_columns(interval: Interval, prefix: str, mean_suffix: str = "") -> dict[str, float]:
    """``<prefix><mean_suffix>`` (the mean), ``<prefix>_lo``, ``<prefix>_hi`` and ``<prefix>_half`` (the half-width)."""
    return {
        prefix + mean_suffix: interval.mean,
        f"{prefix}_lo": interval.low,
        f"{prefix}_hi": interval.high,
        f"{prefix}_half": interval.half_width,
    }


def _count(values: pd.Series) -> str:
    lo, hi = int(values.min()), int(values.max())
    return str(lo) if lo == hi else f"{lo}-{hi}"


def interval_caption(table: pd.DataFrame, level: float = 0.95) -> str:
    """What the intervals of a table resample and how many units they rest on.

    E.g. ``95 % interval: BCa bootstrap resampling seeds and subjects (n_seeds=10, n_subjects=11)``;
    counts that differ between rows are given as ranges, units that differ are all named.
    """
    if table.empty:
        return f"{round(level * 100)} % interval: none (no rows)"
    units = " / ".join(dict.fromkeys(table["unit"]))
    return (
        f"{round(level * 100)} % interval: BCa bootstrap resampling {units} "
        f"(n_seeds={_count(table['seeds'])}, n_subjects={_count(table['subjects'])})"
    )


def learning_curve(subjects: pd.DataFrame, n_boot: int = 2000, seed: int = 0) -> pd.DataFrame:
    """Dice / HD95 per (test set, strategy, n): mean over seeds and subjects with its 95 % interval.

    The interval is :func:`seed_subject_interval`'s (seeds and test subjects resampled); ``unit``
    names what was resampled, ``seeds`` / ``subjects`` count the units. ``dice_seed_sd`` is the
    standard deviation of the per-seed means (the seed-to-seed spread, part of the interval).
    """
    rows = []
    for (test_set, strategy, n), g in subjects.groupby(["test_set", "strategy", "n"], sort=True):
        row: dict[str, object] = {"test_set": test_set, "strategy": strategy, "n": int(n)}
        for metric in METRICS:
            interval = seed_subject_interval(seed_subject_matrix(g, metric), n_boot, seed=seed)
            row.update(interval_columns(interval, metric, "_mean"))
            if metric == "dice":
                row.update({"seeds": interval.n_seeds, "subjects": interval.n_subjects, "unit": interval.unit})
        seed_means = g.groupby("seed")["dice"].mean()
        row["dice_seed_sd"] = float(seed_means.std(ddof=1)) if len(seed_means) > 1 else 0.0
        rows.append(row)
    return _order(pd.DataFrame(rows))


def paired_differences(
    subjects: pd.DataFrame, reference: str = REFERENCE, n_boot: int = 2000, seed: int = 0
) -> pd.DataFrame:
    """Each strategy minus ``reference`` at the same test set, n, seed and test subject.

    The per-(seed, subject) differences form a seeds x subjects matrix (the seeds both strategies
    ran) whose mean gets :func:`seed_subject_interval`'s interval: each resample draws the same
    seeds and subjects for both arms, so what the seed does to both (the chosen labelled subjects,
    the test hearts) cancels. ``d_<metric>_half`` is the half-width. A strategy trained on another
    phantom randomisation than ``reference`` is not paired on the tagged test split (each store
    has its own test hearts): compare it on the shifted sets, ``none`` being the fixed phantom.
    ``dice_better`` / ``hd95_better`` say whether the interval excludes 0 in the strategy's favour
    (Dice up, HD95 down).
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
            g = g.assign(**{f"d_{m}": g[m] - g[f"{m}_ref"] for m in METRICS})
            row: dict[str, object] = {"test_set": test_set, "strategy": strategy, "n": int(n)}
            for metric in METRICS:
                interval = seed_subject_interval(seed_subject_matrix(g, f"d_{metric}"), n_boot, seed=seed)
                row.update(interval_columns(interval, f"d_{metric}"))
                if metric == "dice":
                    row.update({"seeds": interval.n_seeds, "subjects": interval.n_subjects, "unit": interval.unit})
            row["dice_better"] = bool(row["d_dice_lo"] > 0)
            row["hd95_better"] = bool(row["d_hd95_mm_hi"] < 0)
            rows.append(row)
    if not rows:
        return pd.DataFrame(
            columns=["test_set", "strategy", "n", "seeds", "subjects", "unit", "d_dice", "d_dice_lo", "d_dice_hi"]
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
    "UNITS",
    "Interval",
    "convergence",
    "convergence_summary",
    "epochs_to_fraction",
    "expanded_level",
    "find_cells",
    "interval_caption",
    "interval_columns",
    "learning_curve",
    "load_cells",
    "paired_differences",
    "seed_subject_interval",
    "seed_subject_matrix",
    "subject_means",
    "validation_curve",
]
