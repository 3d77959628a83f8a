"""Segment new tagged scans with a trained segmenter (the library behind ``tagseg predict``).

For every input scan (:mod:`tagseg.data.scans`): each frame is pre-processed as in training
(scaled to [0, 1] as ``tagseg prepare`` does, resized to the model's size as the DataModule does,
normalised with the checkpoint's mean / std), segmented in batches, and the class map is resized back
to the frame's own size (nearest neighbour) and written in the tagseg label convention
(0 background, 2 myocardium, ...). Outputs, under the output folder:

* ``<name>_mask.nii.gz`` (NIfTI, h5 and DICOM inputs): uint8 (x, y, t) in the input's geometry
  (a NIfTI input's own affine; otherwise x = column, y = row, zooms = pixel spacing), readable
  back as a label file by the tagged reader; for a slice-store input, ``<name>_pred.h5``: the
  input store with its masks replaced by the predictions;
* ``<name>_overlay.png``: frames with the predicted inner / outer contours;
* ``<name>_points.json`` and one ``reference_points.csv`` for all scans: the myocardial
  reference points (inner and outer contour, see :mod:`tagseg.contours`) per frame, in pixels
  (x = column, y = row) and mm;
* ``predictions.csv``: one row per frame (scan, frame, myocardium pixels and area in mm^2,
  whether the myocardium is a closed ring).
"""

from __future__ import annotations

import csv
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np
import torch
from skimage.transform import resize
from omegaconf import DictConfig, OmegaConf
from torch import nn
from tqdm.auto import tqdm

from tagseg.contours import MyocardialContours, myocardial_contours
from tagseg.data.datamodule import resize_slices
from tagseg.data.prepare import normalise_record
from tagseg.conventions import MYO
from tagseg.data.records import SliceRecord
from tagseg.data.scans import Scan, check_inputs, find_inputs, read_scan
from tagseg.io.store import write_store
from tagseg.conventions import NORM_MEAN, NORM_STD
from tagseg.data.transforms import normalise
from tagseg.errors import ConfigError
from tagseg.runtime.config import config_yaml
from tagseg.models.networks import main_head, split_output

log = logging.getLogger(__name__)


@dataclass
class Segmenter:
    """A trained network with the pre-processing it was trained with.

    Attributes:
        network: the segmentation network (eval mode is set here).
        image_size: the square input size the network was trained at, in pixels.
        mean: normalisation mean applied after scaling to [0, 1].
        std: normalisation standard deviation.
        labels: the tagseg label written for each output channel (channel 0 = background = 0),
            e.g. ``(0, 2)`` for background + myocardium.
    """

    network: nn.Module
    image_size: int
    mean: float = NORM_MEAN
    std: float = NORM_STD
    labels: tuple[int, ...] = (0, MYO)

    def preprocess(self, frames: np.ndarray, scaled: bool = False) -> torch.Tensor:
        """(T, H, W) frames -> normalised float32 (T, 1, S, S), the training chain exactly.

        Each raw frame is scaled to [0, 1] at its own size (``tagseg prepare``'s
        ``normalise_record``; skipped when ``scaled``: slice-store images already are), resized as
        the DataModule resizes store slices (``resize_slices``: bilinear, clamped to [0, 1]) and
        normalised with the checkpoint's mean / std (``transforms.normalise``).
        """
        unit = np.array(frames, np.float32)
        for i, frame in enumerate([] if scaled else frames):
            rec = SliceRecord(image=np.asarray(frame, np.float32), mask=np.zeros(frame.shape, np.uint8), subject="", slice=0,
                              frame=0, n_frames=1, phase="", group="", spacing_mm=(1.0, 1.0), source="")
            unit[i] = normalise_record(rec, None, None).image
        size = (self.image_size, self.image_size)
        resized, _ = resize_slices(unit, np.zeros(unit.shape, np.uint8), size)
        return normalise(torch.from_numpy(np.ascontiguousarray(resized))[:, None], self.mean, self.std)

    @torch.no_grad()
    def segment(self, frames: np.ndarray, batch_size: int = 16, device: str | torch.device = "cpu", scaled: bool = False) -> np.ndarray:
        """Label maps of (T, H, W) frames, each at its own size: uint8 (T, H, W) in ``labels``.

        Args:
            frames: raw intensities (any range), rows = image y; or [0, 1] store images with ``scaled``.
            batch_size: frames per forward pass.
            device: where the network runs.
            scaled: the frames are slice-store images, already in [0, 1].
        """
        net = self.network.to(device).eval()
        lut = np.asarray(self.labels, np.uint8)
        out = np.zeros(frames.shape, np.uint8)
        for start in range(0, len(frames), batch_size):
            chunk = frames[start : start + batch_size]
            logits, _ = split_output(net(self.preprocess(chunk, scaled).to(device)))
            classes = main_head(logits).argmax(dim=1).to(torch.uint8).cpu().numpy()
            for j, cls in enumerate(classes):
                if cls.shape != chunk[j].shape:
                    cls = resize(cls, chunk[j].shape, order=0, preserve_range=True, anti_aliasing=False).astype(np.uint8)
                out[start + j] = lut[cls]
        return out


