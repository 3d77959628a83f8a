"""The phantom written exactly as ACDC, M&Ms, SCD and the tagged set lay their files out on disk.

``tagseg phantom format=acdc|mnms|scd|tagged output=<folder>`` (see ``docs/data-formats.md``): each
writer renders a heterogeneous cohort (:mod:`tagseg.data.phantom.cohort`) and writes it in one
dataset's layout, which the matching reader (:mod:`tagseg.data.readers`) reads back. Every writer
returns a manifest of what it wrote (subjects, folder splits, labelled 2D images per phase as the
format carries them), also saved as ``<output>/tagseg_phantom.json`` (not part of any dataset's
layout; the readers ignore it).
"""

from __future__ import annotations

import json
import os
import string
from collections.abc import Callable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from tagseg.data.phantom.cohort import (
    CohortSpec,
    CohortSubject,
    contour_xy,
    displacement_to_stored,
    display_to_stored,
    draw_subject,
    folder_split,
    nifti_affine,
    nifti_volume,
)
from tagseg.data.readers.tagged import DISPLACEMENT_KEY, DISPLACEMENT_SUFFIX
from tagseg.data.records import LV, MYO
from tagseg.errors import ConfigError

FORMATS = ("acdc", "mnms", "scd", "tagged")
MANIFEST = "tagseg_phantom.json"
#: intensities are written as integers, as scanners export them
INTENSITY_SCALE = 1000.0
ACDC_GROUPS = {"control": ["NOR"], "dmd": ["DCM", "HCM", "MINF", "RV"]}
MNMS_VENDORS = [("Siemens", "A", [1, 2]), ("Philips", "B", [3, 4]), ("GE", "C", [5]), ("Canon", "D", [6])]
MNMS_CSV = "211230_M&Ms_Dataset_information_diagnosis_opendataset.csv"
SCD_GROUPS = {"control": ["N"], "dmd": ["HF-I", "HF-NI", "HYP"]}


def _phase_counts() -> dict[str, int]:
    return {"ED": 0, "ES": 0, "other": 0, "total": 0}


def _add(counts: dict[str, int], phase: str, n: int) -> None:
    counts[phase if phase in ("ED", "ES") else "other"] += n
    counts["total"] += n


def _int_image(images: np.ndarray, dtype=np.int16) -> np.ndarray:
    return np.clip(np.rint(images * INTENSITY_SCALE), 0, np.iinfo(dtype).max).astype(dtype)


def _save_nifti(path: Path, data: np.ndarray, affine: np.ndarray, frame_ms: float | None = None) -> None:
    import nibabel as nib

    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm", "msec")
    if frame_ms is not None and data.ndim == 4:
        img.header.set_zooms(img.header.get_zooms()[:3] + (float(frame_ms),))
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(img, str(path))


def _record(subject: CohortSubject, name: str, counts: dict[str, int], **extra: Any) -> dict[str, Any]:
    return {
        "id": name,
        "split": subject.split,
        "group": subject.group,
        "matrix": list(subject.matrix),
        "spacing_mm": round(subject.spacing_mm, 4),
        "thickness_mm": round(subject.thickness_mm, 3),
        "n_frames": subject.n_frames,
        "n_slices": int(len(subject.labelled)),
        "orientation": subject.orientation,
        "images": counts,
        **extra,
    }


# --------------------------------------------------------------------------- ACDC


