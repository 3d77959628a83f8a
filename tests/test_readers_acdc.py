"""ACDC reader: exact slices, labels, spacing, 1-based ED/ES, groups, splits, and every bad input."""

from __future__ import annotations

import gzip

import nibabel as nib
import numpy as np
import pytest
import raw_fixtures as rf

from tagseg.data.prepare import prepare_store
from tagseg.data.readers.acdc import AcdcSource
from tagseg.errors import DataError
from tagseg.io.store import read_store, store_attrs


def scaled(a: np.ndarray) -> np.ndarray:
    a = a.astype(np.float64)
    return ((a - a.min()) / (a.max() - a.min())).astype(np.float32)


@pytest.fixture(scope="module")
def acdc_root(tmp_path_factory):
    return rf.make_acdc(tmp_path_factory.mktemp("acdc"), n_train=4, n_test=2)


@pytest.fixture(scope="module")
def acdc_store(acdc_root, tmp_path_factory):
    out = tmp_path_factory.mktemp("store") / "acdc.h5"
    report = prepare_store(AcdcSource(acdc_root), out, seed=3, image_size=None)
    return read_store(out), report


def test_exact_slices_labels_spacing_and_frames(acdc_root, acdc_store):
    store, report = acdc_store
    assert report.skipped == []
    assert len(store) == 6 * 2 * 3  # patients x (ED, ES) x z slices
    rows = np.flatnonzero((store.meta["subject"] == "patient002") & (store.meta["phase"] == "ES"))
    assert len(rows) == 3
    # patient002: Info.cfg ES = 4 (1-based) -> frame 3, file patient002_frame04
    image = nib.load(str(acdc_root / "training/patient002/patient002_frame04.nii.gz")).get_fdata()
    gt = np.asarray(nib.load(str(acdc_root / "training/patient002/patient002_frame04_gt.nii.gz")).dataobj)
    for z, row in enumerate(rows):
        assert store.meta["slice"][row] == z
        assert store.meta["frame"][row] == 3
        assert store.meta["n_frames"][row] == 6
        # NIfTI (x, y) -> rows = y, columns = x
        np.testing.assert_allclose(store.images[row], scaled(image[:, :, z].T), atol=1e-6)
        np.testing.assert_array_equal(store.masks[row], gt[:, :, z].T)
    assert store.images.shape[1:] == (rf.ACDC_SHAPE[1], rf.ACDC_SHAPE[0])
    # spacing (row, col) = (pixdim y, pixdim x)
    np.testing.assert_allclose(store.meta["spacing_mm"], np.tile([1.25, 1.5], (len(store), 1)))
    ed = store.meta["phase"] == "ED"
    assert set(store.meta["frame"][ed & (store.meta["subject"] == "patient001")]) == {0}
    assert set(store.meta["frame"][ed & (store.meta["subject"] == "patient101")]) == {1}  # ED: 2 -> frame 1
    assert set(store.meta["frame"][~ed & (store.meta["subject"] == "patient101")]) == {4}
    assert store.meta["group"][store.meta["subject"] == "patient002"][0] == "DCM"
    assert set(np.unique(store.masks)) == {0, 1, 2, 3}


def test_splits_by_subject_testing_folder_is_test(acdc_store):
    store, _ = acdc_store
    subj, split = store.meta["subject"], store.meta["split"]
    for s in np.unique(subj):
        assert len(set(split[subj == s])) == 1, s
    assert set(split[np.isin(subj, ["patient101", "patient102"])]) == {"test"}
    assert set(split) <= {"train", "val", "test"}
    assert set(store.meta["vendor"]) == {"Siemens"} and set(store.meta["centre"]) == {"Dijon"}
    assert store.attrs["labelled"]


def test_all_frames_unlabelled(tmp_path):
    rf.make_acdc_patient(tmp_path, "training", 1, ed=2, es=5, n_frames=6)
    out = tmp_path / "acdc_4d.h5"
    prepare_store(AcdcSource(tmp_path, all_frames=True), out, image_size=None)
    store = read_store(out)
    assert len(store) == 6 * 3
    assert not store.masks.any()
    assert not store_attrs(out)["labelled"]
    movie = np.asarray(nib.load(str(tmp_path / "training/patient001/patient001_4d.nii.gz")).dataobj)
    row = np.flatnonzero((store.meta["frame"] == 4) & (store.meta["slice"] == 1))[0]
    assert store.meta["phase"][row] == "ES"
    np.testing.assert_allclose(store.images[row], scaled(movie[:, :, 1, 4].T), atol=1e-6)
    assert list(store.meta["phase"][store.meta["slice"] == 0]) == ["", "ED", "", "", "ES", ""]


