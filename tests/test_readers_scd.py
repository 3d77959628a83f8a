"""SCD (Sunnybrook) reader: padded vs unpadded ids, series choice, filled contours, spacing, bad input."""

from __future__ import annotations

import numpy as np
import pydicom
import pytest
import raw_fixtures as rf

from tagseg.data.prepare import prepare_store
from tagseg.data.readers.scd import ScdSource, case_id, read_contour
from tagseg.errors import DataError
from tagseg.io.store import read_store


def square(x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]])


def test_case_ids():
    assert case_id("SC-HF-I-01") == case_id("SC-HF-I-1") == "SC-HF-I-1"
    assert case_id("SC-HYP-040") == "SC-HYP-40"


def test_store_from_sunnybrook_layout(tmp_path):
    root = rf.make_scd(tmp_path / "scd")
    ctr = root / "Contours/TrainingDataContours/SC-HF-I-01/contours-manual/IRCCI-expert"
    # half-pixel corners: the filled region is exactly the pixel centres inside
    rf.write_contour(ctr / "IM-0001-0021-ocontour-manual.txt", square(1.5, 10.5, 2.5, 11.5))
    rf.write_contour(ctr / "IM-0001-0021-icontour-manual.txt", square(4.5, 7.5, 5.5, 8.5))
    out = tmp_path / "scd.h5"
    report = prepare_store(ScdSource(root), out, seed=0, image_size=None)
    assert report.skipped == []
    store = read_store(out)
    # 3 + 2 + 2 images with both contours; the i-contour-only image is not labelled
    assert len(store) == 7
    assert sorted(set(store.meta["subject"])) == ["SC-HF-I-1", "SC-HYP-3", "SC-N-2"]
    sub = store.meta["subject"] == "SC-HF-I-1"
    # image numbers 1, 21, 41 with 20 phases: slices 0, 1, 2 at frame 0 (ED)
    assert list(store.meta["slice"][sub]) == [0, 1, 2]
    assert set(store.meta["frame"][sub]) == {0} and set(store.meta["phase"][sub]) == {"ED"}
    assert set(store.meta["n_frames"]) == {20}
    assert store.meta["group"][sub][0] == "HF-I"
    row = np.flatnonzero(sub & (store.meta["slice"] == 1))[0]
    expected = np.zeros(rf.SCD_SHAPE, np.uint8)
    expected[3:12, 2:11] = 2  # rows = y 3..11, cols = x 2..10
    expected[6:9, 5:8] = 3
    np.testing.assert_array_equal(store.masks[row], expected)
    # the SAX series 0004 was chosen, not the one-file localiser 0001 holding the same image number
    pix = pydicom.dcmread(root / "challenge_training/SC-HF-I-1/IM-0004-0021.dcm").pixel_array.astype(np.float64)
    np.testing.assert_allclose(store.images[row], (pix - pix.min()) / (pix.max() - pix.min()), atol=1e-6)
    np.testing.assert_allclose(store.meta["spacing_mm"], np.tile(rf.SCD_SPACING, (7, 1)), rtol=1e-6)
    assert set(store.meta["vendor"]) == {"GE"}


def test_series_override(tmp_path):
    rf.make_scd_case(tmp_path, "SC-N-02", "SC-N-2", "0898", [1, 21])
    src = ScdSource(tmp_path, series={"SC-N-02": "0001"})
    with pytest.raises(DataError, match=r"series 0001 of SC-N-2 lacks image\(s\) \[21\]"):
        src.load(src.items()[0], 0)


def test_missing_root(tmp_path):
    with pytest.raises(DataError, match=r"(?s)absent: SCD \(Sunnybrook\) root folder not found.*contours-manual"):
        ScdSource(tmp_path / "absent").items()


def test_contour_with_odd_number_of_values(tmp_path):
    ctr = rf.make_scd_case(tmp_path, "SC-N-02", "SC-N-2", "0898", [1, 21])
    path = ctr / "IM-0001-0021-ocontour-manual.txt"
    path.write_text(path.read_text() + "3.5\n")
    src = ScdSource(tmp_path)
    with pytest.raises(DataError, match=r"IM-0001-0021-ocontour-manual.txt: odd number of values \(49\)"):
        src.load(src.items()[0], 0)
    with pytest.raises(DataError, match="odd number"):
        read_contour(path)


def test_dicom_without_pixel_spacing(tmp_path):
    rf.make_scd_case(tmp_path, "SC-N-02", "SC-N-2", "0898", [1, 21])
    rf.write_dicom(
        tmp_path / "challenge_training/SC-N-2/IM-0898-0021.dcm", np.ones(rf.SCD_SHAPE), spacing=None, instance=21
    )
    src = ScdSource(tmp_path)
    with pytest.raises(DataError, match=r"IM-0898-0021.dcm: DICOM has no PixelSpacing"):
        src.load(src.items()[0], 0)


def test_no_dicom_folder_for_case(tmp_path):
    rf.make_scd_case(tmp_path, "SC-N-02", "SC-N-2", "0898", [1])
    (tmp_path / "challenge_training/SC-N-2").rename(tmp_path / "challenge_training/other")
    src = ScdSource(tmp_path)
    with pytest.raises(DataError, match=r"IRCCI-expert: no DICOM folder 'SC-N-2'"):
        src.load(src.items()[0], 0)
