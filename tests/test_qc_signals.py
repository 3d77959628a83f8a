"""QC signals on hand-made masks: a perfect ring, a broken ring, two rings, a filled disc, an empty mask.

Rings are ``r_in <= d <= r_out`` pixel-centre distances from a centre, spacing 1.5 mm: the wall of
``r_in = 8``, ``r_out = 14`` is ``r_out - r_in = 6`` pixels = 9 mm deep along a radius, give or
take the pixel grid (along an axis it is pixels 8..14, 7 pixels; off the axes down to 5.5).
"""

from __future__ import annotations

import numpy as np
import pytest

from tagseg.qc.signals import (
    N_RAYS,
    SIGNALS,
    entropy_over,
    image_signals,
    mean_pairwise_dice,
    shape_signals,
    temporal_signals,
    topology,
)

SPACING = (1.5, 1.5)
PX_MM2 = 2.25


def distance(shape: tuple[int, int], centre: tuple[float, float]) -> np.ndarray:
    rr, cc = np.mgrid[: shape[0], : shape[1]]
    return np.hypot(rr - centre[0], cc - centre[1])


def ring(shape=(64, 64), centre=(32, 32), r_in=8, r_out=14) -> np.ndarray:
    d = distance(shape, centre)
    return (d >= r_in) & (d <= r_out)


def broken_ring() -> np.ndarray:
    """The ring less a 30 degree wedge facing right (angles -15 to +15 degrees)."""
    m = ring()
    rr, cc = np.mgrid[:64, :64]
    angle = np.degrees(np.arctan2(-(rr - 32), cc - 32))
    return m & (np.abs(angle) > 15)


def two_rings() -> np.ndarray:
    return ring((64, 96), (32, 24)) | ring((64, 96), (32, 72))


def disc() -> np.ndarray:
    return distance((64, 64), (32, 32)) <= 14


def test_perfect_ring() -> None:
    s = shape_signals(ring(), SPACING)
    assert (s["n_components"], s["n_holes"], s["euler"], s["ring"]) == (1, 1, 0, 1)
    assert s["cavity_enclosed"] == 1
    assert s["cavity_mm2"] == pytest.approx((distance((64, 64), (32, 32)) < 8).sum() * PX_MM2)
    assert s["gap_fraction"] == 0
    assert s["thickness_mean_mm"] == pytest.approx(6 * 1.5, abs=0.75)  # within half a pixel
    assert 5.5 * 1.5 - 1e-9 <= s["thickness_min_mm"] <= 6 * 1.5
    assert s["thickness_cv"] < 0.1
    assert s["thickness_out_of_range"] == 0  # 10.5 mm is inside 3-25 mm
    # area: the pixel count, close to pi (14^2 - 8^2) pixels (pixel centres inside the annulus)
    assert s["area_mm2"] == pytest.approx(ring().sum() * PX_MM2)
    assert s["area_mm2"] == pytest.approx(np.pi * (14**2 - 8**2) * PX_MM2, rel=0.03)
    assert np.isnan(s["rv_gap_mm"]) and np.isnan(s["rv_in_cavity"])


def test_broken_ring() -> None:
    s = shape_signals(broken_ring(), SPACING)
    assert (s["n_components"], s["n_holes"], s["euler"], s["ring"]) == (1, 0, 1, 0)
    assert s["cavity_enclosed"] == 0  # the cavity leaks through the gap to the border
    # rays 5 degrees apart: 0, +-5, +-10 fall in the 30 degree gap, +-15 on its edge
    assert 5 / N_RAYS - 1e-9 <= s["gap_fraction"] <= 7 / N_RAYS + 1e-9
    assert s["thickness_mean_mm"] == pytest.approx(6 * 1.5, abs=0.75)


def test_two_rings() -> None:
    s = shape_signals(two_rings(), SPACING)
    assert (s["n_components"], s["n_holes"], s["euler"], s["ring"]) == (2, 2, 0, 0)
    assert s["cavity_enclosed"] == 0  # the centroid falls between the rings
    # seen from the midpoint each ring spans 2 asin(14.5 / 24) = 74 degrees: 148 of 360 degrees hit
    assert s["gap_fraction"] == pytest.approx(1 - 2 * 2 * np.degrees(np.arcsin(14.5 / 24)) / 360, abs=0.04)


