"""``review.html``: one self-contained page to check flagged scans by eye.

One row per scan, worst predicted Dice first: three overlay thumbnails (end-diastole, end-systole
and a frame between, of the scan's middle slice; the myocardium's outline in red), the scan's
mean signals and its flag. Thumbnails are PNGs inlined as base64 ``data:`` URIs, the style is
inline: the file opens from disk with no server and no network.

Without phase labels (a store's ``/meta/phase``), end-diastole is the slice's first frame and
end-systole the frame with the smallest predicted cavity.
"""

from __future__ import annotations

import base64
import html
import io
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from scipy import ndimage

from tagseg.conventions import MYO
from tagseg.io.atomic import atomic_write_text

#: thumbnail edge in pixels
THUMB_PX = 112
#: signals shown in the review (means over the scan's images)
SHOWN = ("agreement_dice", "entropy_myo", "ring", "cavity_enclosed", "gap_fraction", "thickness_mean_mm", "area_dev")


@dataclass
class ReviewEntry:
    """One scan's row: its QC summary, mean signals and (caption, PNG bytes) thumbnails."""

    scan: str
    summary: dict[str, Any]
    signals: dict[str, float]
    thumbnails: list[tuple[str, bytes]] = field(default_factory=list)


def overlay_png(image: np.ndarray, labels: np.ndarray, size: int = THUMB_PX) -> bytes:
    """A grey image with the myocardium's outline in red, as PNG bytes (``size`` px on the long edge)."""
    from PIL import Image

    img = np.asarray(image, np.float64)
    lo, hi = np.percentile(img, [1, 99]) if img.size else (0.0, 1.0)
    grey = np.clip((img - lo) / (hi - lo if hi > lo else 1.0), 0, 1) * 255
    rgb = np.repeat(grey.astype(np.uint8)[..., None], 3, axis=2)
    myo = labels == MYO
    edge = myo & ~ndimage.binary_erosion(myo)
    rgb[edge] = (255, 40, 40)
    pic = Image.fromarray(rgb)
    scale = size / max(pic.size)
    pic = pic.resize((max(1, round(pic.size[0] * scale)), max(1, round(pic.size[1] * scale))), Image.NEAREST)
    buf = io.BytesIO()
    pic.save(buf, format="PNG")
    return buf.getvalue()


def review_frames(
    slices: np.ndarray, frames: np.ndarray, cavity_mm2: Sequence[float], phase: Sequence[str] | None = None
) -> list[tuple[str, int]]:
    """(caption, image index) of the ED, between and ES frames of the scan's middle slice."""
    slices, frames = np.asarray(slices), np.asarray(frames)
    middle = np.unique(slices)[len(np.unique(slices)) // 2]
    idx = np.flatnonzero(slices == middle)
    idx = idx[np.argsort(frames[idx], kind="stable")]
    phases = np.asarray(phase if phase is not None else [""] * len(slices)).astype(str)
    ed = idx[phases[idx] == "ED"][0] if (phases[idx] == "ED").any() else idx[0]
    if (phases[idx] == "ES").any():
        es = idx[phases[idx] == "ES"][0]
    else:
        cav = np.asarray(cavity_mm2, np.float64)[idx]
        es = idx[int(np.argmin(np.where(cav > 0, cav, np.inf)))] if (cav > 0).any() else idx[len(idx) // 2]
    a, b = sorted((int(np.flatnonzero(idx == ed)[0]), int(np.flatnonzero(idx == es)[0])))
    mid = idx[(a + b) // 2] if b - a > 1 else idx[min(b + (len(idx) - b) // 2, len(idx) - 1)]
    return [("ED", int(ed)), ("between", int(mid)), ("ES", int(es))]


def _cell(value: Any) -> str:
    if isinstance(value, float):
        return "" if not np.isfinite(value) else f"{value:.3f}"
    return html.escape(str(value))


def write_review(path: str | Path, entries: Sequence[ReviewEntry], threshold: float | None) -> Path:
    """Write ``review.html`` (atomically): scans sorted by predicted Dice, lowest first (no prediction: last)."""

    def key(e: ReviewEntry) -> float:
        v = e.summary.get("predicted_dice")
        return float(v) if v not in ("", None) else float("inf")

    rule = f"flagged: an image's predicted Dice &lt; {threshold:.2f}" if threshold is not None else "no QC model"
    head = "".join(f"<th>{html.escape(s)}</th>" for s in ("scan", "frames", "predicted Dice", "flag", *SHOWN))
    rows = []
    for e in sorted(entries, key=key):
        thumbs = "".join(
            f'<figure><img alt="{html.escape(cap)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'
            f"<figcaption>{html.escape(cap)}</figcaption></figure>"
            for cap, png in e.thumbnails
        )
        flag = e.summary.get("qc_flag")
        pd = e.summary.get("predicted_dice")
        pd_text = "" if pd in ("", None) else f"{float(pd):.3f} (min {float(e.summary['predicted_dice_min']):.3f})"
        signals = "".join(f"<td>{_cell(e.signals.get(s, float('nan')))}</td>" for s in SHOWN)
        style = ' class="flag"' if flag == 1 else ""
        rows.append(
            f"<tr{style}><td>{html.escape(e.scan)}</td><td>{thumbs}</td><td>{pd_text}</td>"
            f"<td>{'FLAGGED' if flag == 1 else ('ok' if flag == 0 else '')}</td>{signals}</tr>"
        )
    page = f"""<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>tagseg predict: QC review</title>
<style>
body {{ font-family: sans-serif; font-size: 13px; }} table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 3px 6px; vertical-align: middle; }}
tr.flag {{ background: #fde8e8; }} figure {{ display: inline-block; margin: 2px; text-align: center; }}
figcaption {{ font-size: 11px; }}
</style></head><body>
<h1>QC review: {len(entries)} scan(s), {sum(e.summary.get("qc_flag") == 1 for e in entries)} flagged</h1>
<p>Worst predicted Dice first; {rule}. Outline: predicted myocardium. Signals: means over the scan's images.</p>
<table><tr>{head}</tr>
{chr(10).join(rows)}
</table></body></html>
"""
    return atomic_write_text(path, page)


__all__ = ["ReviewEntry", "THUMB_PX", "overlay_png", "review_frames", "write_review"]
