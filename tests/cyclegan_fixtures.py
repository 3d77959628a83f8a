"""Tiny unpaired stores and CycleGAN settings shared by the CycleGAN tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tagseg.io.store import write_store
from tagseg.physics.tagging import apply_tagging

TINY_GENERATOR = {"ngf": 4, "n_blocks": 1}
TINY_DISCRIMINATOR = {"ndf": 4, "n_layers": 2}


def blob_images(n: int, size: int | tuple[int, int], tagged: bool, seed: int) -> np.ndarray:
    """Soft discs at jittered centres in [0, 1]; tagged ones carry a 4 px SPAMM grid."""
    h, w = (size, size) if isinstance(size, int) else size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    out = []
    for _ in range(n):
        r = np.hypot(yy - h / 2 - rng.normal(0, 1.5), xx - w / 2 - rng.normal(0, 1.5))
        img = np.exp(-((r / (0.3 * min(h, w))) ** 2)).astype(np.float32)
        if tagged:
            img = apply_tagging(torch.from_numpy(img), spacing_px=4.0).numpy()
        out.append(img / img.max())
    return np.stack(out).astype(np.float32)


def make_store(
    path: Path,
    n: int = 6,
    size: int | tuple[int, int] = 32,
    tagged: bool = False,
    seed: int = 0,
    splits: list[str] | None = None,
    source: str = "toy",
) -> Path:
    """A slice store of ``n`` blob images with random masks, one subject per row, and an extra."""
    images = blob_images(n, size, tagged, seed)
    rng = np.random.default_rng(seed + 1)
    masks = rng.integers(0, 4, images.shape).astype(np.uint8)
    meta = {
        "subject": [f"s{i}" for i in range(n)],
        "slice": [i % 2 for i in range(n)],
        "frame": list(range(n)),
        "n_frames": [n] * n,
        "phase": ["ED"] + [""] * (n - 1),
        "group": ["control"] * n,
        "spacing_mm": [[1.5, 1.5]] * n,
        "source": [source] * n,
        "split": splits if splits is not None else ["train"] * n,
    }
    extras = {"displacement": rng.random((n, 2, *images.shape[1:])).astype(np.float32)}
    return write_store(path, images, masks, meta, extras=extras, name=source)


def one_thread():
    """Run a test with one intra-op thread (many small convolutions: on a shared 2-core machine,
    oversubscribed threads make them ~10x slower); restores the previous setting."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def train_tiny_cyclegan(
    d: Path,
    ckpt_name: str = "last.ckpt",
    generator: dict | None = None,
    discriminator: dict | None = None,
    prefix: str = "",
):
    """A CycleGAN trained one step (seed 0) on two tiny blob stores in ``d``; returns (checkpoint, module)."""
    import lightning as L

    from tagseg.data.unpaired import UnpairedDataModule
    from tagseg.models.cyclegan import CycleGANModule

    torch.set_num_threads(1)
    a = make_store(d / f"{prefix}cine.h5", n=4, seed=0)
    b = make_store(d / f"{prefix}tagged.h5", n=4, tagged=True, seed=3)
    L.seed_everything(0)
    model = CycleGANModule(generator=generator or TINY_GENERATOR, discriminator=discriminator or TINY_DISCRIMINATOR)
    trainer = L.Trainer(
        max_epochs=1,
        limit_train_batches=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=d,
    )
    trainer.fit(model, UnpairedDataModule(a, b, batch_size=2))
    trainer.save_checkpoint(d / ckpt_name)
    return d / ckpt_name, model
