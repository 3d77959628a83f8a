"""Figures of slice stores: montages of subjects x frames with myocardium contours.

Works for any store (phantom cine or tagged, a real set, a translated set): only ``/images``,
``/masks`` and the ``subject`` / ``slice`` / ``frame`` / ``phase`` meta columns are read, and only
the rows shown.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tagseg.conventions import MYO as MYO_LABEL
from tagseg.errors import StoreError
from tagseg.io.atomic import publish
from tagseg.io.store import read_meta, read_slices, store_attrs


def _pick_frames(frames: np.ndarray, wanted: Sequence[int] | None, n_frames: int) -> list[int]:
    """The wanted frames that exist, or ``n_frames`` evenly spaced ones among ``frames``."""
    available = np.unique(frames)
    if wanted is not None:
        return [int(f) for f in wanted if f in set(available.tolist())]
    idx = np.unique(np.linspace(0, available.size - 1, min(n_frames, available.size)).round().astype(int))
    return [int(available[i]) for i in idx]


def _rows(
    meta: dict[str, np.ndarray], subject: str, slice_index: int | None, frames: Sequence[int] | None, n_frames: int
) -> list[int]:
    """Row indices of one subject's slice (the middle one unless given), one per chosen frame."""
    mine = np.flatnonzero(meta["subject"] == subject)
    slices = np.unique(meta["slice"][mine])
    chosen = int(slices[len(slices) // 2]) if slice_index is None else int(slice_index)
    mine = mine[meta["slice"][mine] == chosen]
    rows = []
    for f in _pick_frames(meta["frame"][mine], frames, n_frames):
        rows.append(int(mine[np.flatnonzero(meta["frame"][mine] == f)[0]]))
    return rows


def _draw(
    axes: np.ndarray, path: Path, rows_per_line: list[list[int]], meta: dict[str, np.ndarray], labels: list[str]
) -> None:
    for line, rows in enumerate(rows_per_line):
        images, masks = read_slices(path, rows)
        for col in range(axes.shape[1]):
            ax = axes[line, col]
            ax.axis("off")
            if col >= len(rows):
                continue
            r, image, mask = rows[col], images[col], masks[col]
            ax.imshow(image, cmap="gray", vmin=0.0, vmax=max(float(np.percentile(image, 99.5)), 1e-6))
            if (mask == MYO_LABEL).any():
                ax.contour(mask == MYO_LABEL, levels=[0.5], colors="tab:red", linewidths=0.8)
            phase = meta["phase"][r] if "phase" in meta else ""
            name = f"{labels[line]}\n" if col == 0 else "\n"  # row name once, on the first tile
            ax.set_title(f"{name}t={int(meta['frame'][r])}{' ' + phase if phase else ''}", fontsize=7)


def _save(fig, output: Path) -> Path:
    output.parent.mkdir(parents=True, exist_ok=True)
    tmp = output.with_name(f".{output.name}.partial.png")
    fig.savefig(tmp, dpi=fig.dpi, bbox_inches="tight")
    publish(tmp, output)
    return output


def store_montage(
    store_path: str | os.PathLike,
    n_subjects: int = 3,
    frames: Sequence[int] | None = None,
    n_frames: int = 5,
    output: str | os.PathLike | None = None,
    tile_inches: float = 1.6,
) -> Path:
    """PNG montage of a store: ``n_subjects`` subjects (rows) x frames (columns), myocardium in red.

    Args:
        store_path: the slice store.
        n_subjects: how many subjects to show (the first ones in sorted order).
        frames: frame indices to show (those a subject lacks are left out); ``None``: ``n_frames``
            evenly spaced frames among each subject's frames (e.g. only ED/ES in ACDC).
        n_frames: number of columns when ``frames`` is ``None``.
        output: PNG path; default ``<store>.png`` next to the store.
        tile_inches: size of one tile.

    Returns:
        The PNG path.

    Raises:
        StoreError: the store is missing or malformed.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path = Path(store_path)
    meta = read_meta(path)
    subjects = sorted(set(meta["subject"].tolist()))[: max(int(n_subjects), 1)]
    rows = [_rows(meta, s, None, frames, n_frames) for s in subjects]
    n_cols = max(max((len(r) for r in rows), default=0), 1)
    fig, axes = plt.subplots(
        len(rows), n_cols, figsize=(tile_inches * n_cols, tile_inches * len(rows) + 0.3), squeeze=False, dpi=100
    )
    _draw(axes, path, rows, meta, subjects)
    fig.suptitle(str(store_attrs(path).get("name", path.stem)), fontsize=9)
    try:
        return _save(fig, Path(output) if output else path.with_name(path.name + ".png"))
    finally:
        plt.close(fig)


def paired_montage(
    store_paths: Sequence[str | os.PathLike],
    output: str | os.PathLike,
    subject: str | None = None,
    frames: Sequence[int] | None = None,
    n_frames: int = 5,
    tile_inches: float = 1.6,
    crop: float = 1.0,
) -> Path:
    """One row per store for the same subject and slice (e.g. a paired phantom cine and tagged store).

    Args:
        store_paths: stores holding ``subject``.
        output: PNG path.
        subject: subject id; default the first subject of the first store.
        frames, n_frames: as in :func:`store_montage`.
        tile_inches: size of one tile.
        crop: keep this central fraction of each image (e.g. 0.5 to zoom on the heart).

    Raises:
        StoreError: a store is missing, malformed or lacks ``subject``.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metas = [read_meta(p) for p in store_paths]
    subject = subject or sorted(set(metas[0]["subject"].tolist()))[0]
    for p, m in zip(store_paths, metas):
        if subject not in set(m["subject"].tolist()):
            raise StoreError(f"{p}: has no subject {subject!r} (generate both stores with data.paired=true)")
    rows = [_rows(m, subject, None, frames, n_frames) for m in metas]
    n_cols = max(len(r) for r in rows)
    fig, axes = plt.subplots(
        len(rows), n_cols, figsize=(tile_inches * n_cols, tile_inches * len(rows)), squeeze=False, dpi=100
    )
    for line, (p, m, r) in enumerate(zip(store_paths, metas, rows)):
        _draw(axes[line : line + 1], Path(p), [r], m, [str(store_attrs(p).get("name", Path(p).stem))])
    if crop < 1.0:
        for ax in axes.ravel():
            if ax.images:
                h, w = ax.images[0].get_array().shape
                ax.set_xlim(w * (1 - crop) / 2, w * (1 + crop) / 2)
                ax.set_ylim(h * (1 + crop) / 2, h * (1 - crop) / 2)
    try:
        return _save(fig, Path(output))
    finally:
        plt.close(fig)