def test_missing_root_names_folder_and_layout(tmp_path):
    with pytest.raises(DataError, match=r"(?s)nowhere: ACDC root folder not found.*training/patientNNN"):
        AcdcSource(tmp_path / "nowhere").items()


def test_missing_info_key(tmp_path):
    pdir = rf.make_acdc_patient(tmp_path, "training", 1)
    (pdir / "Info.cfg").write_text("ED: 1\nGroup: NOR\nNbFrame: 6\n")
    src = AcdcSource(tmp_path)
    with pytest.raises(DataError, match=r"patient001/Info.cfg: missing key 'ES'"):
        src.load(src.items()[0], 0)


def test_truncated_nifti(tmp_path):
    pdir = rf.make_acdc_patient(tmp_path, "training", 1)
    path = pdir / "patient001_frame01.nii.gz"
    data = gzip.decompress(path.read_bytes())
    path.write_bytes(gzip.compress(data)[: len(gzip.compress(data)) // 2])
    src = AcdcSource(tmp_path)
    with pytest.raises(DataError, match=r"patient001_frame01.nii.gz: unreadable NIfTI \(truncated"):
        src.load(src.items()[0], 0)


def test_image_label_shape_mismatch(tmp_path):
    pdir = rf.make_acdc_patient(tmp_path, "training", 1)
    rf.write_nifti(pdir / "patient001_frame01_gt.nii.gz", np.ones((12, 10, 2), np.uint8), rf.ACDC_ZOOMS)
    src = AcdcSource(tmp_path)
    with pytest.raises(
        DataError, match=r"patient001_frame01_gt.nii.gz: label shape \(12, 10, 2\) differs from image .*\(12, 10, 3\)"
    ):
        src.load(src.items()[0], 0)


def test_label_value_outside_convention(tmp_path):
    pdir = rf.make_acdc_patient(tmp_path, "training", 1)
    lab = np.zeros(rf.ACDC_SHAPE, np.uint8)
    lab[2:4, 2:4, 0] = 7
    rf.write_nifti(pdir / "patient001_frame01_gt.nii.gz", lab, rf.ACDC_ZOOMS)
    src = AcdcSource(tmp_path)
    with pytest.raises(DataError, match=r"patient001_frame01_gt.nii.gz: label value\(s\) \[7\] outside the convention"):
        src.load(src.items()[0], 0)


def test_empty_mask(tmp_path):
    pdir = rf.make_acdc_patient(tmp_path, "training", 1)
    rf.write_nifti(pdir / "patient001_frame01_gt.nii.gz", np.zeros(rf.ACDC_SHAPE, np.uint8), rf.ACDC_ZOOMS)
    src = AcdcSource(tmp_path)
    with pytest.raises(DataError, match=r"patient001_frame01_gt.nii.gz: empty mask"):
        src.load(src.items()[0], 0)


def test_bad_patient_is_skipped_and_listed(tmp_path):
    rf.make_acdc(tmp_path / "raw", n_train=3, n_test=0)
    (tmp_path / "raw/training/patient003/Info.cfg").write_text("ED: 1\nES: 3\nNbFrame: 6\n")
    out = tmp_path / "acdc.h5"
    report = prepare_store(AcdcSource(tmp_path / "raw"), out, image_size=None)
    assert [item for item, _ in report.skipped] == ["training/patient003"]
    assert "patient003/Info.cfg: missing key 'Group'" in report.skipped[0][1]
    assert sorted(set(read_store(out).meta["subject"])) == ["patient001", "patient002"]
    assert "missing key 'Group'" in store_attrs(out)["skipped"]
    with pytest.raises(DataError, match="patient003/Info.cfg: missing key 'Group'"):
        prepare_store(AcdcSource(tmp_path / "raw"), tmp_path / "strict.h5", strict=True, image_size=None)
    assert not (tmp_path / "strict.h5").exists()
