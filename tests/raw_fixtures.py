"""Tiny raw datasets written at test time in each original format (NIfTI, DICOM, MATLAB v7.3 HDF5)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np

RNG_SEED = 1234


def write_nifti(path: Path, data: np.ndarray, zooms: Sequence[float] | None = None, units: bool = True) -> Path:
    """Write ``data`` as NIfTI with voxel sizes ``zooms`` (mm units if ``units``)."""
    img = nib.Nifti1Image(np.asarray(data), np.eye(4))
    if zooms is not None:
        img.header.set_zooms(tuple(zooms))
    if units:
        img.header.set_xyzt_units("mm", "sec")
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))
    return path


def ring_labels(nx: int, ny: int, centre: tuple[float, float] | None = None) -> np.ndarray:
    """(x, y) ACDC labels: LV disc (3), MYO ring (2), an RV blob (1) to the left."""
    cx, cy = centre or (nx / 2, ny / 2)
    x, y = np.meshgrid(np.arange(nx), np.arange(ny), indexing="ij")
    r = np.hypot(x - cx, y - cy)
    lab = np.zeros((nx, ny), np.uint8)
    lab[r < 3.5] = 2
    lab[r < 2] = 3
    lab[(np.hypot(x - (cx - 4.5), y - cy) < 1.5)] = 1
    return lab


# -- ACDC ------------------------------------------------------------------------------------------
ACDC_SHAPE = (12, 10, 3)  # x, y, z
ACDC_ZOOMS = (1.5, 1.25, 10.0)


def make_acdc_patient(
    root: Path, folder: str, pid: int, ed: int = 1, es: int = 4, n_frames: int = 6, group: str = "NOR", seed: int = 0
) -> Path:
    """One ACDC patient folder; returns it. Frames ``ed`` / ``es`` are 1-based as in Info.cfg."""
    name = f"patient{pid:03d}"
    pdir = root / folder / name
    pdir.mkdir(parents=True, exist_ok=True)
    (pdir / "Info.cfg").write_text(
        f"ED: {ed}\nES: {es}\nGroup: {group}\nHeight: 180.0\nNbFrame: {n_frames}\nWeight: 75.0\n"
    )
    rng = np.random.default_rng(seed + pid)
    nx, ny, nz = ACDC_SHAPE
    movie = rng.integers(0, 1000, size=(nx, ny, nz, n_frames)).astype(np.int16)
    write_nifti(pdir / f"{name}_4d.nii.gz", movie, ACDC_ZOOMS + (1.0,))
    for frame in sorted({ed, es}):
        write_nifti(pdir / f"{name}_frame{frame:02d}.nii.gz", movie[..., frame - 1], ACDC_ZOOMS)
        lab = np.stack([ring_labels(nx, ny, (nx / 2 + z, ny / 2)) for z in range(nz)], axis=-1)
        write_nifti(pdir / f"{name}_frame{frame:02d}_gt.nii.gz", lab, ACDC_ZOOMS)
    return pdir


def make_acdc(root: Path, n_train: int = 4, n_test: int = 2) -> Path:
    groups = ["NOR", "DCM", "HCM", "MINF", "RV"]
    for i in range(n_train):
        make_acdc_patient(root, "training", i + 1, ed=1, es=3 + i % 2, group=groups[i % len(groups)])
    for i in range(n_test):
        make_acdc_patient(root, "testing", 101 + i, ed=2, es=5, group=groups[i % len(groups)])
    return root


# -- M&Ms ------------------------------------------------------------------------------------------
MNMS_SHAPE = (10, 8, 2, 5)  # x, y, z, t
MNMS_ZOOMS = (1.2, 1.4, 9.0, 1.0)
MNMS_CSV = "211230_M&Ms_Dataset_information_diagnosis_opendataset.csv"


def mnms_labels(nx: int, ny: int) -> np.ndarray:
    """(x, y) labels in the M&Ms convention (1 LV, 2 MYO, 3 RV)."""
    acdc = ring_labels(nx, ny)
    return np.array([0, 3, 2, 1], np.uint8)[acdc]


def make_mnms_subject(root: Path, folder: str, code: str, ed: int, es: int, seed: int = 0) -> Path:
    sdir = root / folder / code
    rng = np.random.default_rng(seed + sum(map(ord, code)))
    nx, ny, nz, nt = MNMS_SHAPE
    movie = rng.normal(100, 30, size=MNMS_SHAPE).astype(np.float32)
    write_nifti(sdir / f"{code}_sa.nii.gz", movie, MNMS_ZOOMS)
    gt = np.zeros(MNMS_SHAPE, np.uint8)
    for t in (ed, es):
        for z in range(nz):
            gt[:, :, z, t] = mnms_labels(nx, ny)
    write_nifti(sdir / f"{code}_sa_gt.nii.gz", gt, MNMS_ZOOMS)
    return sdir


MNMS_SUBJECTS = [  # code, folder, vendor name, vendor, centre, ED, ES, pathology
    ("A0S9V9", "Training/Labeled", "Siemens", "A", 1, 0, 3, "NOR"),
    ("A1D0Q7", "Training/Labeled", "Philips", "B", 2, 1, 4, "HCM"),
    ("A1E9Q1", "Training/Labeled", "GE", "C", 4, 0, 2, "DCM"),
    ("B2C3D4", "Validation", "Siemens", "A", 5, 0, 3, "ARV"),
    ("C3D4E5", "Testing", "Canon", "D", 6, 2, 4, "NOR"),
]


def write_mnms_csv(path: Path, subjects=MNMS_SUBJECTS, drop: Sequence[str] = ()) -> Path:
    lines = [",External code,VendorName,Vendor,Centre,ED,ES,Age,Pathology,Sex,Height,Weight"]
    for i, (code, _folder, vname, vendor, centre, ed, es, pathology) in enumerate(subjects):
        if code not in drop:
            lines.append(f"{i},{code},{vname},{vendor},{centre},{ed},{es},42,{pathology},M,,")
    path.write_text("\n".join(lines) + "\n")
    return path


def make_mnms(root: Path) -> Path:
    for code, folder, _vn, _v, _c, ed, es, _p in MNMS_SUBJECTS:
        make_mnms_subject(root, folder, code, ed, es)
    write_mnms_csv(root / MNMS_CSV)
    return root


# -- SCD (Sunnybrook) --------------------------------------------------------------------------------
SCD_SHAPE = (16, 14)  # rows, cols
SCD_SPACING = (1.25, 1.3)


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    spacing: tuple[float, float] | None = SCD_SPACING,
    instance: int = 1,
    n_phases: int | None = None,
) -> Path:
    """A minimal valid MR image DICOM file."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.Modality = "MR"
    ds.InstanceNumber = instance
    ds.Rows, ds.Columns = pixels.shape
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = 16
    ds.BitsStored = 16
    ds.HighBit = 15
    ds.PixelRepresentation = 0
    if spacing is not None:
        ds.PixelSpacing = [f"{spacing[0]:g}", f"{spacing[1]:g}"]
    if n_phases is not None:
        ds.CardiacNumberOfImages = n_phases
    ds.PixelData = np.ascontiguousarray(pixels.astype(np.uint16)).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), enforce_file_format=True)
    return path


