"""ACDC (MICCAI 2017 Automated Cardiac Diagnosis Challenge) reader.

Layout, exactly as distributed::

    <root>/training/patient001/Info.cfg                  "Key: value" lines: ED, ES, Group, NbFrame, ...
    <root>/training/patient001/patient001_4d.nii.gz      (x, y, z, t) every frame, no labels
    <root>/training/patient001/patient001_frame01.nii.gz (x, y, z) the ED frame (YY = ED, 1-based)
    <root>/training/patient001/patient001_frame01_gt.nii.gz  labels 0 bg, 1 RV, 2 MYO, 3 LV
    <root>/testing/patient101/...                        same (labelled in the 2020+ release)

Records: one per z slice of the ED and ES frames; frame is 0-based (``Info.cfg`` ED - 1); phase
"ED"/"ES"; group = the pathology code (``Group``); spacing from the image header. Orientation:
NIfTI (x, y) -> rows = y, columns = x (no flip, affine ignored). Labels are already in tagseg's
(ACDC) convention. Patients under ``testing/`` get the split ``test`` (``folder_splits``), so a
store keeps ACDC's own test set; the others are split by subject with the seed.

With ``all_frames=True`` every frame of ``_4d.nii.gz`` is read instead, without labels (masks are
zeros and the store says ``labelled: false``): CycleGAN domain A / the dynamic physics transform.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

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

log = logging.getLogger(__name__)

LAYOUT = """  <root>/training/patientNNN/{Info.cfg, patientNNN_4d.nii.gz, patientNNN_frameYY.nii.gz, patientNNN_frameYY_gt.nii.gz}
  <root>/testing/patientNNN/... (same)"""

REQUIRED_INFO = ("ED", "ES", "Group", "NbFrame")


def read_info(path: Path) -> dict[str, str]:
    """Parse an ACDC ``Info.cfg`` (``Key: value`` lines).

    Raises:
        DataError: the file is missing, a line is malformed, a required key is missing, or ED / ES /
            NbFrame are not positive integers with ED, ES <= NbFrame.
    """
    if not path.is_file():
        raise DataError(f"{path}: Info.cfg not found (expected 'Key: value' lines with {', '.join(REQUIRED_INFO)})")
    info: dict[str, str] = {}
    for n, line in enumerate(path.read_text(errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        if ":" not in line:
            raise DataError(f"{path}: line {n} is not 'Key: value': {line.strip()!r}")
        key, value = line.split(":", 1)
        info[key.strip()] = value.strip()
    for key in REQUIRED_INFO:
        if key not in info:
            raise DataError(
                f"{path}: missing key '{key}' (expected 'Key: value' lines with {', '.join(REQUIRED_INFO)})"
            )
    for key in ("ED", "ES", "NbFrame"):
        try:
            value = int(float(info[key]))
        except ValueError:
            raise DataError(f"{path}: key '{key}' must be an integer, got {info[key]!r}") from None
        if value < 1:
            raise DataError(f"{path}: key '{key}' must be >= 1 (ACDC frames are 1-based), got {value}")
        info[key] = str(value)
    for key in ("ED", "ES"):
        if int(info[key]) > int(info["NbFrame"]):
            raise DataError(f"{path}: {key} = {info[key]} exceeds NbFrame = {info['NbFrame']}")
    return info


class AcdcSource:
    """ACDC patient folders -> ED/ES slice records (or every frame, unlabelled).

    Args:
        root: the folder holding ``training/`` and/or ``testing/``.
        name: the dataset name (store name and ``source`` column).
        store: the store path (used by the stages, not by the reader).
        folders: sub-folders to read, in order.
        folder_splits: folder -> pre-assigned split ("" = seeded split by subject).
        all_frames: read every frame of ``_4d.nii.gz`` without labels instead of the ED/ES frames.
        drop_empty: drop slices whose ground truth is all background.
        vendor: value of the ``vendor`` meta column.
        centre: value of the ``centre`` meta column.
    """

    def __init__(
        self,
        root: str,
        name: str = "acdc",
        store: str | None = None,
        folders: Sequence[str] = ("training", "testing"),
        folder_splits: Mapping[str, str] | None = None,
        all_frames: bool = False,
        drop_empty: bool = False,
        vendor: str = "Siemens",
        centre: str = "Dijon",
    ) -> None:
        self.root = Path(str(root))
        self.name = name
        self.store = store
        self.folders = list(folders)
        self.folder_splits = dict(folder_splits if folder_splits is not None else {"testing": "test"})
        self.all_frames = bool(all_frames)
        self.drop_empty = bool(drop_empty)
        self.extra_meta = {"vendor": str(vendor), "centre": str(centre)}
        self.store_attrs = {"labelled": not self.all_frames}

    def items(self) -> list[Path]:
        """Patient folders of every existing ``folders`` entry, sorted.

        Raises:
            DataError: the root is missing or holds none of ``folders``.
        """
        root = require_dir(self.root, "ACDC", LAYOUT)
        present = [root / f for f in self.folders if (root / f).is_dir()]
        if not present:
            raise DataError(f"{root}: none of the ACDC folders {self.folders} found; expected the layout\n{LAYOUT}")
        items = [
            p for folder in present for p in sorted(folder.iterdir()) if p.is_dir() and p.name.startswith("patient")
        ]
        if not items:
            raise DataError(
                f"{root}: no patientNNN folders under {[str(p) for p in present]}; expected the layout\n{LAYOUT}"
            )
        return items

    def describe(self, item: Path) -> str:
        return f"{item.parent.name}/{item.name}"

    def load(self, item: Path, seed: int) -> list[SliceRecord]:
        """Records of one patient folder.

        Raises:
            DataError: bad ``Info.cfg``, a missing / unreadable NIfTI, image and label shapes that
                differ, label values outside 0-3, or an all-background label volume.
        """
        info = read_info(item / "Info.cfg")
        ed, es, n_frames = int(info["ED"]) - 1, int(info["ES"]) - 1, int(info["NbFrame"])
        if ed == es:
            raise DataError(f"{item / 'Info.cfg'}: ED and ES are the same frame ({ed + 1}); expected two phases")
        split = self.folder_splits.get(item.parent.name, "")
        base = dict(subject=item.name, n_frames=n_frames, group=info["Group"], source=self.name, split=split)
        if self.all_frames:
            return self._all_frames(item, ed, es, n_frames, base)
        records: list[SliceRecord] = []
        first: tuple[str, tuple[int, ...]] | None = None
        for phase, frame in (("ED", ed), ("ES", es)):
            image_path = find_nifti(item, f"{item.name}_frame{frame + 1:02d}")
            label_path = find_nifti(item, f"{item.name}_frame{frame + 1:02d}_gt")
            image, zooms = load_nifti(image_path)
            labels, _ = load_nifti(label_path)
            check_same_shape(image, labels, image_path, label_path)
            if image.ndim != 3:
                raise DataError(f"{image_path}: expected a 3D (x, y, z) volume, got shape {image.shape}")
            if first is not None and image.shape != first[1]:  # two frames of one cine series
                raise DataError(
                    f"{image_path}: shape {image.shape} differs from the {first[1]} of {first[0]} "
                    "(frames of one series)"
                )
            first = first or (image_path.name, image.shape)
            check_label_values(labels, LABELS, label_path, "0 bg, 1 RV, 2 MYO, 3 LV")
            if not labels.any():
                raise DataError(f"{label_path}: empty mask (every voxel is background)")
            records += volume_records(
                image,
                labels,
                frame,
                phase,
                drop_empty=self.drop_empty,
                extra_meta=self.extra_meta,
                spacing_mm=nifti_spacing(zooms),
                **base,
            )
        return records

    def _all_frames(self, item: Path, ed: int, es: int, n_frames: int, base: dict) -> list[SliceRecord]:
        path = find_nifti(item, f"{item.name}_4d")
        image, zooms = load_nifti(path)
        if image.ndim != 4:
            raise DataError(f"{path}: expected a 4D (x, y, z, t) volume, got shape {image.shape}")
        if image.shape[3] != n_frames:
            raise DataError(f"{path}: {image.shape[3]} frames but Info.cfg NbFrame = {n_frames}")
        spacing = nifti_spacing(zooms)
        records = []
        for t in range(image.shape[3]):
            phase = "ED" if t == ed else "ES" if t == es else ""
            records += volume_records(
                image, None, t, phase, time_index=t, extra_meta=self.extra_meta, spacing_mm=spacing, **base
            )
        return records
