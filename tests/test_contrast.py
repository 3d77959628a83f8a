"""Contrast change: sqrt, the transition-power variant, none, and the registry."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tagseg.errors import ConfigError
from tagseg.physics.contrast import get_contrast, myocardium_transitions, transition_power


def test_sqrt_is_elementwise_square_root():
    x = torch.tensor([[[0.0, 0.25], [0.64, 1.0]]])
    np.testing.assert_allclose(get_contrast("sqrt")(x).numpy(), [[[0.0, 0.5], [0.8, 1.0]]], atol=1e-7)


def test_none_is_identity():
    x = torch.rand(2, 3, 3)
    assert torch.equal(get_contrast("none")(x), x)


def test_transition_power_hand_values():
    x = torch.tensor([[0.1, 0.2, 0.6, 1.0]])
    y = transition_power(x, torch.tensor([0.2]), power=0.4)
    # below / at t unchanged; above: 0.2 + 0.8 * (0.4 / 0.8) ** 0.4 ; 1 -> 1
    np.testing.assert_allclose(y.numpy(), [[0.1, 0.2, 0.2 + 0.8 * 0.5**0.4, 1.0]], rtol=1e-6)
    grid = torch.linspace(0, 1, 101).view(1, -1)
    z = transition_power(grid, torch.tensor([0.3]))
    assert (z.diff() >= -1e-7).all() and (z >= grid - 1e-7).all() and z.max() <= 1.0


def test_transition_is_quantile_of_myocardium_only():
    img = torch.zeros(1, 4, 4)
    img[0, :2] = torch.tensor([0.1, 0.2, 0.3, 0.4])  # myocardium rows hold 0.1..0.4 (twice)
    img[0, 2:] = 0.9
    masks = np.zeros((1, 4, 4), np.uint8)
    masks[0, :2] = 2
    t = myocardium_transitions(img, masks, np.array([0.5]))
    assert t.item() == pytest.approx(0.25)


def test_power_draws_per_image_quantile_below_half():
    img = torch.rand(3, 8, 8)
    masks = np.full((3, 8, 8), 2, np.uint8)
    rngs = [np.random.default_rng([0, k]) for k in range(3)]
    y = get_contrast("power")(img, masks, rngs)
    assert y.shape == img.shape and ((y >= img - 1e-6) & (y <= 1.0)).all()
    q = [np.random.default_rng([0, k]).uniform(0, 0.5) for k in range(3)]
    for k in range(3):
        t = torch.quantile(img[k].reshape(-1), q[k])
        below = img[k] <= t
        assert torch.equal(y[k][below], img[k][below])


def test_unknown_contrast_named():
    with pytest.raises(ConfigError, match="physics.contrast must be one of .*got 'log'"):
        get_contrast("log")
