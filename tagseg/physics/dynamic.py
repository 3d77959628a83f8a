"""Tags that move and fade: the physics transform beyond the paper's static grid.

For the frames of one slice, the tags are laid at end-diastole (ED) and carried by the tissue:
the tag magnetisation at pixel ``x`` of frame ``t`` is the one tagged at the **ED position**
``X_t(x)`` of the tissue found there. It then fades with the time since ED
(:func:`tagseg.physics.fading.faded_mz`: T1 recovery plus one readout per frame; blood, whose
tags are washed out by inflow, gets a short effective T1).

Where the ED positions come from:

- a store's ``/displacement`` (the phantom's): the **Lagrangian** displacement ``u`` in pixels
  (row, col) of the tissue at each ED pixel, zero at ED, so tissue at ``X`` is at ``X + u(X)`` in
  frame ``t``; ``X_t(x)`` solves ``X + u(X) = x`` (fixed-point iterations,
  :func:`ed_positions_from_displacement`);
- otherwise TV-L1 optical flow (scikit-image) from each frame to ED, estimated from the cine
  itself: ``frame_t(x) ~ ED(x + v(x))``, so ``X_t(x) = x + v(x)`` (:func:`ed_positions_from_flow`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from tagseg.errors import ConfigError, reject_unknown_keys
from tagseg.physics.fading import faded_mz
from tagseg.physics.tagging import tag_mz

#: motion sources of :func:`dynamic_tagging`
MOTIONS = ("displacement", "tvl1", "none")


@dataclass(frozen=True)
class FadingParams:
    """How tags fade over the cycle (config node ``method.fading``).

    Attributes:
        frame_ms: time between frames; null: ``cycle_ms / n_frames`` of each slice.
        cycle_ms: cardiac cycle length used when ``frame_ms`` is null.
        t1_ms: T1 of tissue (myocardium ~950 ms at 1.5 T).
        t1_blood_ms: effective T1 of blood (short: inflowing blood was never tagged).
        blood_labels: mask labels holding blood (ACDC: 1 RV, 3 LV).
        readout_flip_deg: readout flip per frame.
    """

    frame_ms: float | None = None
    cycle_ms: float = 1000.0
    t1_ms: float = 950.0
    t1_blood_ms: float = 150.0
    blood_labels: tuple[int, ...] = (1, 3)
    readout_flip_deg: float = 12.0

    def __post_init__(self) -> None:
        for key in ("cycle_ms", "t1_ms", "t1_blood_ms"):
            if not float(getattr(self, key)) > 0:
                raise ConfigError(f"method.fading.{key} must be > 0 ms, got {getattr(self, key)}")
        if self.frame_ms is not None and not float(self.frame_ms) > 0:
            raise ConfigError(f"method.fading.frame_ms must be > 0 ms (or null), got {self.frame_ms}")
        if not 0 <= float(self.readout_flip_deg) < 90:
            raise ConfigError(f"method.fading.readout_flip_deg must be in [0, 90) degrees, got {self.readout_flip_deg}")

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | FadingParams | None) -> FadingParams:
        """Build from a config mapping; unknown keys are an error naming them."""
        if isinstance(cfg, FadingParams):
            return cfg
        cfg = dict(cfg or {})
        reject_unknown_keys(cfg, {f.name for f in dataclasses.fields(cls)}, "method.fading")
        if "blood_labels" in cfg:
            cfg["blood_labels"] = tuple(int(v) for v in cfg["blood_labels"])
        return cls(**cfg)

    def frame_time_ms(self, n_frames: int) -> float:
        """Time between frames for a slice of ``n_frames`` frames."""
        return float(self.frame_ms) if self.frame_ms is not None else self.cycle_ms / max(int(n_frames), 1)

    def t1_map(self, masks: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
        """Per-pixel T1 (ms), float64, same shape as ``masks``: blood labels get ``t1_blood_ms``."""
        blood = torch.from_numpy(np.isin(masks, self.blood_labels)).to(device)
        return torch.where(
            blood,
            torch.tensor(float(self.t1_blood_ms), dtype=torch.float64, device=device),
            torch.tensor(float(self.t1_ms), dtype=torch.float64, device=device),
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready parameters."""
        d = dataclasses.asdict(self)
        d["blood_labels"] = list(self.blood_labels)
        return d


def pixel_positions(shape: tuple[int, ...], device: torch.device | str = "cpu") -> torch.Tensor:
    """(2, H, W) float64 row and column index of every pixel."""
    h, w = int(shape[-2]), int(shape[-1])
    rows = torch.arange(h, dtype=torch.float64, device=device).view(h, 1).expand(h, w)
    cols = torch.arange(w, dtype=torch.float64, device=device).view(1, w).expand(h, w)
    return torch.stack([rows, cols])


def _sample(field: torch.Tensor, positions: torch.Tensor) -> torch.Tensor:
    """Bilinear samples of ``field`` (T, C, H, W) at pixel ``positions`` (T, 2, H, W) (border clamped)."""
    h, w = field.shape[-2:]
    grid = torch.stack([positions[:, 1] / max(w - 1, 1), positions[:, 0] / max(h - 1, 1)], dim=-1) * 2 - 1
    return torch.nn.functional.grid_sample(field, grid, mode="bilinear", padding_mode="border", align_corners=True)