#: hyper-parameters a SegmentationModule checkpoint must carry for prediction
REQUIRED_HPARAMS = ("network", "image_size", "classes", "mean", "std")


def find_checkpoint(path: str | Path) -> Path:
    """A checkpoint file, or the single best checkpoint of a run folder.

    A folder is searched for ``*.ckpt``; ``last.ckpt`` is used only when it is the only one.

    Raises:
        ConfigError: nothing found, or several candidates (listed) in a folder.
    """
    path = Path(str(path)).expanduser()
    if path.is_file():
        return path
    if not path.exists():
        raise ConfigError(f"ckpt: checkpoint not found: {path} (expected a .ckpt file written by `tagseg train`, or its run folder)")
    found = sorted(path.rglob("*.ckpt"))
    best = [p for p in found if p.name != "last.ckpt"] or found
    if len(best) != 1:
        shown = [str(p) for p in best[:10]] or "none"
        raise ConfigError(f"ckpt: {path} is a folder with {len(best)} candidate checkpoints ({shown}); pass ckpt=<file.ckpt>")
    return best[0]


def load_segmenter(ckpt: str | Path, device: str | torch.device = "cpu") -> Segmenter:
    """The trained network and its pre-processing from a ``tagseg train`` checkpoint.

    Reads the :class:`~tagseg.models.segmentation.SegmentationModule` hyper-parameters
    (network, ``image_size``, ``classes``, ``mean``, ``std``), rebuilds the module and loads its
    weights (strict).

    Args:
        ckpt: a Lightning ``.ckpt`` file, or a run folder holding exactly one best checkpoint.
        device: where the weights are loaded.

    Returns:
        The :class:`Segmenter` (labels ``(0, *classes)``).

    Raises:
        ConfigError: missing or unreadable checkpoint, a checkpoint of another model type, or
            weights that do not match the rebuilt network (mismatched keys listed).
    """
    from tagseg.models.segmentation import SegmentationModule

    path = find_checkpoint(ckpt)
    try:
        state = torch.load(path, map_location=device, weights_only=False)
    except Exception as exc:  # torch raises many types for a file that is not a checkpoint
        raise ConfigError(f"ckpt: {path} is not a readable PyTorch / Lightning checkpoint ({type(exc).__name__}: {exc})") from None
    hparams = state.get("hyper_parameters") if isinstance(state, dict) else None
    missing = [k for k in REQUIRED_HPARAMS if not isinstance(hparams, dict) or k not in hparams]
    if missing or "state_dict" not in state:
        keys = sorted(hparams) if isinstance(hparams, dict) else "none"
        raise ConfigError(f"ckpt: {path} is a checkpoint of another model type (hyper-parameters: {keys}; "
                          f"missing {missing or ['state_dict']}); expected a segmentation checkpoint from `tagseg train`")
    module = SegmentationModule(**{**hparams, "init": "default"})
    result = module.load_state_dict(state["state_dict"], strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise ConfigError(f"ckpt: {path}: weights do not match the network rebuilt from its hyper-parameters; "
                          f"missing {result.missing_keys[:10]}, unexpected {result.unexpected_keys[:10]}")
    classes = [int(c) for c in hparams["classes"]]
    return Segmenter(network=module.to(device).eval(), image_size=int(hparams["image_size"]), mean=float(hparams["mean"]),
                     std=float(hparams["std"]), labels=(0, *classes))


@dataclass
class PredictReport:
    """What :func:`predict` wrote."""

    output: Path
    scans: list[str] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    rows: list[dict[str, Any]] = field(default_factory=list)

    def table(self) -> str:
        """A short per-scan summary for the console."""
        lines = [f"{'scan':<32} {'frames':>6} {'closed rings':>12} {'mean area mm2':>14}"]
        for name in self.scans:
            rows = [r for r in self.rows if r["scan"] == name]
            area = np.mean([r["myocardium_mm2"] for r in rows]) if rows else 0.0
            rings = sum(bool(r["closed_ring"]) for r in rows)
            lines.append(f"{name:<32} {len(rows):>6} {rings:>12} {area:>14.1f}")
        return "\n".join(lines)


def _nifti_mask(scan: Scan, labels: np.ndarray, path: Path) -> Path:
    import nibabel as nib

    data = np.transpose(labels, (2, 1, 0))  # (t, rows, cols) -> (x, y, t)
    if scan.affine is not None:
        affine = scan.affine
    else:
        row_mm, col_mm = scan.spacing_mm[0]
        affine = np.diag([col_mm, row_mm, 1.0, 1.0])
    img = nib.Nifti1Image(data, affine)
    img.header.set_xyzt_units("mm")
    nib.save(img, str(path))
    return path


def _store_mask(scan: Scan, labels: np.ndarray, path: Path, attrs: dict[str, Any]) -> Path:
    assert scan.meta is not None
    return write_store(path, scan.frames, labels, scan.meta, attrs={"name": f"{scan.name}-pred", **attrs})


def _overlay_png(scan: Scan, labels: np.ndarray, contours: Sequence[MyocardialContours], path: Path, max_frames: int) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    index = np.unique(np.linspace(0, len(scan) - 1, min(len(scan), max_frames)).round().astype(int))
    cols = min(5, len(index))
    rows = int(np.ceil(len(index) / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(2.4 * cols, 2.4 * rows), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, t in zip(axes.ravel(), index):
        ax.imshow(scan.frames[t], cmap="gray")
        ax.contour(labels[t] == MYO, levels=[0.5], colors="yellow", linewidths=0.6)
        for pts, color in ((contours[t].outer, "lime"), (contours[t].inner, "red")):
            if len(pts):
                ax.plot(*np.vstack([pts, pts[:1]]).T, ".-", color=color, markersize=2, linewidth=0.6)
        ax.set_title(f"{scan.name} t={t}", fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _points_json(scan: Scan, contours: Sequence[MyocardialContours], path: Path) -> Path:
    frames = []
    for t, c in enumerate(contours):
        row_mm, col_mm = (float(v) for v in scan.spacing_mm[t])
        frames.append({
            "frame": t,
            "spacing_mm": [row_mm, col_mm],
            "inner_xy": np.round(c.inner, 3).tolist(),
            "outer_xy": np.round(c.outer, 3).tolist(),
        })
    doc = {"scan": scan.name, "input": str(scan.path), "kind": scan.kind,
           "convention": "x = column, y = row, pixel units, pixel centres at integers; clockwise as displayed from the top point",
           "frames": frames}
    path.write_text(json.dumps(doc, indent=1))
    return path


def _point_rows(scan: Scan, contours: Sequence[MyocardialContours]) -> Iterable[list[Any]]:
    for t, c in enumerate(contours):
        row_mm, col_mm = scan.spacing_mm[t]
        for name, pts in (("inner", c.inner), ("outer", c.outer)):
            for i, (x, y) in enumerate(pts):
                yield [scan.name, t, name, i, round(float(x), 3), round(float(y), 3), round(float(x * col_mm), 3), round(float(y * row_mm), 3)]


def predict(
    segmenter: Segmenter,
    input_path: str | Path,
    output: str | Path,
    batch_size: int = 16,
    device: str | torch.device = "cpu",
    n_points: int | None = 48,
    overlays: bool = True,
    overlay_max_frames: int = 25,
    reader: dict[str, Any] | None = None,
    attrs: dict[str, Any] | None = None,
    progress: bool = True,
) -> PredictReport:
    """Segment every scan under ``input_path`` and write masks, overlays and reference points.

    Args:
        segmenter: the trained network and its pre-processing (see :func:`load_segmenter`).
        input_path: a file or folder (see :mod:`tagseg.data.scans`).
        output: the folder to write into (created).
        batch_size: frames per forward pass.
        device: where the network runs (``"cpu"``, ``"cuda"``).
        n_points: reference points per contour (None: every contour vertex).
        overlays: write one overlay PNG per scan.
        overlay_max_frames: frames shown per overlay (evenly spread).
        reader: keyword arguments of :func:`tagseg.data.scans.read_scan` (``imt_axes``,
            ``default_spacing_mm``).
        attrs: extra attributes for output stores (e.g. the resolved config, the checkpoint).
        progress: show a progress bar.

    Returns:
        A report listing the scans, the files written and one row per frame.

    Raises:
        DataError: a missing, unreadable or unrecognised input (before any segmentation).
        StoreError: a malformed slice-store input.
    """
    inputs = find_inputs(input_path)
    check_inputs(inputs)
    out = Path(output)
    out.mkdir(parents=True, exist_ok=True)
    report = PredictReport(output=out)
    point_rows: list[list[Any]] = []
    for path in tqdm(inputs, desc="predict", unit="scan", disable=not progress):
        scan = read_scan(path, **(reader or {}))
        labels = segmenter.segment(scan.frames, batch_size=batch_size, device=device, scaled=scan.kind == "store")
        contours = [myocardial_contours(m == MYO, n_points=n_points) for m in labels]
        if scan.kind == "store":
            report.files.append(_store_mask(scan, labels, out / f"{scan.name}_pred.h5", dict(attrs or {})))
        else:
            report.files.append(_nifti_mask(scan, labels, out / f"{scan.name}_mask.nii.gz"))
        if overlays:
            report.files.append(_overlay_png(scan, labels, contours, out / f"{scan.name}_overlay.png", overlay_max_frames))
        report.files.append(_points_json(scan, contours, out / f"{scan.name}_points.json"))
        point_rows.extend(_point_rows(scan, contours))
        for t, c in enumerate(contours):
            n_px = int((labels[t] == MYO).sum())
            report.rows.append({
                "scan": scan.name, "frame": t, "myocardium_px": n_px,
                "myocardium_mm2": round(n_px * float(np.prod(scan.spacing_mm[t])), 3),
                "closed_ring": c.closed_ring, "input": str(scan.path),
            })
        report.scans.append(scan.name)
    report.files.append(_write_csv(out / "reference_points.csv", ["scan", "frame", "contour", "point", "x", "y", "x_mm", "y_mm"], point_rows))
    fields = ["scan", "frame", "myocardium_px", "myocardium_mm2", "closed_ring", "input"]
    report.files.append(_write_csv(out / "predictions.csv", fields, [[r[f] for f in fields] for r in report.rows]))
    return report


def predict_scans(cfg: DictConfig) -> PredictReport:
    """``tagseg predict``: load the checkpoint, segment every input scan (``cfg.input``) into ``cfg.output``."""
    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else str(cfg.device)
    ckpt = find_checkpoint(cfg.ckpt)
    check_inputs(find_inputs(cfg.input))  # bad input fails before the model is loaded
    segmenter = load_segmenter(ckpt, device=device)
    report = predict(
        segmenter,
        cfg.input,
        cfg.output,
        batch_size=cfg.batch_size,
        device=device,
        n_points=cfg.n_points,
        overlays=cfg.overlays,
        overlay_max_frames=cfg.overlay_max_frames,
        reader=OmegaConf.to_container(cfg.reader, resolve=True),
        attrs={"config": config_yaml(cfg), "checkpoint": str(ckpt)},
        progress=cfg.progress,
    )
    return report


def _write_csv(path: Path, header: list[str], rows: Iterable[Sequence[Any]]) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path
