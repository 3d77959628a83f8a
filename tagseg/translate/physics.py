"""The physics-driven translators: the paper's static tags, and tags that move and fade.

- :class:`PhysicsTranslator` (``method=physics``): contrast change then SPAMM tags,
  ``contrast(image) * P(x, y)`` with the cached modulation pattern ``P`` (paper 2.1.2).
- :class:`PhysicsDynamicTranslator` (``method=physics_dynamic``): tags laid at ED, carried with
  the motion of each slice (the store's ``/displacement`` or TV-L1 optical flow from the cine),
  and faded with frame time (:mod:`tagseg.physics.dynamic`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from tagseg.errors import ConfigError
from tagseg.physics.contrast import get_contrast
from tagseg.physics.dynamic import MOTIONS, FadingParams, dynamic_tagging, pixel_positions
from tagseg.physics.tagging import tag_mz, tag_pattern
from tagseg.translate.base import BatchRows, Translator, iter_slices
from tagseg.translate.params import PhysicsParams


class PhysicsTranslator(Translator):
    """The paper's physics transform: ``contrast(image) * P`` with SPAMM pattern ``P``.

    Args:
        physics: the ``physics`` config node (see :class:`~tagseg.translate.params.PhysicsParams`).
        batch_size, device, seed, n_figure, progress: see :class:`~tagseg.translate.base.Translator`.

    Example::

        PhysicsTranslator({"spacing_px": 5, "flip_deg": 70}).run("acdc.h5", "physics_acdc.h5")
    """

    method = "physics"

    def __init__(
        self,
        physics: Mapping[str, Any] | PhysicsParams | None = None,
        batch_size: int = 64,
        device: str = "cpu",
        seed: int = 0,
        n_figure: int = 4,
        progress: bool = True,
    ) -> None:
        super().__init__(batch_size=batch_size, device=device, seed=seed, n_figure=n_figure, progress=progress)
        self.physics = PhysicsParams.from_config(physics)
        self.contrast = get_contrast(self.physics.contrast)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "physics": self.physics.as_dict()}

    def _rngs(self, rows: BatchRows) -> list[np.random.Generator] | None:
        if self.physics.jittered or self.physics.contrast == "power":
            return [self.row_rng(r) for r in rows.index]
        return None

    def _spacing(self, rows: BatchRows, k: int) -> np.ndarray | None:
        return rows.meta["spacing_mm"][k] if "spacing_mm" in rows.meta else None

    def patterns(
        self,
        shape: tuple[int, int],
        rows: BatchRows,
        rngs: list[np.random.Generator] | None,
        dtype: torch.dtype = torch.float32,
    ) -> torch.Tensor:
        """The modulation pattern of each image: (H, W) when shared, else (B, H, W)."""
        p = self.physics
        if not p.jittered and p.spacing_mm is None:
            return tag_pattern(shape, **p.tag_kwargs(), device=self.device, dtype=dtype)
        out = []
        grid = pixel_positions(shape, self.device) if p.jittered else None
        for k in range(len(rows.index)):
            kw = p.tag_kwargs(self._spacing(rows, k), rngs[k] if rngs is not None else None)
            if grid is None:
                out.append(tag_pattern(shape, **kw, device=self.device, dtype=dtype))
            else:
                out.append(tag_mz(grid[0], grid[1], **kw).abs().to(dtype))
        return torch.stack(out)

    def translate_batch(self, images: torch.Tensor, rows: BatchRows) -> torch.Tensor:
        rngs = self._rngs(rows)
        pattern = self.patterns(tuple(images.shape[-2:]), rows, rngs, images.dtype)
        return self.contrast(images, rows.masks, rngs) * pattern


class PhysicsDynamicTranslator(PhysicsTranslator):
    """Tags laid at ED, carried by each slice's motion, faded with frame time.

    All frames of one (subject, slice) are translated together. Slices with only some frames
    (ACDC / M&Ms labels at ED and ES) use the frame indices they have.

    Args:
        physics: the ``physics`` config node (tag geometry at ED, contrast, jitter per slice).
        motion: ``auto`` (the store's ``/displacement`` when present, else ``tvl1``),
            ``displacement``, ``tvl1`` (scikit-image TV-L1 optical flow from ED to each frame) or
            ``none`` (tags stay in place but still fade).
        fading: T1 recovery / readout parameters (:class:`~tagseg.physics.dynamic.FadingParams`).
        tvl1: keyword arguments of ``skimage.registration.optical_flow_tvl1``.
        batch_size, device, seed, n_figure, progress: see :class:`~tagseg.translate.base.Translator`.
    """

    method = "physics_dynamic"

    def __init__(
        self,
        physics: Mapping[str, Any] | PhysicsParams | None = None,
        motion: str = "auto",
        fading: Mapping[str, Any] | FadingParams | None = None,
        tvl1: Mapping[str, Any] | None = None,
        batch_size: int = 64,
        device: str = "cpu",
        seed: int = 0,
        n_figure: int = 4,
        progress: bool = True,
    ) -> None:
        super().__init__(physics, batch_size=batch_size, device=device, seed=seed, n_figure=n_figure, progress=progress)
        if motion not in ("auto", *MOTIONS):
            raise ConfigError(f"method.motion must be one of {['auto', *MOTIONS]}, got {motion!r}")
        self.motion = motion
        self.fading = FadingParams.from_config(fading)
        self.tvl1 = dict(tvl1 or {})

    def params(self) -> dict[str, Any]:
        return {**super().params(), "motion": self.motion, "fading": self.fading.as_dict(), "tvl1": self.tvl1}

    def batch_rows(self, meta: Mapping[str, np.ndarray], n_rows: int) -> list[np.ndarray]:
        return list(iter_slices(meta))

    def translate_batch(self, images: torch.Tensor, rows: BatchRows) -> torch.Tensor:
        meta = rows.meta
        frames = np.asarray(meta["frame"], dtype=np.int64)
        is_ed = np.asarray([str(p) == "ED" for p in meta["phase"]]) if "phase" in meta else np.zeros(len(frames), bool)
        ref = int(np.flatnonzero(is_ed)[0]) if is_ed.any() else int(np.argmin(frames))
        motion = self.motion
        if motion == "auto":
            motion = "displacement" if "displacement" in rows.extras else "tvl1"
        if motion == "displacement" and "displacement" not in rows.extras:
            raise ConfigError("method.motion=displacement needs a /displacement dataset in the input store")
        n_frames = int(np.max(meta["n_frames"])) if "n_frames" in meta else int(frames.max()) + 1
        # one geometry per slice (the tags are laid once, at ED), drawn from the ED row's generator
        rng = self.row_rng(rows.index[ref]) if self.physics.jittered else None
        spacing = meta["spacing_mm"][ref] if "spacing_mm" in meta else None
        rngs = self._rngs(rows)
        return dynamic_tagging(
            self.contrast(images, rows.masks, rngs),
            masks=rows.masks,
            frames=frames,
            ref=ref,
            ed_frame=int(frames[ref]) if is_ed.any() else 0,
            n_frames=n_frames,
            tag=self.physics.tag_kwargs(spacing, rng),
            fading=self.fading,
            motion=motion,
            displacement=rows.extras.get("displacement"),
            cine=images.detach().cpu().numpy(),
            tvl1=self.tvl1,
        )
