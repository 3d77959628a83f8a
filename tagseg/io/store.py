"""The slice store: tagseg's one on-disk data format (versioned, public).

One HDF5 file per prepared dataset::

    /images            float32 (N, H, W)   each slice scaled to [0, 1]
    /masks             uint8   (N, H, W)   ACDC convention: 0 bg, 1 RV, 2 MYO, 3 LV
    /meta/subject      str     (N,)
    /meta/slice        int32   (N,)        slice index within the subject
    /meta/frame        int32   (N,)        0-based time frame
    /meta/n_frames     int32   (N,)
    /meta/phase        str     (N,)        "ED", "ES" or ""
    /meta/group        str     (N,)        e.g. "control", "dmd", or a pathology code
    /meta/spacing_mm   float32 (N, 2)      (row, col) pixel spacing
    /meta/source       str     (N,)        e.g. "acdc", "phantom-tagged", "physics(acdc)"
    /meta/split        str     (N,)        "train", "val", "test" (by subject)
    attrs on /         format_version, name, config (resolved YAML that produced it)

Extra top-level datasets (e.g. ``/displacement`` float32 (N, 2, H, W)) and extra ``/meta/*``
columns are allowed; readers ignore what they do not use. Writers write to a temporary file
in the same folder and rename it at the end, so a half-written store never looks complete.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from tagseg.conventions import LABELS
from tagseg.errors import DataError, StoreError
from tagseg.io.atomic import OutputLock, publish, remove_stale_partials, temp_path

FORMAT_VERSION = 1

#: meta column -> (numpy dtype or "str", trailing shape)
META_SCHEMA: dict[str, tuple[Any, tuple[int, ...]]] = {
    "subject": ("str", ()),
    "slice": (np.int32, ()),
    "frame": (np.int32, ()),
    "n_frames": (np.int32, ()),
    "phase": ("str", ()),
    "group": ("str", ()),
    "spacing_mm": (np.float32, (2,)),
    "source": ("str", ()),
    "split": ("str", ()),
}
#: columns every store must have; ``split`` may be absent (the DataModule then splits by subject)
REQUIRED_META = tuple(k for k in META_SCHEMA if k != "split")
REQUIRED_KEYS = ("images", "masks") + tuple(f"meta/{k}" for k in REQUIRED_META)

_STR = h5py.string_dtype(encoding="utf-8")

#: ``StoreWriter(compression=...)`` -> HDF5 filters of the image-sized datasets. The byte shuffle
#: makes float32 images compress better and faster; ``gzip`` is readable by any HDF5 tool,
#: ``lzf`` (h5py / PyTables only) writes about 2x faster again.
COMPRESSION: dict[str, dict[str, Any]] = {
    "gzip": {"compression": "gzip", "compression_opts": 1, "shuffle": True},
    "lzf": {"compression": "lzf", "shuffle": True},
    "none": {},
}


@dataclass
class SliceStore:
    """A slice store held in memory.

    Attributes:
        images: float32 (N, H, W) in [0, 1].
        masks: uint8 (N, H, W), ACDC labels.
        meta: column name -> array of length N (strings as ``str`` object/unicode arrays).
        extras: other top-level arrays with N rows (e.g. ``displacement``).
        attrs: file attributes (``name``, ``format_version``, ``config`` ...).
        path: the file it was read from, if any.
    """

    images: np.ndarray
    masks: np.ndarray
    meta: dict[str, np.ndarray]
    extras: dict[str, np.ndarray] = field(default_factory=dict)
    attrs: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def subset(self, index: np.ndarray | Sequence[int]) -> SliceStore:
        """Rows ``index`` of every array (a new store; attrs shared)."""
        index = np.asarray(index)
        return SliceStore(
            images=self.images[index],
            masks=self.masks[index],
            meta={k: v[index] for k, v in self.meta.items()},
            extras={k: v[index] for k, v in self.extras.items()},
            attrs=dict(self.attrs),
            path=self.path,
        )


def _as_meta_array(name: str, values: Any, n: int) -> np.ndarray:
    kind, trailing = META_SCHEMA.get(name, (None, ()))
    arr = np.asarray(values)
    if kind == "str" or (kind is None and arr.dtype.kind in "OUS"):
        arr = np.asarray([v.decode() if isinstance(v, bytes) else str(v) for v in arr.reshape(-1)], dtype=object)
    elif kind is not None:
        arr = arr.astype(kind)
    if arr.shape[:1] != (n,) or (trailing and arr.shape[1:] != trailing):
        raise StoreError(f"meta/{name}: expected shape {(n, *trailing)}, got {arr.shape}")
    return arr


class StoreWriter:
    """Write a slice store incrementally and atomically.

    Rows are appended in batches; the file appears at ``path`` only when :meth:`close` succeeds
    and the written file passes :func:`verify_store` (every chunk read back, every value checked).
    Meanwhile the rows go to a temporary ``.<name>.<pid>-<random>.partial`` file (removed on
    error) and the writer holds an exclusive lock on ``path`` (:class:`tagseg.io.atomic.OutputLock`):
    a second writer of the same path fails at once with one line (or waits, with ``wait=True``).

    Example::

        with StoreWriter(path, image_shape=(256, 256), name="phantom-tagged") as w:
            w.append(images, masks, meta)          # any number of times
            w.attrs["config"] = yaml_text
    """

    def __init__(
        self,
        path: str | os.PathLike,
        image_shape: tuple[int, int],
        name: str = "",
        extras: Mapping[str, tuple[tuple[int, ...], Any]] | None = None,
        attrs: Mapping[str, Any] | None = None,
        compression: str = "gzip",
        wait: bool = False,
        verify: bool = True,
    ) -> None:
        if compression not in COMPRESSION:
            raise StoreError(f"{path}: compression must be one of {sorted(COMPRESSION)}, got {compression!r}")
        filters = COMPRESSION[compression]
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.verify = verify
        self._lock = OutputLock(self.path, wait=wait, what="slice store").acquire()
        remove_stale_partials(self.path)
        self.tmp = temp_path(self.path)
        self.image_shape = tuple(int(s) for s in image_shape)
        self.extras_spec = dict(extras or {})
        self.attrs: dict[str, Any] = {"name": name, **dict(attrs or {})}
        self.n = 0
        self._meta_names: list[str] | None = None
        try:
            self._file = h5py.File(self.tmp, "w")
        except BaseException:
            self._lock.release()
            raise
        h, w = self.image_shape
        chunk = (1, h, w)
        self._file.create_dataset("images", (0, h, w), np.float32, maxshape=(None, h, w), chunks=chunk, **filters)
        self._file.create_dataset("masks", (0, h, w), np.uint8, maxshape=(None, h, w), chunks=chunk, **filters)
        for key, (shape, dtype) in self.extras_spec.items():
            self._file.create_dataset(key, (0, *shape), dtype, maxshape=(None, *shape), chunks=(1, *shape), **filters)

    def append(
        self,
        images: np.ndarray,
        masks: np.ndarray,
        meta: Mapping[str, Any],
        extras: Mapping[str, np.ndarray] | None = None,
    ) -> None:
        """Append rows. ``meta`` must hold every required column (``split`` optional)."""
        images = np.asarray(images, dtype=np.float32)
        masks = np.asarray(masks)
        if images.ndim != 3 or images.shape[1:] != self.image_shape:
            raise StoreError(
                f"{self.path}: images must be (N, {self.image_shape[0]}, {self.image_shape[1]}), got {images.shape}"
            )
        if masks.shape != images.shape:
            raise StoreError(f"{self.path}: masks shape {masks.shape} differs from images {images.shape}")
        k = images.shape[0]
        missing = [c for c in REQUIRED_META if c not in meta]
        if missing:
            raise StoreError(f"{self.path}: meta lacks required column(s) {missing}")
        names = sorted(meta)
        if self._meta_names is None:
            self._meta_names = names
            for c in names:
                kind, trailing = META_SCHEMA.get(c, ("str", ()))
                arr = _as_meta_array(c, meta[c], k)
                dtype = _STR if arr.dtype == object else arr.dtype
                self._file.create_dataset(f"meta/{c}", (0, *arr.shape[1:]), dtype, maxshape=(None, *arr.shape[1:]))
        elif names != self._meta_names:
            raise StoreError(f"{self.path}: meta columns changed between batches: {self._meta_names} -> {names}")
        rows = slice(self.n, self.n + k)
        for key, arr in (("images", images), ("masks", masks.astype(np.uint8))):
            ds = self._file[key]
            ds.resize(self.n + k, axis=0)
            ds[rows] = arr
        for c in names:
            arr = _as_meta_array(c, meta[c], k)
            ds = self._file[f"meta/{c}"]
            ds.resize(self.n + k, axis=0)
            ds[rows] = arr
        for key in self.extras_spec:
            if extras is None or key not in extras:
                raise StoreError(f"{self.path}: extra dataset '{key}' missing from this batch")
            ds = self._file[key]
            ds.resize(self.n + k, axis=0)
            ds[rows] = np.asarray(extras[key], dtype=ds.dtype)
        self.n += k

    def set_meta_column(self, name: str, values: Any) -> None:
        """Write (or replace) a whole meta column for the rows written so far (e.g. ``split``)."""
        arr = _as_meta_array(name, values, self.n)
        key = f"meta/{name}"
        if key in self._file:
            del self._file[key]
        self._file.create_dataset(key, data=arr, dtype=_STR if arr.dtype == object else arr.dtype)

    def read_meta_columns(self, names: Iterable[str]) -> dict[str, np.ndarray]:
        """Read back meta columns written so far."""
        return {c: read_array(self._file[f"meta/{c}"]) for c in names}

    def close(self) -> Path:
        """Write attrs, flush, and move the file into place."""
        if self.n == 0:
            self.abort()
            raise StoreError(f"{self.path}: no slices were written")
        self.attrs.setdefault("format_version", FORMAT_VERSION)
        self.attrs["format_version"] = FORMAT_VERSION
        for key, value in self.attrs.items():
            if isinstance(value, (dict, list, tuple)):
                value = json.dumps(value)
            self._file.attrs[key] = value
        self._file.close()
        try:
            if self.verify:
                try:
                    verify_store(self.tmp)
                except StoreError as exc:
                    raise StoreError(
                        f"{str(exc).replace(str(self.tmp), str(self.path))} (nothing was written)"
                    ) from None
            publish(self.tmp, self.path)
        except BaseException:
            self.tmp.unlink(missing_ok=True)
            raise
        finally:
            self._lock.release()
        return self.path

    def abort(self) -> None:
        """Drop the partial file (and release the lock)."""
        try:
            self._file.close()
        finally:
            self.tmp.unlink(missing_ok=True)
            self._lock.release()

    def __enter__(self) -> StoreWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_store(
    path: str | os.PathLike,
    images: np.ndarray,
    masks: np.ndarray,
    meta: Mapping[str, Any],
    extras: Mapping[str, np.ndarray] | None = None,
    attrs: Mapping[str, Any] | None = None,
    name: str = "",
    verify: bool = True,
) -> Path:
    """Write a whole store at once (atomically). Returns the path.

    ``verify=False`` skips the full check before the rename (tests writing deliberately bad stores).
    """
    images = np.asarray(images)
    spec = {k: (np.asarray(v).shape[1:], np.asarray(v).dtype) for k, v in (extras or {}).items()}
    with StoreWriter(
        path, images.shape[1:], name=name or (attrs or {}).get("name", ""), extras=spec, attrs=attrs, verify=verify
    ) as w:
        w.append(images, masks, meta, extras)
    return Path(path)


def open_store(path: str | os.PathLike, role: str = "slice store", hint: str = "check the path") -> h5py.File:
    """Open a store for reading, with one clear error when it is missing or not HDF5.

    Args:
        path: the ``.h5`` file.
        role: what the file is to the caller, for the message (e.g. ``"input store"``).
        hint: where the path came from, for the message (e.g. ``"check input="``).

    Returns:
        The open file (the caller closes it).

    Raises:
        StoreError: ``<path>: <role> not found (...)`` or ``<path>: not a readable HDF5 slice store``.
    """
    path = Path(path)
    if not path.exists():
        raise StoreError(f"{path}: {role} not found (run `tagseg prepare` first, or {hint})")
    try:
        return h5py.File(path, "r")
    except OSError as exc:
        raise StoreError(f"{path}: not a readable HDF5 slice store ({exc})") from exc


#: label values of the store convention (0 background, 1 RV, 2 MYO, 3 LV): tagseg.conventions.LABELS
STORE_LABEL_VALUES = LABELS
#: values of ``meta/split`` ("" leaves the row to the DataModule's seeded subject split)
SPLIT_VALUES = ("train", "val", "test")
#: rows per block when values are checked or every chunk is read (about 64 MB of 256x256 float32)
CHECK_BLOCK_ROWS = 256


def check_store(path: str | os.PathLike, required: Iterable[str] = REQUIRED_KEYS) -> None:
    """The cheap check run wherever a store is opened: layout, dtypes, meta lengths, split values.

    Reads only the metadata (and ``meta/split``), never the images; the pixel values are checked
    where they are read (:func:`check_values`, :func:`read_store`) and every chunk by
    :func:`verify_store` (``tagseg store check``).

    Raises:
        StoreError: one line naming the file, the key and, for a value, its row.
    """
    path = Path(path)
    with open_store(path) as f:
        missing = [k for k in required if k not in f]
        if missing:
            raise StoreError(f"{path}: missing required key(s) {missing}; expected the layout in tagseg.io.store")
        if "images" not in f:
            return
        n, shape = f["images"].shape[0], f["images"].shape
        if len(shape) != 3:
            raise StoreError(f"{path}: /images must be (N, H, W), got {shape}")
        if n == 0:
            raise StoreError(f"{path}: the store holds no slices")
        if "masks" in f and f["masks"].shape != shape:
            raise StoreError(f"{path}: /masks shape {f['masks'].shape} differs from /images {shape}")
        if f["images"].dtype != np.float32:
            raise StoreError(
                f"{path}: /images has dtype {f['images'].dtype}, expected float32 scaled to [0, 1] "
                "(re-create the store with `tagseg prepare`)"
            )
        if "masks" in f and f["masks"].dtype != np.uint8:
            raise StoreError(
                f"{path}: /masks has dtype {f['masks'].dtype}, expected uint8 labels {list(STORE_LABEL_VALUES)}"
            )
        for key in f.get("meta", {}):
            rows = f[f"meta/{key}"].shape[0] if f[f"meta/{key}"].shape else 0
            if rows != n:
                raise StoreError(f"{path}: meta/{key} has {rows} rows, expected {n} (one per image)")
        if "meta/split" in f:
            split = read_array(f["meta/split"])
            bad = ~np.isin(split.astype(str), (*SPLIT_VALUES, ""))
            if bad.any():
                r = int(np.argmax(bad))
                raise StoreError(
                    f"{path}: meta/split row {r}{row_label(f, r)} is {split[r]!r}; "
                    f"expected one of {list(SPLIT_VALUES)} (or '' for a seeded split)"
                )


def row_label(f: h5py.File | Mapping[str, np.ndarray], row: int) -> str:
    """`` (subject S, slice I, frame F)`` of a row, from an open store or meta columns ('' when unknown)."""
    try:
        meta = f["meta"] if isinstance(f, h5py.File) else f
        subject = meta["subject"][row]
        subject = subject.decode() if isinstance(subject, bytes) else subject
        return f" (subject {subject}, slice {int(meta['slice'][row])}, frame {int(meta['frame'][row])})"
    except Exception:  # a label for a message must never hide the real error
        return ""


def check_values(
    path: str | os.PathLike,
    images: np.ndarray,
    masks: np.ndarray | None,
    start: int | np.ndarray = 0,
    meta: h5py.File | Mapping[str, np.ndarray] | None = None,
) -> None:
    """Check a block of rows (vectorised): finite images in [0, 1], mask labels in the convention.

    Args:
        path: the store, for the message.
        images: (B, H, W) rows of ``/images``.
        masks: the same rows of ``/masks`` (or ``None``).
        start: the store row of the block's first row, or the store rows of the block (B,).
        meta: the store (or its meta columns), to name the row's subject / slice / frame.

    Raises:
        StoreError: ``<path>: /images row R (subject S, slice I, frame F) holds nan ...``.
    """
    if images.size == 0:
        return

    def where(r: int) -> str:
        row = int(start[r]) if isinstance(start, np.ndarray) else int(start) + r
        return f"row {row}{row_label(meta, row) if meta is not None else ''}"

    flat = images.reshape(len(images), -1)
    # two passes over the pixels: min and max propagate NaN, and an infinity is a min or a max
    lo, hi = flat.min(axis=1), flat.max(axis=1)
    finite = np.isfinite(lo) & np.isfinite(hi)
    if not finite.all():
        r = int(np.argmin(finite))
        bad = flat[r][~np.isfinite(flat[r])][0]
        raise StoreError(f"{path}: /images {where(r)} holds {bad} (NaN or infinite); expected finite values in [0, 1]")
    outside = (lo < 0.0) | (hi > 1.0)
    if outside.any():
        r = int(np.argmax(outside))
        value = lo[r] if lo[r] < 0.0 else hi[r]
        raise StoreError(
            f"{path}: /images {where(r)} holds {float(value):g}; expected values in [0, 1] "
            "(re-create the store with `tagseg prepare`)"
        )
    if masks is not None and masks.size:
        top = masks.reshape(len(masks), -1).max(axis=1)
        over = top > max(STORE_LABEL_VALUES)
        if over.any():
            r = int(np.argmax(over))
            raise StoreError(
                f"{path}: /masks {where(r)} holds label {int(top[r])}; expected labels "
                f"{list(STORE_LABEL_VALUES)} (0 background, 1 RV, 2 MYO, 3 LV)"
            )


def read_rows(f: h5py.File, key: str, rows: slice | np.ndarray, path: str | os.PathLike) -> np.ndarray:
    """Rows (a slice or sorted indices) of a dataset; an unreadable chunk becomes one
    :class:`StoreError` naming the first unreadable row (subject, slice, frame)."""
    try:
        return f[key][rows]
    except (OSError, RuntimeError) as exc:
        candidates = range(*rows.indices(f[key].shape[0])) if isinstance(rows, slice) else [int(r) for r in rows]
        first = candidates[0] if len(candidates) else 0
        for r in candidates:
            try:
                f[key][r]
            except (OSError, RuntimeError):
                first = r
                break
        raise StoreError(
            f"{path}: /{key} row {first}{row_label(f, first)} is unreadable ({exc}); the file is damaged: re-create it"
        ) from None


def verify_store(path: str | os.PathLike) -> int:
    """The full check (``tagseg store check``): :func:`check_store`, then every chunk of every dataset read
    and every image / mask value checked, block by block.

    Returns:
        The number of slices.

    Raises:
        StoreError: the first problem, in one line naming the file, key, row and value.
    """
    path = Path(path)
    check_store(path)
    with open_store(path) as f:
        n = f["images"].shape[0]
        keys = [k for k in _dataset_keys(f) if k not in ("images", "masks")]
        for start in range(0, n, CHECK_BLOCK_ROWS):
            rows = slice(start, min(start + CHECK_BLOCK_ROWS, n))
            check_values(path, read_rows(f, "images", rows, path), read_rows(f, "masks", rows, path), start, f)
            for key in keys:
                if f[key].shape and f[key].shape[0] == n:
                    read_rows(f, key, rows, path)
        for key in keys:
            if not f[key].shape or f[key].shape[0] != n:
                try:
                    f[key][...]
                except (OSError, RuntimeError) as exc:
                    raise StoreError(
                        f"{path}: /{key} is unreadable ({exc}); the file is damaged: re-create it"
                    ) from None
    return int(n)


def _dataset_keys(f: h5py.File) -> list[str]:
    keys: list[str] = []
    f.visititems(lambda name, obj: keys.append(name) if isinstance(obj, h5py.Dataset) else None)
    return keys


def read_array(ds: h5py.Dataset) -> np.ndarray:
    """A whole HDF5 dataset as an array; variable-length strings as an object array of ``str``."""
    if h5py.check_string_dtype(ds.dtype) is not None:
        return np.asarray(ds.asstr()[...], dtype=object)
    return ds[...]


_read_array = read_array  # the former name, for code written against it (import read_array)


def read_store(path: str | os.PathLike, extras: Iterable[str] | bool = True) -> SliceStore:
    """Read a whole store into memory.

    Args:
        path: the ``.h5`` file.
        extras: ``True`` for every extra top-level dataset, ``False`` for none, or names.

    Raises:
        StoreError: the file is missing, unreadable or lacks a required key.
    """
    check_store(path)
    path = Path(path)
    with h5py.File(path, "r") as f:
        n = f["images"].shape[0]
        images = np.empty(f["images"].shape, np.float32)
        masks = np.empty(f["masks"].shape, np.uint8)
        for start in range(0, n, CHECK_BLOCK_ROWS):
            rows = slice(start, min(start + CHECK_BLOCK_ROWS, n))
            images[rows] = read_rows(f, "images", rows, path)
            masks[rows] = read_rows(f, "masks", rows, path)
            check_values(path, images[rows], masks[rows], start, f)
        meta = {k: read_array(f[f"meta/{k}"]) for k in f["meta"]}
        known = {"images", "masks", "meta"}
        names = [k for k in f if k not in known and isinstance(f[k], h5py.Dataset)]
        if extras is not True:
            names = [k for k in names if extras and k in set(extras)]
        ext = {k: f[k][...] for k in names}
        attrs = {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}
    return SliceStore(images=images, masks=masks, meta=meta, extras=ext, attrs=attrs, path=path)


def read_meta(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Only the ``/meta`` columns (cheap: no images)."""
    check_store(path)
    with h5py.File(path, "r") as f:
        return {k: read_array(f[f"meta/{k}"]) for k in f["meta"]}


