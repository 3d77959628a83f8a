"""tagseg predict: masks in the input's shape and geometry (NIfTI headers, DICOM patient space), batches of scans."""

from __future__ import annotations

import csv
import json
import shutil
import warnings
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch
from torch import nn

from tagseg.data.scans import find_inputs, read_scan
from tagseg.models.segmenter import Segmenter
from tagseg.stages.predict import predict

ROWS, COLS, T = 40, 48, 3
#: an oblique affine with shear (sform) and a different, rotation-only qform
OBLIQUE = np.array([[1.3, 0.2, 0.3, -40.0], [-0.25, 1.2, 0.9, 12.5], [0.1, -0.35, 7.8, 30.0], [0, 0, 0, 1.0]])


class ThresholdNet(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros_like(x), 10.0 * x], dim=1)


def dice(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, bool), np.asarray(b, bool)
    return 2.0 * float((a & b).sum()) / float(a.sum() + b.sum())


def segmenter() -> Segmenter:
    return Segmenter(network=ThresholdNet(), image_size=32)


def ring(centre, r_in=6.0, r_out=11.0, shape=(ROWS, COLS)) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    r = np.hypot(yy - centre[0], xx - centre[1])
    return (r < r_out) & (r >= r_in)


def ring_movie(n_z: int = 1, n_t: int = T) -> np.ndarray:
    """(Z, T, rows, cols) rings moving right with time and down with slice; raw scanner-like range."""
    return np.stack([np.stack([ring((15.0 + 3 * z, 20.0 + t)) for t in range(n_t)]) for z in range(n_z)]) * 900.0 + 50.0


# -- NIfTI ----------------------------------------------------------------------------------------


def nifti_input(path: Path, data: np.ndarray) -> nib.Nifti1Image:
    img = nib.Nifti1Image(data.astype(np.int16), OBLIQUE)
    img.set_sform(OBLIQUE, code=2)  # aligned
    qform = np.diag([1.1, 1.2, 8.0, 1.0])
    qform[:3, 3] = (5.0, -3.0, 1.0)
    img.set_qform(qform, code=1)  # scanner
    img.header.set_xyzt_units("mm", "msec")
    if data.ndim == 4:
        img.header.set_zooms(img.header.get_zooms()[:3] + (37.5,))
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))
    return img


LAYOUTS = {  # name -> (x, y[, z, t]) array built from the (Z, T, rows, cols) movie
    "xy": lambda m: m[0, 0].T,
    "xyt": lambda m: np.transpose(m[0], (2, 1, 0)),
    "xy1t": lambda m: np.transpose(m, (3, 2, 0, 1)),
    "xyzt": lambda m: np.transpose(m, (3, 2, 0, 1)),
}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_nifti_mask_has_the_input_shape_and_header(tmp_path, layout):
    movie = ring_movie(n_z=2 if layout == "xyzt" else 1)
    data = LAYOUTS[layout](movie)
    src = nifti_input(tmp_path / "in" / f"{layout}.nii.gz", data)
    predict(segmenter(), tmp_path / "in", tmp_path / "out", overlays=False, progress=False)
    out = nib.load(str(tmp_path / "out" / f"{layout}_mask.nii.gz"))
    assert out.shape == src.shape
    a, b = src.header, out.header
    np.testing.assert_allclose(out.affine, src.affine)
    np.testing.assert_allclose(b.get_sform(), a.get_sform())
    np.testing.assert_allclose(b.get_qform(), a.get_qform())
    assert (int(b["sform_code"]), int(b["qform_code"])) == (2, 1)
    np.testing.assert_allclose(b["pixdim"], a["pixdim"])  # time step included
    assert b.get_xyzt_units() == ("mm", "msec") and out.get_data_dtype() == np.uint8
    mask = np.asarray(out.dataobj)
    truth = LAYOUTS[layout](ring_movie(n_z=2 if layout == "xyzt" else 1) > 500)
    assert dice(mask == 2, truth) > 0.85  # every slice of every frame in its own place


