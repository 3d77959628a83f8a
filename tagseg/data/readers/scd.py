"""Sunnybrook Cardiac Data (SCD, MICCAI 2009 LV segmentation challenge) reader.

Layout, exactly as distributed (any folder depth under the root; the release splits cases over
``challenge_training`` / ``challenge_validation`` / ``challenge_online`` image folders and
``Sunnybrook Cardiac MR Database ContoursPart1-3`` contour folders)::

    <root>/.../SC-HF-I-01/contours-manual/IRCCI-expert/IM-0001-0048-icontour-manual.txt
    <root>/.../SC-HF-I-01/contours-manual/IRCCI-expert/IM-0001-0048-ocontour-manual.txt
    <root>/.../SC-HF-I-1/IM-0004-0048.dcm           DICOM series SSSS, image number NNNN

Contour folders are zero-padded (``SC-HF-I-01``), image folders are not (``SC-HF-I-1``): both are
matched on the unpadded id. A contour file ``IM-0001-NNNN-...`` refers to image NNNN of the case's
short-axis cine series; that series is the one holding every contoured image number (the largest
such series if several do), or the one given in ``series`` (case id -> "SSSS").

Contour files hold one ``x y`` pair per line in pixel coordinates (x = column, y = row). Only
images with both an inner (i) and an outer (o) contour are labelled: MYO (2) = filled outer minus
filled inner contour, LV (3) = filled inner contour. Frame / slice: image number NNNN (1-based)
-> index NNNN - 1 = slice * n_frames + frame, with n_frames from the DICOM
``CardiacNumberOfImages`` (else ``n_frames``); frame 0 is ED. Pixel spacing from the DICOM
``PixelSpacing`` (required). The contoured images of a case must form one series: a repeated
``InstanceNumber`` or an image whose matrix differs from the others' is an error naming the file
(the case is skipped and counted by ``prepare``). Group = the case's cohort (``HF-I``, ``HF-NI``, ``HYP``, ``N``).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from tagseg.data.readers.common import MYO, check_series, dicom_spacing, myocardium_mask, read_dicom, require_dir
from tagseg.data.records import SliceRecord
from tagseg.errors import DataError

LAYOUT = """  <root>/.../SC-HF-I-01/contours-manual/IRCCI-expert/IM-0001-NNNN-{i,o}contour-manual.txt
  <root>/.../SC-HF-I-1/IM-SSSS-NNNN.dcm"""

CONTOUR_RE = re.compile(r"^IM-\d{4}-(\d{4})-([io])contour-manual\.txt$")
DICOM_RE = re.compile(r"^IM-(\d{4})-(\d{4})\.dcm$")


def case_id(name: str) -> str:
    """Unpadded case id: ``SC-HF-I-01`` -> ``SC-HF-I-1`` (numeric tokens lose leading zeros)."""
    return "-".join(str(int(t)) if t.isdigit() else t for t in name.split("-"))


def case_group(case: str) -> str:
    """Cohort of a case id: ``SC-HF-I-1`` -> ``HF-I``, ``SC-N-40`` -> ``N``."""
    match = re.match(r"^SC-(.+)-\d+$", case)
    return match.group(1) if match else ""


def read_contour(path: Path) -> np.ndarray:
    """(N, 2) x, y points of a Sunnybrook contour file.

    Raises:
        DataError: unreadable numbers, an odd number of values, or fewer than 3 points.
    """
    try:
        values = [float(v) for v in path.read_text(errors="replace").split()]
    except ValueError as exc:
        raise DataError(f"{path}: contour file holds a non-number ({exc}); expected one 'x y' pair per line") from None
    if len(values) % 2:
        raise DataError(
            f"{path}: odd number of values ({len(values)}) in contour file; expected one 'x y' pair per line"
        )
    points = np.asarray(values, dtype=np.float64).reshape(-1, 2)
    if len(points) < 3:
        raise DataError(f"{path}: contour has {len(points)} point(s); a polygon needs at least 3")
    return points


class ScdSource:
    """Sunnybrook cases -> labelled slice records (frames with both endo- and epicardial contours).

    Args:
        root: the folder holding the image and contour folders (any depth).
        name: dataset name (store name and ``source`` column).
        store: the store path (used by the stages, not by the reader).
        expert: contour sub-folder under ``contours-manual``.
        series: case id -> series number ("SSSS") overriding the automatic choice.
        n_frames: frames per slice when the DICOM has no ``CardiacNumberOfImages``.
        vendor: value of the ``vendor`` meta column.
        centre: value of the ``centre`` meta column.
    """

    def __init__(
        self,
        root: str,
        name: str = "scd",
        store: str | None = None,
        expert: str = "IRCCI-expert",
        series: Mapping[str, str] | None = None,
        n_frames: int = 20,
        vendor: str = "GE",
        centre: str = "Sunnybrook",
    ) -> None:
        self.root = Path(str(root))
        self.name = name
        self.store = store
        self.expert = expert
        self.series = {case_id(str(k)): f"{int(v):04d}" for k, v in dict(series or {}).items()}
        self.n_frames = int(n_frames)
        self.extra_meta = {"vendor": str(vendor), "centre": str(centre)}
        self.store_attrs = {"labelled": True}
        self._images: dict[str, list[Path]] = {}

    def items(self) -> list[Path]:
        """Contour folders (``.../<case>/contours-manual/<expert>``), sorted by case id.

        Raises:
            DataError: the root is missing or holds no contour folder.
        """
        root = require_dir(self.root, "SCD (Sunnybrook)", LAYOUT)
        contour_dirs = sorted(p for p in root.rglob(f"contours-manual/{self.expert}") if p.is_dir())
        if not contour_dirs:
            raise DataError(
                f"{root}: no '<case>/contours-manual/{self.expert}' folder found; expected the layout\n{LAYOUT}"
            )
        self._images = defaultdict(list)
        for dcm in root.rglob("*.dcm"):
            self._images[case_id(dcm.parent.name)].append(dcm)
        return sorted(contour_dirs, key=lambda p: case_id(p.parent.parent.name))

    def describe(self, item: Path) -> str:
        return case_id(item.parent.parent.name)

    def _series(self, case: str, numbers: list[int], item: Path) -> dict[int, Path]:
        by_series: dict[str, dict[int, Path]] = defaultdict(dict)
        for path in self._images.get(case, []):
            match = DICOM_RE.match(path.name)
            if match:
                by_series[match.group(1)][int(match.group(2))] = path
        if not by_series:
            raise DataError(f"{item}: no DICOM folder '{case}' with IM-SSSS-NNNN.dcm files under {self.root}")
        if case in self.series:
            chosen = self.series[case]
            if chosen not in by_series:
                raise DataError(
                    f"{item}: data.series says {case} -> {chosen}, but its DICOM series are {sorted(by_series)}"
                )
        else:
            complete = [s for s, files in by_series.items() if all(n in files for n in numbers)]
            if not complete:
                raise DataError(
                    f"{item}: no DICOM series of {case} holds every contoured image {numbers[:5]}...; "
                    f"series found: {sorted(by_series)} (set data.series.{case}=SSSS)"
                )
            chosen = max(sorted(complete), key=lambda s: len(by_series[s]))
        files = by_series[chosen]
        missing = [n for n in numbers if n not in files]
        if missing:
            raise DataError(f"{item}: series {chosen} of {case} lacks image(s) {missing[:5]} named by contour files")
        return files

    def load(self, item: Path, seed: int) -> list[SliceRecord]:
        """Records of one case.

        Raises:
            DataError: no image with both contours, a bad contour file, no matching DICOM series,
                a DICOM without PixelSpacing, or an empty myocardium.
        """
        case = case_id(item.parent.parent.name)
        contours: dict[int, dict[str, Path]] = defaultdict(dict)
        for path in item.iterdir():
            match = CONTOUR_RE.match(path.name)
            if match:
                contours[int(match.group(1))][match.group(2)] = path
        numbers = sorted(n for n, kinds in contours.items() if {"i", "o"} <= set(kinds))
        if not numbers:
            raise DataError(
                f"{item}: no image has both an i- and an o-contour (IM-0001-NNNN-{{i,o}}contour-manual.txt)"
            )
        files = self._series(case, numbers, item)
        records: list[SliceRecord] = []
        datasets = {n: read_dicom(files[n]) for n in numbers}
        # one series: one matrix, no InstanceNumber twice (an error naming the file, never mixed in)
        check_series(list(datasets.values()), [files[n] for n in numbers])
        for number in numbers:
            ds = datasets[number]
            image = np.asarray(ds.pixel_array, dtype=np.float32)
            if image.ndim != 2:
                raise DataError(f"{files[number]}: expected one 2D image, got pixel array shape {image.shape}")
            inner = read_contour(contours[number]["i"])
            outer = read_contour(contours[number]["o"])
            mask = myocardium_mask(outer, inner, image.shape, cavity=True)
            if not (mask == MYO).any():
                raise DataError(
                    f"{contours[number]['o']}: empty mask (no pixel between the o- and i-contour of image {number})"
                )
            n_frames = int(getattr(ds, "CardiacNumberOfImages", 0) or 0) or self.n_frames
            index = number - 1
            frame = index % n_frames
            records.append(
                SliceRecord(
                    image=image,
                    mask=mask,
                    subject=case,
                    slice=index // n_frames,
                    frame=frame,
                    n_frames=n_frames,
                    phase="ED" if frame == 0 else "",
                    group=case_group(case),
                    spacing_mm=dicom_spacing(ds),
                    source=self.name,
                    extra_meta=dict(self.extra_meta),
                )
            )
        return records