def store_attrs(path: str | os.PathLike) -> dict[str, Any]:
    """The file attributes of a store (``name``, ``format_version``, ``config`` ...)."""
    check_store(path)
    with h5py.File(path, "r") as f:
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in f.attrs.items()}


# --------------------------------------------------------------------------- partial reads
# What the stages read of a store without loading it whole: its shape, a split's rows, some rows'
# images (and masks), whether it has labels. Each opens the file here, so the layout stays in this module.


def store_shape(path: str | os.PathLike) -> tuple[int, int, int]:
    """``(N, H, W)`` of a checked store's images, from its header (no pixels read).

    Raises:
        StoreError: the file is missing, unreadable or malformed.
    """
    check_store(path)
    with h5py.File(path, "r") as f:
        n, h, w = (int(s) for s in f["images"].shape)
    return n, h, w


def split_rows(path: str | os.PathLike, splits: Iterable[str] | None, where: str = "") -> np.ndarray:
    """The rows (ascending) of a checked store whose ``meta/split`` is one of ``splits``; every row for None.

    Args:
        path: the store.
        splits: split names (``train``, ``val``, ``test``), or None for all rows.
        where: the config key the store came from, named in the error (e.g. ``data_a``).

    Returns:
        int64 row indices; empty when no row is in ``splits`` (the caller says what that means).

    Raises:
        StoreError: the file is missing, unreadable or malformed.
        DataError: ``splits`` given and the store has no ``meta/split`` column.
    """
    check_store(path)
    with h5py.File(path, "r") as f:
        n = int(f["images"].shape[0])
        if splits is None:
            return np.arange(n)
        splits = [str(s) for s in splits]
        if "meta/split" not in f:
            place = f" ({where})" if where else ""
            raise DataError(f"{path}{place}: no meta/split column to select splits {splits} from")
        return np.flatnonzero(np.isin(read_array(f["meta/split"]).astype(str), splits))