def test_reference_points_in_patient_mm_follow_the_affine(tmp_path):
    nifti_input(tmp_path / "scan.nii.gz", LAYOUTS["xyzt"](ring_movie(n_z=2)))
    predict(segmenter(), tmp_path / "scan.nii.gz", tmp_path / "out", n_points=16, overlays=False, progress=False)
    doc = json.loads((tmp_path / "out" / "scan_points.json").read_text())
    assert doc["schema"] == "tagseg.reference_points/1" and len(doc["frames"]) == 2 * T
    img = doc["frames"][T + 1]  # slice 1, frame 1
    assert (img["slice"], img["frame"], img["landmark"]) == (1, 1, "angle")
    xy = np.asarray(img["outer_xy"])
    assert xy.shape == np.asarray(img["inner_xy"]).shape == (16, 2)
    vox = np.column_stack([xy, np.ones(16), np.ones(16)])  # z = slice 1
    np.testing.assert_allclose(np.asarray(img["outer_patient_mm"]), (vox @ OBLIQUE.T)[:, :3], atol=2e-3)
    with open(tmp_path / "out" / "reference_points.csv") as fh:
        rows = [r for r in csv.DictReader(fh) if r["slice"] == "1" and r["frame"] == "1" and r["contour"] == "outer"]
    assert float(rows[3]["patient_z_mm"]) == pytest.approx(img["outer_patient_mm"][3][2], abs=2e-3)


def test_nan_frame_is_an_error_naming_the_frame(tmp_path):
    data = LAYOUTS["xyt"](ring_movie()).astype(np.float32)
    data[3, 4, 2] = np.nan
    nib.save(nib.Nifti1Image(data, np.eye(4)), str(tmp_path / "nan.nii.gz"))
    report = predict(segmenter(), tmp_path / "nan.nii.gz", tmp_path / "out", progress=False)
    assert report.scans == [] and "slice 0 frame 2 holds NaN / inf" in report.failures[0][1]
    assert not (tmp_path / "out" / "nan_mask.nii.gz").exists()


# -- DICOM ----------------------------------------------------------------------------------------

IOP = np.array([0.9, 0.3, -0.3162278, -0.2, 0.9, 0.3872983])  # oblique, not exactly orthonormal-rounded
SPACING = (1.25, 1.4)  # (row, col)


def _orthonormal(iop: np.ndarray) -> np.ndarray:
    r = iop[:3] / np.linalg.norm(iop[:3])
    c = iop[3:] - (iop[3:] @ r) * r
    return np.concatenate([r, c / np.linalg.norm(c)])


