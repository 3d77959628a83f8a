"""Assertions on slice stores shared by the translate tests."""

from __future__ import annotations

import numpy as np

from tagseg.io.store import SliceStore


def assert_carried_over(src: SliceStore, out: SliceStore, source: str) -> None:
    """``out`` keeps ``src``'s masks, extras and every meta column, and names ``source`` in each row."""
    np.testing.assert_array_equal(out.masks, src.masks)
    assert sorted(out.extras) == sorted(src.extras)
    for key in src.extras:
        np.testing.assert_array_equal(out.extras[key], src.extras[key])
    assert sorted(out.meta) == sorted(src.meta)
    for key in src.meta:
        if key != "source":
            np.testing.assert_array_equal(out.meta[key], src.meta[key])
    assert list(out.meta["source"]) == [source] * len(src.images)
