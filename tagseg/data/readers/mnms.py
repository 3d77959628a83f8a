"""M&Ms (Multi-Centre, Multi-Vendor and Multi-Disease Cardiac Segmentation, 2020) reader.

Layout, exactly as distributed::

    <root>/Training/Labeled/<code>/<code>_sa.nii.gz      (x, y, z, t)
    <root>/Training/Labeled/<code>/<code>_sa_gt.nii.gz   (x, y, z, t), labels only at ED and ES
    <root>/Validation/<code>/...   <root>/Testing/<code>/...   (same)
    <root>/211230_M&Ms_Dataset_information_diagnosis_opendataset.csv
        first column an unnamed index, then External code, VendorName, Vendor, Centre, ED, ES,
        Age, Pathology, Sex, Height, Weight; ED / ES are 0-based frame indices

Records: one per z slice of the ED and ES frames (0-based, as in the CSV); labels remapped from
M&Ms (1 LV, 2 MYO, 3 RV) to tagseg's ACDC convention (1 RV, 2 MYO, 3 LV); group = ``Pathology``
(empty if the CSV has no such column); ``vendor`` and ``centre`` meta columns from the CSV.
Orientation: NIfTI (x, y) -> rows = y, columns = x (no flip). ``folder_splits`` pre-assigns
``Validation`` -> val and ``Testing`` -> test; ``Training/Labeled`` is split by subject, seeded.
With ``all_frames=True`` every frame is read without labels (zero masks, ``labelled: false``).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from tagseg.data.readers.common import (
    LABELS,
    check_label_values,
    check_same_shape,
    find_nifti,
    load_nifti,
    nifti_spacing,
    require_dir,
    volume_records,
)
from tagseg.data.records import SliceRecord
from tagseg.errors import DataError

LAYOUT = """  <root>/Training/Labeled/<code>/{<code>_sa.nii.gz, <code>_sa_gt.nii.gz}
  <root>/Validation/<code>/...  <root>/Testing/<code>/...
  <root>/<info>.csv  (External code, Vendor, Centre, ED, ES[, Pathology]; ED/ES 0-based)"""

REQUIRED_COLUMNS = ("External code", "Vendor", "Centre", "ED", "ES")
#: M&Ms label -> ACDC label (1 LV <-> 3 RV swap, MYO stays 2)
MNMS_TO_ACDC = np.array([0, 3, 2, 1], dtype=np.uint8)


def _cell(value: Any) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value).strip()


class MnmsSource:
    """M&Ms subject folders -> ED/ES slice records in ACDC label convention.

    Args:
        root: the folder holding ``Training/``, ``Validation/``, ``Testing/`` and the info CSV.
        name: dataset name (store name and ``source`` column).
        store: the store path (used by the stages, not by the reader).
        info_csv: the info CSV, relative to ``root`` or absolute; ``None``: the only ``*.csv`` in root.
        folders: sub-folders to read, in order.
        folder_splits: folder -> pre-assigned split ("" = seeded split by subject).
        all_frames: read every frame without labels instead of the labelled ED/ES frames.
        drop_empty: drop slices whose ground truth is all background.
    """

    def __init__(
        self,
        root: str,
        name: str = "mnms",
        store: str | None = None,
        info_csv: str | None = None,
        folders: Sequence[str] = ("Training/Labeled", "Validation", "Testing"),
        folder_splits: Mapping[str, str] | None = None,
        all_frames: bool = False,
        drop_empty: bool = False,
    ) -> None:
        self.root = Path(str(root))
        self.name = name
        self.store = store
        self.info_csv = info_csv
        self.folders = list(folders)
        default_splits = {"Training/Labeled": "", "Validation": "val", "Testing": "test"}
        self.folder_splits = dict(folder_splits if folder_splits is not None else default_splits)
        self.all_frames = bool(all_frames)
        self.drop_empty = bool(drop_empty)
        self.store_attrs = {"labelled": not self.all_frames}
        self._info: dict[str, dict[str, str]] | None = None
        self._csv_path: Path | None = None
        self._item_folder: dict[Path, str] = {}

    # -- index -------------------------------------------------------------------------------
    def _find_csv(self, root: Path) -> Path:
        if self.info_csv:
            path = Path(str(self.info_csv))
            path = path if path.is_absolute() else root / path
            if not path.is_file():
                raise DataError(f"{path}: M&Ms info CSV not found (set data.info_csv=<file>)")
            return path
        found = sorted(root.glob("*.csv"))
        if not found:
            raise DataError(f"{root}: no M&Ms info CSV (*.csv) in the root folder; expected the layout\n{LAYOUT}")
        if len(found) > 1:
            raise DataError(
                f"{root}: several CSV files {[p.name for p in found]}; choose one with data.info_csv=<file>"
            )
        return found[0]

    def _load_info(self, root: Path) -> dict[str, dict[str, str]]:
        import pandas as pd

        path = self._find_csv(root)
        try:
            table = pd.read_csv(path)
        except Exception as exc:  # pandas raises parser / unicode / empty-data errors
            raise DataError(f"{path}: unreadable CSV ({exc})") from exc
        table.columns = [str(c).strip() for c in table.columns]
        missing = [c for c in REQUIRED_COLUMNS if c not in table.columns]
        if missing:
            raise DataError(f"{path}: missing column(s) {missing}; expected {list(REQUIRED_COLUMNS)} (+ Pathology)")
        info = {}
        for row in table.to_dict("records"):
            code = _cell(row["External code"])
            if code:
                info[code] = {k: _cell(v) for k, v in row.items()}
        self._csv_path = path
        return info

    def items(self) -> list[Path]:
        """Subject folders of every existing ``folders`` entry, sorted.

        Raises:
            DataError: the root, the CSV, or every listed folder is missing; the CSV lacks a column.
        """
        root = require_dir(self.root, "M&Ms", LAYOUT)
        self._info = self._load_info(root)
        present = [f for f in self.folders if (root / f).is_dir()]
        if not present:
            raise DataError(f"{root}: none of the M&Ms folders {self.folders} found; expected the layout\n{LAYOUT}")
        items = []
        for folder in present:
            for p in sorted((root / folder).iterdir()):
                if p.is_dir():
                    self._item_folder[p] = folder
                    items.append(p)
        return items

    def describe(self, item: Path) -> str:
        return f"{self._item_folder.get(item, item.parent.name)}/{item.name}"

    # -- one subject ---------------------------------------------------------------------------
    def _frame(self, row: dict[str, str], key: str, n_frames: int, image_path: Path) -> int:
        try:
            frame = int(float(row[key]))
        except ValueError:
            raise DataError(
                f"{self._csv_path}: subject '{row['External code']}': {key} must be a 0-based frame index, got {row[key]!r}"
            ) from None
        if not 0 <= frame < n_frames:
            raise DataError(
                f"{self._csv_path}: subject '{row['External code']}': {key} = {frame} outside the "
                f"{n_frames} frames of {image_path}"
            )
        return frame

    def load(self, item: Path, seed: int) -> list[SliceRecord]:
        """Records of one subject folder.

        Raises:
            DataError: the subject has no CSV row, a NIfTI is missing / unreadable / not 4D, image and
                label shapes differ, labels are outside 0-3, or a labelled frame is empty.
        """
        if self._info is None:
            self._info = self._load_info(require_dir(self.root, "M&Ms", LAYOUT))
        code = item.name
        row = self._info.get(code)
        if row is None:
            raise DataError(f"{self._csv_path}: no row for subject '{code}' (column 'External code'; folder {item})")
        image_path = find_nifti(item, f"{code}_sa")
        image, zooms = load_nifti(image_path)
        if image.ndim != 4:
            raise DataError(f"{image_path}: expected a 4D (x, y, z, t) volume, got shape {image.shape}")
        n_frames = image.shape[3]
        ed = self._frame(row, "ED", n_frames, image_path)
        es = self._frame(row, "ES", n_frames, image_path)
        if ed == es:
            raise DataError(
                f"{self._csv_path}: subject '{code}': ED and ES are the same frame ({ed}); expected two phases"
            )
        spacing = nifti_spacing(zooms)
        folder = self._item_folder.get(item, item.parent.name)
        base = dict(
            subject=code,
            n_frames=n_frames,
            group=row.get("Pathology", ""),
            spacing_mm=spacing,
            source=self.name,
            split=self.folder_splits.get(folder, ""),
        )
        meta = {"vendor": row["Vendor"], "centre": row["Centre"]}
        records: list[SliceRecord] = []
        if self.all_frames:
            for t in range(n_frames):
                phase = "ED" if t == ed else "ES" if t == es else ""
                records += volume_records(image, None, t, phase, time_index=t, extra_meta=meta, **base)
            return records
        label_path = find_nifti(item, f"{code}_sa_gt")
        labels, _ = load_nifti(label_path)
        check_same_shape(image, labels, image_path, label_path)
        check_label_values(labels, LABELS, label_path, "M&Ms 0 bg, 1 LV, 2 MYO, 3 RV")
        labels = MNMS_TO_ACDC[labels.astype(np.int64)]
        for phase, frame in (("ED", ed), ("ES", es)):
            if not labels[..., frame].any():
                raise DataError(
                    f"{label_path}: empty mask at the {phase} frame {frame} (0-based, from {self._csv_path.name})"
                )
            records += volume_records(
                image, labels, frame, phase, time_index=frame, drop_empty=self.drop_empty, extra_meta=meta, **base
            )
        return records
