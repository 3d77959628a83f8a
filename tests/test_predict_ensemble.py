"""tagseg predict: flip TTA, ensembles of checkpoints, reference-point landmarks."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch
from torch import nn

from tagseg.contours import myocardial_contours
from tagseg.errors import ConfigError
from tagseg.models.segmenter import Ensemble, Segmenter, find_checkpoints, load_segmenters, softmax


class ShiftNet(nn.Module):
    """Logits that depend on the left / right position: flip TTA changes its output."""

    def __init__(self, bias: float = 0.0) -> None:
        super().__init__()
        self.bias = bias

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ramp = torch.linspace(-1.0, 1.0, x.shape[-1]).expand_as(x)
        return torch.cat([torch.zeros_like(x), 4.0 * x + 3.0 * ramp + self.bias], dim=1)


def frames() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.normal(size=(3, 20, 24)).astype(np.float32)


def test_flip_tta_averages_the_softmax_of_the_four_flips():
    seg = Segmenter(network=ShiftNet(), image_size=16)
    x = seg.preprocess(frames())
    expected = np.mean(
        [
            np.flip(softmax(seg.logits(np.flip(x, a).copy())), a) if a else softmax(seg.logits(x))
            for a in ((), (2,), (3,), (2, 3))
        ],
        axis=0,
    )
    np.testing.assert_allclose(seg.probabilities(x, tta=True), expected, rtol=1e-6)
    # the ramp cancels out over left / right flips: the TTA map no longer leans to one side
    plain, tta = seg.segment(frames()), seg.segment(frames(), tta=True)
    assert (plain[:, :, -6:] == 2).mean() > (plain[:, :, :6] == 2).mean() + 0.3
    assert abs((tta[:, :, -6:] == 2).mean() - (tta[:, :, :6] == 2).mean()) < 0.15


def test_ensemble_averages_member_softmax_even_at_different_sizes():
    a, b = Segmenter(network=ShiftNet(2.0), image_size=16), Segmenter(network=ShiftNet(-2.0), image_size=16)
    ens = Ensemble([a, b])
    x = a.preprocess(frames())
    avg = (softmax(a.logits(x)) + softmax(b.logits(x))) / 2
    from tagseg.models.segmenter import resize_nearest

    np.testing.assert_array_equal(
        ens.segment(frames()), np.where(resize_nearest(avg.argmax(1).astype(np.uint8), (20, 24)) == 1, 2, 0)
    )
    assert Ensemble([a, a]).segment(frames()).tolist() == a.segment(frames()).tolist()
    mixed = Ensemble([a, Segmenter(network=ShiftNet(-2.0), image_size=12)]).segment(frames())
    assert mixed.shape == (3, 20, 24) and set(np.unique(mixed)) <= {0, 2}
    with pytest.raises(ConfigError, match="different classes"):
        Ensemble([a, Segmenter(network=ShiftNet(), image_size=16, labels=(0, 1))])


def test_sweep_folder_and_list_are_ensembles(trained_ckpt, tmp_path):
    run = trained_ckpt.parents[1]
    for i in range(3):
        shutil.copytree(run, tmp_path / "sweep" / str(i) / "run")
    paths = find_checkpoints(tmp_path / "sweep")
    assert len(paths) == 3 and all(p.name == "best.ckpt" for p in paths)
    assert isinstance(load_segmenters([str(trained_ckpt), str(run)]), Ensemble)
    assert isinstance(load_segmenters(run), Segmenter)


def _ring(centre=(30.0, 30.0), shape=(60, 60)):
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    r = np.hypot(yy - centre[0], xx - centre[1])
    return (r < 14) & (r >= 8), yy, xx


def test_contours_start_on_the_landmark_ray_with_equal_counts():
    myo, yy, xx = _ring()
    c = myocardial_contours(myo, n_points=20, start_angle_deg=0.0)  # 0 deg: image right
    assert c.inner.shape == c.outer.shape == (20, 2) and c.landmark == "angle"
    assert c.outer[0] == pytest.approx([30 + 13.5, 30.0], abs=0.6) and c.inner[0] == pytest.approx(
        [30 + 7.5, 30.0], abs=0.6
    )
    # an RV to the left, touching the septum: start at its upper end (the anterior insertion), not at 0 deg
    rv = (np.hypot(yy - 30, xx - 8) < 9) & ~(np.hypot(yy - 30, xx - 30) < 14.5)
    c = myocardial_contours(myo, n_points=20, rv=rv, start_angle_deg=0.0)
    assert c.landmark == "rv_insertion"
    assert 90 < c.start_angle_deg < 180  # upper-left quadrant as displayed
    assert c.outer[0][1] < 30 and c.outer[0][0] < 30


def test_point_i_follows_a_translating_ring():
    pts = [myocardial_contours(_ring(centre=(30.0, 28.0 + t))[0], n_points=24).outer for t in range(3)]
    for t in (1, 2):  # the whole ring moves t px right: every point moves with it
        np.testing.assert_allclose(pts[t] - pts[0], np.tile([t, 0.0], (24, 1)), atol=0.35)
