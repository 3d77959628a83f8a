"""A Lightning callback that saves a CycleGAN progress grid every N epochs.

Rows are fixed examples (the same ones every time, from the DataModule's ``examples``); columns
are real A (cine), fake B (cine -> tagged), reconstructed A, real B (tagged), fake A
(tagged -> cine). The PNG goes to ``<dirpath>/epoch_<NNN>.png`` and, when a W&B logger is
attached, to W&B as the image ``cyclegan/grid``.
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only

from tagseg.data.intensity import from_gan
from tagseg.errors import ConfigError

log = logging.getLogger(__name__)

COLUMNS = (
    ("real_a", "real A (cine)"),
    ("fake_b", "fake B"),
    ("rec_a", "reconstructed A"),
    ("real_b", "real B (tagged)"),
    ("fake_a", "fake A"),
)


def save_grid(images: dict[str, torch.Tensor], path: str | Path, title: str = "") -> Path:
    """Write the 5-column grid (see the module docstring) as a PNG.

    Args:
        images: the :meth:`CycleGANModule.translate_examples` output, (n, 1, H, W) each in [-1, 1].
        path: PNG path (folders are created).
        title: figure title.

    Returns:
        The path.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(int(images[k].shape[0]) for k, _ in COLUMNS)
    fig, axes = plt.subplots(n, len(COLUMNS), figsize=(2.0 * len(COLUMNS), 2.0 * n + 0.4), squeeze=False)
    for c, (key, label) in enumerate(COLUMNS):
        arr = from_gan(images[key].detach().float().cpu())[:, 0].numpy()
        for r in range(n):
            ax = axes[r, c]
            ax.imshow(arr[r], cmap="gray", vmin=0.0, vmax=1.0, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(label, fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


class CycleGANGrid(pl.Callback):
    """Save the progress grid every ``every_n_epochs`` epochs and after the last one.

    Args:
        dirpath: folder of the PNGs (the run folder's ``grids/`` in ``conf/cyclegan.yaml``).
        every_n_epochs: period in epochs (>= 1).
        n_examples: rows (fixed examples per domain).
    """

    def __init__(self, dirpath: str | Path, every_n_epochs: int = 5, n_examples: int = 4) -> None:
        if int(every_n_epochs) < 1 or int(n_examples) < 1:
            raise ConfigError(
                f"callbacks.cyclegan_grid: every_n_epochs and n_examples must be >= 1, got {every_n_epochs}, {n_examples}"
            )
        self.dirpath = Path(dirpath)
        self.every_n_epochs, self.n_examples = int(every_n_epochs), int(n_examples)
        self.saved: list[Path] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        last = trainer.max_epochs is not None and epoch + 1 >= trainer.max_epochs
        if (epoch + 1) % self.every_n_epochs == 0 or last:
            self._save(trainer, pl_module, epoch)

    @rank_zero_only
    def _save(self, trainer: pl.Trainer, pl_module: pl.LightningModule, epoch: int) -> None:
        examples = trainer.datamodule.examples(self.n_examples)  # type: ignore[attr-defined]
        images = pl_module.translate_examples(examples["A"], examples["B"])  # type: ignore[operator]
        path = save_grid(images, self.dirpath / f"epoch_{epoch + 1:03d}.png", title=f"epoch {epoch + 1}")
        self.saved.append(path)
        log.info("cyclegan grid: %s", path)
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.log_image(
                    key="cyclegan/grid",
                    images=[str(path)],
                    step=trainer.global_step,
                    caption=[f"epoch {epoch + 1}: " + ", ".join(label for _, label in COLUMNS)],
                )


__all__ = ["COLUMNS", "CycleGANGrid", "save_grid"]