def read_images(path: str | os.PathLike, rows: np.ndarray | Sequence[int] | None = None) -> np.ndarray:
    """The images of ``rows`` (every row for None) of a store, float32 (M, H, W), in the order given.

    The whole dataset is read and then indexed (one sequential read beats HDF5's point selection for
    a split's worth of rows); for a few rows use :func:`read_slices`.

    Raises:
        StoreError: the file is missing or not HDF5, or a chunk is unreadable.
    """
    with open_store(path) as f:
        images = read_rows(f, "images", slice(None), path)
    if rows is not None:
        images = images[np.asarray(rows, dtype=np.int64)]
    return images.astype(np.float32, copy=False)


def iter_images(path: str | os.PathLike, rows: np.ndarray | Sequence[int], batch_size: int) -> Iterator[np.ndarray]:
    """The images of ``rows`` (ascending), ``batch_size`` rows at a time, the file open between batches.

    Raises:
        StoreError: the file is missing or not HDF5, or a chunk is unreadable.
    """
    rows = np.asarray(rows, dtype=np.int64)
    with open_store(path) as f:
        for start in range(0, rows.size, int(batch_size)):
            yield read_rows(f, "images", rows[start : start + int(batch_size)], path)


def read_slices(path: str | os.PathLike, rows: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """Images (float32) and masks (uint8) of a few ``rows`` of a store, in the order given.

    Raises:
        StoreError: the file is missing or not HDF5, or a row is unreadable.
    """
    with open_store(path) as f:
        images = [read_rows(f, "images", np.asarray([r]), path)[0] for r in rows]
        masks = [read_rows(f, "masks", np.asarray([r]), path)[0] for r in rows]
    if not images:
        return np.zeros((0, 0, 0), np.float32), np.zeros((0, 0, 0), np.uint8)
    return np.stack(images), np.stack(masks)


def has_labels(path: str | os.PathLike, block_rows: int = 64) -> bool:
    """Whether any mask of a store is not background (read ``block_rows`` at a time: a large store stays
    out of memory).

    Raises:
        StoreError: the file is missing or not HDF5, or a chunk is unreadable.
    """
    with open_store(path) as f:
        n = int(f["masks"].shape[0])
        return any(read_rows(f, "masks", slice(s, s + block_rows), path).any() for s in range(0, n, block_rows))


def hdf5_keys(path: str | os.PathLike) -> set[str]:
    """The top-level names of an HDF5 file (to tell a store, ``images`` + ``meta``, from other layouts).

    Raises:
        OSError: the file is not readable HDF5.
    """
    with h5py.File(path, "r") as f:
        return set(f)


def is_store_layout(keys: Iterable[str]) -> bool:
    """Whether top-level names are a slice store's (``images`` and ``meta``)."""
    return {"images", "meta"} <= set(keys)


class StoreReader:
    """A slice store open for reading rows on demand: the streaming counterpart of :func:`read_store`
    (``tagseg translate`` reads its input batch by batch through one).

    Use :func:`open_labelled_store` to open one with the layout checked; close it (or use ``with``).
    """

    def __init__(self, path: str | os.PathLike, role: str = "slice store", hint: str = "check the path") -> None:
        self.path = Path(path)
        self._file = open_store(self.path, role=role, hint=hint)

    def __enter__(self) -> StoreReader:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        self.close()

    def close(self) -> None:
        self._file.close()

    @property
    def shape(self) -> tuple[int, int, int]:
        """``(N, H, W)`` of the images."""
        n, h, w = (int(s) for s in self._file["images"].shape)
        return n, h, w

    def meta(self) -> dict[str, np.ndarray]:
        """Every ``/meta`` column."""
        return {k: read_array(self._file[f"meta/{k}"]) for k in self._file["meta"]}

    def attrs(self) -> dict[str, Any]:
        """The file attributes (``name``, ``format_version``, ``config`` ...)."""
        return {k: (v.decode() if isinstance(v, bytes) else v) for k, v in self._file.attrs.items()}

    def extra_names(self) -> list[str]:
        """The extra top-level datasets (e.g. ``displacement``), in file order."""
        known = ("images", "masks", "meta")
        return [k for k in self._file if k not in known and isinstance(self._file[k], h5py.Dataset)]

    def extra_spec(self) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
        """``{name: (per-row shape, dtype)}`` of the extra datasets (what a :class:`StoreWriter` takes)."""
        return {k: (tuple(self._file[k].shape[1:]), self._file[k].dtype) for k in self.extra_names()}

    def rows(self, key: str, index: np.ndarray | slice) -> np.ndarray:
        """Rows of ``images``, ``masks`` or an extra dataset: a slice, or indices in any order (a
        consecutive run is read in one go); an unreadable chunk is a :class:`StoreError`."""
        if isinstance(index, slice):
            return read_rows(self._file, key, index, self.path)
        index = np.asarray(index, dtype=np.int64)
        if index.size and np.array_equal(index, np.arange(index[0], index[0] + index.size)):
            return read_rows(self._file, key, slice(int(index[0]), int(index[0]) + index.size), self.path)
        return np.stack([read_rows(self._file, key, np.asarray([r]), self.path)[0] for r in index])


def open_labelled_store(path: str | os.PathLike, role: str, hint: str, why_masks: str) -> StoreReader:
    """Open a store that must hold 2D images and masks, with one clear error for what is missing.

    Args:
        path: the store.
        role, hint: for the message of a missing file (see :func:`open_store`).
        why_masks: why the caller needs masks, the end of the message for a store without them.

    Raises:
        StoreError: missing, unreadable, no ``/images`` or ``/masks``, shapes differ, a required
            ``/meta`` column missing, no slices, or what :func:`check_store` refuses.
        DataError: ``/images`` is not (N, H, W).
    """
    reader = StoreReader(path, role=role, hint=hint)
    path, f = reader.path, reader._file
    try:
        if "images" in f and "masks" in f and all(f"meta/{k}" in f for k in REQUIRED_META):
            check_store(path)  # dtypes, meta lengths, split values (the layout errors below keep their wording)
        if "images" not in f:
            raise StoreError(f"{path}: no /images dataset; expected the slice store layout (tagseg.io.store)")
        if f["images"].ndim != 3:
            raise DataError(f"{path}: /images must hold 2D images (N, H, W), got shape {f['images'].shape}")
        if "masks" not in f:
            raise StoreError(f"{path}: no /masks: {why_masks}")
        if f["masks"].shape != f["images"].shape:
            raise StoreError(f"{path}: /masks shape {f['masks'].shape} differs from /images {f['images'].shape}")
        missing = [f"meta/{k}" for k in REQUIRED_META if f"meta/{k}" not in f]
        if missing:
            raise StoreError(f"{path}: missing required key(s) {missing}; expected the layout in tagseg.io.store")
        if f["images"].shape[0] == 0:
            raise StoreError(f"{path}: the store holds no slices")
    except BaseException:
        reader.close()
        raise
    return reader
