"""Helpers: small phantom cohorts written in the four raw layouts (tagseg phantom), for tests."""

from __future__ import annotations

from pathlib import Path

from tagseg.data.phantom.cohort import CohortSpec
from tagseg.data.phantom.layouts import FORMATS, write_cohort

#: small and fast, but heterogeneous: non-square matrices, spacings, frames, every voxel order
TINY_COHORT = CohortSpec(matrix=(40, 52), spacing_mm=(1.6, 2.0), frames=(12, 14), slices=(3, 3))


def write_raw_trees(root: Path, n_subjects: int = 4, seed: int = 0, spec: CohortSpec = TINY_COHORT) -> dict[str, dict]:
    """The four raw datasets under ``root/<format>``; returns format -> manifest."""
    return {fmt: write_cohort(fmt, root / fmt, n_subjects, seed, spec) for fmt in FORMATS}
