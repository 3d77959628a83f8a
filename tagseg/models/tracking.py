"""The learned tag tracker's network: a UNet that refines a Lagrangian displacement field.

Given the end-diastolic reference frame ``I0``, a later frame ``It`` and a prior estimate ``u`` of
the Lagrangian displacement at the ED pixels (in pixels, (row, col); the store's ``/displacement``
convention), the module warps ``It`` back onto the ED grid with the prior,
``W(X) = It(X + u(X))``, and a MONAI ``BasicUNet`` reads ``(I0, W)`` and predicts the residual
displacement, so ``u_t = u + net(I0, W)``. The residual left by a good prior is a fraction of a tag
spacing, which a local network resolves without the tag-jumping ambiguity of matching whole tag
periods; the tracker (:mod:`tagseg.strain.learned`) takes the previous frame's field as the prior
and applies the module more than once per frame.

Frames are normalised per frame (zero mean, unit standard deviation) inside the module, so
scaling and tag fading of the input need no convention beyond "float images".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import lightning as L
import torch
from monai.networks.nets import BasicUNet
from torch import nn

from tagseg.errors import ConfigError
from tagseg.io.checkpoints import MODEL_KEY, TRACKER

#: the network's levels halve the size this many times: inputs are padded to a multiple of 2**DEPTH
DEPTH = 4


def normalise_frames(frames: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """Zero mean, unit standard deviation per image of a (B, C, H, W) batch."""
    mean = frames.mean(dim=(-2, -1), keepdim=True)
    std = frames.std(dim=(-2, -1), keepdim=True)
    return (frames - mean) / (std + eps)


def warp_to_reference(frames: torch.Tensor, displacement: torch.Tensor) -> torch.Tensor:
    """Sample ``frames`` at the displaced ED positions: ``W(X) = frames(X + u(X))`` (bilinear, border clamped).

    Args:
        frames: (B, C, H, W) images.
        displacement: (B, 2, H, W) Lagrangian displacement in pixels (row, col) at the ED pixels.

    Returns:
        (B, C, H, W) the frames pulled back onto the ED grid.
    """
    b, _, h, w = frames.shape
    rows = torch.arange(h, dtype=frames.dtype, device=frames.device).view(1, h, 1)
    cols = torch.arange(w, dtype=frames.dtype, device=frames.device).view(1, 1, w)
    r = rows + displacement[:, 0]
    c = cols + displacement[:, 1]
    grid = torch.stack([c / max(w - 1, 1), r / max(h - 1, 1)], dim=-1) * 2 - 1
    return nn.functional.grid_sample(frames, grid, mode="bilinear", padding_mode="border", align_corners=True)


def pad_to_multiple(x: torch.Tensor, multiple: int = 2**DEPTH) -> tuple[torch.Tensor, tuple[int, int]]:
    """Replicate-pad the last two dimensions up to a multiple of ``multiple``; return the original (H, W)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw:
        x = nn.functional.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, (h, w)


class TrackingModule(L.LightningModule):
    """Residual displacement regression between the ED frame and a later frame (a LightningModule).

    Args:
        features: ``BasicUNet`` channel numbers (six: five levels and the last up-sampling).
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        max_residual_px: the predicted residual is ``max_residual_px * tanh(...)``: bounded, so an
            untrained or confused network never throws points across the image.

    Batches (training and validation) are dicts of tensors:
        ``reference`` (B, 1, H, W) the ED frame; ``frame`` (B, 1, H, W) frame t; ``prior``
        (B, 2, H, W) the displacement to refine; ``target`` (B, 2, H, W) the true Lagrangian
        displacement of frame t; ``weight`` (B, 1, H, W) where the loss counts (the ED myocardium).

    Example:
        >>> module = TrackingModule(features=(8, 8, 16, 16, 32, 8))
        >>> ref = torch.rand(1, 1, 32, 32)
        >>> module(ref, ref, torch.zeros(1, 2, 32, 32)).shape
        torch.Size([1, 2, 32, 32])
    """

    def __init__(
        self,
        features: Sequence[int] = (16, 16, 32, 32, 64, 16),
        lr: float = 2e-3,
        weight_decay: float = 0.0,
        max_residual_px: float = 3.0,
    ) -> None:
        super().__init__()
        features = tuple(int(f) for f in features)
        if len(features) != 6 or min(features) < 1:
            raise ConfigError(f"tracker.model.features: expected six positive channel numbers, got {list(features)}")
        if not lr > 0:
            raise ConfigError(f"tracker.model.lr: expected > 0, got {lr}")
        if not max_residual_px > 0:
            raise ConfigError(f"tracker.model.max_residual_px: expected > 0, got {max_residual_px}")
        self.save_hyperparameters(
            {
                "features": list(features),
                "lr": float(lr),
                "weight_decay": float(weight_decay),
                "max_residual_px": float(max_residual_px),
            }
        )
        self.net = BasicUNet(
            spatial_dims=2,
            in_channels=2,
            out_channels=2,
            features=features,
            norm=("instance", {"affine": True}),
            act=("LeakyReLU", {"negative_slope": 0.1, "inplace": True}),
        )

    def forward(self, reference: torch.Tensor, frame: torch.Tensor, prior: torch.Tensor) -> torch.Tensor:
        """The refined displacement ``prior + residual`` (B, 2, H, W) in pixels (row, col).

        Args:
            reference: (B, 1, H, W) ED frames.
            frame: (B, 1, H, W) frames t.
            prior: (B, 2, H, W) displacement estimate of frame t at the ED pixels.
        """
        warped = warp_to_reference(frame, prior)
        x = torch.cat([normalise_frames(reference), normalise_frames(warped)], dim=1)
        x, (h, w) = pad_to_multiple(x)
        residual = self.net(x)[..., :h, :w]
        return prior + self.hparams.max_residual_px * torch.tanh(residual / self.hparams.max_residual_px)

    def loss(self, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """Weighted Charbonnier loss of the refined field and its weighted RMSE (pixels)."""
        pred = self(batch["reference"], batch["frame"], batch["prior"])
        sq = (pred - batch["target"]).square().sum(dim=1, keepdim=True)
        weight = batch["weight"]
        total = weight.sum().clamp_min(1e-6)
        loss = (torch.sqrt(sq + 1e-4) * weight).sum() / total
        rmse = torch.sqrt((sq * weight).sum() / total)
        return loss, rmse

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss, rmse = self.loss(batch)
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/rmse_px", rmse)
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        loss, rmse = self.loss(batch)
        self.log("val/loss", loss)
        self.log("val/rmse_px", rmse, prog_bar=True)

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[MODEL_KEY] = TRACKER  # the model type the tracker checks when loading

    def configure_optimizers(self) -> Any:
        optimizer = torch.optim.Adam(self.parameters(), lr=self.hparams.lr, weight_decay=self.hparams.weight_decay)
        total = self.trainer.estimated_stepping_batches if self.trainer is not None else 1
        schedule = torch.optim.lr_scheduler.OneCycleLR(
            optimizer, max_lr=self.hparams.lr, total_steps=max(int(total), 1), pct_start=0.1
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": schedule, "interval": "step"}}

    @classmethod
    def from_checkpoint_state(cls, state: dict[str, Any]) -> TrackingModule:
        """Rebuild the module from a checkpoint dict read by :func:`~tagseg.io.checkpoints.load_checkpoint`."""
        module = cls(**state["hyper_parameters"])
        module.load_state_dict(state["state_dict"])
        return module.eval()


__all__ = ["TrackingModule", "normalise_frames", "pad_to_multiple", "warp_to_reference"]
