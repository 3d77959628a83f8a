"""Subject-level, seeded train/val/test splits (no subject ever in two splits)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from tagseg.errors import ConfigError

SPLITS = ("train", "val", "test")


def split_subjects(
    subjects: Sequence[str], ratios: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0
) -> dict[str, str]:
    """Assign each distinct subject to a split.

    Subjects are sorted, shuffled with ``seed`` and cut by ``ratios`` (train, val, test), rounding
    so that every split with a positive ratio gets at least one subject when there are enough.

    Returns:
        subject -> "train" | "val" | "test".

    Raises:
        ConfigError: ratios are not three non-negative numbers with a positive sum.
    """
    ratios = [float(r) for r in ratios]
    if len(ratios) != 3 or min(ratios) < 0 or sum(ratios) <= 0:
        raise ConfigError(f"split ratios must be three non-negative numbers (train, val, test), got {ratios}")
    unique = sorted(set(str(s) for s in subjects))
    order = np.random.default_rng(seed).permutation(len(unique))
    total = sum(ratios)
    n = len(unique)
    n_val = int(round(n * ratios[1] / total))
    n_test = int(round(n * ratios[2] / total))
    if n >= 3:
        n_val = max(n_val, 1 if ratios[1] > 0 else 0)
        n_test = max(n_test, 1 if ratios[2] > 0 else 0)
    n_val = min(n_val, n)
    n_test = min(n_test, n - n_val)
    out: dict[str, str] = {}
    for rank, i in enumerate(order):
        split = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
        out[unique[i]] = split
    return out


def split_column(subjects: Sequence[str], ratios: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0) -> np.ndarray:
    """Per-row split names for a column of subject ids (see :func:`split_subjects`)."""
    mapping = split_subjects(subjects, ratios, seed)
    return np.asarray([mapping[str(s)] for s in subjects], dtype=object)
