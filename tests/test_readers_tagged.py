"""Real tagged reader: MATLAB v7.3 axes and object-reference ROIs, NIfTI and DICOM layouts, bad input."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import raw_fixtures as rf

from tagseg.data.prepare import prepare_store
from tagseg.data.readers.tagged import TaggedSource
from tagseg.errors import ConfigError, DataError
from tagseg.io.store import read_store, store_attrs

ROWS, COLS = rf.TAG_SHAPE  # 12 x 10: non-square, so a transposed read cannot pass


def square(x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])


def ring(t: int) -> np.ndarray:
    """Expected MYO mask of ``square_rois`` at frame t (hand-computed pixel centres)."""
    m = np.zeros(rf.TAG_SHAPE, np.uint8)
    m[2:10, 1 + t : 8 + t] = 2  # outer: y 1.5..9.5 -> rows 2..9, x 0.5+t..7.5+t -> cols 1+t..7+t
    m[4:7, 3 + t : 6 + t] = 0  # inner: y 3.5..6.5 -> rows 4..6, x 2.5+t..5.5+t -> cols 3+t..5+t
    return m


def square_rois(n: int):
    inner = [square(2.5 + t, 5.5 + t, 3.5, 6.5) for t in range(n)]
    outer = [square(0.5 + t, 7.5 + t, 1.5, 9.5) for t in range(n)]
    return inner, outer


def scaled(a):
    a = np.asarray(a, np.float64)
    return (a - a.min()) / (a.max() - a.min())


def test_authors_layout_axes_rois_groups(tmp_path, caplog):
    movie = np.random.default_rng(0).uniform(0, 1, (3, ROWS, COLS))
    rf.write_matlab_imt(tmp_path / "1_C_C_201_base.h5", movie)
    rf.write_matlab_roi(tmp_path / "1_C_C_201_base_roi.h5", *square_rois(3))
    rf.make_tagged_slice(tmp_path, "2_D_D_305_mid", seed=2, spacing=(1.1, 1.2), empty_frames=[1])
    out = tmp_path / "tagged.h5"
    with caplog.at_level(logging.WARNING):
        report = prepare_store(TaggedSource(tmp_path), out, image_size=None)
    assert report.skipped == []
    assert sum("no pixel spacing" in r.message and "1_C_C_201_base.h5" in r.message for r in caplog.records) == 1
    store = read_store(out)
    control = store.meta["subject"] == "1_C_C_201"
    assert list(store.meta["frame"][control]) == [0, 1, 2]
    for row, t in zip(np.flatnonzero(control), range(3)):
        np.testing.assert_allclose(store.images[row], scaled(movie[t]), atol=1e-6)  # (t, y, x) -> rows y, cols x
        np.testing.assert_array_equal(store.masks[row], ring(t))
    assert set(store.meta["group"][control]) == {"control"}
    assert set(store.meta["location"][control]) == {"base"} and set(store.meta["slice"][control]) == {0}
    np.testing.assert_allclose(store.meta["spacing_mm"][control], 1.4285714, rtol=1e-6)
    dmd = store.meta["subject"] == "2_D_D_305"
    assert set(store.meta["group"][dmd]) == {"dmd"} and set(store.meta["slice"][dmd]) == {1}
    assert list(store.meta["frame"][dmd]) == [0, 2, 3]  # frame 1 has empty ROI cells: unlabelled
    np.testing.assert_allclose(store.meta["spacing_mm"][dmd], np.tile([1.1, 1.2], (3, 1)), rtol=1e-6)
    assert set(np.unique(store.masks)) == {0, 2}
    assert list(store.meta["n_frames"][dmd]) == [4, 4, 4]
    assert list(store.meta["phase"][control]) == ["ED", "", ""]
    attrs = store_attrs(out)
    assert attrs["labelled"] and attrs["n_default_spacing"] == 1


def test_roi_origin_and_transposed_points(tmp_path):
    movie = np.random.default_rng(1).uniform(0, 1, (2, ROWS, COLS))
    rf.write_matlab_imt(tmp_path / "3_C_C_1_apex.h5", movie)
    inner, outer = square_rois(2)
    rf.write_matlab_roi(tmp_path / "3_C_C_1_apex_roi.h5", [p.T + 1 for p in inner], [p.T + 1 for p in outer])
    src = TaggedSource(tmp_path, roi_origin=1)
    recs = src.load(src.items()[0], 0)
    np.testing.assert_array_equal(recs[1].mask, ring(1))
    assert recs[0].slice == 2  # apex


def test_wrong_axes_named_in_error(tmp_path):
    rf.make_tagged_slice(tmp_path, "1_C_C_201_base")
    src = TaggedSource(tmp_path, imt_axes="txy")
    with pytest.raises(
        DataError, match=r"1_C_C_201_base_roi.h5: 4 ROI frames but .*1_C_C_201_base.h5 'imt' has 10 frames.*imt_axes"
    ):
        src.load(src.items()[0], 0)
    with pytest.raises(ConfigError, match="imt_axes"):
        TaggedSource(tmp_path, imt_axes="xyz")


def test_unreadable_hdf5(tmp_path):
    rf.make_tagged_slice(tmp_path, "1_C_C_201_base")
    (tmp_path / "1_C_C_201_base_roi.h5").write_bytes(b"MATLAB 5.0 MAT-file, not HDF5")
    src = TaggedSource(tmp_path)
    with pytest.raises(DataError, match=r"1_C_C_201_base_roi.h5: unreadable HDF5"):
        src.load(src.items()[0], 0)


def test_missing_imt_key(tmp_path):
    rf.make_tagged_slice(tmp_path, "1_C_C_201_base")
    import h5py

    with h5py.File(tmp_path / "1_C_C_201_base.h5", "w") as f:
        f["im"] = np.zeros((3, 3, 3))
    src = TaggedSource(tmp_path)
    with pytest.raises(DataError, match=r"1_C_C_201_base.h5: missing key 'imt'"):
        src.load(src.items()[0], 0)


def test_empty_mask(tmp_path):
    movie = np.random.default_rng(0).uniform(0, 1, (2, ROWS, COLS))
    rf.write_matlab_imt(tmp_path / "1_C_C_201_base.h5", movie)
    inner, _ = square_rois(2)
    rf.write_matlab_roi(tmp_path / "1_C_C_201_base_roi.h5", inner, inner)
    src = TaggedSource(tmp_path)
    with pytest.raises(DataError, match=r"1_C_C_201_base_roi.h5: frame 0: empty mask"):
        src.load(src.items()[0], 0)


def test_missing_roi_and_images_only(tmp_path):
    movie = np.random.default_rng(0).uniform(0, 1, (3, ROWS, COLS))
    rf.write_matlab_imt(tmp_path / "1_C_C_201_base.h5", movie)
    src = TaggedSource(tmp_path)
    with pytest.raises(DataError, match=r"1_C_C_201_base_roi.h5: label file not found"):
        src.load(src.items()[0], 0)
    out = tmp_path / "domain_b.h5"
    prepare_store(TaggedSource(tmp_path, images_only=True), out, image_size=None)
    store = read_store(out)
    assert len(store) == 3 and not store.masks.any() and not store.attrs["labelled"]


def test_missing_root(tmp_path):
    with pytest.raises(DataError, match=r"(?s)nothing: tagged root folder not found.*_roi.h5"):
        TaggedSource(tmp_path / "nothing").items()


def test_nifti_layout(tmp_path, caplog):
    rng = np.random.default_rng(3)
    image = rng.uniform(0, 500, (COLS, ROWS, 3))  # (x, y, t)
    mask = np.zeros((COLS, ROWS, 3), np.uint8)
    mask[2:6, 3:8, 0] = 1
    mask[1:4, 2:5, 2] = 1  # frame 1 unlabelled
    rf.write_nifti(tmp_path / "7_D_D_9_mid.nii.gz", image, (1.1, 1.3, 1.0))
    rf.write_nifti(tmp_path / "7_D_D_9_mid_mask.nii.gz", mask, (1.1, 1.3, 1.0))
    src = TaggedSource(tmp_path)
    recs = src.load(src.items()[0], 0)
    assert [r.frame for r in recs] == [0, 2]
    np.testing.assert_array_equal(recs[1].image, image[:, :, 2].T.astype(np.float32))
    np.testing.assert_array_equal(recs[1].mask, 2 * mask[:, :, 2].T)
    assert recs[0].spacing_mm == pytest.approx((1.3, 1.1)) and recs[0].group == "dmd"
    # no spacing in the header (pixdim 1, unknown units) -> the default, with a warning
    rf.write_nifti(tmp_path / "7_D_D_9_mid.nii.gz", image, None, units=False)
    with caplog.at_level(logging.WARNING):
        recs = TaggedSource(tmp_path).load(src.items()[0], 0)
    assert recs[0].spacing_mm == (1.4285714, 1.4285714)
    assert any("no pixel spacing" in r.message for r in caplog.records)


def test_nifti_mask_label_outside_and_empty(tmp_path):
    image = np.ones((COLS, ROWS, 2))
    rf.write_nifti(tmp_path / "s.nii.gz", image, (1.0, 1.0, 1.0))
    mask = np.zeros((COLS, ROWS, 2), np.uint8)
    mask[1, 1, 0] = 3
    rf.write_nifti(tmp_path / "s_mask.nii.gz", mask)
    src = TaggedSource(tmp_path)
    with pytest.raises(
        DataError, match=r"s_mask.nii.gz: label value\(s\) \[3\] outside the convention 0 background, 1 or 2"
    ):
        src.load(src.items()[0], 0)
    rf.write_nifti(tmp_path / "s_mask.nii.gz", np.zeros_like(mask))
    with pytest.raises(DataError, match=r"s_mask.nii.gz: empty mask"):
        src.load(src.items()[0], 0)
    rf.write_nifti(tmp_path / "s_mask.nii.gz", np.ones((COLS, ROWS + 1, 2), np.uint8))
    with pytest.raises(DataError, match=r"s_mask.nii.gz: label shape .* differs from image"):
        src.load(src.items()[0], 0)


def test_dicom_layout(tmp_path):
    rng = np.random.default_rng(4)
    frames = rng.integers(0, 900, (3, ROWS, COLS))
    for name, inst in (("b.dcm", 2), ("a.dcm", 3), ("c.dcm", 1)):  # file names out of order
        rf.write_dicom(tmp_path / "5_C_C_7_base" / name, frames[inst - 1], spacing=(1.4, 1.5), instance=inst)
    mask = np.zeros((COLS, ROWS, 3), np.uint8)
    mask[2:7, 3:9, :] = 2
    rf.write_nifti(tmp_path / "5_C_C_7_base_mask.nii.gz", mask)
    src = TaggedSource(tmp_path)
    items = src.items()
    assert [i.kind for i in items] == ["dicom"]
    recs = src.load(items[0], 0)
    assert len(recs) == 3
    for t, rec in enumerate(recs):
        np.testing.assert_array_equal(rec.image, frames[t].astype(np.float32))
        np.testing.assert_array_equal(rec.mask, mask[:, :, t].T)
    assert recs[0].spacing_mm == (1.4, 1.5) and recs[0].group == "control"