def test_filled_disc() -> None:
    s = shape_signals(disc(), SPACING)
    assert (s["n_components"], s["n_holes"], s["euler"], s["ring"]) == (1, 0, 1, 0)
    assert s["cavity_enclosed"] == 0 and s["cavity_mm2"] == 0
    assert s["gap_fraction"] == 0
    # rays from the centre run through the radius, 14 px = 21 mm (in range: the disc fails on topology)
    assert s["thickness_mean_mm"] == pytest.approx(14 * 1.5, abs=0.75)
    assert s["thickness_out_of_range"] == 0


def test_empty_mask() -> None:
    s = shape_signals(np.zeros((32, 32), bool), SPACING)
    assert (s["n_components"], s["n_holes"], s["ring"], s["area_mm2"]) == (0, 0, 0, 0)
    assert s["gap_fraction"] == 1 and s["cavity_enclosed"] == 0
    assert np.isnan(s["thickness_mean_mm"]) and np.isnan(s["thickness_out_of_range"])


def test_topology_diagonal_wall_still_closes() -> None:
    # a one-pixel diagonal wall: 8-connected foreground, so the 4-connected inside stays a hole
    m = np.zeros((9, 9), bool)
    for i in range(4):
        m[4 - i, i + 1] = m[4 + i, i + 1] = m[4 - i, 7 - i] = m[4 + i, 7 - i] = True
    n_comp, n_holes, holes = topology(m)
    assert (n_comp, n_holes) == (1, 1) and holes[4, 4] == 1 and holes[0, 0] == 0


def test_rv_distance_and_cavity_share() -> None:
    myo = ring()
    rv = np.zeros_like(myo)
    rv[28:37, 49:53] = True  # the ring ends at column 46 on row 32: 3 px = 4.5 mm to the RV
    s = shape_signals(myo, SPACING, rv=rv)
    assert s["rv_gap_mm"] == pytest.approx(3 * 1.5)
    assert s["rv_in_cavity"] == 0
    inside = np.zeros_like(myo)
    inside[30:34, 30:34] = True
    assert shape_signals(myo, SPACING, rv=inside)["rv_in_cavity"] == 1


def test_entropy_normalised() -> None:
    region = np.ones((4, 4), bool)
    assert entropy_over(np.full((2, 4, 4), 0.5), region) == pytest.approx(1.0)
    assert entropy_over(np.full((4, 4, 4), 0.25), region) == pytest.approx(1.0)
    one_hot = np.zeros((2, 4, 4))
    one_hot[1] = 1
    assert entropy_over(one_hot, region) == pytest.approx(0.0, abs=1e-9)
    p = np.stack([np.full((4, 4), 0.9), np.full((4, 4), 0.1)])
    assert entropy_over(p, region) == pytest.approx(-(0.9 * np.log(0.9) + 0.1 * np.log(0.1)) / np.log(2))
    assert np.isnan(entropy_over(p, np.zeros((4, 4), bool)))


def test_pairwise_dice() -> None:
    a = np.zeros((4, 4), bool)
    a[:2] = True  # 8 px
    b = np.zeros((4, 4), bool)
    b[1:3] = True  # 8 px, 4 shared: Dice 0.5
    assert mean_pairwise_dice([a, a, b]) == pytest.approx((1 + 0.5 + 0.5) / 3)
    assert np.isnan(mean_pairwise_dice([a]))


def test_temporal_deviation() -> None:
    area = [100.0, 110.0, 90.0, 200.0, 50.0]
    centres = np.array([[10, 10], [10, 12], [10, 10], [14, 10], [np.nan, np.nan]])
    spacing = np.full((5, 2), 2.0)
    out = temporal_signals(area, centres, ["s0", "s0", "s0", "s0", "s1"], spacing)
    # slice s0: median area 105, median centre (10, 10)
    assert out["area_dev"][:4] == pytest.approx([5 / 105, 5 / 105, 15 / 105, 95 / 105])
    assert out["centre_dev_mm"][:4] == pytest.approx([0.0, 4.0, 0.0, 8.0])
    assert out["area_dev"][4] == 0 and np.isnan(out["centre_dev_mm"][4])  # one frame, no centre


def test_image_signals_table() -> None:
    labels = np.stack([ring(), broken_ring(), np.zeros((64, 64), bool)]).astype(np.uint8) * 2
    rows = image_signals(labels, np.full((3, 2), 1.5), [0, 0, 0], myo_label=2, entropy=[0.1, 0.2, np.nan])
    assert [list(r) for r in rows] == [list(SIGNALS)] * 3
    assert [r["ring"] for r in rows] == [1, 0, 0]
    assert rows[0]["entropy_myo"] == 0.1 and np.isnan(rows[0]["agreement_dice"])
    assert rows[2]["area_dev"] == 1.0  # empty frame: its whole median area is missing
