"""The cine <-> tagged CycleGAN as a LightningModule (manual optimisation, Lightning 2.x).

Domains: A = cine, B = tagged. Networks (names used in checkpoints, ``state_dict`` prefixes):

* ``g_ab``: generator A -> B (cine -> tagged; the one ``tagseg translate method=cyclegan`` uses),
* ``g_ba``: generator B -> A,
* ``d_a``: discriminator of domain A images, ``d_b``: discriminator of domain B images.

Losses (METHOD section 3, Zhu et al. reference defaults):

* generators: LSGAN ``MSE(d_b(g_ab(a)), 1) + MSE(d_a(g_ba(b)), 1)`` + ``lambda_cycle`` x
  (``|g_ba(g_ab(a)) - a|_1 + |g_ab(g_ba(b)) - b|_1``) + ``lambda_identity`` x ``lambda_cycle`` x
  (``|g_ab(b) - b|_1 + |g_ba(a) - a|_1``); the discriminators are frozen during this step;
* each discriminator: ``0.5 x (MSE(d(real), 1) + MSE(d(pool(fake)), 0))``, fakes drawn from an
  :class:`~tagseg.models.gan_networks.ImagePool` of 50.

Optimisers: Adam(lr, betas) for both generators together and for both discriminators together;
lr constant for ``n_epochs`` epochs, then linearly decayed over ``n_epochs_decay`` epochs
(:func:`lr_factor`). Train for ``n_epochs + n_epochs_decay`` epochs (the app sets this).

Batches are ``{"A": (b, 1, H, W), "B": (b, 1, H, W)}`` in [-1, 1]
(:class:`~tagseg.data.unpaired.UnpairedDataModule`). Works with DDP (use
``ddp_find_unused_parameters_true``: each step leaves one pair of networks without gradients) and
mixed precision (``self.manual_backward`` and the optimisers Lightning hands over).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch.optim.lr_scheduler import LambdaLR

from tagseg.errors import ConfigError
from tagseg.io.checkpoints import CYCLEGAN, MODEL_KEY
from tagseg.models.gan_networks import ImagePool, build_discriminator, build_generator

#: marker stored in every CycleGAN checkpoint (``checkpoint["tagseg_model"]``)
MODEL_TYPE = CYCLEGAN


def lr_factor(epoch: int, n_epochs: int, n_epochs_decay: int) -> float:
    """Multiplier of the base lr during 0-based ``epoch``.

    ``1`` for the first ``n_epochs`` epochs, then ``1 - (epoch + 1 - n_epochs) / (n_epochs_decay + 1)``:
    a linear ramp that reaches 0 right after the last epoch (reference CycleGAN schedule),
    e.g. n_epochs=100, n_epochs_decay=100: epoch 99 -> 1, epoch 100 -> 100/101, epoch 199 -> 1/101.

    Args:
        epoch: 0-based epoch.
        n_epochs: epochs at the constant lr.
        n_epochs_decay: epochs of linear decay.

    Returns:
        The factor in [0, 1].
    """
    return max(0.0, 1.0 - max(0, epoch + 1 - n_epochs) / float(n_epochs_decay + 1))


class CycleGANModule(pl.LightningModule):
    """CycleGAN between domain A (cine) and domain B (tagged).

    Args:
        generator: :class:`~tagseg.models.gan_networks.ResnetGenerator` arguments (``ngf``,
            ``n_blocks``, ``n_downsampling``, ``dropout``; reference: 64, 9, 2, 0).
        discriminator: :class:`~tagseg.models.gan_networks.PatchDiscriminator` arguments
            (``ndf``, ``n_layers``; reference: 64, 3).
        lambda_cycle: weight of the cycle-consistency L1 terms (10).
        lambda_identity: identity L1 weight relative to ``lambda_cycle`` (0.5; 0 disables it).
        pool_size: generated images kept per discriminator (50; 0 disables the pool).
        lr: Adam learning rate (2e-4).
        betas: Adam betas ((0.5, 0.999)).
        n_epochs: epochs at the constant lr (100).
        n_epochs_decay: epochs of linear decay to 0 (100).
        seed: seeds the image pools (offset by the DDP rank).

    Raises:
        ConfigError: negative weights, a non-positive lr, or bad schedule lengths.
    """

    def __init__(
        self,
        generator: Mapping[str, Any] | None = None,
        discriminator: Mapping[str, Any] | None = None,
        lambda_cycle: float = 10.0,
        lambda_identity: float = 0.5,
        pool_size: int = 50,
        lr: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        n_epochs: int = 100,
        n_epochs_decay: int = 100,
        seed: int = 0,
    ) -> None:
        super().__init__()
        if lambda_cycle < 0 or lambda_identity < 0:
            raise ConfigError(
                f"model.lambda_cycle and model.lambda_identity must be >= 0, got {lambda_cycle}, {lambda_identity}"
            )
        if not lr > 0:
            raise ConfigError(f"model.lr must be > 0, got {lr}")
        if int(n_epochs) < 0 or int(n_epochs_decay) < 0 or int(n_epochs) + int(n_epochs_decay) < 1:
            raise ConfigError(
                f"model.n_epochs and model.n_epochs_decay must be >= 0 with a positive sum, got {n_epochs}, {n_epochs_decay}"
            )
        generator, discriminator = dict(generator or {}), dict(discriminator or {})
        self.save_hyperparameters(
            {
                "generator": generator,
                "discriminator": discriminator,
                "lambda_cycle": float(lambda_cycle),
                "lambda_identity": float(lambda_identity),
                "pool_size": int(pool_size),
                "lr": float(lr),
                "betas": [float(b) for b in betas],
                "n_epochs": int(n_epochs),
                "n_epochs_decay": int(n_epochs_decay),
                "seed": int(seed),
            }
        )
        self.automatic_optimization = False
        self.g_ab = build_generator(generator)
        self.g_ba = build_generator(generator)
        self.d_a = build_discriminator(discriminator)
        self.d_b = build_discriminator(discriminator)
        self.pool_a = ImagePool(pool_size, seed)
        self.pool_b = ImagePool(pool_size, seed + 1)

    @property
    def max_epochs(self) -> int:
        """Length of the whole schedule: ``n_epochs + n_epochs_decay``."""
        return int(self.hparams.n_epochs) + int(self.hparams.n_epochs_decay)

    def check_image_size(self, height: int, width: int, where: str) -> None:
        """Raise :class:`ConfigError` naming ``where`` if the generators cannot take this size."""
        self.g_ab.check_size(height, width, where)

    def forward(self, images_a: torch.Tensor) -> torch.Tensor:
        """Translate cine -> tagged: (B, 1, H, W) in [-1, 1] -> (B, 1, H, W) in [-1, 1]."""
        return self.g_ab(images_a)

    # ---- training ----------------------------------------------------------------------------

    def on_fit_start(self) -> None:
        # distinct pool draws per DDP rank
        self.pool_a.rng.seed(self.hparams.seed * 1000 + 2 * self.global_rank)
        self.pool_b.rng.seed(self.hparams.seed * 1000 + 2 * self.global_rank + 1)

    def generator_loss(
        self, real_a: torch.Tensor, real_b: torch.Tensor
    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Generator objective and the images it produced (``fake_a``, ``fake_b``, ``rec_a``, ``rec_b``).

        Returns:
            ``(loss, parts)``; ``parts`` holds the images (attached to the graph) and the loss terms.
        """
        hp = self.hparams
        fake_b, fake_a = self.g_ab(real_a), self.g_ba(real_b)
        rec_a, rec_b = self.g_ba(fake_b), self.g_ab(fake_a)
        pred_b, pred_a = self.d_b(fake_b), self.d_a(fake_a)
        adv = F.mse_loss(pred_b, torch.ones_like(pred_b)) + F.mse_loss(pred_a, torch.ones_like(pred_a))
        cycle = F.l1_loss(rec_a, real_a) + F.l1_loss(rec_b, real_b)
        loss = adv + hp.lambda_cycle * cycle
        parts = {"fake_a": fake_a, "fake_b": fake_b, "rec_a": rec_a, "rec_b": rec_b, "adv": adv, "cycle": cycle}
        if hp.lambda_identity > 0:
            identity = F.l1_loss(self.g_ab(real_b), real_b) + F.l1_loss(self.g_ba(real_a), real_a)
            loss = loss + hp.lambda_identity * hp.lambda_cycle * identity
            parts["identity"] = identity
        return loss, parts

    @staticmethod
    def discriminator_loss(disc: torch.nn.Module, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
        """LSGAN discriminator loss, halved: ``0.5 * (MSE(d(real), 1) + MSE(d(fake), 0))``."""
        pred_real, pred_fake = disc(real), disc(fake.detach())
        return 0.5 * (
            F.mse_loss(pred_real, torch.ones_like(pred_real)) + F.mse_loss(pred_fake, torch.zeros_like(pred_fake))
        )

    def training_step(self, batch: Mapping[str, torch.Tensor], batch_idx: int) -> None:
        real_a, real_b = batch["A"], batch["B"]
        opt_g, opt_d = self.optimizers()  # type: ignore[misc]

        # generators: discriminators frozen (requires_grad False) while toggled
        with self.toggled_optimizer(opt_g):
            loss_g, parts = self.generator_loss(real_a, real_b)
            opt_g.zero_grad(set_to_none=True)
            self.manual_backward(loss_g)
            opt_g.step()

        # discriminators, on pooled (historic) fakes
        with self.toggled_optimizer(opt_d):
            fake_b = self.pool_b.query(parts["fake_b"].detach())
            fake_a = self.pool_a.query(parts["fake_a"].detach())
            loss_d_b = self.discriminator_loss(self.d_b, real_b, fake_b)
            loss_d_a = self.discriminator_loss(self.d_a, real_a, fake_a)
            opt_d.zero_grad(set_to_none=True)
            self.manual_backward(loss_d_a + loss_d_b)
            opt_d.step()

        logs = {
            "loss/g": loss_g,
            "loss/adv": parts["adv"],
            "loss/cycle": parts["cycle"],
            "loss/d_a": loss_d_a,
            "loss/d_b": loss_d_b,
        }
        if "identity" in parts:
            logs["loss/identity"] = parts["identity"]
        # sync_dist: epoch means over every rank's batches (a few scalars: cheap next to a GAN step)
        self.log_dict(
            {k: v.detach() for k, v in logs.items()},
            prog_bar=False,
            on_step=True,
            on_epoch=True,
            batch_size=real_a.shape[0],
            sync_dist=True,
        )
        self.log("lr", opt_g.param_groups[0]["lr"], on_step=False, on_epoch=True, sync_dist=True)

    def on_train_epoch_end(self) -> None:
        # manual optimisation: the schedulers are ours to step, once per epoch
        for sched in self.lr_schedulers():  # type: ignore[union-attr]
            sched.step()

    def configure_optimizers(self):  # type: ignore[override]
        hp = self.hparams
        betas = tuple(hp.betas)
        opt_g = torch.optim.Adam(list(self.g_ab.parameters()) + list(self.g_ba.parameters()), lr=hp.lr, betas=betas)
        opt_d = torch.optim.Adam(list(self.d_a.parameters()) + list(self.d_b.parameters()), lr=hp.lr, betas=betas)

        def factor(epoch: int) -> float:
            return lr_factor(epoch, hp.n_epochs, hp.n_epochs_decay)

        return [opt_g, opt_d], [LambdaLR(opt_g, factor), LambdaLR(opt_d, factor)]

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[MODEL_KEY] = MODEL_TYPE

    @torch.no_grad()
    def translate_examples(self, real_a: torch.Tensor, real_b: torch.Tensor) -> dict[str, torch.Tensor]:
        """The grid images in eval mode: real A, fake B, reconstructed A, real B, fake A (all [-1, 1])."""
        was_training = self.training
        self.eval()
        try:
            real_a, real_b = real_a.to(self.device), real_b.to(self.device)
            fake_b = self.g_ab(real_a)
            return {
                "real_a": real_a,
                "fake_b": fake_b,
                "rec_a": self.g_ba(fake_b),
                "real_b": real_b,
                "fake_a": self.g_ba(real_b),
            }
        finally:
            self.train(was_training)


__all__ = ["CycleGANModule", "MODEL_TYPE", "lr_factor"]
