"""SPAMM tagging: cached pattern vs the direct rotation simulation, limits, geometry, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from tagseg.errors import ConfigError
from tagseg.physics.tagging import apply_tagging, simulate_tagging_direct, tag_mz, tag_pattern


@pytest.mark.parametrize(
    "spacing_px, flip_deg, pattern, angle_deg, offset_px",
    [
        (5.0, 70.0, (1, 3, 3, 1), 45.0, (0.0, 0.0)),
        (7.5, 100.0, (1, 3, 3, 1), 45.0, (1.3, -2.0)),
        (4.0, 90.0, (1, 1), 30.0, (0.0, 0.5)),
        (12.0, 45.0, (1, 2, 1), 0.0, (3.0, 0.0)),
        (2.0, 180.0, (1, 4, 6, 4, 1), 60.0, (0.25, 0.75)),
    ],
)
def test_cached_pattern_equals_direct_simulation(spacing_px, flip_deg, pattern, angle_deg, offset_px):
    image = torch.rand(24, 20, generator=torch.Generator().manual_seed(1))
    direct = simulate_tagging_direct(image, spacing_px, flip_deg, pattern, angle_deg, offset_px)
    fast = apply_tagging(image, spacing_px, flip_deg, pattern, angle_deg, offset_px)
    assert fast.dtype == torch.float32
    assert (fast - direct).abs().max().item() < 1e-5


def test_batch_shape_and_pattern_cached():
    images = torch.rand(2, 3, 16, 16)
    out = apply_tagging(images)
    assert out.shape == images.shape
    torch.testing.assert_close(out[1, 2], apply_tagging(images[1, 2]))
    assert tag_pattern((16, 16)) is tag_pattern((16, 16))  # computed once per (shape, params)


def test_flip_zero_leaves_image_unchanged():
    image = torch.rand(16, 16)
    torch.testing.assert_close(apply_tagging(image, flip_deg=0.0), image)


def test_ninety_degrees_one_one_troughs_reach_zero():
    p = tag_pattern((64, 64), spacing_px=8.0, flip_deg=90.0, pattern=(1, 1))
    # 1-1 SPAMM: Mz = (1 - cos(theta)) / 2 per set: zero on the tag lines, full between them
    assert p.min().item() < 1e-6 and p.max().item() > 0.99  # grid samples near the crest
    assert p[0, 0].item() == pytest.approx(0.0, abs=1e-12)  # tag phase zero at pixel (0, 0)


def test_default_geometry_follows_diagonals():
    # phase of set 1 depends on x + y only, set 2 on x - y only (x, y = row, column)
    rows = torch.tensor([3.0, 5.0, 2.0])
    cols = torch.tensor([4.0, 2.0, 5.0])  # same x + y = 7
    mz1 = tag_mz(rows, cols, spacing_px=5.0, flip_deg=90.0, pattern=(1, 1), offset_px=(0.0, 0.0))
    # hand value: (1 - cos(2 pi (x+y) / (5 sqrt 2))) / 2 * (1 - cos(2 pi (x-y) / (5 sqrt 2))) / 2
    k = 2 * math.pi / (5 * math.sqrt(2))
    expect = [(1 - math.cos(k * 7)) / 2 * (1 - math.cos(k * (r - c))) / 2 for r, c in zip(rows.tolist(), cols.tolist())]
    np.testing.assert_allclose(mz1.numpy(), expect, atol=1e-6)


@pytest.mark.parametrize("spacing_px, angle_deg", [(5.0, 45.0), (6.5, 45.0), (9.0, 20.0)])
def test_measured_tag_spacing_within_3_percent(spacing_px, angle_deg):
    n, pad = 256, 2048
    p = tag_pattern((n, n), spacing_px=spacing_px, angle_deg=angle_deg).double().numpy()
    spec = np.abs(np.fft.fft2(p - p.mean(), s=(pad, pad)))
    fr = np.fft.fftfreq(pad)
    # the first line set's fundamental lies along its normal (cos a, sin a)
    a = math.radians(angle_deg)
    radial = np.add.outer(fr * math.cos(a), fr * math.sin(a))
    perp = np.abs(np.add.outer(-fr * math.sin(a), fr * math.cos(a)))
    spec[(radial <= 0.02) | (perp > 0.01)] = 0
    i, j = np.unravel_index(np.argmax(spec), spec.shape)
    measured = 1.0 / math.hypot(fr[i], fr[j])
    assert abs(measured - spacing_px) / spacing_px < 0.03


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"spacing_px": 1.5}, "spacing_px must be >= 2 pixels.*got 1.5"),
        ({"flip_deg": 190.0}, "flip_deg must be in .*got 190.0"),
        ({"flip_deg": -5.0}, "flip_deg must be in .*got -5.0"),
        ({"pattern": ()}, "pattern must be"),
        ({"pattern": (1, -1)}, "pattern must be"),
    ],
)
def test_bad_parameters_named(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        apply_tagging(torch.rand(8, 8), **kwargs)


def test_direct_runs_on_one_image_per_call():
    image = torch.rand(8, 8)
    assert simulate_tagging_direct(image).shape == (8, 8)
