"""A trained segmenter ready to use: the network with the pre-processing it was trained with,
rebuilt from a ``tagseg train`` checkpoint read safely (:mod:`tagseg.io.checkpoints`); test-time
flips and ensembles. Used by ``tagseg predict`` (also with exported models, :mod:`tagseg.stages.export`),
``tagseg evaluate`` (:func:`load_segmentation_module`) and the report's examples.

The pre-processing is the training chain in NumPy (no torch needed for an exported ONNX model):
each raw frame is scaled to [0, 1] at its own size (``tagseg prepare``), resized bilinearly to the
model's square size exactly as ``torch.nn.functional.interpolate(mode="bilinear",
align_corners=False)`` does in the DataModule (clamped to [0, 1]), and normalised with the
model's mean / std. Class maps go back to each frame's own size by nearest neighbour.

A model trained on a fixed-pixel-size store (``prepare.fit=crop``, :mod:`tagseg.data.grid`) has
``spacing_mm``: each frame given with its own pixel spacing is then resampled to that pixel size and
centred on the square (cropped or zero-padded) as ``tagseg prepare`` did, and the softmax goes back
to the frame's geometry (background where the crop cut it off), so a heart keeps the size in pixels
the network learnt whatever the scanner's pixel size. Frames given without a spacing (slice-store
images, already on the grid) are resized whole.

* ``tta=True``: the softmax is averaged over the four flips training draws from (none, rows,
  columns, both), each flipped back before averaging;
* :class:`Ensemble`: the softmax of several models is averaged (at the common model size when
  they share one, else at the frame size after bilinear resizing).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tagseg.conventions import MYO, NORM_MEAN, NORM_STD
from tagseg.data.grid import from_grid, resampled_shape, to_grid
from tagseg.errors import CheckpointError, ConfigError

if TYPE_CHECKING:
    from tagseg.models.segmentation import SegmentationModule

#: flips averaged by ``tta=flip``: axes of a (B, C, H, W) batch
TTA_FLIPS: tuple[tuple[int, ...], ...] = ((), (2,), (3,), (2, 3))


def scale01(frames: np.ndarray) -> np.ndarray:
    """Each (H, W) frame of (T, H, W) min-max scaled to [0, 1] (a constant frame -> 0), float32."""
    f = np.asarray(frames, np.float32)
    lo = f.min(axis=(1, 2), keepdims=True)
    span = f.max(axis=(1, 2), keepdims=True) - lo
    return np.where(span > 0, (f - lo) / np.where(span > 0, span, 1), 0).astype(np.float32)


def _linear_matrix(n_in: int, n_out: int) -> np.ndarray:
    """(n_out, n_in) weights of torch's 1D linear interpolation with ``align_corners=False``."""
    src = np.maximum((np.arange(n_out, dtype=np.float64) + 0.5) * (n_in / n_out) - 0.5, 0.0)
    i0 = np.minimum(np.floor(src).astype(int), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam = src - i0
    w = np.zeros((n_out, n_in), np.float64)
    np.add.at(w, (np.arange(n_out), i0), 1.0 - lam)
    np.add.at(w, (np.arange(n_out), i1), lam)
    return w.astype(np.float32)


def resize_bilinear(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(..., H, W) -> (..., size) by separable bilinear interpolation (torch ``align_corners=False``, no antialias)."""
    h, w = images.shape[-2:]
    if (h, w) == tuple(size):
        return np.asarray(images, np.float32)
    rows, cols = _linear_matrix(h, size[0]), _linear_matrix(w, size[1])
    return np.asarray(rows @ np.asarray(images, np.float32) @ cols.T, np.float32)


def nearest_index(n_in: int, n_out: int) -> np.ndarray:
    """Source index of each output pixel for a nearest-neighbour resize (pixel centres aligned)."""
    return np.minimum(np.floor((np.arange(n_out) + 0.5) * (n_in / n_out)).astype(int), n_in - 1)


def resize_nearest(images: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(..., H, W) -> (..., size) by nearest neighbour (class maps)."""
    h, w = images.shape[-2:]
    if (h, w) == tuple(size):
        return images
    return images[..., nearest_index(h, size[0])[:, None], nearest_index(w, size[1])[None, :]]


def softmax(logits: np.ndarray, axis: int = 1) -> np.ndarray:
    z = logits - logits.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)


def _torch_logits(module: Any, x: np.ndarray, device: str) -> np.ndarray:
    import torch

    with torch.no_grad():
        out = module(torch.from_numpy(np.ascontiguousarray(x)).to(device))
        if isinstance(out, (tuple, list)):  # (logits, aux) of SegResNetVAE
            out = out[0]
        if out.ndim == 5:  # stacked deep-supervision heads: the full-resolution one
            out = out[:, 0]
        return out.float().cpu().numpy()


@dataclass
class Segmenter:
    """A trained network with the pre-processing it was trained with.

    Attributes:
        network: a torch module returning logits (B, C, S, S) (or ``(logits, aux)``), or any
            object with ``run(x: np.ndarray) -> np.ndarray`` (an exported model).
        image_size: the square input size the network was trained at, in pixels.
        mean: normalisation mean applied after scaling to [0, 1].
        std: normalisation standard deviation.
        labels: the tagseg label written for each output channel (channel 0 = background = 0),
            e.g. ``(0, 2)`` for background + myocardium.
        device: where a torch network runs.
        source: the checkpoint or model folder it came from (recorded in outputs).
        spacing_mm: the pixel size (mm) of the network's input grid when it was trained on a
            fixed-pixel-size store (``prepare.fit=crop``); ``None``: frames are resized whole.
        flips: whether the network was trained on flipped images (``tta=True`` needs it).
    """

    network: Any
    image_size: int
    mean: float = NORM_MEAN
    std: float = NORM_STD
    labels: tuple[int, ...] = (0, MYO)
    device: str = "cpu"
    source: str = ""
    spacing_mm: float | None = None
    flips: bool = True

    def on_grid(self, spacing_mm: Any) -> bool:
        """Whether frames of this pixel spacing are placed on a fixed-pixel-size grid (else resized whole)."""
        return bool(self.spacing_mm) and spacing_mm is not None

    def to(self, device: str) -> Segmenter:
        """Run a torch network on ``device`` from now on."""
        self.device = str(device)
        if hasattr(self.network, "to") and not hasattr(self.network, "run"):
            self.network.to(self.device)
        return self

    def preprocess(self, frames: np.ndarray, scaled: bool = False, spacing_mm: Any = None) -> np.ndarray:
        """(T, H, W) frames -> normalised float32 (T, 1, S, S), the training chain exactly.

        Args:
            frames: raw intensities (any range), or [0, 1] slice-store images with ``scaled``.
            scaled: skip the per-frame [0, 1] scaling (store images already are).
            spacing_mm: (row, col) pixel spacing of the frames, (2,) or (T, 2); used by a model with
                ``spacing_mm`` (see the module docstring).
        """
        unit = np.asarray(frames, np.float32) if scaled else scale01(frames)
        size = (self.image_size, self.image_size)
        if self.on_grid(spacing_mm):
            sp = per_frame_spacing(spacing_mm, len(unit))
            placed = [
                to_grid(resize_bilinear(f, self._resampled(f.shape, s)), self.image_size) for f, s in zip(unit, sp)
            ]
            resized = np.clip(np.stack(placed) if placed else np.zeros((0, *size), np.float32), 0.0, 1.0)
        else:
            resized = np.clip(resize_bilinear(unit, size), 0.0, 1.0)
        return ((resized - np.float32(self.mean)) / np.float32(self.std)).astype(np.float32)[:, None]

    def _resampled(self, shape: tuple[int, ...], spacing: np.ndarray) -> tuple[int, int]:
        return resampled_shape(shape[-2:], spacing, float(self.spacing_mm))  # type: ignore[arg-type]

    def to_frames(self, p: np.ndarray, shape: tuple[int, int], spacing_mm: Any = None) -> np.ndarray:
        """Probabilities (B, C, S, S) on the network grid -> (B, C, H, W) on the frames' own grid
        (the inverse of :meth:`preprocess`; what a crop cut off is background)."""
        if not self.on_grid(spacing_mm):
            return resize_bilinear(p, shape)
        out = np.empty((len(p), p.shape[1], *shape), np.float32)
        for i, s in enumerate(per_frame_spacing(spacing_mm, len(p))):
            rs = self._resampled(shape, s)
            q = from_grid(p[i], rs, fill=0.0)
            q[0] += 1.0 - from_grid(np.ones(p.shape[-2:], np.float32), rs, fill=0.0)
            out[i] = resize_bilinear(q, shape)
        return out

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Network logits (B, C, S, S) of a pre-processed batch (B, 1, S, S)."""
        if hasattr(self.network, "run"):
            return np.asarray(self.network.run(x), np.float32)
        return _torch_logits(self.network, x, self.device)

    def probabilities(self, x: np.ndarray, tta: bool = False) -> np.ndarray:
        """Softmax (B, C, S, S) of a pre-processed batch; with ``tta`` averaged over :data:`TTA_FLIPS`."""
        if not tta:
            return softmax(self.logits(x))
        total = None
        for axes in TTA_FLIPS:
            flipped = np.flip(x, axes).copy() if axes else x
            p = softmax(self.logits(flipped))
            p = np.flip(p, axes) if axes else p
            total = p if total is None else total + p
        return total / len(TTA_FLIPS)

    def segment(
        self,
        frames: np.ndarray,
        batch_size: int = 16,
        device: str | None = None,
        scaled: bool = False,
        tta: bool = False,
        spacing_mm: Any = None,
    ) -> np.ndarray:
        """Label maps of (T, H, W) frames, each at its own size: uint8 (T, H, W) in ``labels``.

        Args:
            frames: raw intensities (any range), rows = image y; or [0, 1] store images with ``scaled``.
            batch_size: frames per forward pass.
            device: where a torch network runs (default: ``self.device``).
            scaled: the frames are slice-store images, already in [0, 1].
            tta: average the softmax over the training flips.
            spacing_mm: the frames' (row, col) pixel spacing, (2,) or (T, 2) (see :meth:`preprocess`).
        """
        if device is not None:
            self.to(str(device))
        return segment_frames([self], frames, batch_size=batch_size, scaled=scaled, tta=tta, spacing_mm=spacing_mm)


@dataclass
class Ensemble:
    """Several segmenters whose softmax outputs are averaged (same labels required)."""

    members: list[Segmenter] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.members:
            raise ConfigError("ckpt: an ensemble needs at least one model")
        labels = {m.labels for m in self.members}
        if len(labels) != 1:
            shown = {m.source or i: m.labels for i, m in enumerate(self.members)}
            raise ConfigError(f"ckpt: ensemble members predict different classes {shown}; expected the same labels")

    @property
    def labels(self) -> tuple[int, ...]:
        return self.members[0].labels

    @property
    def source(self) -> str:
        return ", ".join(m.source for m in self.members)

    def segment(
        self,
        frames: np.ndarray,
        batch_size: int = 16,
        device: str | None = None,
        scaled: bool = False,
        tta: bool = False,
        spacing_mm: Any = None,
    ) -> np.ndarray:
        """As :meth:`Segmenter.segment`, averaging the members' softmax."""
        if device is not None:
            for m in self.members:
                m.to(str(device))
        return segment_frames(
            self.members, frames, batch_size=batch_size, scaled=scaled, tta=tta, spacing_mm=spacing_mm
        )


def check_tta(segmenter: Any, tta: bool) -> None:
    """Refuse test-time flips for a model (or an ensemble member) trained without flipped images.

    Raises:
        ConfigError: naming the model; its flipped views lower Dice instead of raising it.
    """
    if not tta:
        return
    for member in getattr(segmenter, "members", [segmenter]):
        if not getattr(member, "flips", True):
            raise ConfigError(
                f"tta=flip: {member.source or 'the model'} was trained without flipped images (e.g. augment=tagged, make demo's, none or robust_no_geometry), "
                "so its flipped views are views it never saw and lower Dice; use tta=none"
            )


def per_frame_spacing(spacing_mm: Any, n: int) -> np.ndarray:
    """A (2,) or (n, 2) pixel spacing as (n, 2) float64."""
    sp = np.asarray(spacing_mm, np.float64)
    if sp.shape == (2,):
        sp = np.broadcast_to(sp, (n, 2))
    if sp.shape != (n, 2) or not (sp > 0).all():
        raise ConfigError(
            f"spacing_mm: expected (2,) or ({n}, 2) positive pixel spacings, got {np.asarray(spacing_mm).tolist()}"
        )
    return sp


def segment_frames(
    members: Sequence[Segmenter],
    frames: np.ndarray,
    batch_size: int = 16,
    scaled: bool = False,
    tta: bool = False,
    spacing_mm: Any = None,
) -> np.ndarray:
    """Label maps (T, H, W) of frames from the averaged softmax of ``members`` (one member: plain prediction)."""
    frames = np.asarray(frames)
    shape = tuple(frames.shape[1:])
    lut = np.asarray(members[0].labels, np.uint8)
    per_frame = per_frame_spacing(spacing_mm, len(frames)) if spacing_mm is not None else None
    same_size = len({m.image_size for m in members}) == 1 and not any(m.on_grid(per_frame) for m in members)
    out = np.zeros(frames.shape, np.uint8)
    for start in range(0, len(frames), max(1, int(batch_size))):
        chunk = frames[start : start + batch_size]
        sp = None if per_frame is None else per_frame[start : start + batch_size]
        total = None
        for m in members:
            p = m.probabilities(m.preprocess(chunk, scaled, sp), tta=tta)
            if not same_size:
                p = m.to_frames(p, shape, sp)
            total = p if total is None else total + p
        classes = total.argmax(axis=1).astype(np.uint8)
        if same_size:
            classes = resize_nearest(classes, shape)
        out[start : start + len(chunk)] = lut[classes]
    return out


# -- checkpoints (torch and the checkpoint reader are imported only here: exported models need neither) ----------


def find_checkpoint(path: str | Path, key: str = "ckpt") -> Path:
    """The checkpoint file ``path`` means (:func:`tagseg.io.checkpoints.resolve_checkpoint`, ``best``)."""
    from tagseg.io.checkpoints import resolve_checkpoint

    return resolve_checkpoint(path, key=key)


def find_checkpoints(spec: Any, key: str = "ckpt") -> list[Path]:
    """The checkpoints of ``ckpt=``: a file, a run folder, a list of either, or a sweep folder (one per run)
    (:func:`tagseg.io.checkpoints.run_checkpoints`).

    Raises:
        CheckpointError: a missing path, a run folder with several candidates, an empty list.
    """
    from tagseg.io.checkpoints import run_checkpoints

    return run_checkpoints(spec if isinstance(spec, (str, Path)) else list(spec), key=key)


def load_segmentation_module(
    ckpt: str | Path, map_location: Any = "cpu", key: str = "ckpt"
) -> tuple[SegmentationModule, Path]:
    """The :class:`SegmentationModule` of a ``tagseg train`` checkpoint, rebuilt from its
    hyper-parameters, weights loaded (strict), in eval mode (``tagseg evaluate``).

    Args:
        ckpt: a ``.ckpt`` file or a run folder (:func:`~tagseg.io.checkpoints.resolve_checkpoint`).
        map_location: where the weights are loaded.
        key: the config key ``ckpt`` came from (named in errors).

    Returns:
        ``(module, checkpoint file)``.

    Raises:
        CheckpointError: see :func:`~tagseg.io.checkpoints.load_checkpoint`; or weights that do
            not match the rebuilt network (mismatched keys listed).
    """
    from tagseg.io.checkpoints import SEGMENTATION, load_checkpoint, resolve_checkpoint
    from tagseg.models.segmentation import SegmentationModule

    path = resolve_checkpoint(ckpt, key=key)
    state = load_checkpoint(path, kind=SEGMENTATION, map_location=map_location)
    module = SegmentationModule(**{**state["hyper_parameters"], "init": "default"})
    result = module.load_state_dict(state["state_dict"], strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(
            f"{path}: weights do not match the network rebuilt from its hyper-parameters; "
            f"missing {result.missing_keys[:10]}, unexpected {result.unexpected_keys[:10]}"
        )
    return module.eval(), path


def load_segmenter(ckpt: str | Path, device: str = "cpu", key: str = "ckpt") -> Segmenter:
    """The trained network and its pre-processing (``image_size``, ``classes``, ``mean``, ``std``)
    from a ``tagseg train`` checkpoint or run folder.

    Only the network is rebuilt from the hyper-parameters (Lightning is not imported); its
    weights (``net.*``) are loaded strictly.

    Raises:
        CheckpointError: see :func:`~tagseg.io.checkpoints.load_checkpoint`; or weights that do
            not match the rebuilt network (mismatched keys listed).
    """
    from tagseg.io.checkpoints import SEGMENTATION, load_checkpoint, resolve_checkpoint
    from tagseg.runtime.config import instantiate

    path = resolve_checkpoint(ckpt, key=key)
    state = load_checkpoint(path, kind=SEGMENTATION, map_location=device)
    hparams = state["hyper_parameters"]
    classes = [int(c) for c in hparams["classes"]]
    net_cfg = {k: v for k, v in dict(hparams["network"]).items() if k != "out_channels"}
    network = instantiate(
        net_cfg, "model.network", image_size=int(hparams["image_size"]), out_channels=len(classes) + 1
    )
    weights = {k[len("net.") :]: v for k, v in state["state_dict"].items() if k.startswith("net.")}
    others = [k for k in state["state_dict"] if not k.startswith(("net.", "loss_fn."))]
    result = network.load_state_dict(weights, strict=False)
    if result.missing_keys or result.unexpected_keys or others:
        raise CheckpointError(
            f"{path}: weights do not match the network rebuilt from its hyper-parameters; "
            f"missing {result.missing_keys[:10]}, unexpected {(result.unexpected_keys + others)[:10]}"
        )
    spacing = hparams.get("spacing_mm")
    return Segmenter(
        network=network.to(device).eval(),
        image_size=int(hparams["image_size"]),
        mean=float(hparams["mean"]),
        std=float(hparams["std"]),
        labels=(0, *classes),
        device=str(device),
        source=str(path),
        spacing_mm=None if spacing is None else float(spacing),
        flips=bool(hparams.get("flips", True)),
    )


def load_segmenters(ckpt: Any, device: str = "cpu") -> Segmenter | Ensemble:
    """One segmenter for one checkpoint, an :class:`Ensemble` for several (see :func:`find_checkpoints`)."""
    paths = find_checkpoints(ckpt)
    if len(paths) == 1:
        return load_segmenter(paths[0], device)
    return Ensemble([load_segmenter(p, device) for p in paths])


__all__ = [
    "Ensemble",
    "Segmenter",
    "TTA_FLIPS",
    "check_tta",
    "find_checkpoint",
    "find_checkpoints",
    "load_segmentation_module",
    "load_segmenter",
    "load_segmenters",
    "per_frame_spacing",
    "resize_bilinear",
    "resize_nearest",
    "scale01",
    "segment_frames",
    "softmax",
]
