"""The strain output format: one versioned JSON file and three CSV tables (``tagseg strain``).

``strain.json`` (``schema`` ``"tagseg-strain"``, ``version`` :data:`SCHEMA_VERSION`)::

    {"schema": "tagseg-strain", "version": 2, "strain": "lagrangian engineering (l / l_ED - 1)",
     "slices": [{"subject", "slice", "level", "n_frames", "spacing_mm": [row, col], "tracker", "radial",
                 "landmark", "start_angle_deg", "sense", "n_sectors", "layer_fractions",
                 "segments": [AHA numbers], "point_segments": [per point],
                 "points_ed_mm": [[row, col] per point],
                 "displacement_mm": [[[u_row, u_col] per point] per frame],
                 "ecc": {"global": [...], "<segment>": [...]}, "err": {...},
                 "peaks": {"ecc": {"global": {"peak", "frame"}, ...}, "err": {...}}}]}

Positions are in mm from the image's first pixel centre (row, col); the displacement is
Lagrangian (of each ED point, zero at ED). ``radial`` says where Err comes from: ``"tags"`` (the
tracked layers, :mod:`tagseg.strain.tensors`) or ``"masks"`` (wall thickening of every frame's
myocardium, :mod:`tagseg.strain.thickening`); version 1 files, which lack it, are ``"tags"``. A
strain that cannot be measured (a segment whose wall was lost) is ``null``. The CSV tables hold the same numbers, one row each:
``strain_curves.csv`` (subject, slice, level, component, region, frame, strain),
``strain_peaks.csv`` (subject, slice, level, component, region, peak, time_to_peak_frame) and
``displacement.csv`` (subject, slice, point, layer, sector, segment, frame, row_mm, col_mm,
u_row_mm, u_col_mm). :func:`read_strain` reads the JSON back (round trip).
"""

from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tagseg.errors import DataError
from tagseg.io.atomic import atomic_write_text
from tagseg.strain.tensors import COMPONENTS, peak

SCHEMA_NAME = "tagseg-strain"
SCHEMA_VERSION = 2
STRAIN_DEFINITION = "lagrangian engineering (l / l_ED - 1)"
JSON_FILE = "strain.json"
CURVES_FILE = "strain_curves.csv"
PEAKS_FILE = "strain_peaks.csv"
DISPLACEMENT_FILE = "displacement.csv"
CURVE_FIELDS = ["subject", "slice", "level", "component", "region", "frame", "strain"]
PEAK_FIELDS = ["subject", "slice", "level", "component", "region", "peak", "time_to_peak_frame"]
DISPLACEMENT_FIELDS = [
    "subject",
    "slice",
    "point",
    "layer",
    "sector",
    "segment",
    "frame",
    "row_mm",
    "col_mm",
    "u_row_mm",
    "u_col_mm",
]