def _base(sop_class: str):
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset("x", {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.PatientID, ds.PatientName, ds.PatientBirthDate, ds.PatientSex = "MR", "P1", "Test^Phantom", "", "O"
    ds.StudyInstanceUID, ds.StudyID, ds.AccessionNumber, ds.ReferringPhysicianName = "1.2.3.4", "1", "", ""
    ds.StudyDate, ds.StudyTime = "20260101", "120000"
    ds.FrameOfReferenceUID = "1.2.3.4.5"
    ds.SeriesNumber, ds.Manufacturer = 7, "test"
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.Rows, ds.Columns = ROWS, COLS
    return ds


def dicom_series(folder: Path, movie: np.ndarray, suffix: str = "", series_uid: str = "1.2.3.4.6") -> list[Path]:
    """One file per (slice, frame), shuffled instance numbers, oblique planes; no suffix by default."""
    iop = _orthonormal(IOP)
    normal = np.cross(iop[:3], iop[3:])
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    n_z, n_t = movie.shape[:2]
    for z in range(n_z):
        for t in range(n_t):
            ds = _base("1.2.840.10008.5.1.4.1.1.4")
            ds.SeriesInstanceUID = series_uid
            ds.InstanceNumber = 1 + ((z * n_t + t) * 7) % (n_z * n_t)  # not the slice-major order
            ds.TriggerTime = 40.0 * t
            ds.ImageOrientationPatient = [f"{v:.7f}" for v in iop]
            ds.ImagePositionPatient = [f"{v:.4f}" for v in np.array([-30.0, 20.0, 55.0]) + 8.0 * z * normal]
            ds.PixelSpacing = [str(SPACING[0]), str(SPACING[1])]
            ds.SliceThickness = "8"
            ds.PixelData = movie[z, t].astype(np.uint16).tobytes()
            path = folder / f"IM{z}_{t}{suffix}"
            ds.save_as(str(path), enforce_file_format=True)
            paths.append(path)
    return paths


def expected_affine(paths: list[Path]) -> np.ndarray:
    """Voxel (col, row, slice) -> RAS, computed here from the tags of the first and last slice."""
    import pydicom

    dss = [pydicom.dcmread(str(p)) for p in paths]
    iop = np.asarray(dss[0].ImageOrientationPatient, float)
    normal = np.cross(iop[:3], iop[3:])
    by_depth = sorted(dss, key=lambda d: np.asarray(d.ImagePositionPatient, float) @ normal)
    first, last = (np.asarray(d.ImagePositionPatient, float) for d in (by_depth[0], by_depth[-1]))
    n_z = len({round(float(np.asarray(d.ImagePositionPatient, float) @ normal), 2) for d in dss})
    row_mm, col_mm = (float(v) for v in dss[0].PixelSpacing)
    step = (last - first) / (n_z - 1) if n_z > 1 else normal * float(dss[0].SliceThickness)
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = iop[:3] * col_mm, iop[3:] * row_mm, step, first
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps


def test_dicom_series_without_suffix_gives_a_mask_in_patient_space(tmp_path):
    movie = ring_movie(n_z=2)
    paths = dicom_series(tmp_path / "series", movie)
    predict(segmenter(), tmp_path / "series", tmp_path / "out", overlays=False, progress=False)
    out = nib.load(str(tmp_path / "out" / "series_mask.nii.gz"))
    assert out.shape == (COLS, ROWS, 2, T)
    np.testing.assert_allclose(out.affine, expected_affine(paths), atol=1e-4)
    assert int(out.header["sform_code"]) == 1 and int(out.header["qform_code"]) == 1
    mask = np.asarray(out.dataobj)
    assert dice(mask == 2, np.transpose(movie > 500, (3, 2, 0, 1))) > 0.85  # slices by position, frames by time


def test_single_dicom_file_is_one_scan(tmp_path):
    paths = dicom_series(tmp_path / "series", ring_movie(n_t=1), suffix=".dcm")
    assert [(i.name, i.kind) for i in find_inputs(paths[0])] == [("IM0_0", "dicom")]
    predict(segmenter(), paths[0], tmp_path / "out", overlays=False, progress=False)
    out = nib.load(str(tmp_path / "out" / "IM0_0_mask.nii.gz"))
    assert out.shape == (COLS, ROWS, 1)
    np.testing.assert_allclose(out.affine, expected_affine(paths), atol=1e-4)


def enhanced_multiframe(path: Path, movie: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """An enhanced MR multi-frame file (per-frame positions, shared orientation / spacing), frames in time-major order."""
    from pydicom.dataset import Dataset
    from pydicom.sequence import Sequence

    iop = _orthonormal(IOP)
    normal = np.cross(iop[:3], iop[3:])
    ds = _base("1.2.840.10008.5.1.4.1.1.4.1")
    ds.SeriesInstanceUID, ds.InstanceNumber = "1.2.3.4.9", 1
    n_z, n_t = movie.shape[:2]
    order = [(z, t) for t in range(n_t) for z in range(n_z)]
    ds.NumberOfFrames = len(order)
    shared, meas, ori = Dataset(), Dataset(), Dataset()
    meas.PixelSpacing, meas.SliceThickness = [str(SPACING[0]), str(SPACING[1])], "8"
    ori.ImageOrientationPatient = [f"{v:.7f}" for v in iop]
    shared.PixelMeasuresSequence, shared.PlaneOrientationSequence = Sequence([meas]), Sequence([ori])
    ds.SharedFunctionalGroupsSequence = Sequence([shared])
    groups = []
    first = np.array([10.0, -5.0, 80.0])
    for z, t in order:
        g, pos, content = Dataset(), Dataset(), Dataset()
        pos.ImagePositionPatient = [f"{v:.4f}" for v in first + 6.0 * z * normal]
        content.TemporalPositionIndex = t + 1
        g.PlanePositionSequence, g.FrameContentSequence = Sequence([pos]), Sequence([content])
        groups.append(g)
    ds.PerFrameFunctionalGroupsSequence = Sequence(groups)
    ds.PixelData = np.stack([movie[z, t] for z, t in order]).astype(np.uint16).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), enforce_file_format=True)
    lps = np.eye(4)
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = iop[:3] * SPACING[1], iop[3:] * SPACING[0], 6.0 * normal, first
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps, np.asarray(order)


def test_enhanced_multiframe_dicom_gives_a_mask_in_patient_space(tmp_path):
    movie = ring_movie(n_z=2)
    affine, _ = enhanced_multiframe(tmp_path / "cine.dcm", movie)
    scan = read_scan(tmp_path / "cine.dcm")
    assert (scan.kind, len(scan)) == ("dicom", 2 * T) and list(scan.frame) == [0, 1, 2, 0, 1, 2]
    predict(segmenter(), tmp_path / "cine.dcm", tmp_path / "out", overlays=False, progress=False)
    out = nib.load(str(tmp_path / "out" / "cine_mask.nii.gz"))
    assert out.shape == (COLS, ROWS, 2, T)
    np.testing.assert_allclose(out.affine, affine, atol=1e-4)
    assert dice(np.asarray(out.dataobj) == 2, np.transpose(movie > 500, (3, 2, 0, 1))) > 0.85


def test_dicom_seg_references_the_source_instances(tmp_path):
    pytest.importorskip("highdicom")
    import pydicom

    paths = dicom_series(tmp_path / "series", ring_movie(n_t=2), suffix=".dcm")
    predict(segmenter(), tmp_path / "series", tmp_path / "out", overlays=False, progress=False, dicom_seg=True)
    referenced = set()
    for t in range(2):  # one SEG per time frame: a SEG holds one mask per plane position
        seg = pydicom.dcmread(str(tmp_path / "out" / f"series_seg_t{t:02d}.dcm"))
        assert seg.Modality == "SEG" and seg.SegmentSequence[0].SegmentLabel == "myocardium"
        referenced |= {
            i.ReferencedSOPInstanceUID for s in seg.ReferencedSeriesSequence for i in s.ReferencedInstanceSequence
        }
    assert referenced == {pydicom.dcmread(str(p)).SOPInstanceUID for p in paths}
    shutil.copy(tmp_path / "out" / "series_seg_t00.dcm", tmp_path / "series")  # a SEG next to its sources is not a scan
    assert [i.name for i in find_inputs(tmp_path / "series")] == ["series"]


# -- folders are batches -------------------------------------------------------------------------


def test_mixed_folder_predicts_each_scan_and_lists_failures(tmp_path):
    movie = ring_movie()
    nifti_input(tmp_path / "in" / "a_good.nii.gz", LAYOUTS["xyt"](movie))
    (tmp_path / "in" / "b_bad.nii.gz").write_bytes(b"\x1f\x8b not really gzip")
    (tmp_path / "in" / "brain.mgz").write_bytes(b"mgh")
    (tmp_path / "in" / "old.hdr").write_bytes(b"analyze")
    (tmp_path / "in" / "c.dtseries.nii").write_bytes(b"cifti")
    dicom_series(tmp_path / "in", movie[:, :2])  # DICOM files next to the NIfTI files, no suffix
    report = predict(segmenter(), tmp_path / "in", tmp_path / "out", overlays=False, progress=False)
    assert sorted(report.scans) == ["a_good", "in"]
    with open(tmp_path / "out" / "failed.csv") as fh:
        failed = {Path(r["file"]).name: r["reason"] for r in csv.DictReader(fh)}
    assert set(failed) == {"b_bad.nii.gz", "brain.mgz", "old.hdr", "c.dtseries.nii"}
    assert failed["brain.mgz"].startswith("FreeSurfer MGH") and failed["c.dtseries.nii"].startswith("CIFTI-2")
    assert all("\n" not in r for r in failed.values())
    assert sorted(p.name for p in (tmp_path / "out").iterdir() if p.name.endswith("_mask.nii.gz")) == [
        "a_good_mask.nii.gz",
        "in_mask.nii.gz",
    ]
    assert not any(p.name.startswith(".tmp-") for p in (tmp_path / "out").iterdir())


def test_store_tables_use_meta_frame(tmp_path):
    from tagseg.io.store import write_store

    frames = ring_movie(n_t=4)[0]
    images = (frames - frames.min()) / (frames.max() - frames.min())
    meta = {
        "subject": ["a", "a", "b", "b"],
        "slice": [0, 0, 2, 2],
        "frame": [5, 9, 0, 3],
        "n_frames": [10] * 4,
        "phase": [""] * 4,
        "group": ["control"] * 4,
        "spacing_mm": np.full((4, 2), 1.4, np.float32),
        "source": ["x"] * 4,
    }
    write_store(tmp_path / "new.h5", images, np.zeros(images.shape, np.uint8), meta, name="new")
    predict(segmenter(), tmp_path / "new.h5", tmp_path / "out", overlays=False, progress=False)
    with open(tmp_path / "out" / "predictions.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert [(r["subject"], r["slice"], r["frame"]) for r in rows] == [
        ("a", "0", "5"),
        ("a", "0", "9"),
        ("b", "2", "0"),
        ("b", "2", "3"),
    ]
    with open(tmp_path / "out" / "reference_points.csv") as fh:
        assert {r["frame"] for r in csv.DictReader(fh)} == {"5", "9", "0", "3"}
    doc = json.loads((tmp_path / "out" / "new_points.json").read_text())
    assert [f["frame"] for f in doc["frames"]] == [5, 9, 0, 3]


def test_predict_command_exit_status_with_a_bad_scan(tmp_path, trained_ckpt):
    from conftest import run_tagseg

    movie = ring_movie(n_t=2)
    for name in ("a", "c"):
        nifti_input(tmp_path / "in" / f"{name}.nii.gz", LAYOUTS["xyt"](movie))
    (tmp_path / "in" / "b.nii.gz").write_bytes(b"broken")
    proc = run_tagseg(
        [
            "predict",
            f"ckpt={trained_ckpt}",
            f"input={tmp_path / 'in'}",
            f"output={tmp_path / 'out'}",
            "progress=false",
            "overlays=false",
        ],
        None,
        root=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 1, proc.stderr
    failed_lines = [line for line in proc.stderr.splitlines() if line.startswith("tagseg: failed:")]
    assert len(failed_lines) == 1 and "b.nii.gz" in failed_lines[0] and "Traceback" not in proc.stderr
    assert (tmp_path / "out" / "a_mask.nii.gz").exists() and (tmp_path / "out" / "c_mask.nii.gz").exists()
    assert "time: start-up" in proc.stdout
    with open(tmp_path / "out" / "failed.csv") as fh:
        assert [Path(r["file"]).name for r in csv.DictReader(fh)] == ["b.nii.gz"]


def test_legacy_multiframe_dicom_without_functional_groups(tmp_path):
    movie = ring_movie()
    iop = _orthonormal(IOP)
    ds = _base("1.2.840.10008.5.1.4.1.1.4")
    ds.SeriesInstanceUID, ds.InstanceNumber, ds.NumberOfFrames = "1.2.3.4.10", 1, T
    ds.ImageOrientationPatient = [f"{v:.7f}" for v in iop]
    ds.ImagePositionPatient = ["1.5", "-2.0", "33.0"]
    ds.PixelSpacing, ds.SliceThickness = [str(SPACING[0]), str(SPACING[1])], "6"
    ds.PixelData = movie[0].astype(np.uint16).tobytes()
    ds.save_as(str(tmp_path / "cine"), enforce_file_format=True)  # no suffix
    predict(segmenter(), tmp_path / "cine", tmp_path / "out", overlays=False, progress=False)
    out = nib.load(str(tmp_path / "out" / "cine_mask.nii.gz"))
    assert out.shape == (COLS, ROWS, T)
    lps = np.eye(4)
    normal = np.cross(iop[:3], iop[3:])
    lps[:3, 0], lps[:3, 1], lps[:3, 2], lps[:3, 3] = (
        iop[:3] * SPACING[1],
        iop[3:] * SPACING[0],
        6.0 * normal,
        (1.5, -2.0, 33.0),
    )
    np.testing.assert_allclose(out.affine, np.diag([-1.0, -1.0, 1.0, 1.0]) @ lps, atol=1e-4)
    assert dice(np.asarray(out.dataobj) == 2, np.transpose(movie[0] > 500, (2, 1, 0))) > 0.85


@pytest.mark.parametrize("n_z", [3, 1])
def test_dicom_affine_agrees_with_nibabels_geometry(tmp_path, n_z):
    """The series affine against nibabel.nicom's, derived by nibabel from each file's own tags.

    nibabel's voxel axes are (row, column, slice along its normal, which points the other way): with
    P taking tagseg's voxel (x = column, y = row, z) to nibabel's (y, x, n_z - 1 - z), the two affines
    must be the same map, and the voxel they share must hold the same pixel.
    """
    import pydicom

    with warnings.catch_warnings():  # nibabel calls its DICOM readers experimental; the wrappers are what is used
        warnings.simplefilter("ignore", UserWarning)
        from nibabel.nicom.dicomwrappers import wrapper_from_data

    from tagseg.data.dicom_series import LPS_TO_RAS, DicomSeriesInput, read_series

    movie = ring_movie(n_z=n_z) + np.arange(ROWS * COLS).reshape(ROWS, COLS)  # no symmetric image
    paths = dicom_series(tmp_path / "series", movie)
    volume = read_series(DicomSeriesInput("series", paths))
    last = wrapper_from_data(pydicom.dcmread(str(tmp_path / "series" / f"IM{n_z - 1}_0")))
    first_by_nibabel = min((wrapper_from_data(pydicom.dcmread(str(p))) for p in paths), key=lambda w: w.slice_indicator)
    assert first_by_nibabel.image_position.tolist() == last.image_position.tolist()
    to_nibabel = np.array([[0, 1, 0, 0], [1, 0, 0, 0], [0, 0, -1, n_z - 1], [0, 0, 0, 1]], float)
    np.testing.assert_allclose(volume.affine, LPS_TO_RAS @ last.affine @ to_nibabel, atol=1e-3)
    np.testing.assert_array_equal(last.get_data(), volume.frames[(n_z - 1) * T])  # (row, column) of one plane