def circle_xy(cx: float, cy: float, r: float, n: int = 24) -> np.ndarray:
    a = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return np.stack([cx + r * np.cos(a), cy + r * np.sin(a)], axis=1)


def write_contour(path: Path, points: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{x:.2f} {y:.2f}\n" for x, y in points))
    return path


def make_scd_case(
    root: Path,
    case_padded: str,
    case: str,
    series: str,
    numbers: Sequence[int],
    n_phases: int = 20,
    seed: int = 0,
    distractor: bool = True,
) -> Path:
    """Contours under the padded id, DICOMs under the unpadded id; returns the contour folder."""
    rng = np.random.default_rng(seed)
    img_dir = root / "challenge_training" / case
    ctr_dir = root / "Contours" / "TrainingDataContours" / case_padded / "contours-manual" / "IRCCI-expert"
    for n in range(1, max(numbers) + 3):
        write_dicom(
            img_dir / f"IM-{series}-{n:04d}.dcm", rng.integers(0, 800, SCD_SHAPE), instance=n, n_phases=n_phases
        )
    if distractor:  # a small localiser series with one matching number: must not be chosen
        write_dicom(img_dir / f"IM-0001-{numbers[0]:04d}.dcm", rng.integers(0, 800, SCD_SHAPE), instance=1)
    for n in numbers:
        write_contour(ctr_dir / f"IM-0001-{n:04d}-icontour-manual.txt", circle_xy(7.0, 8.0, 2.5))
        write_contour(ctr_dir / f"IM-0001-{n:04d}-ocontour-manual.txt", circle_xy(7.0, 8.0, 5.0))
    # an i-contour alone (ES frame): not labelled
    write_contour(ctr_dir / f"IM-0001-{numbers[0] + 1:04d}-icontour-manual.txt", circle_xy(7.0, 8.0, 2.0))
    return ctr_dir


def make_scd(root: Path) -> Path:
    make_scd_case(root, "SC-HF-I-01", "SC-HF-I-1", "0004", [1, 21, 41], seed=1)
    make_scd_case(root, "SC-N-02", "SC-N-2", "0898", [1, 21], seed=2)
    make_scd_case(root, "SC-HYP-03", "SC-HYP-3", "0650", [1, 41], seed=3)
    return root


# -- real tagged, authors' MATLAB v7.3 layout ------------------------------------------------------------
TAG_SHAPE = (12, 10)  # rows (y), cols (x)
TAG_FRAMES = 4


def write_matlab_imt(path: Path, frames_tyx: np.ndarray, spacing: tuple[float, float] | None = None) -> Path:
    """``imt`` as MATLAB v7.3 leaves it for h5py: axes reversed, stored (x, y, t)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w", userblock_size=512) as f:
        ds = f.create_dataset("imt", data=np.transpose(frames_tyx, (2, 1, 0)))
        ds.attrs["MATLAB_class"] = np.bytes_("double")
        if spacing is not None:
            f.attrs["spacing_mm"] = np.asarray(spacing)
    return path


def write_matlab_roi(path: Path, inner: Sequence[np.ndarray | None], outer: Sequence[np.ndarray | None]) -> Path:
    """ROI file: per-frame (N, 2) x, y arrays in ``#refs#``, cell arrays of object references."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")
        for key, arrays in (("pts_interp_inner", inner), ("pts_interp_outer", outer)):
            cell = f.create_dataset(key, (len(arrays), 1), dtype=h5py.ref_dtype)
            cell.attrs["MATLAB_class"] = np.bytes_("cell")
            for t, pts in enumerate(arrays):
                if pts is None:  # MATLAB's empty matrix
                    target = refs.create_dataset(f"{key}_{t}", data=np.zeros(2, np.uint64))
                    target.attrs["MATLAB_empty"] = np.uint8(1)
                else:
                    target = refs.create_dataset(f"{key}_{t}", data=np.asarray(pts, np.float64))
                target.attrs["MATLAB_class"] = np.bytes_("double")
                cell[t, 0] = target.ref
    return path


def make_tagged_slice(
    root: Path, name: str, seed: int = 0, spacing=None, frames: int = TAG_FRAMES, empty_frames: Sequence[int] = ()
) -> tuple[np.ndarray, list, list]:
    """One authors'-layout slice; returns (frames (t, y, x), inner, outer point lists)."""
    rng = np.random.default_rng(seed)
    movie = rng.uniform(0, 1, size=(frames, *TAG_SHAPE))
    inner = [None if t in empty_frames else circle_xy(5.0 + 0.2 * t, 6.0, 1.8, 16) for t in range(frames)]
    outer = [None if t in empty_frames else circle_xy(5.0 + 0.2 * t, 6.0, 3.6, 16) for t in range(frames)]
    write_matlab_imt(root / f"{name}.h5", movie, spacing)
    write_matlab_roi(root / f"{name}_roi.h5", inner, outer)
    return movie, inner, outer
