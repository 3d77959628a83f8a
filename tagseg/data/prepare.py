"""Turn any :class:`~tagseg.data.records.DatasetSource` into a slice store.

Steps per item: load (the source's reader) -> check -> optional resampling to ``spacing_mm`` ->
optional resize to ``image_size`` (spacing updated so distances stay in mm) -> scale to [0, 1]
-> append to the store. Splits are by subject, seeded, and written last. The store is written
atomically: a failure half-way leaves no file that looks complete.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from skimage.transform import resize
from tqdm.auto import tqdm

from tagseg.conventions import LABELS
from tagseg.data.grid import check_fit, resampled_shape, resize_pair, to_grid
from tagseg.data.records import DatasetSource, SliceRecord
from tagseg.data.splits import split_column
from tagseg.data.store_spec import StoreSpec
from tagseg.errors import ConfigError, DataError, StoreError
from tagseg.io.store import StoreWriter

log = logging.getLogger(__name__)


@dataclass
class PrepareReport:
    """What ``prepare`` did: where, how many, what was skipped and why."""

    output: Path | None
    name: str = ""
    n_slices: int = 0
    counts: Counter = field(default_factory=Counter)  # (source, split, phase) -> n
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (item, reason)

    def table(self) -> str:
        """Counts per source, split and phase as a plain-text table."""
        rows = sorted(self.counts.items())
        lines = [f"{'source':<28}{'split':<8}{'phase':<8}{'slices':>8}"]
        lines += [f"{s:<28}{sp or '-':<8}{ph or '-':<8}{n:>8}" for (s, sp, ph), n in rows]
        lines.append(f"{'total':<44}{self.n_slices:>8}")
        if self.skipped:
            lines.append(f"skipped {len(self.skipped)} item(s):")
            lines += [f"  {item}: {reason}" for item, reason in self.skipped]
        return "\n".join(lines)

    def slice_counts(self) -> dict[str, dict[str, int]]:
        """Table-1-style counts: dataset (``source``) -> {"ED", "ES", "other", "total"} slices."""
        out: dict[str, dict[str, int]] = {}
        for (src, _split, phase), n in sorted(self.counts.items()):
            row = out.setdefault(str(src), {"ED": 0, "ES": 0, "other": 0, "total": 0})
            row[phase if phase in ("ED", "ES") else "other"] += n
            row["total"] += n
        return out

    def table1(self) -> str:
        """:meth:`slice_counts` as a plain-text table (the paper's Table 1 layout), with a total row."""
        counts = self.slice_counts()
        cols = ("ED", "ES", "other", "total")
        lines = [f"{'dataset':<28}" + "".join(f"{c:>8}" for c in cols)]
        lines += [f"{src:<28}" + "".join(f"{row[c]:>8}" for c in cols) for src, row in counts.items()]
        lines.append(f"{'all':<28}" + "".join(f"{sum(r[c] for r in counts.values()):>8}" for c in cols))
        return "\n".join(lines)


def check_record(rec: SliceRecord, where: str) -> None:
    """Raise :class:`DataError` naming ``where`` if a record breaks the conventions."""
    img, mask = np.asarray(rec.image), np.asarray(rec.mask)
    if img.ndim != 2:
        raise DataError(f"{where}: image must be 2D, got shape {img.shape}")
    if mask.shape != img.shape:
        raise DataError(f"{where}: image shape {img.shape} and label shape {mask.shape} differ")
    if not np.isfinite(img).all():
        raise DataError(f"{where}: image holds NaN or infinite values")
    bad = np.setdiff1d(np.unique(mask), LABELS)
    if bad.size:
        raise DataError(
            f"{where}: label values {bad.tolist()} outside the convention {list(LABELS)} (0 bg, 1 RV, 2 MYO, 3 LV)"
        )
    sp = np.asarray(rec.spacing_mm, dtype=float)
    if sp.shape != (2,) or not (sp > 0).all():
        raise DataError(f"{where}: pixel spacing must be two positive numbers (mm), got {rec.spacing_mm}")


def _resize_displacement(disp: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A (2, H, W) displacement in pixels on a grid of ``shape``: each component resized, then scaled by
    its axis's change of pixel size, so it stays the same motion in mm."""
    disp = np.asarray(disp, np.float32)
    if disp.shape[1:] == tuple(shape):
        return disp
    scale = np.asarray(shape, np.float64) / np.asarray(disp.shape[1:], np.float64)
    out = [resize(disp[c], shape, order=1, preserve_range=True, anti_aliasing=False) * scale[c] for c in range(2)]
    return np.stack(out).astype(np.float32)


def _scale01(img: np.ndarray) -> np.ndarray:
    lo, hi = float(img.min()), float(img.max())
    return ((img - lo) / (hi - lo) if hi > lo else np.zeros_like(img)).astype(np.float32)


def normalise_record(
    rec: SliceRecord, image_size: int | None, spacing_mm: float | None, fit: str = "resize"
) -> SliceRecord:
    """Resample / resize a record and scale its image to [0, 1] (spacing kept in mm).

    ``fit="resize"`` resizes the (resampled) slice to ``image_size``; ``fit="crop"`` centres it on
    ``image_size`` instead (cropped or zero-padded, :mod:`tagseg.data.grid`), so every slice keeps
    ``spacing_mm``. A ``displacement`` extra ((2, H, W) pixels) follows the image and stays the same
    motion in mm.
    """
    img, mask = np.asarray(rec.image, np.float32), np.asarray(rec.mask, np.uint8)
    sp = np.asarray(rec.spacing_mm, dtype=np.float64)
    if spacing_mm:
        shape = resampled_shape(img.shape, sp, spacing_mm)
        img, mask = resize_pair(img, mask, shape)
        sp = np.array([spacing_mm, spacing_mm], dtype=np.float64)
    if fit == "crop" and image_size:
        if "displacement" in rec.extras:
            disp = _resize_displacement(rec.extras["displacement"], img.shape)
            rec.extras["displacement"] = to_grid(disp, int(image_size))
        rec.image, rec.mask = to_grid(_scale01(img), int(image_size)), to_grid(mask, int(image_size))
        rec.spacing_mm = (float(sp[0]), float(sp[1]))
        return rec
    if image_size:
        new = (int(image_size), int(image_size))
        sp = sp * np.array(img.shape) / np.array(new)
        img, mask = resize_pair(img, mask, new)
    if "displacement" in rec.extras:
        rec.extras["displacement"] = _resize_displacement(rec.extras["displacement"], img.shape)
    rec.image, rec.mask, rec.spacing_mm = _scale01(img), mask, (float(sp[0]), float(sp[1]))
    return rec


def prepare_store(
    source: DatasetSource,
    output: str | Path,
    seed: int = 0,
    split_ratios: Sequence[float] = (0.7, 0.15, 0.15),
    strict: bool = False,
    verify: bool = False,
    image_size: int | None = None,
    spacing_mm: float | None = None,
    attrs: dict[str, Any] | None = None,
    fit: str = "resize",
) -> PrepareReport:
    """Read every item of ``source`` and write a slice store at ``output``.

    Args:
        source: the dataset (phantom or a raw-dataset reader).
        output: the ``.h5`` path to write.
        seed: seeds the source (phantom) and the subject-level split.
        split_ratios: (train, val, test) ratios for subjects without a pre-assigned split.
        strict: stop at the first bad item instead of skipping and counting it.
        verify: check every item, write nothing.
        image_size: resize every slice to this square size (``None``: keep; all slices must
            then share one shape).
        spacing_mm: resample in-plane to this pixel spacing first (``None``: keep).
        attrs: extra attributes for the store (e.g. the resolved config as YAML).
        fit: ``resize`` every slice to ``image_size``, or ``crop``: centre it on ``image_size`` at
            ``spacing_mm`` (:mod:`tagseg.data.grid`).

    Raises:
        DataError: the root is unusable, an item is bad with ``strict=True``, or nothing was read.
    """
    if image_size is not None and int(image_size) < 8:
        raise ConfigError(f"prepare.image_size must be >= 8 pixels, got {image_size}")
    if spacing_mm is not None and not float(spacing_mm) > 0:
        raise ConfigError(f"prepare.spacing_mm must be > 0, got {spacing_mm}")
    fit = check_fit(fit, spacing_mm, image_size)
    output = Path(output)
    items = source.items()
    report = PrepareReport(output=None if verify else output, name=source.name)
    writer: StoreWriter | None = None
    subjects: list[str] = []
    presplit: list[str] = []
    meta_keys: list[str] | None = None
    extra_keys: list[str] | None = None
    bar = tqdm(items, desc=f"{'verify' if verify else 'prepare'} {source.name}", unit="item")
    try:
        for item in bar:
            where = source.describe(item)
            try:
                recs = source.load(item, seed)
                for rec in recs:
                    check_record(rec, where)
                    keys = sorted(rec.extra_meta)
                    if meta_keys is None:
                        meta_keys = keys
                    elif keys != meta_keys:
                        raise DataError(f"{where}: extra meta columns {keys} differ from the store's {meta_keys}")
                    arrays = sorted(rec.extras)
                    if extra_keys is None:
                        extra_keys = arrays
                    elif arrays != extra_keys:
                        raise DataError(
                            f"{where}: extra arrays {arrays} differ from the store's {extra_keys}; every item of "
                            "one dataset must carry the same (e.g. a true displacement for every slice, or none)"
                        )
                if not recs:
                    raise DataError(f"{where}: no labelled slices found")
            except DataError as exc:
                if strict:
                    raise
                report.skipped.append((where, str(exc)))
                log.warning("skipped %s", exc)
                continue
            if verify:
                report.n_slices += len(recs)
                for r in recs:
                    report.counts[(r.source, r.split, r.phase)] += 1
                continue
            recs = [normalise_record(r, image_size, spacing_mm, fit) for r in recs]
            if writer is None:
                extras = {k: (v.shape, v.dtype) for k, v in recs[0].extras.items()}
                writer = StoreWriter(output, recs[0].image.shape, name=source.name, extras=extras, attrs=attrs)
            if recs[0].image.shape != writer.image_shape:
                msg = f"{where}: slice shape {recs[0].image.shape} differs from the store's {writer.image_shape}; set prepare.image_size"
                if strict:
                    raise DataError(msg)
                report.skipped.append((where, msg))
                continue
            writer.append(*_batch(recs))
            subjects += [r.subject for r in recs]
            presplit += [r.split for r in recs]
            report.n_slices += len(recs)
        if verify:
            return report
        if writer is None:
            raise DataError(
                f"{source.name}: no slices could be read ({len(report.skipped)} item(s) skipped)"
                + "".join(f"\n  {i}: {r}" for i, r in report.skipped)
            )
        split = split_column(subjects, split_ratios, seed)
        pre = np.asarray(presplit, dtype=object)
        split = np.where(pre != "", pre, split)
        writer.set_meta_column("split", split)
        writer.attrs["skipped"] = json.dumps(report.skipped)
        writer.attrs["n_skipped"] = len(report.skipped)
        for key, value in dict(getattr(source, "store_attrs", None) or {}).items():
            writer.attrs.setdefault(key, value)
        meta = writer.read_meta_columns(("source", "phase"))
        for src, sp, ph in zip(meta["source"], split, meta["phase"]):
            report.counts[(str(src), str(sp), str(ph))] += 1
        writer.attrs["slice_counts"] = json.dumps(report.slice_counts())
        writer.close()
        writer = None
    finally:
        if writer is not None:
            writer.abort()
    return report


def _batch(recs: list[SliceRecord]) -> tuple[np.ndarray, np.ndarray, dict[str, Any], dict[str, np.ndarray]]:
    meta: dict[str, Any] = {
        "subject": [r.subject for r in recs],
        "slice": [r.slice for r in recs],
        "frame": [r.frame for r in recs],
        "n_frames": [r.n_frames for r in recs],
        "phase": [r.phase for r in recs],
        "group": [r.group for r in recs],
        "spacing_mm": [r.spacing_mm for r in recs],
        "source": [r.source for r in recs],
    }
    for key in recs[0].extra_meta:
        meta[key] = [r.extra_meta.get(key, "") for r in recs]
    extras = {k: np.stack([r.extras[k] for r in recs]) for k in recs[0].extras}
    return np.stack([r.image for r in recs]), np.stack([r.mask for r in recs]), meta, extras


def build_store(
    data_cfg: Any,
    output: str | Path,
    spec: StoreSpec,
    strict: bool = False,
    verify: bool = False,
    attrs: dict[str, Any] | None = None,
) -> PrepareReport:
    """The one way a dataset config becomes a store: instantiate its reader, prepare with ``spec``.

    Used by ``tagseg prepare``, :func:`ensure_store` and the strategies' prepare stages, so the same
    dataset config and spec give the same arrays whichever of them wrote the store. The spec is
    recorded in the store attribute ``store_spec``.

    Args:
        data_cfg: the dataset config node (``conf/data/<name>.yaml``).
        output: the ``.h5`` path to write.
        spec: size, spacing, seed and split ratios.
        strict: stop at the first bad item.
        verify: check every item, write nothing.
        attrs: extra store attributes (e.g. the resolved config).
    """
    from tagseg.runtime.config import instantiate

    source = instantiate(data_cfg, "data")
    attrs = {**dict(attrs or {}), "store_spec": json.dumps(spec.as_dict())}
    return prepare_store(
        source,
        output,
        seed=spec.seed,
        split_ratios=spec.split_ratios,
        strict=strict,
        verify=verify,
        image_size=spec.image_size,
        spacing_mm=spec.spacing_mm,
        attrs=attrs,
        fit=spec.fit,
    )


def ensure_store(data_cfg: Any, spec: StoreSpec | None = None, prepare_missing: bool | None = None) -> Path:
    """Return ``data_cfg.store``, preparing it first (with :func:`build_store`) if it does not exist yet.

    Lets ``tagseg train data=phantom_tagged`` (or any stage) run on a fresh machine without a
    separate ``tagseg prepare``: the dataset config (``conf/data/<name>.yaml``) says how to read
    it and ``spec`` (the stage's ``prepare`` node) how to store it, exactly as ``tagseg prepare``
    would. A raw dataset whose ``root`` is missing fails here with the reader's clear error.

    Only a store at its configured location (``store`` still an interpolation such as
    ``${paths.data_dir}/phantom_tagged.h5``) is prepared on demand: a path given explicitly
    (``data.store=/some/file.h5``) must exist, so a typo fails at once instead of building a new
    dataset there.

    Args:
        data_cfg: the dataset config node (``cfg.data``).
        spec: the store specification (``None``: ``StoreSpec.from_config(None, data_cfg)``, the defaults).
        prepare_missing: force (True) or forbid (False) preparing a missing store; ``None``
            applies the rule above.

    Raises:
        StoreError: the store is missing and may not be prepared here.
    """
    from omegaconf import DictConfig, OmegaConf

    store = Path(data_cfg.store)
    if store.exists():
        return store
    if prepare_missing is None:
        prepare_missing = isinstance(data_cfg, DictConfig) and OmegaConf.is_interpolation(data_cfg, "store")
    name = data_cfg.get("name", "<dataset>")
    if not prepare_missing:
        raise StoreError(
            f"{store}: slice store not found (data={name}). Check the path, or build it with "
            f"`tagseg prepare data={name} output={store}`; a store left at its default location "
            "(under paths.data_dir) is prepared automatically"
        )
    spec = spec if spec is not None else StoreSpec.from_config(None, data_cfg)
    log.info("store %s not found: preparing it from data=%s (%s)", store, name, spec)
    if OmegaConf.is_config(data_cfg):
        config = OmegaConf.to_yaml(data_cfg, resolve=True)
    else:
        config = json.dumps(dict(data_cfg), default=str)
    report = build_store(data_cfg, store, spec, attrs={"config": config})
    log.info("prepared %s (%d slices)\n%s", store, report.n_slices, report.table())
    return store
