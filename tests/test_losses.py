"""Shape information, shape-aware loss and the Eq. 4 segmentation loss against direct evaluations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from monai.losses import DiceCELoss

from tagseg.errors import ConfigError
from tagseg.losses import (
    SegmentationLoss,
    ShapeAwareLoss,
    deep_supervision_weights,
    shape_information,
    shape_information_batch,
)


def square(shape=(9, 9), top=2, left=2, size=5) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    m[top : top + size, left : left + size] = 1
    return m


def si_by_hand(top=2, left=2, size=5, shape=(9, 9), k=0.2) -> np.ndarray:
    """Eq. 1-2 for a square: the distance to the nearest outside pixel is the distance to the nearest side."""
    out = np.zeros(shape)
    dist = {}
    for r in range(top, top + size):
        for c in range(left, left + size):
            dist[r, c] = min(r - top + 1, top + size - r, c - left + 1, left + size - c)
    dmax = max(dist.values())
    for (r, c), d in dist.items():
        out[r, c] = 1.0 / (1.0 + math.exp(-(1.0 - d / dmax) / k))
    return out


def test_shape_information_equals_eq_1_2_on_a_square():
    si = shape_information(square())
    assert si.dtype == np.float32
    np.testing.assert_allclose(si, si_by_hand(), rtol=1e-6)
    assert si[4, 4] == pytest.approx(0.5)  # deepest point: phi = 1
    assert si[2, 2] == pytest.approx(1 / (1 + math.exp(-(1 - 1 / 3) / 0.2)), rel=1e-6)  # boundary: phi = 1/3
    assert (si[square() == 0] == 0).all()


def test_shape_information_k_and_types():
    np.testing.assert_allclose(shape_information(square(), k=1.0), si_by_hand(k=1.0), rtol=1e-6)
    t = shape_information(torch.from_numpy(square()))
    assert isinstance(t, torch.Tensor) and t.dtype == torch.float32
    np.testing.assert_allclose(t.numpy(), si_by_hand(), rtol=1e-6)


def test_shape_information_empty_and_full_masks():
    assert not shape_information(np.zeros((6, 6))).any()
    full = shape_information(np.ones((5, 5)))  # measured as if surrounded by background
    np.testing.assert_allclose(full, si_by_hand(top=0, left=0, size=5, shape=(5, 5)), rtol=1e-6)


def test_shape_information_batch_matches_single():
    masks = np.stack(
        [np.stack([square(), square(top=1, size=3)]), np.stack([np.zeros((9, 9), np.uint8), square(left=3, size=4)])]
    )
    si = shape_information_batch(masks)
    assert si.shape == (2, 2, 9, 9)
    for b in range(2):
        for c in range(2):
            np.testing.assert_array_equal(si[b, c], shape_information(masks[b, c]))
    assert isinstance(shape_information_batch(torch.from_numpy(masks)), torch.Tensor)


def test_bad_shape_information_input():
    with pytest.raises(ConfigError, match="loss.k"):
        shape_information(square(), k=0.0)
    with pytest.raises(ValueError, match="2D"):
        shape_information(np.zeros((2, 9, 9)))


def eq3_by_hand(probs: np.ndarray, target: np.ndarray, k=0.2) -> float:
    terms = []
    for b in range(probs.shape[0]):
        for c in range(probs.shape[1]):
            si = shape_information(target[b, c], k)
            terms.append(np.abs(probs[b, c] - si).sum() / max(target[b, c].sum(), 1))
    return float(np.mean(terms))


def test_shape_aware_loss_equals_eq_3():
    rng = np.random.default_rng(0)
    target = np.stack(
        [np.stack([square(), square(top=1, size=3)]), np.stack([square(left=3, size=4), square(size=2)])]
    ).astype(np.float32)
    probs = rng.random(target.shape).astype(np.float32)
    expected = eq3_by_hand(probs, target)
    loss = ShapeAwareLoss()
    assert loss(probs, target) == pytest.approx(expected, rel=1e-6)
    value = loss(torch.from_numpy(probs).requires_grad_(), torch.from_numpy(target))
    assert isinstance(value, torch.Tensor) and value.item() == pytest.approx(expected, rel=1e-5)
    value.backward()


def test_shape_aware_loss_is_zero_at_si_and_uses_given_si():
    target = np.stack([np.stack([square(), square(left=3, size=4)])]).astype(np.float32)
    si = shape_information_batch(target)
    loss = ShapeAwareLoss()
    assert loss(si, target) == pytest.approx(0.0, abs=1e-7)
    assert loss(torch.from_numpy(si), torch.from_numpy(target), torch.from_numpy(si)).item() == pytest.approx(
        0.0, abs=1e-7
    )
    # a given SI is used as is (here a deliberately different one)
    expected = np.mean(si.sum(axis=(-2, -1)) / target.sum(axis=(-2, -1)))  # |p - 0| summed over the area
    assert loss(si, target, np.zeros_like(si)) == pytest.approx(expected, rel=1e-6)


def test_shape_aware_loss_empty_target_is_predicted_area_not_nan():
    probs = np.full((1, 1, 4, 4), 0.25, np.float32)
    target = np.zeros_like(probs)
    assert ShapeAwareLoss()(probs, target) == pytest.approx(16 * 0.25)
    assert torch.isfinite(ShapeAwareLoss()(torch.from_numpy(probs), torch.from_numpy(target)))


def test_shape_aware_loss_bad_shapes():
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        ShapeAwareLoss()(np.zeros((1, 4, 4)), np.zeros((1, 4, 4)))
    with pytest.raises(ValueError, match="si must"):
        ShapeAwareLoss()(np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 4, 4)), np.zeros((1, 1, 4, 5)))


def batch(seed=0, n_classes=2, size=12):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(2, n_classes, size, size, generator=g)
    label = torch.zeros(2, 1, size, size, dtype=torch.int64)
    label[0, 0, 3:9, 3:9] = 1
    label[1, 0, 2:6, 4:10] = n_classes - 1
    return logits, label


def test_segmentation_loss_is_dice_plus_ce_plus_gamma_shape():
    logits, label = batch()
    out = SegmentationLoss(gamma=0.5)(logits, label)
    assert set(out) == {"loss", "dice", "ce", "shape"}
    dice_ce = DiceCELoss(to_onehot_y=True, softmax=True)(logits, label)
    assert (out["dice"] + out["ce"]).item() == pytest.approx(dice_ce.item(), rel=1e-5)
    probs = torch.softmax(logits, 1)[:, 1:].numpy()
    target = (label.numpy() == 1).astype(np.float32)
    assert out["shape"].item() == pytest.approx(eq3_by_hand(probs, target), rel=1e-5)
    assert out["loss"].item() == pytest.approx(dice_ce.item() + 0.5 * out["shape"].item(), rel=1e-5)
    assert SegmentationLoss(gamma=0.0)(logits, label)["loss"].item() == pytest.approx(dice_ce.item(), rel=1e-5)


def test_segmentation_loss_precomputed_si_and_several_classes():
    logits, label = batch(n_classes=3)
    target = torch.stack([label[:, 0] == c for c in (1, 2)], dim=1)
    si = shape_information_batch(target)
    loss = SegmentationLoss(gamma=1.0)
    a, b = loss(logits, label, si), loss(logits, label)
    assert a["loss"].item() == pytest.approx(b["loss"].item(), rel=1e-6)
    with pytest.raises(ValueError, match=r"si must be \(B, 2, H, W\)"):
        loss(logits, label, si[:, :1])


def test_segmentation_loss_backward_and_mixed_precision_inputs():
    logits, label = batch()
    logits = logits.to(torch.bfloat16).requires_grad_()
    out = SegmentationLoss(gamma=0.1)(logits, label)
    assert out["loss"].dtype == torch.float32
    out["loss"].backward()
    assert logits.grad is not None and torch.isfinite(logits.grad.float()).all()


def test_segmentation_loss_deep_supervision_heads():
    logits, label = batch()
    heads = torch.stack([logits, logits.flip(-1), 0.5 * logits], dim=1)
    loss = SegmentationLoss(gamma=0.2)
    w = deep_supervision_weights(3)
    assert w == pytest.approx([4 / 7, 2 / 7, 1 / 7])
    out = loss(heads, label)
    for key in out:
        expected = sum(wi * loss(heads[:, i], label)[key] for i, wi in enumerate(w))
        assert out[key].item() == pytest.approx(expected.item(), rel=1e-6)


def test_segmentation_loss_bad_config_and_shapes():
    with pytest.raises(ConfigError, match="gamma.*>= 0"):
        SegmentationLoss(gamma=-0.1)
    with pytest.raises(ConfigError, match="loss.k"):
        SegmentationLoss(k=0)
    logits, label = batch()
    with pytest.raises(ValueError, match=r"label \(B, 1, H, W\)"):
        SegmentationLoss()(logits, label[:, 0])
