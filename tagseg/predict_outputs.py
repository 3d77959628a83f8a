"""What ``tagseg predict`` writes for one scan, each file under a temporary name first.

:func:`scan_outputs` writes every file of a scan as ``.tmp-<final name>`` in the output folder and
returns the (temporary, final) pairs; :func:`publish` renames them, so a scan's outputs appear
together and only when all were written (a failure removes the temporary files).
The file formats are documented in ``docs/data-formats.md`` (section "Prediction outputs").
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tagseg.contours import MyocardialContours, myocardial_contours
from tagseg.conventions import MYO, RV
from tagseg.data.scans import Scan
from tagseg.io.atomic import publish as publish_file

#: schema name and version written in every points JSON
POINTS_SCHEMA = "tagseg.reference_points/1"
POINT_FIELDS = [
    "scan",
    "subject",
    "slice",
    "frame",
    "contour",
    "point",
    "x",
    "y",
    "x_mm",
    "y_mm",
    "patient_x_mm",
    "patient_y_mm",
    "patient_z_mm",
]
PREDICTION_FIELDS = [
    "scan",
    "subject",
    "slice",
    "frame",
    "myocardium_px",
    "myocardium_mm2",
    "closed_ring",
    "landmark",
    "orientation",
    "input",
]
FAILED_FIELDS = ["file", "reason"]


def temp_path(path: Path) -> Path:
    """The temporary name ``path`` is written under (same folder and suffixes, so writers infer the format)."""
    return path.with_name(f".tmp-{os.getpid()}-{path.name}")


def publish(pairs: Iterable[tuple[Path, Path]]) -> list[Path]:
    """Rename each temporary file to its final name; returns the final paths."""
    out = []
    for tmp, final in pairs:
        publish_file(tmp, final)
        out.append(final)
    return out


def discard(pairs: Iterable[tuple[Path, Path]]) -> None:
    """Remove temporary files of a scan that failed."""
    for tmp, _ in pairs:
        tmp.unlink(missing_ok=True)


def write_csv(path: Path, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> Path:
    """A CSV file written atomically."""
    tmp = temp_path(path)
    with open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    publish_file(tmp, path)
    return path


def contours_of(
    scan: Scan, labels: np.ndarray, n_points: int | None, start_angle_deg: float
) -> list[MyocardialContours]:
    """Reference contours of every image (the RV label, when predicted, gives the landmark)."""
    return [
        myocardial_contours(
            m == MYO, n_points=n_points, rv=(m == RV) if (m == RV).any() else None, start_angle_deg=start_angle_deg
        )
        for m in labels
    ]


def nifti_mask(scan: Scan, labels: np.ndarray) -> Any:
    """The mask as a NIfTI image in the input's layout and geometry.

    A NIfTI input's header is copied (affine, sform / qform and their codes, units, pixdim with
    the time step); the data type becomes uint8 with intent ``label``. DICOM inputs get their patient
    (RAS) affine with sform and qform code 1 (scanner); others ``diag(col, row, 1)`` mm.
    """
    import nibabel as nib

    data = scan.to_input_layout(labels).astype(np.uint8)
    src = scan.nifti
    if src is not None:
        hdr = src.header.copy()
        img = type(src)(data, src.affine, header=hdr)
        img.set_sform(src.header.get_sform(), code=int(src.header["sform_code"]))
        img.set_qform(src.header.get_qform(), code=int(src.header["qform_code"]))
        img.header["pixdim"] = src.header["pixdim"]
    else:
        img = nib.Nifti1Image(data, scan.affine)
        code = 1 if scan.patient else 0
        img.set_sform(scan.affine, code=code or 2)
        img.set_qform(scan.affine, code=code)
        img.header.set_xyzt_units("mm", "sec")
    img.set_data_dtype(np.uint8)
    img.header.set_slope_inter(1.0, 0.0)
    img.header["cal_min"], img.header["cal_max"] = 0, int(data.max()) if data.size else 0
    img.header.set_intent("label")
    return img


def _points_doc(scan: Scan, contours: Sequence[MyocardialContours]) -> dict[str, Any]:
    images = []
    for i, c in enumerate(contours):
        row_mm, col_mm = (float(v) for v in scan.spacing_mm[i])
        entry: dict[str, Any] = {
            "index": i,
            "subject": str(scan.subject[i]),
            "slice": int(scan.slice[i]),
            "frame": int(scan.frame[i]),
            "spacing_mm": [row_mm, col_mm],
            "landmark": c.landmark,
            "start_angle_deg": round(c.start_angle_deg, 3),
            "centre_xy": [round(v, 3) for v in c.centre] if np.isfinite(c.centre).all() else None,
            "inner_xy": np.round(c.inner, 3).tolist(),
            "outer_xy": np.round(c.outer, 3).tolist(),
        }
        for name, pts in (("inner", c.inner), ("outer", c.outer)):
            mm = scan.patient_mm(i, pts) if len(pts) else None
            entry[f"{name}_patient_mm"] = None if mm is None else np.round(mm, 3).tolist()
        images.append(entry)
    return {
        "schema": POINTS_SCHEMA,
        "scan": scan.name,
        "input": str(scan.path),
        "kind": scan.kind,
        "convention": "x = column, y = row, pixel units, pixel centres at integers; *_patient_mm: RAS mm through the "
        "input's affine (null without patient geometry); points clockwise as displayed from the landmark",
        "frames": images,
    }


def point_rows(scan: Scan, contours: Sequence[MyocardialContours]) -> list[list[Any]]:
    """Rows of ``reference_points.csv`` (:data:`POINT_FIELDS`) for one scan."""
    rows = []
    for i, c in enumerate(contours):
        row_mm, col_mm = scan.spacing_mm[i]
        for name, pts in (("inner", c.inner), ("outer", c.outer)):
            mm = scan.patient_mm(i, pts) if len(pts) else None
            for j, (x, y) in enumerate(pts):
                patient = ["", "", ""] if mm is None else [round(float(v), 3) for v in mm[j]]
                rows.append(
                    [
                        scan.name,
                        scan.subject[i],
                        int(scan.slice[i]),
                        int(scan.frame[i]),
                        name,
                        j,
                        round(float(x), 3),
                        round(float(y), 3),
                        round(float(x * col_mm), 3),
                        round(float(y * row_mm), 3),
                        *patient,
                    ]
                )
    return rows


def prediction_rows(
    scan: Scan,
    labels: np.ndarray,
    contours: Sequence[MyocardialContours],
    orientations: Sequence[str] | None = None,
) -> list[dict[str, Any]]:
    """Rows of ``predictions.csv`` (:data:`PREDICTION_FIELDS`) for one scan (``orientations``: the view
    each image was segmented in, :mod:`tagseg.models.orientation`; default: as stored)."""
    rows = []
    for i, c in enumerate(contours):
        n_px = int((labels[i] == MYO).sum())
        rows.append(
            {
                "scan": scan.name,
                "subject": scan.subject[i],
                "slice": int(scan.slice[i]),
                "frame": int(scan.frame[i]),
                "myocardium_px": n_px,
                "myocardium_mm2": round(n_px * float(np.prod(scan.spacing_mm[i])), 3),
                "closed_ring": c.closed_ring,
                "landmark": c.landmark,
                "orientation": orientations[i] if orientations is not None else "identity",
                "input": str(scan.path),
            }
        )
    return rows


def _overlay_png(
    scan: Scan, labels: np.ndarray, contours: Sequence[MyocardialContours], path: Path, max_frames: int
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    index = np.unique(np.linspace(0, len(scan) - 1, min(len(scan), max_frames)).round().astype(int))
    cols = min(5, len(index))
    rows = int(np.ceil(len(index) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.4 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, i in zip(axes.ravel(), index):
        ax.imshow(scan.frames[i], cmap="gray")
        ax.contour(labels[i] == MYO, levels=[0.5], colors="yellow", linewidths=0.6)
        for pts, color in ((contours[i].outer, "lime"), (contours[i].inner, "red")):
            if len(pts):
                ax.plot(*np.vstack([pts, pts[:1]]).T, ".-", color=color, markersize=2, linewidth=0.6)
                ax.plot(*pts[0], "o", color="cyan", markersize=3)  # the landmark: point 0
        ax.set_title(f"{scan.name} z={int(scan.slice[i])} t={int(scan.frame[i])}", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def dicom_seg(scan: Scan, labels: np.ndarray, path: Path) -> None:
    """A DICOM SEG (binary, one segment: myocardium) referencing the source instances (highdicom).

    A SEG holds one mask per plane position, so a series over time gets one file per frame
    (``<scan>_seg_t<frame>.dcm``, see :func:`dicom_seg_names`); the file written here covers the
    images at the given indices.
    """
    import highdicom as hd
    from pydicom.sr.codedict import codes

    from tagseg.errors import DataError

    assert scan.dicom is not None
    vol = scan.dicom
    myo = labels == MYO
    sources: list[Any] = []
    for ds in vol.datasets:
        if all(ds is not s for s in sources):
            sources.append(ds)
    if vol.frame_numbers[0] is not None:
        if vol.n_times > 1:
            raise DataError(
                f"{scan.path}: dicom_seg: a multi-frame source with several time frames per position is not "
                "supported (a SEG holds one mask per position); predict this scan without dicom_seg=true"
            )
        pixels = np.zeros((int(sources[0].NumberOfFrames), *myo.shape[1:]), bool)
        for i, f in enumerate(vol.frame_numbers):
            pixels[int(f) - 1] = myo[i]
        _write_seg(hd, codes, sources, pixels, path)
        return
    for t in range(vol.n_times):
        index = [z * vol.n_times + t for z in range(vol.n_slices)]
        target = path if vol.n_times == 1 else path.with_name(path.name.replace("_seg.dcm", f"_seg_t{t:02d}.dcm"))
        _write_seg(hd, codes, [vol.datasets[i] for i in index], myo[index], target)


def dicom_seg_names(scan: Scan) -> list[str]:
    """File names of a scan's DICOM SEG output(s)."""
    assert scan.dicom is not None
    if scan.dicom.frame_numbers[0] is not None or scan.dicom.n_times == 1:
        return [f"{scan.name}_seg.dcm"]
    return [f"{scan.name}_seg_t{t:02d}.dcm" for t in range(scan.dicom.n_times)]


