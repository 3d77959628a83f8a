"""A trained segmenter ready to use: the network with the pre-processing it was trained with,
rebuilt from a ``tagseg train`` checkpoint read safely (:mod:`tagseg.io.checkpoints`).

Used by ``tagseg predict``, ``tagseg evaluate`` (the module) and the report's examples.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import torch
from skimage.transform import resize
from torch import nn

from tagseg.conventions import MYO, NORM_MEAN, NORM_STD
from tagseg.data.datamodule import resize_slices
from tagseg.data.prepare import normalise_record
from tagseg.data.records import SliceRecord
from tagseg.data.transforms import normalise
from tagseg.errors import CheckpointError
from tagseg.io.checkpoints import SEGMENTATION, load_checkpoint, resolve_checkpoint
from tagseg.models.networks import main_head, split_output

if TYPE_CHECKING:
    from tagseg.models.segmentation import SegmentationModule


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


def load_segmentation_module(ckpt: str | Path, map_location: str | torch.device = "cpu",
                             key: str = "ckpt") -> tuple["SegmentationModule", Path]:
    """The :class:`SegmentationModule` of a ``tagseg train`` checkpoint, rebuilt from its
    hyper-parameters, weights loaded (strict), in eval mode.

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
    from tagseg.models.segmentation import SegmentationModule

    path = resolve_checkpoint(ckpt, key=key)
    state = load_checkpoint(path, kind=SEGMENTATION, map_location=map_location)
    module = SegmentationModule(**{**state["hyper_parameters"], "init": "default"})
    result = module.load_state_dict(state["state_dict"], strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise CheckpointError(f"{path}: weights do not match the network rebuilt from its hyper-parameters; "
                              f"missing {result.missing_keys[:10]}, unexpected {result.unexpected_keys[:10]}")
    return module.eval(), path


def load_segmenter(ckpt: str | Path, device: str | torch.device = "cpu") -> Segmenter:
    """The trained network and its pre-processing (``image_size``, ``classes``, ``mean``, ``std``)
    from a ``tagseg train`` checkpoint or run folder.

    Returns:
        The :class:`Segmenter` (labels ``(0, *classes)``).

    Raises:
        CheckpointError: see :func:`load_segmentation_module`.
    """
    module, _ = load_segmentation_module(ckpt, map_location=device)
    hp = module.hparams
    return Segmenter(network=module.to(device).eval(), image_size=int(hp["image_size"]), mean=float(hp["mean"]),
                     std=float(hp["std"]), labels=(0, *[int(c) for c in hp["classes"]]))


__all__ = ["Segmenter", "load_segmentation_module", "load_segmenter"]