def write_acdc_subject(root: Path, subject: CohortSubject, pid: int) -> dict[str, Any]:
    """``training|testing/patientNNN/{Info.cfg, _4d, _frameYY, _frameYY_gt}.nii.gz`` (YY 1-based)."""
    name = f"patient{pid:03d}"
    folder = root / ("testing" if subject.split == "test" else "training") / name
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(pid)
    group = ACDC_GROUPS[subject.group][int(rng.integers(len(ACDC_GROUPS[subject.group])))]
    (folder / "Info.cfg").write_text(
        f"ED: {subject.ed + 1}\nES: {subject.es + 1}\nGroup: {group}\n"
        f"Height: {rng.uniform(150, 190):.1f}\nNbFrame: {subject.n_frames}\n"
        f"Weight: {rng.uniform(50, 100):.1f}\n"
    )
    zooms = (subject.spacing_mm, subject.spacing_mm, subject.thickness_mm)
    movie, axes = nifti_volume(_int_image(subject.images), subject.orientation)  # (x, y, z, t)
    affine = nifti_affine(movie.shape, axes, zooms)
    _save_nifti(folder / f"{name}_4d.nii.gz", movie, affine, frame_ms=1000.0 / subject.n_frames)
    counts = _phase_counts()
    for phase, frame in (("ED", subject.ed), ("ES", subject.es)):
        image, _ = nifti_volume(_int_image(subject.images[:, frame]), subject.orientation)
        labels, _ = nifti_volume(subject.labels[:, frame].astype(np.uint8), subject.orientation)
        _save_nifti(folder / f"{name}_frame{frame + 1:02d}.nii.gz", image, affine)
        _save_nifti(folder / f"{name}_frame{frame + 1:02d}_gt.nii.gz", labels, affine)
        _add(counts, phase, image.shape[2])  # the reader gives every slice of a labelled frame
    return _record(subject, name, counts, folder=str(folder.parent.name), acdc_group=group)


# --------------------------------------------------------------------------- M&Ms


def _mnms_code(rng: np.random.Generator, used: set[str]) -> str:
    while True:
        code = "".join(str(rng.choice(list(string.ascii_uppercase if i % 2 == 0 else string.digits))) for i in range(6))
        if code not in used:
            used.add(code)
            return code


def write_mnms_subject(root: Path, subject: CohortSubject, code: str, rng: np.random.Generator) -> dict[str, Any]:
    """``<folder>/<code>/<code>_sa.nii.gz`` + ``_sa_gt.nii.gz`` (x, y, z, t), M&Ms labels at ED / ES only;
    the frames are rolled so ED is not always frame 0 (0-based in the CSV)."""
    folder = {"test": "Testing", "val": "Validation"}.get(subject.split, "Training/Labeled")
    shift = int(rng.integers(subject.n_frames))
    images = np.roll(subject.images, shift, axis=1)
    labels = np.roll(subject.labels, shift, axis=1)
    ed, es = (subject.ed + shift) % subject.n_frames, (subject.es + shift) % subject.n_frames
    mnms = np.array([0, 3, 2, 1], np.uint8)[labels]  # ACDC (1 RV, 3 LV) -> M&Ms (1 LV, 3 RV)
    keep = np.zeros(subject.n_frames, bool)
    keep[[ed, es]] = True
    mnms[:, ~keep] = 0
    movie, axes = nifti_volume(_int_image(images), subject.orientation)  # (x, y, z, t)
    gt, _ = nifti_volume(mnms, subject.orientation)
    affine = nifti_affine(movie.shape, axes, (subject.spacing_mm, subject.spacing_mm, subject.thickness_mm))
    sdir = root / folder / code
    _save_nifti(sdir / f"{code}_sa.nii.gz", movie, affine, frame_ms=1000.0 / subject.n_frames)
    _save_nifti(sdir / f"{code}_sa_gt.nii.gz", gt, affine, frame_ms=1000.0 / subject.n_frames)
    vendor_name, vendor, centres = MNMS_VENDORS[int(rng.integers(len(MNMS_VENDORS)))]
    centre = int(centres[int(rng.integers(len(centres)))])
    counts = _phase_counts()
    _add(counts, "ED", movie.shape[2])
    _add(counts, "ES", movie.shape[2])
    return _record(
        subject,
        code,
        counts,
        folder=folder,
        ed=ed,
        es=es,
        vendor_name=vendor_name,
        vendor=vendor,
        centre=centre,
        pathology="NOR" if subject.group == "control" else "DCM",
    )


def write_mnms_csv(path: Path, records: list[dict[str, Any]], rng: np.random.Generator) -> Path:
    """The information CSV: unnamed index, External code, VendorName, Vendor, Centre, ED, ES (0-based), ..."""
    lines = [",External code,VendorName,Vendor,Centre,ED,ES,Age,Pathology,Sex,Height,Weight"]
    for i, r in enumerate(records):
        height = "" if i % 3 == 2 else f"{rng.uniform(150, 190):.1f}"  # Height / Weight may be empty
        weight = "" if i % 3 == 2 else f"{rng.uniform(50, 100):.1f}"
        lines.append(
            f"{i},{r['id']},{r['vendor_name']},{r['vendor']},{r['centre']},{r['ed']},{r['es']},"
            f"{int(rng.integers(10, 80))},{r['pathology']},{'MF'[int(rng.integers(2))]},{height},{weight}"
        )
    path.write_text("\n".join(lines) + "\n")
    return path


