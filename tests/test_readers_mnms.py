"""M&Ms reader: label remap 1<->3, 0-based ED/ES from the CSV, vendor/centre columns, splits, bad input."""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
import raw_fixtures as rf

from tagseg.data.prepare import prepare_store
from tagseg.data.readers.mnms import MnmsSource
from tagseg.errors import DataError
from tagseg.io.store import read_store


@pytest.fixture(scope="module")
def mnms_root(tmp_path_factory):
    return rf.make_mnms(tmp_path_factory.mktemp("mnms"))


@pytest.fixture(scope="module")
def store(mnms_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("store") / "mnms.h5"
    prepare_store(MnmsSource(mnms_root), out, seed=0, image_size=None)
    return read_store(out)


def test_remap_frames_and_exact_slices(mnms_root, store):
    assert len(store) == 5 * 2 * 2  # subjects x (ED, ES) x z
    sub = store.meta["subject"] == "A1D0Q7"
    # CSV (0-based): ED 1, ES 4
    assert set(store.meta["frame"][sub & (store.meta["phase"] == "ED")]) == {1}
    assert set(store.meta["frame"][sub & (store.meta["phase"] == "ES")]) == {4}
    gt = np.asarray(nib.load(str(mnms_root / "Training/Labeled/A1D0Q7/A1D0Q7_sa_gt.nii.gz")).dataobj)
    movie = np.asarray(nib.load(str(mnms_root / "Training/Labeled/A1D0Q7/A1D0Q7_sa.nii.gz")).dataobj)
    row = np.flatnonzero(sub & (store.meta["phase"] == "ES") & (store.meta["slice"] == 1))[0]
    raw = gt[:, :, 1, 4].T
    expected = raw.copy()
    expected[raw == 1] = 3  # M&Ms LV -> ACDC LV
    expected[raw == 3] = 1  # M&Ms RV -> ACDC RV
    np.testing.assert_array_equal(store.masks[row], expected)
    assert (store.masks[row] == 3).sum() == (raw == 1).sum() > 0
    np.testing.assert_array_equal(store.masks[row], rf.ring_labels(*rf.MNMS_SHAPE[:2]).T)
    img = movie[:, :, 1, 4].T.astype(np.float64)
    np.testing.assert_allclose(store.images[row], (img - img.min()) / (img.max() - img.min()), atol=1e-6)
    np.testing.assert_allclose(store.meta["spacing_mm"][row], [1.4, 1.2], rtol=1e-6)


def test_meta_columns_and_splits(store):
    sub = store.meta["subject"]
    row = np.flatnonzero(sub == "A1E9Q1")[0]
    assert (store.meta["group"][row], store.meta["vendor"][row], store.meta["centre"][row]) == ("DCM", "C", "4")
    assert set(store.meta["split"][sub == "B2C3D4"]) == {"val"}
    assert set(store.meta["split"][sub == "C3D4E5"]) == {"test"}
    for s in np.unique(sub):
        assert len(set(store.meta["split"][sub == s])) == 1


def test_csv_without_subject(tmp_path):
    rf.make_mnms(tmp_path)
    rf.write_mnms_csv(tmp_path / rf.MNMS_CSV, drop=["A1D0Q7"])
    src = MnmsSource(tmp_path)
    item = [i for i in src.items() if i.name == "A1D0Q7"][0]
    with pytest.raises(DataError, match=r"M&Ms_Dataset_information.*\.csv: no row for subject 'A1D0Q7'"):
        src.load(item, 0)


def test_csv_missing_column_and_missing_csv(tmp_path):
    rf.make_mnms_subject(tmp_path, "Training/Labeled", "A0S9V9", 0, 3)
    with pytest.raises(DataError, match=r"no M&Ms info CSV"):
        MnmsSource(tmp_path).items()
    (tmp_path / "info.csv").write_text(",External code,Vendor,Centre,ED\n0,A0S9V9,A,1,0\n")
    with pytest.raises(DataError, match=r"info.csv: missing column\(s\) \['ES'\]"):
        MnmsSource(tmp_path).items()


def test_frame_outside_movie(tmp_path):
    rf.make_mnms_subject(tmp_path, "Training/Labeled", "A0S9V9", 0, 3)
    (tmp_path / "info.csv").write_text(",External code,Vendor,Centre,ED,ES\n0,A0S9V9,A,1,0,9\n")
    src = MnmsSource(tmp_path)
    with pytest.raises(DataError, match=r"info.csv: subject 'A0S9V9': ES = 9 outside the 5 frames"):
        src.load(src.items()[0], 0)


def test_label_value_outside_convention(tmp_path):
    sdir = rf.make_mnms_subject(tmp_path, "Training/Labeled", "A0S9V9", 0, 3)
    rf.write_mnms_csv(tmp_path / rf.MNMS_CSV)
    gt = np.zeros(rf.MNMS_SHAPE, np.uint8)
    gt[1, 1, 0, 0] = 4
    rf.write_nifti(sdir / "A0S9V9_sa_gt.nii.gz", gt, rf.MNMS_ZOOMS)
    src = MnmsSource(tmp_path)
    with pytest.raises(DataError, match=r"A0S9V9_sa_gt.nii.gz: label value\(s\) \[4\] outside the convention M&Ms"):
        src.load(src.items()[0], 0)
