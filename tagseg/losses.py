"""The segmentation loss of the paper (METHOD section 4, Eq. 1-4).

* :func:`shape_information` -- the shape-information map SI(g) of a binary mask (Eq. 1-2);
  :func:`shape_information_batch` for stacks of masks (the data pipeline computes SI once per slice).
* :class:`ShapeAwareLoss` -- L_S (Eq. 3), normalised by the ground-truth area.
* :class:`SegmentationLoss` -- L = L_Dice + L_CE + gamma * L_S (Eq. 4) on softmax outputs, with
  DynUNet deep-supervision heads weighted as in MONAI's ``DeepSupervisionLoss`` ("exp" mode).

Functions accept numpy arrays or torch tensors and return the same type.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from monai.losses import DiceLoss
from torch import nn

from tagseg.errors import ConfigError
from tagseg.metrics import check_k, shape_information, shape_information_batch  # noqa: F401  (their home: tagseg.metrics)

Array = Any  # np.ndarray | torch.Tensor


class ShapeAwareLoss(nn.Module):
    """The shape-aware loss L_S (METHOD Eq. 3).

    ``L_S = mean over batch and channels of sum_i |p_i - SI(g)_i| / max(sum_i g_i, 1)``:
    normalised by the ground-truth area (the paper; not the prediction's). A channel whose
    ground truth is empty has SI = 0, so it contributes ``sum_i p_i`` (the predicted area in
    pixels): any foreground predicted on an empty slice is penalised, and the loss is never NaN.

    Args:
        k: temperature of H used when SI is computed from the target (Eq. 1), > 0.

    Example::

        >>> loss = ShapeAwareLoss()
        >>> value = loss(probs, target)            # (B, C, H, W) each; SI from target
        >>> value = loss(probs, target, si=si)     # precomputed SI maps, same shape
    """

    def __init__(self, k: float = 0.2) -> None:
        super().__init__()
        self.k = check_k(k)

    def forward(self, probs: Array, target: Array, si: Array | None = None) -> Array:
        """Args:
            probs: probabilities (B, C, H, W) in [0, 1], numpy or torch.
            target: binary ground truth (B, C, H, W), same type.
            si: SI(target) maps (B, C, H, W), or None to compute them from ``target`` (slow:
                a CPU distance transform; the DataModule precomputes them).

        Returns:
            The scalar loss: a 0-d tensor (differentiable w.r.t. ``probs``) or a numpy float.

        Raises:
            ValueError: shapes differ or are not 4D.
        """
        if probs.ndim != 4 or tuple(probs.shape) != tuple(target.shape):
            raise ValueError(
                f"ShapeAwareLoss: probs and target must both be (B, C, H, W), got {tuple(probs.shape)} and {tuple(target.shape)}"
            )
        if si is None:
            si = shape_information_batch(target, self.k)
        elif tuple(si.shape) != tuple(target.shape):
            raise ValueError(
                f"ShapeAwareLoss: si must have the target's shape {tuple(target.shape)}, got {tuple(si.shape)}"
            )
        if isinstance(probs, torch.Tensor):
            si_t = si.to(device=probs.device, dtype=probs.dtype)
            area = target.to(probs.dtype).sum(dim=(-2, -1)).clamp_min(1.0)
            return ((probs - si_t).abs().sum(dim=(-2, -1)) / area).mean()
        probs = np.asarray(probs, dtype=np.float64)
        area = np.maximum(np.asarray(target, dtype=np.float64).sum(axis=(-2, -1)), 1.0)
        return np.float64((np.abs(probs - np.asarray(si, np.float64)).sum(axis=(-2, -1)) / area).mean())


def deep_supervision_weights(n_heads: int) -> list[float]:
    """Weights of deep-supervision heads: ``2^-i`` normalised to sum 1 (MONAI ``DeepSupervisionLoss`` "exp")."""
    raw = [0.5**i for i in range(n_heads)]
    return [w / sum(raw) for w in raw]


class SegmentationLoss(nn.Module):
    """``L = L_Dice + L_CE + gamma * L_S`` (METHOD Eq. 4) on softmax outputs.

    * L_Dice: MONAI ``DiceLoss(to_onehot_y=True, softmax=True)`` over all C = 1 + K channels
      (``include_background=True`` by default, as MONAI's ``DiceCELoss``), per sample then mean.
    * L_CE: ``torch.nn.functional.cross_entropy`` on the class indices.
      Dice and CE are computed separately (not via ``DiceCELoss``, which gives the same sum) so
      the module can log each part.
    * L_S: :class:`ShapeAwareLoss` between the foreground softmax probabilities (channels 1..K)
      and SI of each foreground class (precomputed ``si`` from the data pipeline, or computed
      from ``label`` on the CPU when None).

    All parts are computed in float32 (safe under mixed precision). Deep-supervision heads
    (B, n_heads, C, H, W), every head at full resolution as DynUNet returns them, are each
    scored against the full-resolution label and summed with :func:`deep_supervision_weights`.

    Args:
        gamma: weight of the shape loss, >= 0 (the paper's grid: 0 ... 1).
        k: temperature of H for SI computed here (Eq. 1), > 0.
        include_background: whether the Dice term includes channel 0.
        smooth_nr: Dice numerator smoothing (MONAI default).
        smooth_dr: Dice denominator smoothing (MONAI default).

    Raises:
        ConfigError: ``gamma < 0`` or ``k <= 0``.
    """

    def __init__(
        self,
        gamma: float = 0.0,
        k: float = 0.2,
        include_background: bool = True,
        smooth_nr: float = 1e-5,
        smooth_dr: float = 1e-5,
    ) -> None:
        super().__init__()
        if not gamma >= 0:
            raise ConfigError(f"loss.gamma: the shape-loss weight must be >= 0, got {gamma}")
        self.gamma = float(gamma)
        self.dice = DiceLoss(
            include_background=include_background,
            to_onehot_y=True,
            softmax=True,
            smooth_nr=smooth_nr,
            smooth_dr=smooth_dr,
        )
        self.shape = ShapeAwareLoss(k=k)

    def forward(
        self, logits: torch.Tensor, label: torch.Tensor, si: torch.Tensor | None = None
    ) -> dict[str, torch.Tensor]:
        """Args:
            logits: (B, C, H, W) raw scores, C = 1 + K (background + K target classes), or
                stacked deep-supervision heads (B, n_heads, C, H, W).
            label: int (B, 1, H, W) class indices 0..K.
            si: float (B, K, H, W) SI maps of the K foreground classes, or None.

        Returns:
            ``{"loss", "dice", "ce", "shape"}``: 0-d float32 tensors; ``loss`` is differentiable.

        Raises:
            ValueError: shapes that do not match the contract above.
        """
        if logits.ndim == 5:
            weights = deep_supervision_weights(logits.shape[1])
            heads = [self._single(logits[:, i], label, si) for i in range(logits.shape[1])]
            return {key: sum(w * h[key] for w, h in zip(weights, heads)) for key in heads[0]}  # type: ignore[misc]
        return self._single(logits, label, si)

    def _single(self, logits: torch.Tensor, label: torch.Tensor, si: torch.Tensor | None) -> dict[str, torch.Tensor]:
        if (
            logits.ndim != 4
            or label.ndim != 4
            or label.shape[1] != 1
            or label.shape[0] != logits.shape[0]
            or label.shape[2:] != logits.shape[2:]
        ):
            raise ValueError(
                f"SegmentationLoss: expected logits (B, C, H, W) and label (B, 1, H, W), got {tuple(logits.shape)} and {tuple(label.shape)}"
            )
        n_classes = logits.shape[1]
        if si is not None and tuple(si.shape) != (logits.shape[0], n_classes - 1, *logits.shape[2:]):
            raise ValueError(
                f"SegmentationLoss: si must be (B, {n_classes - 1}, H, W) for {n_classes} logit channels, got {tuple(si.shape)}"
            )
        logits = logits.float()
        index = label[:, 0].long()
        dice = self.dice(logits, label)
        ce = F.cross_entropy(logits, index)
        probs = torch.softmax(logits, dim=1)[:, 1:]
        target = F.one_hot(index, n_classes).permute(0, 3, 1, 2)[:, 1:].float()
        shape = self.shape(probs, target, si)
        return {"loss": dice + ce + self.gamma * shape, "dice": dice, "ce": ce, "shape": shape}


__all__ = [
    "SegmentationLoss",
    "ShapeAwareLoss",
    "deep_supervision_weights",
    "shape_information",
    "shape_information_batch",
]