def _write_seg(hd: Any, codes: Any, sources: list[Any], pixels: np.ndarray, path: Path) -> None:
    segment = hd.seg.SegmentDescription(
        segment_number=1,
        segment_label="myocardium",
        segmented_property_category=codes.SCT.Tissue,
        segmented_property_type=hd.sr.CodedConcept("74281007", "SCT", "Myocardium structure"),
        algorithm_type=hd.seg.SegmentAlgorithmTypeValues.AUTOMATIC,
        algorithm_identification=hd.AlgorithmIdentificationSequence(
            name="tagseg", version=_version(), family=codes.DCM.ArtificialIntelligence
        ),
    )
    seg = hd.seg.Segmentation(
        source_images=sources,
        pixel_array=pixels,
        segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
        segment_descriptions=[segment],
        series_instance_uid=hd.UID(),
        series_number=900,
        sop_instance_uid=hd.UID(),
        instance_number=1,
        manufacturer="tagseg",
        manufacturer_model_name="tagseg predict",
        software_versions=_version(),
        device_serial_number="0",
    )
    seg.save_as(str(path))


def _version() -> str:
    from tagseg import __version__

    return str(__version__)


def scan_outputs(
    scan: Scan,
    labels: np.ndarray,
    contours: Sequence[MyocardialContours],
    out: Path,
    overlays: bool = True,
    overlay_max_frames: int = 25,
    attrs: dict[str, Any] | None = None,
    dicom_seg_file: bool = False,
    masks: bool = True,
) -> list[tuple[Path, Path]]:
    """Write one scan's files under temporary names; returns (temporary, final) pairs for :func:`publish`.

    ``masks=False`` (QC withheld the scan) writes only the overlay: no mask, SEG or points.

    Raises:
        Exception: whatever a writer raises (the temporary files written so far are removed).
    """
    pairs: list[tuple[Path, Path]] = []

    def target(name: str) -> Path:
        final = out / name
        pairs.append((temp_path(final), final))
        return pairs[-1][0]

    try:
        if masks and scan.kind == "store":
            from tagseg.io.store import write_store

            write_store(
                target(f"{scan.name}_pred.h5"),
                scan.frames,
                labels,
                scan.meta or {},
                attrs={"name": f"{scan.name}-pred", **(attrs or {})},
            )
        elif masks:
            import nibabel as nib

            nib.save(nifti_mask(scan, labels), str(target(f"{scan.name}_mask.nii.gz")))
        if masks and dicom_seg_file and scan.dicom is not None:
            names = dicom_seg_names(scan)
            tmps = [target(n) for n in names]
            dicom_seg(scan, labels, tmps[0].with_name(tmps[0].name.replace(names[0], f"{scan.name}_seg.dcm")))
        if overlays:
            _overlay_png(scan, labels, contours, target(f"{scan.name}_overlay.png"), overlay_max_frames)
        if masks:
            target(f"{scan.name}_points.json").write_text(json.dumps(_points_doc(scan, contours), indent=1))
    except BaseException:
        discard(pairs)
        raise
    return pairs


__all__ = [
    "FAILED_FIELDS",
    "POINTS_SCHEMA",
    "POINT_FIELDS",
    "PREDICTION_FIELDS",
    "contours_of",
    "dicom_seg",
    "discard",
    "nifti_mask",
    "point_rows",
    "prediction_rows",
    "publish",
    "scan_outputs",
    "temp_path",
    "write_csv",
]