def ed_positions_from_displacement(displacement: torch.Tensor, n_iter: int = 30) -> torch.Tensor:
    """ED positions ``X`` of the tissue at each pixel ``x`` of each frame, from a Lagrangian displacement.

    Solves ``X + u(X) = x`` by the fixed-point iteration ``X <- x - u(X)`` (contracting while
    the displacement gradient stays below 1, as for any physical myocardial strain).

    Args:
        displacement: (T, 2, H, W) Lagrangian displacement in pixels (row, col) at the ED pixels.
        n_iter: iterations.

    Returns:
        float64 (T, 2, H, W) ED positions (rows, cols).
    """
    u = displacement.to(torch.float64)
    x = pixel_positions(u.shape, u.device).expand_as(u)
    pos = x - u
    for _ in range(n_iter):
        pos = x - _sample(u, pos)
    return pos


def ed_positions_from_flow(cine: np.ndarray, ref: int, **tvl1: Any) -> torch.Tensor:
    """ED positions of each pixel of each frame by TV-L1 optical flow from the frame to ED (scikit-image).

    Args:
        cine: (T, H, W) frames of one slice.
        ref: index of the ED frame in ``cine``.
        **tvl1: options of ``skimage.registration.optical_flow_tvl1`` (``attachment``, ``num_warp`` ...).

    Returns:
        float64 (T, 2, H, W) ED positions (rows, cols); the pixel grid itself for the ED frame.
    """
    from skimage.registration import optical_flow_tvl1

    flow = np.zeros((cine.shape[0], 2, *cine.shape[1:]), np.float64)
    for t in range(cine.shape[0]):
        if t != ref:
            # frame_t(x) ~ ED(x + v(x)): the tissue at x sat at x + v at ED
            flow[t] = optical_flow_tvl1(cine[t], cine[ref], **tvl1)
    return pixel_positions(cine.shape) + torch.from_numpy(flow)


def carried_tag_mz(ed_positions: torch.Tensor, tag: Mapping[str, Any]) -> torch.Tensor:
    """Signed Mz right after tagging, evaluated at each pixel's ED position.

    Args:
        ed_positions: (T, 2, H, W) ED positions in pixels (rows, cols).
        tag: keyword arguments of :func:`~tagseg.physics.tagging.tag_mz`.

    Returns:
        float64 (T, H, W) in [-1, 1].
    """
    pos = ed_positions.to(torch.float64)
    return tag_mz(pos[:, 0], pos[:, 1], **tag)


def dynamic_tagging(
    contrasted: torch.Tensor,
    masks: np.ndarray,
    frames: Sequence[int] | np.ndarray,
    ref: int,
    tag: Mapping[str, Any],
    fading: FadingParams,
    motion: str = "tvl1",
    displacement: np.ndarray | None = None,
    cine: np.ndarray | None = None,
    ed_frame: int = 0,
    n_frames: int | None = None,
    tvl1: Mapping[str, Any] | None = None,
) -> torch.Tensor:
    """Tag the frames of one slice with tags laid at ED, carried by the motion, faded with time.

    Args:
        contrasted: (T, H, W) images after the contrast change.
        masks: (T, H, W) labels (blood labels fade fast).
        frames: (T,) frame index of each image.
        ref: position of the ED image in the batch (where ``u = 0``).
        tag: tag geometry at ED (keyword arguments of :func:`~tagseg.physics.tagging.tag_mz`).
        fading: T1 / readout parameters.
        motion: ``displacement`` (given), ``tvl1`` (estimated from ``cine``) or ``none``.
        displacement: (T, 2, H, W) Lagrangian displacement (the store's convention) when
            ``motion="displacement"``.
        cine: (T, H, W) original frames when ``motion="tvl1"``.
        ed_frame: frame index of ED (time since tagging is ``(frame - ed_frame) mod n_frames``).
        n_frames: frames per cycle (default ``max(frames) + 1``).
        tvl1: options of the optical flow.

    Returns:
        (T, H, W) tagged images, dtype of ``contrasted``.

    Raises:
        ConfigError: unknown ``motion`` or its input missing / of the wrong shape.
    """
    t, h, w = contrasted.shape
    dev = contrasted.device
    frames = np.asarray(frames, dtype=np.int64)
    n_frames = int(n_frames or frames.max() + 1)
    if motion == "displacement":
        if displacement is None or tuple(np.shape(displacement)) != (t, 2, h, w):
            raise ConfigError(
                f"displacement must be (T, 2, H, W) = {(t, 2, h, w)}, got "
                f"{None if displacement is None else np.shape(displacement)}"
            )
        pos = ed_positions_from_displacement(torch.as_tensor(np.asarray(displacement), device=dev))
    elif motion == "tvl1":
        if cine is None:
            raise ConfigError("motion=tvl1 needs the cine frames")
        pos = ed_positions_from_flow(np.asarray(cine, np.float32), ref, **dict(tvl1 or {})).to(dev)
    elif motion == "none":
        pos = pixel_positions((h, w), dev).expand(t, 2, h, w)
    else:
        raise ConfigError(f"motion must be one of {list(MOTIONS)}, got {motion!r}")
    mz0 = carried_tag_mz(pos, tag)
    since_ed = torch.from_numpy((frames - int(ed_frame)) % n_frames).to(dev, torch.float64).view(t, 1, 1)
    mz = faded_mz(mz0, since_ed, fading.frame_time_ms(n_frames), fading.t1_map(masks, dev), fading.readout_flip_deg)
    return contrasted * mz.abs().to(contrasted.dtype)
