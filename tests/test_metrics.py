"""Dice and HD95 (METHOD Eq. 5-6): hand-computed values, the empty-mask policy, MONAI agreement."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter
from scipy.spatial.distance import cdist

from tagseg import metrics
from tagseg.metrics import boundary, dice, dice_batch, hd95, hd95_batch, image_diagonal_mm


def square(shape=(12, 12), top=2, left=2, size=4) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    m[top : top + size, left : left + size] = 1
    return m


def blobs(rng: np.random.Generator, n: int, size: int = 48) -> np.ndarray:
    """Random smooth blobs, some touching the image edge."""
    field = gaussian_filter(rng.standard_normal((n, size, size)), sigma=(0, 3, 3))
    return field > 0.05


def brute_hd(p: np.ndarray, g: np.ndarray, spacing, q=95.0) -> float:
    """Reference: all pairwise distances between boundary pixels."""
    pa = np.argwhere(boundary(p)) * np.asarray(spacing)
    pb = np.argwhere(boundary(g)) * np.asarray(spacing)
    d = cdist(pa, pb)
    return max(np.percentile(d.min(axis=1), q), np.percentile(d.min(axis=0), q))


def test_boundary_is_the_ring_of_a_square_and_includes_the_image_edge():
    b = boundary(square())
    assert b.sum() == 12  # 4x4 square minus its 2x2 interior
    assert not b[3:5, 3:5].any()
    full = np.ones((3, 4), bool)
    assert boundary(full).sum() == 10  # all but the 1x2 interior: the image edge is outside


def test_dice_hand_computed():
    a, b = square(), square(left=4)  # 16 pixels each, 8 shared
    assert dice(a, b) == pytest.approx(0.5)
    assert dice(a, a) == 1.0
    assert dice(a, square(left=7)) == 0.0


def test_hd95_offset_squares_isotropic_and_anisotropic():
    a = square()
    # 2 columns right: directed distances are {0 x4, 1 x4, 2 x4} both ways -> p95 = 2 px
    assert hd95(a, square(left=4)) == pytest.approx(2.0)
    # the same pixel offset in mm depends on the axis' spacing
    assert hd95(a, square(left=4), spacing_mm=(1.5, 0.5)) == pytest.approx(1.0)
    assert hd95(a, square(top=4), spacing_mm=(1.5, 0.5)) == pytest.approx(3.0)
    assert hd95(a, a, spacing_mm=(1.5, 0.5)) == 0.0


def test_hd95_uses_linearly_interpolated_percentile():
    line = np.zeros((10, 10), bool)
    line[5, 2:7] = True  # 5 boundary pixels
    dot = np.zeros_like(line)
    dot[5, 2] = True
    # line -> dot distances 0,1,2,3,4: p95 = 3 + 0.8 = 3.8; dot -> line: 0
    assert hd95(dot, line) == pytest.approx(3.8)
    assert hd95(line, dot, spacing_mm=(2.0, 0.5)) == pytest.approx(1.9)
    assert hd95(dot, line, percentile=100) == pytest.approx(4.0)


def test_empty_mask_policy():
    empty = np.zeros((12, 10), np.uint8)
    full = square((12, 10))
    diag = np.hypot(12 * 1.5, 10 * 0.5)
    assert image_diagonal_mm((12, 10), (1.5, 0.5)) == pytest.approx(diag)
    assert dice(empty, empty) == 1.0 and hd95(empty, empty, (1.5, 0.5)) == 0.0
    assert dice(full, empty) == 0.0 and hd95(full, empty, (1.5, 0.5)) == pytest.approx(diag)
    assert dice(empty, full) == 0.0 and hd95(empty, full, (1.5, 0.5)) == pytest.approx(diag)
    stack_p = np.stack([empty, full, empty, full])
    stack_g = np.stack([empty, empty, full, full])
    np.testing.assert_allclose(dice_batch(stack_p, stack_g), [1.0, 0.0, 0.0, 1.0])
    np.testing.assert_allclose(hd95_batch(stack_p, stack_g, (1.5, 0.5)), [0.0, diag, diag, 0.0])
    assert not np.isnan(hd95_batch(stack_p, stack_g)).any()


def test_torch_inputs_give_the_same_values():
    a, b = square(), square(left=4)
    assert dice(torch.from_numpy(a), torch.from_numpy(b)) == pytest.approx(0.5)
    assert hd95(torch.from_numpy(a).bool(), torch.from_numpy(b), (1.5, 0.5)) == pytest.approx(1.0)


def test_batch_versions_match_single_and_per_image_spacing():
    rng = np.random.default_rng(1)
    p, g = blobs(rng, 5), blobs(rng, 5)
    spacing = rng.uniform(0.5, 2.0, size=(5, 2))
    np.testing.assert_allclose(dice_batch(p, g), [dice(p[i], g[i]) for i in range(5)])
    np.testing.assert_allclose(hd95_batch(p, g, spacing), [hd95(p[i], g[i], spacing[i]) for i in range(5)])
    np.testing.assert_allclose(hd95_batch(p, g, (1.2, 0.8)), [hd95(p[i], g[i], (1.2, 0.8)) for i in range(5)])


@pytest.mark.parametrize("fraction", [0.0, 1.0], ids=["distance-transform", "kd-tree"])
def test_both_nearest_distance_paths_match_brute_force(monkeypatch, fraction):
    monkeypatch.setattr(metrics, "EDT_BOUNDARY_FRACTION", fraction)
    rng = np.random.default_rng(2)
    p, g = blobs(rng, 6), blobs(rng, 6)
    for i in range(6):
        assert hd95(p[i], g[i], (1.3, 0.7)) == pytest.approx(brute_hd(p[i], g[i], (1.3, 0.7)), rel=1e-9)


def test_hd95_agrees_with_monai():
    from monai.metrics import compute_hausdorff_distance

    rng = np.random.default_rng(3)
    p, g = blobs(rng, 6), blobs(rng, 6)
    spacing = (1.4, 0.9)
    ours = hd95_batch(p, g, spacing)
    theirs = compute_hausdorff_distance(
        torch.from_numpy(p[:, None]).float(),
        torch.from_numpy(g[:, None]).float(),
        include_background=True,
        percentile=95,
        spacing=spacing,
    )
    np.testing.assert_allclose(ours, theirs[:, 0].numpy(), rtol=1e-5)


def test_bad_input_raises():
    with pytest.raises(ValueError, match="same shape"):
        dice(np.zeros((4, 4)), np.zeros((4, 5)))
    with pytest.raises(ValueError, match=r"\(B, H, W\)"):
        dice_batch(np.zeros((4, 4)), np.zeros((4, 4)))
    with pytest.raises(ValueError, match="spacing_mm"):
        hd95(square(), square(), spacing_mm=(1.0, 0.0))
    with pytest.raises(ValueError, match="spacing_mm"):
        hd95_batch(np.stack([square()] * 2), np.stack([square()] * 2), spacing_mm=np.ones((3, 2)))
