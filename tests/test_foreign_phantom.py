"""experiments/foreign_phantom.py: a second tagged phantom, written apart from tagseg's, read by
`tagseg prepare data=tagged` with its mask and true motion."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from conftest import load_experiment_script
from scipy.ndimage import map_coordinates

from tagseg.data.prepare import prepare_store
from tagseg.data.readers.tagged import TaggedSource
from tagseg.io.store import read_store


@pytest.fixture(scope="module")
def foreign(tmp_path_factory):
    script = load_experiment_script("foreign_phantom")
    root = tmp_path_factory.mktemp("foreign")
    record = script.generate(root, subjects=1, frames=4, seed=3, matrix=128)
    return script, root, record


def test_the_motion_model_is_inverted_exactly():
    script = load_experiment_script("foreign_phantom")
    rng = np.random.default_rng(0)
    heart = script.Heart(10.0, -5.0, 20.0, 29.0, 0.9, 0.4, 0.35, 0.12, 1.0, 0.8, (2.0, -2.0))
    x, y = rng.uniform(-60, 60, (2, 500))
    fx, fy = script.forward(heart, x, y, 1.0)
    assert np.abs(np.hypot(fx - x, fy - y)).max() > 3.0  # the heart moves by millimetres
    bx, by = script.inverse(heart, fx, fy, 1.0)
    np.testing.assert_allclose(np.stack([bx, by]), np.stack([x, y]), atol=1e-3)
    # area-preserving contraction: the myocardial ring keeps its area at end-systole
    ring = lambda px, py: np.hypot(*script.to_heart(heart, px, py))  # noqa: E731
    grid = np.meshgrid(np.linspace(-60, 60, 601), np.linspace(-60, 60, 601))
    ed = ((ring(*grid) >= 20.0) & (ring(*grid) < 29.0)).sum()
    back = script.inverse(heart, *grid, 1.0)
    es = ((ring(*back) >= 20.0) & (ring(*back) < 29.0)).sum()
    assert abs(es / ed - 1.0) < 0.05


def test_slices_are_tagged_int16_with_a_myocardial_mask_that_moves_with_the_true_displacement(foreign):
    _, root, record = foreign
    assert [r["name"] for r in record] == ["F000_C_x_base", "F000_C_x_mid", "F000_C_x_apex"]
    assert json.loads((root / "foreign_phantom.json").read_text())["slices"] == record
    image = nib.load(root / "F000_C_x_mid.nii.gz")
    mask = np.asarray(nib.load(root / "F000_C_x_mid_mask.nii.gz").dataobj)
    disp = np.asarray(nib.load(root / "F000_C_x_mid_disp.nii.gz").dataobj)
    assert image.get_data_dtype() == np.int16 and image.shape == (128, 128, 4) and disp.shape == (128, 128, 4, 2)
    assert np.isclose(image.header.get_zooms()[0], record[1]["pixel_mm"], atol=1e-3)
    assert set(np.unique(mask)) == {0, 1} and 150 < mask[..., 0].sum() < 3000
    assert not disp[..., 0, :].any() and np.abs(disp).max() > 1.0  # Lagrangian: zero at ED, then pixels
    # each ED myocardial pixel, carried by the displacement, lands in the myocardium of the last frame
    rows, cols = np.nonzero(mask[..., 0].T)  # the arrays are (x, y, t): rows are y
    u_row, u_col = disp[cols, rows, 3, 0], disp[cols, rows, 3, 1]
    landed = map_coordinates(mask[..., 3].T.astype(float), [rows + u_row, cols + u_col], order=1)
    assert (landed > 0.5).mean() > 0.85
    # tagged: the myocardium carries a periodic modulation at ED (tags are 6-10 mm apart)
    ed = np.asarray(image.dataobj)[..., 0].T.astype(float)
    myo = ed[mask[..., 0].T > 0]
    assert myo.std() / myo.mean() > 0.15


def test_tagseg_prepare_reads_the_slices_with_mask_and_motion(foreign, tmp_path):
    _, root, _ = foreign
    report = prepare_store(TaggedSource(str(root)), tmp_path / "f.h5")
    assert report.skipped == []
    store = read_store(tmp_path / "f.h5")
    assert len(store) == 3 * 4 and set(np.unique(store.masks)) == {0, 2}  # myocardium is tagseg's label 2
    assert store.extras["displacement"].shape == (12, 2, 128, 128)
    mid = store.meta["slice"] == 1
    ed = np.asarray(nib.load(root / "F000_C_x_mid_mask.nii.gz").dataobj)[..., 0].T
    np.testing.assert_array_equal(store.masks[mid & (store.meta["frame"] == 0)][0] == 2, ed > 0)


def test_a_fixed_flip_and_grid_change_the_tags_only():
    script = load_experiment_script("foreign_phantom")
    drawn = script.spamm(np.random.default_rng(5))
    fixed = script.spamm(np.random.default_rng(5), flip_deg=150.0, grid=True)
    assert {k: fixed[k] for k in ("spacing", "angle", "phase")} == {k: drawn[k] for k in ("spacing", "angle", "phase")}
    assert fixed["grid"] is True
    assert fixed["depth"] == pytest.approx((1 - np.cos(np.radians(150.0))) / 2)  # 0.933: Mz folds at zero
    assert 0.32 <= drawn["depth"] <= 0.75  # (1 - cos a) / 2 for a drawn in 70-120 degrees
    a = script.render_slice(np.random.default_rng(7), "mid", 3, 64, 1.5, flip_deg=60.0, grid=True)
    b = script.render_slice(np.random.default_rng(7), "mid", 3, 64, 1.5, flip_deg=120.0, grid=True)
    np.testing.assert_array_equal(a[1], b[1])  # the same heart and motion
    np.testing.assert_array_equal(a[2], b[2])
    assert not np.array_equal(a[0], b[0])
