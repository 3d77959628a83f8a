"""``tagseg translate method=cyclegan``: cine -> tagged with a trained CycleGAN generator (A -> B).

The generator ``g_ab`` of a ``tagseg cyclegan`` checkpoint runs in batches (eval mode, no
gradients); images go through the one intensity conversion of :mod:`tagseg.data.intensity`
([0, 1] store -> [-1, 1] GAN -> [0, 1] store). Masks, meta and extras are carried over by
:class:`~tagseg.translate.base.Translator`; ``meta/source`` becomes ``cyclegan(<source>)``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from tagseg.data.intensity import from_gan, to_gan
from tagseg.errors import CheckpointError, ConfigError
from tagseg.io.checkpoints import CYCLEGAN, load_checkpoint, resolve_checkpoint
from tagseg.io.store import store_shape
from tagseg.models.gan_networks import ResnetGenerator
from tagseg.translate.base import BatchRows, TranslateReport, Translator

#: the generator applied by the translator (A = cine -> B = tagged)
GENERATOR_PREFIX = "g_ab."


def load_generator(
    ckpt: str | Path | None, device: str | torch.device = "cpu"
) -> tuple[ResnetGenerator, dict[str, Any]]:
    """The cine -> tagged generator of a ``tagseg cyclegan`` checkpoint, in eval mode.

    Args:
        ckpt: the Lightning checkpoint (e.g. ``logs/cyclegan/runs/<time>/checkpoints/last.ckpt``) or
            its run folder; read with ``weights_only=True`` (:mod:`tagseg.io.checkpoints`).
        device: where the generator is placed.

    Returns:
        ``(generator, hyper_parameters)``.

    Raises:
        CheckpointError: no path, a missing, unreadable or unsafe file, or a checkpoint of another model type.
        ConfigError: generator weights that do not match the recorded architecture.
    """
    if ckpt is None or str(ckpt) == "":
        raise CheckpointError(
            "ckpt: no CycleGAN checkpoint given; pass ckpt=<checkpoints/last.ckpt of a `tagseg cyclegan` run>"
        )
    path = resolve_checkpoint(ckpt)
    state = load_checkpoint(path, kind=CYCLEGAN)
    weights = state.get("state_dict", {})
    if not any(k.startswith(GENERATOR_PREFIX) for k in weights):
        raise CheckpointError(
            f"{path}: a CycleGAN checkpoint without the '{GENERATOR_PREFIX[:-1]}' generator; "
            "expected one written by `tagseg cyclegan`"
        )
    hparams = dict(state.get("hyper_parameters", {}))
    generator = ResnetGenerator(**dict(hparams.get("generator", {})))
    own = {k[len(GENERATOR_PREFIX) :]: v for k, v in weights.items() if k.startswith(GENERATOR_PREFIX)}
    try:
        generator.load_state_dict(own)
    except RuntimeError as exc:
        raise ConfigError(
            f"ckpt: {path}: generator weights do not match its recorded architecture "
            f"{hparams.get('generator')}: {str(exc).splitlines()[0]}"
        ) from None
    return generator.to(device).eval(), hparams


class CycleGANTranslator(Translator):
    """Translate a cine store with the A -> B generator of a trained CycleGAN.

    Args:
        ckpt: the ``tagseg cyclegan`` checkpoint.
        batch_size, device, seed, n_figure, progress: see :class:`~tagseg.translate.base.Translator`.

    Raises:
        ConfigError: see :func:`load_generator` (raised at construction, before any work).
    """

    method = "cyclegan"
    trained_by = "cyclegan"  # the ``tagseg cyclegan`` stage trains the generator first

    def __init__(
        self,
        ckpt: str | Path | None,
        batch_size: int = 32,
        device: str = "cpu",
        seed: int = 0,
        n_figure: int = 4,
        progress: bool = True,
    ) -> None:
        super().__init__(batch_size=batch_size, device=device, seed=seed, n_figure=n_figure, progress=progress)
        self.ckpt = Path(ckpt) if ckpt else None
        self.generator, self.hparams = load_generator(ckpt, self.device)

    def params(self) -> dict[str, Any]:
        return {**super().params(), "ckpt": str(self.ckpt), "generator": dict(self.hparams.get("generator", {}))}

    def run(
        self,
        input: str | Path,
        output: str | Path,
        attrs: Mapping[str, Any] | None = None,
        name: str | None = None,
        **kwargs: Any,
    ) -> TranslateReport:
        """As :meth:`Translator.run` (same arguments), after checking that the generator takes the store's image size.

        Raises:
            ConfigError: the image size is not accepted by the generator (names the store).
            StoreError: see :meth:`Translator.run`.
        """
        _, h, w = store_shape(input)
        self.generator.check_size(h, w, where=f"input store {input}")
        return super().run(input, output, attrs=attrs, name=name, **kwargs)

    def translate_batch(self, images: torch.Tensor, rows: BatchRows) -> torch.Tensor:
        """(B, H, W) in [0, 1] -> G_AB -> (B, H, W) in [0, 1]."""
        return from_gan(self.generator(to_gan(images).unsqueeze(1))).squeeze(1)


__all__ = ["CycleGANTranslator", "load_generator"]
