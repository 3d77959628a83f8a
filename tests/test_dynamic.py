"""method=physics_dynamic: tags carried by the motion and faded with time (synthetic known motion)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.ndimage import gaussian_filter, map_coordinates

from tagseg.errors import ConfigError
from tagseg.io.store import read_store, write_store
from tagseg.physics.dynamic import FadingParams, dynamic_tagging, ed_positions_from_displacement, ed_positions_from_flow
from tagseg.physics.fading import faded_mz
from tagseg.physics.tagging import tag_mz
from tagseg.translate.physics import PhysicsDynamicTranslator

SIZE, T, SPACING = 64, 6, 6.0
TAG = {"spacing_px": SPACING, "flip_deg": 70.0}


A, B = -0.06, np.array([1.0, -0.5])  # contraction towards (32, 32) plus a drift: up to ~2.5 px


def lagrangian_displacement(t: int) -> np.ndarray:
    """The store convention: displacement of the tissue at each ED pixel X, ``u(X) = s (A (X - 32) + B)``."""
    grid = np.mgrid[:SIZE, :SIZE].astype(np.float64)
    s = t / (T - 1)
    return (s * (A * (grid - 32) + B[:, None, None])).astype(np.float32)


def true_ed_positions(t: int) -> np.ndarray:
    """Analytic inverse: the ED position of the tissue at each pixel x of frame t."""
    grid = np.mgrid[:SIZE, :SIZE].astype(np.float64)
    s = t / (T - 1)
    return 32 + (grid - 32 - s * B[:, None, None]) / (1 + s * A)


def make_moving_store(path, with_displacement: bool) -> dict:
    rng = np.random.default_rng(0)
    r, c = np.mgrid[:SIZE, :SIZE].astype(np.float64)
    rad = np.hypot(r - 32, c - 32)
    myo = (rad > 12) & (rad < 22)
    texture = gaussian_filter(rng.random((SIZE, SIZE)), 1.5)
    ed = np.clip(0.3 + 0.4 * myo + 3.0 * (texture - texture.mean()), 0, 1)
    ed_mask = np.where(myo, 2, np.where(rad <= 12, 3, 0)).astype(np.uint8)
    images, masks, disp = [], [], []
    for t in range(T):
        coords = true_ed_positions(t)  # frame_t(x) = ED(X_t(x))
        images.append(map_coordinates(ed, coords, order=3, mode="nearest"))
        masks.append(map_coordinates(ed_mask, coords, order=0, mode="nearest"))
        disp.append(lagrangian_displacement(t))
    images = np.clip(np.asarray(images, np.float32), 0, 1)
    meta = {
        "subject": ["ph"] * T,
        "slice": [0] * T,
        "frame": list(range(T)),
        "n_frames": [T] * T,
        "phase": ["ED"] + [""] * (T - 1),
        "group": ["control"] * T,
        "spacing_mm": [[1.4, 1.4]] * T,
        "source": ["phantom-cine"] * T,
        "split": ["train"] * T,
    }
    extras = {"displacement": np.asarray(disp, np.float32)} if with_displacement else None
    write_store(path, images, np.asarray(masks), meta, extras=extras, name="phantom-cine")
    return {"images": images, "masks": np.asarray(masks)}


def modulation(out: np.ndarray, src: np.ndarray) -> np.ndarray:
    """Tag modulation of the output (contrast = sqrt): out / sqrt(src)."""
    return out / np.maximum(np.sqrt(src), 1e-6)


def warped_ed_pattern(t: int) -> np.ndarray:
    pos = torch.from_numpy(true_ed_positions(t))
    return tag_mz(pos[0], pos[1], **TAG).abs().numpy()


def correlations(tmp_path, motion: str, with_displacement: bool) -> tuple[list[float], list[float]]:
    data = make_moving_store(tmp_path / "cine.h5", with_displacement)
    PhysicsDynamicTranslator(
        {"spacing_px": SPACING}, motion=motion, progress=False, n_figure=0, fading={"frame_ms": 50.0}
    ).run(tmp_path / "cine.h5", tmp_path / "dyn.h5")
    out = read_store(tmp_path / "dyn.h5")
    corr, depth = [], []
    for t in range(T):
        inside = (data["masks"][t] == 2) & (data["images"][t] > 0.05)
        m = modulation(out.images[t], data["images"][t])[inside]
        corr.append(float(np.corrcoef(m, warped_ed_pattern(t)[inside])[0, 1]))
        depth.append(float(m.std() / m.mean()))
    return corr, depth


def test_known_displacement_carries_tags_and_fades(tmp_path):
    corr, depth = correlations(tmp_path, "auto", with_displacement=True)
    assert min(corr) > 0.99
    assert all(b < a for a, b in zip(depth, depth[1:])), depth


def test_optical_flow_carries_tags_with_true_motion(tmp_path):
    corr, depth = correlations(tmp_path, "auto", with_displacement=False)
    assert min(corr) > 0.8, corr
    assert all(b < a for a, b in zip(depth, depth[1:])), depth
    # static tags (the paper) do not follow the motion: the last frame decorrelates
    static, _ = correlations(tmp_path, "none", with_displacement=False)
    assert static[-1] < 0.6 < corr[-1]


def test_tvl1_recovers_ed_positions(tmp_path):
    cine = make_moving_store(tmp_path / "c.h5", False)["images"]
    pos = ed_positions_from_flow(cine, ref=0).numpy()
    inner = (slice(None), slice(12, 52), slice(12, 52))
    assert np.abs(pos[-1][inner] - true_ed_positions(T - 1)[inner]).mean() < 0.3
    np.testing.assert_array_equal(pos[0], np.mgrid[:SIZE, :SIZE])


def test_lagrangian_displacement_inverted_to_ed_positions():
    u = torch.from_numpy(np.stack([lagrangian_displacement(t) for t in range(T)]))
    pos = ed_positions_from_displacement(u).numpy()
    inner = (slice(None), slice(8, 56), slice(8, 56))
    for t in range(T):
        assert np.abs(pos[t][inner] - true_ed_positions(t)[inner]).max() < 1e-3


def test_ed_es_only_slice_fades_by_its_frame_index():
    fading = FadingParams(frame_ms=40.0, t1_ms=900.0, readout_flip_deg=10.0)
    img = torch.full((2, 16, 16), 0.64)
    masks = np.full((2, 16, 16), 2, np.uint8)
    out = dynamic_tagging(img, masks, frames=[0, 9], ref=0, tag=TAG, fading=fading, motion="none", n_frames=20)
    r, c = np.mgrid[:16, :16].astype(np.float64)
    mz0 = tag_mz(torch.from_numpy(r), torch.from_numpy(c), **TAG)
    expect = 0.64 * faded_mz(mz0, 9, 40.0, 900.0, 10.0).abs()
    np.testing.assert_allclose(out[1].numpy(), expect.numpy(), atol=1e-6)
    np.testing.assert_allclose(out[0].numpy(), (0.64 * mz0.abs()).numpy(), atol=1e-6)
    # frame time from the cycle when frame_ms is null
    assert FadingParams(cycle_ms=1000.0).frame_time_ms(25) == pytest.approx(40.0)


def test_blood_fades_faster_than_myocardium():
    fading = FadingParams(frame_ms=40.0)
    masks = np.zeros((2, 16, 16), np.uint8)
    masks[:, :, :8] = 2
    masks[:, :, 8:] = 3
    out = dynamic_tagging(torch.ones(2, 16, 16), masks, frames=[0, 5], ref=0, tag=TAG, fading=fading, motion="none")
    depth = lambda x: float(x.max() - x.min())  # noqa: E731
    assert depth(out[1, :, 8:]) < 0.5 * depth(out[1, :, :8])


def test_bad_motion_and_fading_named():
    with pytest.raises(ConfigError, match="method.motion must be one of .*'warp'"):
        PhysicsDynamicTranslator(motion="warp")
    with pytest.raises(ConfigError, match="method.fading.t1_ms must be > 0 ms, got -1"):
        PhysicsDynamicTranslator(fading={"t1_ms": -1})
    with pytest.raises(ConfigError, match=r"displacement must be \(T, 2, H, W\)"):
        dynamic_tagging(
            torch.ones(2, 8, 8),
            np.zeros((2, 8, 8), np.uint8),
            [0, 1],
            0,
            TAG,
            FadingParams(),
            motion="displacement",
            displacement=np.zeros((2, 8, 8)),
        )
    assert math.isfinite(FadingParams().t1_ms)
