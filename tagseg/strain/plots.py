"""Figures of a strain analysis: strain curves, a segment bull's-eye, the tracked mesh over the frames.

Each figure is written under a temporary name and renamed (:func:`tagseg.io.atomic.replaced`).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from tagseg.io.atomic import replaced  # noqa: E402
from tagseg.strain.aha import LEVEL_SEGMENTS, LEVEL_START_DEG  # noqa: E402
from tagseg.strain.schema import SliceStrain  # noqa: E402
from tagseg.strain.tensors import StrainCurves  # noqa: E402


def save_figure(fig: plt.Figure, path: str | os.PathLike, dpi: int = 110) -> Path:
    """Write ``fig`` as a PNG through a temporary name and close it."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with replaced(path) as tmp:
        fig.savefig(tmp, dpi=dpi, bbox_inches="tight", format="png")
    plt.close(fig)
    return path


def plot_curves(result: SliceStrain, path: str | os.PathLike, truth: StrainCurves | None = None) -> Path:
    """Ecc and Err over the frames: global (thick) and per AHA segment (thin, labelled); with ``truth``
    (the true strain of the same mesh) each curve's truth dashed in its colour."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.4), sharex=True)
    frames = np.arange(result.n_frames)
    for ax, comp, title in ((axes[0], "ecc", "circumferential (Ecc)"), (axes[1], "err", "radial (Err)")):
        curves = getattr(result, comp)
        true_curves = {} if truth is None else truth.component(comp)
        for region, curve in curves.items():
            if region != "global":
                (line,) = ax.plot(frames, curve, lw=0.9, alpha=0.8, label=f"seg {region}")
                if region in true_curves:
                    ax.plot(frames, true_curves[region], ls="--", lw=0.9, alpha=0.8, color=line.get_color())
        if "global" in curves:
            ax.plot(frames, curves["global"], color="k", lw=2.2, label="global")
        if "global" in true_curves:
            ax.plot(frames, true_curves["global"], color="k", lw=1.6, ls="--", label="truth (dashed)")
        ax.axhline(0.0, color="0.6", lw=0.6)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("frame")
    axes[0].set_ylabel("strain (l / l_ED - 1)")
    axes[1].legend(fontsize=6, ncol=2, loc="upper right")
    fig.suptitle(f"{result.subject} slice {result.slice} ({result.level}, {result.tracker})", fontsize=9)
    return save_figure(fig, path)


def plot_bullseye(results: Sequence[SliceStrain], path: str | os.PathLike, component: str = "ecc") -> Path:
    """Peak strain per AHA segment as a bull's-eye (basal outside, apical inside; anterior at the top).

    Segments of levels not analysed are left grey; several slices of one level are averaged.
    """
    values: dict[int, list[float]] = {}
    for r in results:
        for region, p in r.peaks()[component].items():
            if region != "global":
                values.setdefault(int(region), []).append(float(p["peak"]))
    mean = {seg: float(np.mean(v)) for seg, v in values.items()}
    cmap = plt.get_cmap("RdBu" if component == "ecc" else "RdBu_r")
    limit = max([abs(v) for v in mean.values()] + [0.05])
    fig, ax = plt.subplots(figsize=(4.2, 4.2), subplot_kw={"projection": "polar"})
    rings = {"basal": (2.0, 3.0), "mid": (1.0, 2.0), "apical": (0.0, 1.0)}
    # anterior (the last segment of a level, centred past 300 deg offset) at the top of the plot
    for level, (r0, r1) in rings.items():
        segs = LEVEL_SEGMENTS[level]
        width = 2 * np.pi / len(segs)
        for i, seg in enumerate(segs):
            start = np.radians(LEVEL_START_DEG[level]) + i * width
            theta = np.pi / 2 + np.radians(30.0) + start + width / 2
            color = cmap(0.5 + 0.5 * mean[seg] / limit) if seg in mean else (0.85, 0.85, 0.85, 1.0)
            ax.bar(theta, r1 - r0, width=width, bottom=r0, color=color, edgecolor="white", linewidth=1.2)
            label = f"{seg}\n{mean[seg]:+.2f}" if seg in mean else str(seg)
            ax.text(theta, (r0 + r1) / 2, label, ha="center", va="center", fontsize=6.5)
    ax.set_axis_off()
    ax.set_title(f"peak {component.upper()} per AHA segment", fontsize=9)
    return save_figure(fig, path)


def plot_mesh_frames(
    frames: np.ndarray,
    positions_rc: np.ndarray,
    path: str | os.PathLike,
    n_layers: int,
    max_frames: int = 12,
    margin_px: int = 12,
) -> Path:
    """The tracked mesh over the images, as a grid of frames (cropped around the mesh)."""
    t = frames.shape[0]
    shown = np.unique(np.linspace(0, t - 1, min(max_frames, t)).round().astype(int))
    lo = np.maximum(np.floor(positions_rc.reshape(-1, 2).min(axis=0)).astype(int) - margin_px, 0)
    hi = np.minimum(np.ceil(positions_rc.reshape(-1, 2).max(axis=0)).astype(int) + margin_px, frames.shape[1:])
    cols = min(6, len(shown))
    rows = int(np.ceil(len(shown) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(1.9 * cols, 1.9 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.set_axis_off()
    grid_colors = plt.get_cmap("viridis")(np.linspace(0.1, 0.9, n_layers))
    for ax, f in zip(axes.ravel(), shown):
        crop = frames[f, lo[0] : hi[0], lo[1] : hi[1]]
        ax.imshow(crop, cmap="gray")
        pts = positions_rc[f].reshape(n_layers, -1, 2) - lo
        for layer in range(n_layers):
            ring = np.vstack([pts[layer], pts[layer][:1]])
            ax.plot(ring[:, 1], ring[:, 0], "-o", color=grid_colors[layer], ms=1.2, lw=0.6)
        ax.set_title(f"frame {f}", fontsize=7)
    return save_figure(fig, path)


__all__ = ["plot_bullseye", "plot_curves", "plot_mesh_frames", "save_figure"]