@dataclass
class SliceStrain:
    """The strain analysis of one slice (one entry of ``strain.json``)."""

    subject: str
    slice: int
    level: str
    spacing_mm: tuple[float, float]
    tracker: str
    landmark: str
    start_angle_deg: float
    sense: int
    n_sectors: int
    layer_fractions: list[float]
    segments: list[int]
    point_segments: np.ndarray  # (P,) int
    points_ed_mm: np.ndarray  # (P, 2)
    displacement_mm: np.ndarray  # (T, P, 2)
    ecc: dict[str, np.ndarray] = field(default_factory=dict)
    err: dict[str, np.ndarray] = field(default_factory=dict)
    radial: str = "tags"  # where Err comes from: "tags" (tracked layers) or "masks" (wall thickening)

    @property
    def n_frames(self) -> int:
        return int(self.displacement_mm.shape[0])

    def peaks(self) -> dict[str, dict[str, dict[str, float | int]]]:
        """{component: {region: {"peak", "frame"}}}: minimum Ecc, maximum Err (:func:`~tagseg.strain.tensors.peak`)."""
        out: dict[str, dict[str, dict[str, float | int]]] = {}
        for comp, sign in COMPONENTS.items():
            out[comp] = {}
            for region, curve in getattr(self, comp).items():
                value, frame = peak(curve, sign)
                out[comp][region] = {"peak": value, "frame": frame}
        return out

    def to_json(self) -> dict[str, Any]:
        return {
            "subject": self.subject,
            "slice": int(self.slice),
            "level": self.level,
            "n_frames": self.n_frames,
            "spacing_mm": [float(v) for v in self.spacing_mm],
            "tracker": self.tracker,
            "radial": self.radial,
            "landmark": self.landmark,
            "start_angle_deg": float(self.start_angle_deg),
            "sense": int(self.sense),
            "n_sectors": int(self.n_sectors),
            "layer_fractions": [float(v) for v in self.layer_fractions],
            "segments": [int(s) for s in self.segments],
            "point_segments": [int(s) for s in self.point_segments],
            "points_ed_mm": np.asarray(self.points_ed_mm, np.float64).tolist(),
            "displacement_mm": np.asarray(self.displacement_mm, np.float64).tolist(),
            "ecc": {k: _json_numbers(v) for k, v in self.ecc.items()},
            "err": {k: _json_numbers(v) for k, v in self.err.items()},
            "peaks": {
                comp: {region: {**p, "peak": _json_number(p["peak"])} for region, p in regions.items()}
                for comp, regions in self.peaks().items()
            },
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> SliceStrain:
        return cls(
            subject=str(d["subject"]),
            slice=int(d["slice"]),
            level=str(d["level"]),
            spacing_mm=(float(d["spacing_mm"][0]), float(d["spacing_mm"][1])),
            tracker=str(d["tracker"]),
            landmark=str(d["landmark"]),
            start_angle_deg=float(d["start_angle_deg"]),
            sense=int(d["sense"]),
            n_sectors=int(d["n_sectors"]),
            layer_fractions=[float(v) for v in d["layer_fractions"]],
            segments=[int(s) for s in d["segments"]],
            point_segments=np.asarray(d["point_segments"], np.int64),
            points_ed_mm=np.asarray(d["points_ed_mm"], np.float64).reshape(-1, 2),
            displacement_mm=np.asarray(d["displacement_mm"], np.float64).reshape(int(d["n_frames"]), -1, 2),
            ecc={k: np.asarray(v, np.float64) for k, v in d["ecc"].items()},
            err={k: np.asarray(v, np.float64) for k, v in d["err"].items()},
            radial=str(d.get("radial", "tags")),
        )


def _json_number(value: Any) -> float | None:
    v = float(value)
    return v if np.isfinite(v) else None


def _json_numbers(values: Any) -> list[float | None]:
    """A curve for strict JSON: NaN (not measurable) as null."""
    return [_json_number(v) for v in np.asarray(values, np.float64)]


def strain_document(slices: list[SliceStrain], attrs: dict[str, Any] | None = None) -> dict[str, Any]:
    """The ``strain.json`` document of ``slices`` (``attrs``: e.g. the resolved config, the model)."""
    return {
        "schema": SCHEMA_NAME,
        "version": SCHEMA_VERSION,
        "strain": STRAIN_DEFINITION,
        **({"attrs": attrs} if attrs else {}),
        "slices": [s.to_json() for s in slices],
    }


def _csv_text(fields: list[str], rows: list[list[Any]]) -> str:
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(fields)
    writer.writerows(rows)
    return buf.getvalue()


def curve_rows(slices: list[SliceStrain]) -> list[list[Any]]:
    rows = []
    for s in slices:
        for comp in COMPONENTS:
            for region, curve in getattr(s, comp).items():
                rows.extend([s.subject, s.slice, s.level, comp, region, t, f"{v:.6f}"] for t, v in enumerate(curve))
    return rows


def peak_rows(slices: list[SliceStrain]) -> list[list[Any]]:
    rows = []
    for s in slices:
        for comp, regions in s.peaks().items():
            for region, p in regions.items():
                rows.append([s.subject, s.slice, s.level, comp, region, f"{p['peak']:.6f}", p["frame"]])
    return rows


def displacement_rows(slices: list[SliceStrain]) -> list[list[Any]]:
    rows = []
    for s in slices:
        n_sectors = s.n_sectors
        for t in range(s.n_frames):
            pos = s.points_ed_mm + s.displacement_mm[t]
            for p in range(len(s.points_ed_mm)):
                u = s.displacement_mm[t, p]
                rows.append(
                    [s.subject, s.slice, p, p // n_sectors, p % n_sectors, int(s.point_segments[p]), t]
                    + [f"{v:.4f}" for v in (pos[p, 0], pos[p, 1], u[0], u[1])]
                )
    return rows


def write_strain(
    folder: str | os.PathLike, slices: list[SliceStrain], attrs: dict[str, Any] | None = None
) -> list[Path]:
    """Write ``strain.json`` and the three CSV tables into ``folder`` (each file atomically)."""
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    return [
        atomic_write_text(out / JSON_FILE, json.dumps(strain_document(slices, attrs))),
        atomic_write_text(out / CURVES_FILE, _csv_text(CURVE_FIELDS, curve_rows(slices))),
        atomic_write_text(out / PEAKS_FILE, _csv_text(PEAK_FIELDS, peak_rows(slices))),
        atomic_write_text(out / DISPLACEMENT_FILE, _csv_text(DISPLACEMENT_FIELDS, displacement_rows(slices))),
    ]


def read_strain(path: str | os.PathLike) -> list[SliceStrain]:
    """The slices of a ``strain.json`` (a file, or the folder holding it).

    Raises:
        DataError: not JSON, another schema, a newer version, or a missing key (naming the file).
    """
    path = Path(path)
    if path.is_dir():
        path = path / JSON_FILE
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise DataError(
            f"{path}: cannot read a strain JSON ({exc}); expected a {JSON_FILE} written by tagseg strain"
        ) from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA_NAME:
        raise DataError(f"{path}: not a tagseg strain file (schema {SCHEMA_NAME!r} expected)")
    version = doc.get("version")
    if not isinstance(version, int) or version > SCHEMA_VERSION:
        raise DataError(f"{path}: strain schema version {version!r}; this tagseg reads versions <= {SCHEMA_VERSION}")
    try:
        return [SliceStrain.from_json(d) for d in doc["slices"]]
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise DataError(f"{path}: malformed strain entry ({type(exc).__name__}: {exc})") from None


__all__ = [
    "CURVES_FILE",
    "CURVE_FIELDS",
    "DISPLACEMENT_FIELDS",
    "DISPLACEMENT_FILE",
    "JSON_FILE",
    "PEAKS_FILE",
    "PEAK_FIELDS",
    "SCHEMA_NAME",
    "SCHEMA_VERSION",
    "STRAIN_DEFINITION",
    "SliceStrain",
    "read_strain",
    "strain_document",
    "write_strain",
]
