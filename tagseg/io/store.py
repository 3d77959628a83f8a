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
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from tagseg.errors import StoreError

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
    (a temporary ``.<name>.partial`` file is used meanwhile and removed on error).

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
    ) -> None:
        if compression not in COMPRESSION:
            raise StoreError(f"{path}: compression must be one of {sorted(COMPRESSION)}, got {compression!r}")
        filters = COMPRESSION[compression]
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.tmp = self.path.with_name(f".{self.path.name}.partial")
        self.image_shape = tuple(int(s) for s in image_shape)
        self.extras_spec = dict(extras or {})
        self.attrs: dict[str, Any] = {"name": name, **dict(attrs or {})}
        self.n = 0
        self._meta_names: list[str] | None = None
        self._file = h5py.File(self.tmp, "w")
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
            raise StoreError(f"{self.path}: images must be (N, {self.image_shape[0]}, {self.image_shape[1]}), got {images.shape}")
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
        os.replace(self.tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the partial file."""
        try:
            self._file.close()
        finally:
            self.tmp.unlink(missing_ok=True)

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
) -> Path:
    """Write a whole store at once (atomically). Returns the path."""
    images = np.asarray(images)
    spec = {k: (np.asarray(v).shape[1:], np.asarray(v).dtype) for k, v in (extras or {}).items()}
    with StoreWriter(path, images.shape[1:], name=name or (attrs or {}).get("name", ""), extras=spec, attrs=attrs) as w:
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


def check_store(path: str | os.PathLike, required: Iterable[str] = REQUIRED_KEYS) -> None:
    """Raise :class:`StoreError` naming the file and key if ``path`` is not a valid store."""
    path = Path(path)
    with open_store(path) as f:
        missing = [k for k in required if k not in f]
        if missing:
            raise StoreError(f"{path}: missing required key(s) {missing}; expected the layout in tagseg.io.store")
        n, shape = f["images"].shape[0], f["images"].shape
        if len(shape) != 3:
            raise StoreError(f"{path}: /images must be (N, H, W), got {shape}")
        if f["masks"].shape != shape:
            raise StoreError(f"{path}: /masks shape {f['masks'].shape} differs from /images {shape}")
        for key in f.get("meta", {}):
            if f[f"meta/{key}"].shape[0] != n:
                raise StoreError(f"{path}: meta/{key} has {f[f'meta/{key}'].shape[0]} rows, expected {n}")


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
        images = f["images"][...].astype(np.float32, copy=False)
        masks = f["masks"][...]
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