# --------------------------------------------------------------------------- DICOM (SCD, tagged)


def _dicom_orientation(orientation: str) -> tuple[list[float], list[float]]:
    """(row direction, column direction) cosines of a stored slice in ``orientation`` (display: +x, +y)."""
    row, col = [1.0, 0.0, 0.0], [0.0, 1.0, 0.0]
    if orientation == "flip_x":
        row = [-1.0, 0.0, 0.0]
    elif orientation == "flip_y":
        col = [0.0, -1.0, 0.0]
    elif orientation == "transpose":
        row, col = col, row
    return row, col


def write_dicom_image(
    path: Path,
    pixels: np.ndarray,
    *,
    spacing: float,
    thickness: float,
    z_mm: float,
    orientation: str,
    instance: int,
    series: int,
    n_phases: int,
    trigger_ms: float,
    patient: str,
    uids: dict[str, str],
    manufacturer: str,
) -> Path:
    """One MR image (pydicom) with the geometry tags a real series carries."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.4"
    meta.MediaStorageSOPInstanceUID = generate_uid(entropy_srcs=[uids["series"], str(instance)])
    meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds = FileDataset(str(path), {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID, ds.SOPInstanceUID = meta.MediaStorageSOPClassUID, meta.MediaStorageSOPInstanceUID
    ds.Modality, ds.Manufacturer = "MR", manufacturer
    ds.PatientID = ds.PatientName = patient
    ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = uids["study"], uids["series"], uids["frame"]
    ds.SeriesNumber, ds.InstanceNumber = series, instance
    row, col = _dicom_orientation(orientation)
    rows, cols = pixels.shape
    origin = np.zeros(3)
    for direction, n in ((row, cols), (col, rows)):
        if sum(direction) < 0:
            origin -= np.asarray(direction) * spacing * (n - 1)
    ds.ImageOrientationPatient = [f"{v:g}" for v in row + col]
    ds.ImagePositionPatient = [f"{v:.4f}" for v in (origin[0], origin[1], z_mm)]
    ds.SliceLocation = f"{z_mm:.4f}"
    ds.SliceThickness = f"{thickness:.4f}"
    ds.PixelSpacing = [f"{spacing:.6f}", f"{spacing:.6f}"]
    ds.CardiacNumberOfImages = n_phases
    ds.TriggerTime = f"{trigger_ms:.1f}"
    ds.Rows, ds.Columns = rows, cols
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
    ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 16, 16, 15, 0
    ds.PixelData = np.ascontiguousarray(pixels.astype(np.uint16)).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    ds.save_as(str(path), enforce_file_format=True)
    return path


def _uids(name: str) -> dict[str, str]:
    from pydicom.uid import generate_uid

    return {k: generate_uid(entropy_srcs=[name, k]) for k in ("study", "series", "frame")}


def _write_contour(path: Path, points: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{x:.2f} {y:.2f}\n" for x, y in points))


# --------------------------------------------------------------------------- SCD


def scd_case(subject: CohortSubject, number: int) -> str:
    """``SC-<cohort>-<n>`` (image folder; the contour folder is zero-padded)."""
    groups = SCD_GROUPS[subject.group]
    return f"SC-{groups[subject.index % len(groups)]}-{number}"


def write_scd_subject(root: Path, subject: CohortSubject, number: int, series: int) -> dict[str, Any]:
    """Every slice x frame as ``challenge_training/<case>/IM-SSSS-NNNN.dcm`` (NNNN = slice * frames + frame + 1)
    and ``i``/``o`` contours (pixel x, y) of the labelled slices at ED and ES under the zero-padded case
    folder ``.../<case padded>/contours-manual/IRCCI-expert/IM-0001-NNNN-{i,o}contour-manual.txt``."""
    case = scd_case(subject, number)
    padded = "-".join(f"{int(t):02d}" if t.isdigit() else t for t in case.split("-"))
    img_dir = root / "challenge_training" / case
    contours = root / "Sunnybrook Cardiac MR Database ContoursPart3" / "TrainingDataContours"
    ctr_dir = contours / padded / "contours-manual" / "IRCCI-expert"
    uids = _uids(case)
    ints = np.clip(np.rint(subject.images * INTENSITY_SCALE), 0, 65535).astype(np.uint16)
    n_z, n_t = subject.images.shape[:2]
    counts = _phase_counts()
    for z in range(n_z):
        for t in range(n_t):
            number_ = z * n_t + t + 1
            pixels = display_to_stored(ints[z, t], subject.orientation)
            write_dicom_image(
                img_dir / f"IM-{series:04d}-{number_:04d}.dcm",
                pixels,
                spacing=subject.spacing_mm,
                thickness=subject.thickness_mm,
                z_mm=z * subject.thickness_mm,
                orientation=subject.orientation,
                instance=number_,
                series=series,
                n_phases=n_t,
                trigger_ms=t * 1000.0 / n_t,
                patient=case,
                uids=uids,
                manufacturer="GE MEDICAL SYSTEMS",
            )
            if not subject.labelled[z] or t not in (subject.ed, subject.es):
                continue
            labels = display_to_stored(subject.labels[z, t], subject.orientation)
            inner = contour_xy(labels == LV)
            outer = contour_xy((labels == LV) | (labels == MYO))
            if inner is None or outer is None:
                continue
            _write_contour(ctr_dir / f"IM-0001-{number_:04d}-icontour-manual.txt", inner)
            _write_contour(ctr_dir / f"IM-0001-{number_:04d}-ocontour-manual.txt", outer)
            # SCD carries no ES index: the reader marks frame 0 ED and the others ""
            _add(counts, "ED" if t == 0 else "", 1)
    return _record(subject, case, counts, series=f"{series:04d}")


# --------------------------------------------------------------------------- tagged

TAGGED_LAYOUTS = ("h5", "nifti", "dicom")


def tagged_name(subject: CohortSubject, z: int, n_labelled: int) -> str:
    """``<n>_<G>_<G>_<id>_<location>`` (authors' naming; G = C control / D dmd; location base/mid/apex or the index)."""
    code = "C" if subject.group == "control" else "D"
    location = ("base", "mid", "apex")[z] if n_labelled == 3 else str(z)
    return f"{subject.index + 1}_{code}_{code}_{201 + subject.index}_{location}"


def _write_imt(path: Path, frames_tyx: np.ndarray, spacing: float, disp_tcyx: np.ndarray | None = None) -> None:
    """MATLAB v7.3 ``imt`` as h5py sees it: (x, y, t), a 512-byte user block, MATLAB_class attributes;
    with ``disp_tcyx`` (T, 2, rows, cols) also the true displacement ``disp`` as h5py sees it: (x, y, t, 2)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w", userblock_size=512) as f:
        ds = f.create_dataset("imt", data=np.transpose(frames_tyx, (2, 1, 0)).astype(np.float64))
        ds.attrs["MATLAB_class"] = np.bytes_("double")
        f.attrs["spacing_mm"] = np.asarray([spacing, spacing])
        if disp_tcyx is not None:
            disp = f.create_dataset(DISPLACEMENT_KEY, data=np.transpose(disp_tcyx, (3, 2, 0, 1)).astype(np.float32))
            disp.attrs["MATLAB_class"] = np.bytes_("single")


def _write_displacement_nifti(path: Path, disp_tcrc: np.ndarray, affine: np.ndarray) -> None:
    """The true displacement (T, 2, rows, cols) as the reader orients the slice, written (x, y, t, 2)."""
    _save_nifti(path, np.ascontiguousarray(np.transpose(disp_tcrc, (3, 2, 0, 1)), dtype=np.float32), affine)


def _write_roi(path: Path, inner: list[np.ndarray | None], outer: list[np.ndarray | None]) -> None:
    """ROI file: per-frame (N, 2) x, y arrays under ``#refs#``, cell arrays of HDF5 object references."""
    with h5py.File(path, "w", userblock_size=512) as f:
        refs = f.create_group("#refs#")
        for key, arrays in (("pts_interp_inner", inner), ("pts_interp_outer", outer)):
            cell = f.create_dataset(key, (len(arrays), 1), dtype=h5py.ref_dtype)
            cell.attrs["MATLAB_class"] = np.bytes_("cell")
            for t, pts in enumerate(arrays):
                if pts is None:
                    target = refs.create_dataset(f"{key}_{t}", data=np.zeros(2, np.uint64))
                    target.attrs["MATLAB_empty"] = np.uint8(1)
                else:
                    target = refs.create_dataset(f"{key}_{t}", data=np.asarray(pts, np.float64))
                target.attrs["MATLAB_class"] = np.bytes_("double")
                cell[t, 0] = target.ref


def write_tagged_subject(root: Path, subject: CohortSubject, layout: str) -> dict[str, Any]:
    """Each labelled slice as the authors' ``<name>.h5`` (imt) + ``<name>_roi.h5``, or as
    ``<name>.nii.gz`` (x, y, t) / ``<name>/*.dcm`` (one file per frame) + ``<name>_mask.nii.gz``.

    The true displacement of the slice goes with it (when the subject carries one): key ``disp`` of
    ``<name>.h5``, or ``<name>_disp.nii.gz`` (x, y, t, 2) in the voxel order of the mask, its
    components (row, col) in pixels of the slice as the reader orients it."""
    z_labelled = np.flatnonzero(subject.labelled)
    counts = _phase_counts()
    names = []
    for k, z in enumerate(z_labelled):
        name = tagged_name(subject, k, len(z_labelled))
        names.append(name)
        frames, labels = subject.images[z], subject.labels[z]  # (T, rows, cols)
        disp = None if subject.displacement is None else subject.displacement[z]  # (T, 2, rows, cols)
        myo = (labels == MYO).astype(np.uint8)
        if layout == "h5":
            inner = [contour_xy(lab == LV) for lab in labels]
            outer = [contour_xy((lab == LV) | (lab == MYO)) for lab in labels]
            _write_imt(root / f"{name}.h5", np.rint(frames * INTENSITY_SCALE), subject.spacing_mm, disp)
            _write_roi(root / f"{name}_roi.h5", inner, outer)
            n = sum(1 for a, b in zip(inner, outer) if a is not None and b is not None)
        elif layout == "nifti":
            vol, axes = nifti_volume(_int_image(frames), subject.orientation)  # (x, y, t)
            mask, _ = nifti_volume(myo, subject.orientation)
            affine = nifti_affine(vol.shape, axes, (subject.spacing_mm, subject.spacing_mm, subject.thickness_mm))
            _save_nifti(root / f"{name}.nii.gz", vol, affine)
            _save_nifti(root / f"{name}_mask.nii.gz", mask, affine)
            if disp is not None:
                stored_disp = displacement_to_stored(disp, subject.orientation)
                _write_displacement_nifti(root / f"{name}{DISPLACEMENT_SUFFIX}.nii.gz", stored_disp, affine)
            n = int(sum(m.any() for m in myo))
        elif layout == "dicom":
            uids = _uids(name)
            ints = np.clip(np.rint(frames * INTENSITY_SCALE), 0, 65535).astype(np.uint16)
            stored = np.stack([display_to_stored(m, subject.orientation) for m in myo])  # (T, r, c) as the DICOM pixels
            for t in range(subject.n_frames):
                pixels = display_to_stored(ints[t], subject.orientation)
                write_dicom_image(
                    root / name / f"IM-0001-{t + 1:04d}.dcm",
                    pixels,
                    spacing=subject.spacing_mm,
                    thickness=subject.thickness_mm,
                    z_mm=z * subject.thickness_mm,
                    orientation=subject.orientation,
                    instance=t + 1,
                    series=1,
                    n_phases=subject.n_frames,
                    trigger_ms=t * 1000.0 / subject.n_frames,
                    patient=name,
                    uids=uids,
                    manufacturer="Philips",
                )
            # mask (x, y, t) with x = DICOM column
            affine = nifti_affine(
                (stored.shape[2], stored.shape[1], stored.shape[0]),
                np.eye(3),
                (subject.spacing_mm, subject.spacing_mm, 1.0),
            )
            _save_nifti(root / f"{name}_mask.nii.gz", np.ascontiguousarray(stored.transpose(2, 1, 0)), affine)
            if disp is not None:
                stored_disp = displacement_to_stored(disp, subject.orientation)
                _write_displacement_nifti(root / f"{name}{DISPLACEMENT_SUFFIX}.nii.gz", stored_disp, affine)
            n = int(sum(m.any() for m in myo))
        else:
            raise ConfigError(f"tagged_layouts: unknown layout {layout!r}; expected {list(TAGGED_LAYOUTS)}")
        _add(counts, "ED", 1)
        _add(counts, "", n - 1)
    subject_id = names[0].rsplit("_", 1)[0] if names else f"{subject.index + 1}"
    return _record(subject, subject_id, counts, layout=layout, slices=names)


# --------------------------------------------------------------------------- cohorts


def write_cohort(
    fmt: str,
    output: str | Path,
    n_subjects: int,
    seed: int,
    spec: CohortSpec,
    tagged_layouts: tuple[str, ...] = TAGGED_LAYOUTS,
    progress: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Render ``n_subjects`` phantom subjects and write them in the layout of ``fmt`` under ``output``.

    Returns:
        The manifest: format, seed, subjects (id, folder split, group, matrix, spacing, thickness,
        frames, slices, orientation, labelled images per phase) and ``counts`` (labelled 2D images
        per phase over the cohort, as the dataset's reader reports them).

    Raises:
        ConfigError: unknown format or layout, fewer than one subject.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"format: expected one of {list(FORMATS)} (or all), got '{fmt}'")
    if not isinstance(n_subjects, int) or n_subjects < 1:
        raise ConfigError(f"n_subjects must be an integer >= 1, got {n_subjects!r}")
    bad = [lay for lay in tagged_layouts if lay not in TAGGED_LAYOUTS]
    if bad or not tagged_layouts:
        raise ConfigError(
            f"tagged_layouts: expected a non-empty list of {list(TAGGED_LAYOUTS)}, got {list(tagged_layouts)}"
        )
    root = Path(output)
    root.mkdir(parents=True, exist_ok=True)
    modality = "tagged" if fmt == "tagged" else "cine"
    rng = np.random.default_rng([int(seed) % (1 << 32), FORMATS.index(fmt)])
    records: list[dict[str, Any]] = []
    used: set[str] = set()
    for i in range(n_subjects):
        subject = draw_subject(modality, i, n_subjects, seed, spec, unlabelled_ends=fmt != "tagged")
        if fmt == "mnms":  # Training/Labeled, Validation, Testing
            subject.split = folder_split(i, n_subjects, spec)
        elif fmt == "acdc":  # training, testing
            subject.split = "test" if folder_split(i, n_subjects, spec) == "test" else ""
        if fmt == "acdc":
            records.append(write_acdc_subject(root, subject, i + 1))
        elif fmt == "mnms":
            records.append(write_mnms_subject(root, subject, _mnms_code(rng, used), rng))
        elif fmt == "scd":
            records.append(write_scd_subject(root, subject, i + 1, int(rng.integers(1, 1000))))
        else:
            records.append(write_tagged_subject(root, subject, tagged_layouts[i % len(tagged_layouts)]))
        if progress is not None:
            progress(i)
    if fmt == "mnms":
        write_mnms_csv(root / MNMS_CSV, records, rng)
    counts = _phase_counts()
    for r in records:
        for key in ("ED", "ES", "other"):
            _add(counts, key, r["images"][key])
    manifest = {
        "format": fmt,
        "seed": int(seed),
        "n_subjects": n_subjects,
        "cohort": _spec_dict(spec),
        "subjects": records,
        "counts": counts,
    }
    tmp = root / f".{MANIFEST}.{os.getpid()}.tmp"
    tmp.write_text(json.dumps(manifest, indent=1))
    tmp.replace(root / MANIFEST)
    return manifest


def _spec_dict(spec: CohortSpec) -> dict[str, Any]:
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in spec.__dict__.items()}


__all__ = ["FORMATS", "MANIFEST", "TAGGED_LAYOUTS", "write_cohort"]
