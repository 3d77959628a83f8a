"""Shared fixtures: a tiny synthetic slice store (rings of myocardium around a blood pool) and composed stage configs.

Stage configs come from one place (as lightning-hydra-template's ``cfg_train_global`` / ``cfg_train``):
``cfg_<stage>_global`` composes ``tagseg/conf/<stage>.yaml`` once per session with CPU / tiny overrides,
``cfg_<stage>`` is a copy of it whose paths point into the test's ``tmp_path``, and ``compose_config``
composes any stage with a test's own overrides (group choices such as ``model=nnunet``) on top of the same.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir
from hydra.core.global_hydra import GlobalHydra
from omegaconf import DictConfig, OmegaConf, open_dict

from tagseg.io.store import write_store
from tagseg.runtime.config import CONF_DIR

os.environ.setdefault("WANDB_MODE", "disabled")

#: the repository root (the folder holding ``tagseg/`` and ``tests/``)
ROOT = Path(__file__).resolve().parents[1]


def run_tagseg(
    args: Sequence[str],
    cwd: Path | str | None = ROOT,
    *,
    root: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    unset: Sequence[str] = (),
    wandb_mode: str | None = "disabled",
    timeout: float = 300,
    python: Sequence[str] = (sys.executable,),
) -> subprocess.CompletedProcess[str]:
    """``python -m tagseg.cli <args>`` in ``cwd`` (``None``: the current folder), output captured as text.

    The child gets this process's environment (so its ``PYTHONPATH``) less the variables in ``unset``,
    with ``WANDB_MODE=wandb_mode`` (unless ``None``), ``TAGSEG_ROOT=root`` when given, then ``env``;
    ``python`` is the interpreter command (e.g. ``torch.distributed.run`` with its flags)."""
    child = {k: v for k, v in os.environ.items() if k not in unset}
    if wandb_mode is not None:
        child["WANDB_MODE"] = wandb_mode
    if root is not None:
        child["TAGSEG_ROOT"] = str(root)
    child.update(env or {})
    return subprocess.run(
        [*python, "-m", "tagseg.cli", *args], cwd=cwd, env=child, capture_output=True, text=True, timeout=timeout
    )


def ring_slices(n: int, size: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` images (N, size, size) in [0, 1] and ACDC masks: LV blood pool (3) inside a myocardial ring (2)."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = np.zeros((n, size, size), np.float32)
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(n):
        cy, cx = size / 2 + rng.uniform(-2, 2, 2)
        r_in = size * rng.uniform(0.12, 0.18)
        r_out = r_in + size * rng.uniform(0.08, 0.12)
        r = np.hypot(yy - cy, xx - cx)
        masks[i][r < r_out] = 2
        masks[i][r < r_in] = 3
        img = np.where(masks[i] == 3, 0.9, np.where(masks[i] == 2, 0.4, 0.1)) + rng.normal(0, 0.03, (size, size))
        images[i] = np.clip(img, 0, 1)
    return images, masks


def write_ring_store(
    path: Path,
    n_subjects: int = 6,
    n_slices: int = 2,
    n_frames: int = 2,
    size: int = 32,
    with_split: bool = True,
    spacing_mm: tuple[float, float] = (1.5, 1.25),
    seed: int = 0,
) -> Path:
    """Write a small store: subject ``s0..``, groups alternating control / dmd, splits by subject."""
    n = n_subjects * n_slices * n_frames
    images, masks = ring_slices(n, size, seed)
    subj = np.repeat(np.arange(n_subjects), n_slices * n_frames)
    meta = {
        "subject": [f"s{s}" for s in subj],
        "slice": np.tile(np.repeat(np.arange(n_slices), n_frames), n_subjects),
        "frame": np.tile(np.arange(n_frames), n_subjects * n_slices),
        "n_frames": np.full(n, n_frames),
        "phase": ["ED" if f == 0 else "" for f in np.tile(np.arange(n_frames), n_subjects * n_slices)],
        "group": ["control" if s % 2 == 0 else "dmd" for s in subj],
        "spacing_mm": np.tile(np.asarray(spacing_mm, np.float32), (n, 1)),
        "source": ["rings"] * n,
    }
    if with_split:
        names = ["test", "val"] + ["train"] * max(0, n_subjects - 2)
        meta["split"] = [names[s % len(names)] if s < len(names) else "train" for s in subj]
    return write_store(path, images, masks, meta, name="rings")


@pytest.fixture
def ring_store(tmp_path: Path) -> Path:
    """A 6-subject, 24-slice 32x32 store with a split column (4 train, 1 val, 1 test subjects)."""
    return write_ring_store(tmp_path / "rings.h5")


@pytest.fixture
def make_ring_store(tmp_path: Path) -> Callable[..., Path]:
    """Factory: ``make_ring_store(name, **kwargs)`` writes another store under ``tmp_path``."""

    def make(name: str = "store.h5", **kwargs) -> Path:
        return write_ring_store(tmp_path / name, **kwargs)

    return make


@pytest.fixture
def single_thread():
    """Run torch on one thread (tiny tensors: threads only contend on a shared CI machine)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_segmentation_module(image_size: int = 32):
    """A small ResNetVAE SegmentationModule (8 filters, Adam 0.01) for fits of a few steps."""
    from tagseg.models.segmentation import SegmentationModule

    return SegmentationModule(
        network={"_target_": "tagseg.models.networks.build_network", "name": "resnetvae", "init_filters": 8},
        loss={"_target_": "tagseg.losses.SegmentationLoss", "gamma": 0.1},
        optimizer={"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.01},
        image_size=image_size,
    )


def train_tiny_checkpoint(tmp: Path, store: Path, path: Path, steps: int = 2, seed: int | None = None) -> Path:
    """Fit :func:`tiny_segmentation_module` for ``steps`` steps on ``store`` (32 px, no augmentation) with
    a Lightning Trainer (seeded when ``seed`` is given) and save its checkpoint at ``path``."""
    import lightning as L

    from tagseg.data.datamodule import SliceDataModule

    if seed is not None:
        L.seed_everything(seed)
    dm = SliceDataModule(stores=[str(store)], image_size=32, batch_size=4, augment={"enabled": False})
    module = tiny_segmentation_module()
    trainer = L.Trainer(
        max_steps=steps,
        limit_val_batches=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=str(tmp),
        accelerator="cpu",
    )
    trainer.fit(module, datamodule=dm)
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="session")
def trained_ckpt(tmp_path_factory) -> Path:
    """A tiny ResNetVAE SegmentationModule trained for 2 steps on a ring store, saved by a Lightning Trainer."""
    tmp = tmp_path_factory.mktemp("ckpt")
    store = write_ring_store(tmp / "rings.h5")
    return train_tiny_checkpoint(tmp, store, tmp / "run" / "checkpoints" / "best.ckpt")


def load_experiment_script(name: str):
    """``experiments/<name>.py`` imported as a module (the scripts are not a package)."""
    import importlib.util
    import sys

    spec = importlib.util.spec_from_file_location(f"experiments_{name}", ROOT / "experiments" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is made
    spec.loader.exec_module(module)
    return module


# --- composed stage configs -------------------------------------------------------------------------------------

#: CPU-only, tiny (32 px, one epoch, 8 filters, no figures / progress) overrides of each stage config
TINY: dict[str, list[str]] = {
    "train": [
        "datamodule.image_size=32",
        "datamodule.batch_size=8",
        "datamodule.num_workers=0",
        "datamodule.augment.enabled=false",
        "trainer=cpu",
        "trainer.max_epochs=1",
        "trainer.num_sanity_val_steps=0",
        "trainer.enable_model_summary=false",
        "callbacks=minimal",
        "print_config=false",
    ],
    "evaluate": ["datamodule.image_size=32", "datamodule.num_workers=0", "trainer.accelerator=cpu"],
    "prepare": [
        "data.n_subjects=4",
        "data.n_slices=1",
        "data.n_frames=2",
        "data.image_size=32",
        "data.fov_mm=96",
        "prepare.figure=false",
    ],
    "translate": [
        "data.n_subjects=1",
        "data.n_slices=1",
        "data.n_frames=2",
        "data.image_size=32",
        "data.fov_mm=96",
        "method.progress=false",
    ],
    "predict": ["progress=false", "overlays=false", "device=cpu"],
    "cyclegan": [
        "model.generator.ngf=4",
        "model.generator.n_blocks=1",
        "model.discriminator.ndf=4",
        "model.discriminator.n_layers=2",
        "model.n_epochs=1",
        "model.n_epochs_decay=1",
        "datamodule.batch_size=2",
        "trainer.accelerator=cpu",
        "+trainer.limit_train_batches=2",
        "+trainer.enable_progress_bar=false",
        "callbacks.cyclegan_grid.every_n_epochs=1",
        "callbacks.cyclegan_grid.n_examples=2",
    ],
}
#: tiny network width for the default model; left out when a test picks another model or network
TINY_MODEL = ["+model.network.init_filters=8"]


def override_key(override: str) -> str:
    """``+trainer.limit_train_batches=2`` -> ``trainer.limit_train_batches`` (the key an override sets)."""
    return override.partition("=")[0].lstrip("+~")


def tiny_overrides(
    name: str = "train", *, without: tuple[str, ...] = (), extra: list[str] | tuple[str, ...] = (), model: bool = True
) -> list[str]:
    """A test's own tiny override list built on :data:`TINY`: ``TINY[name]`` (and, for ``train`` with ``model``,
    :data:`TINY_MODEL`) less the overrides of the keys in ``without``, then ``extra``. For argv lists
    (``tagseg train ...`` subprocesses) and compositions that do not go through :func:`compose_stage`."""
    base = [*TINY.get(name, []), *(TINY_MODEL if name == "train" and model else [])]
    return [o for o in base if override_key(o) not in without] + list(extra)


def compose_stage(name: str, overrides: list[str] | tuple[str, ...] = (), tiny: bool = True) -> DictConfig:
    """``tagseg/conf/<name>.yaml`` with the tiny overrides (``tiny=True``), then ``overrides``."""
    base = list(TINY.get(name, [])) if tiny else []
    own_network = any(o.startswith(("model=", "~model", "model.network.name=")) for o in overrides)
    if tiny and name == "train" and not own_network:
        base += TINY_MODEL
    GlobalHydra.instance().clear()
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(config_name=name, overrides=base + list(overrides))


def in_tmp(cfg: DictConfig, tmp_path: Path) -> DictConfig:
    """A copy of ``cfg`` reading and writing under ``tmp_path`` (data, logs, cache; run folder ``tmp_path/run``)."""
    cfg = copy.deepcopy(cfg)
    with open_dict(cfg):
        cfg.paths.root_dir = str(tmp_path)
        cfg.paths.output_dir = str(tmp_path / "run")
    return cfg


@pytest.fixture
def compose_config(tmp_path: Path) -> Callable[..., DictConfig]:
    """Factory: ``compose_config(stage, *overrides, tiny=True, output_dir=None, store=None, resolve=False)``.

    A stage config with its paths under ``tmp_path``: run folder ``output_dir`` (default ``tmp_path/run``),
    ``data.store=store`` when given; ``resolve=True`` resolves every interpolation (one that cannot fails here).
    """

    def make(
        name: str = "train",
        *overrides: str,
        tiny: bool = True,
        output_dir: Path | str | None = None,
        store: Path | str | None = None,
        resolve: bool = False,
    ) -> DictConfig:
        paths = [f"paths.root_dir={tmp_path}", f"paths.output_dir={output_dir or tmp_path / 'run'}"]
        if store is not None:
            paths.append(f"data.store={store}")
        cfg = compose_stage(name, [*paths, *overrides], tiny=tiny)
        if resolve:
            OmegaConf.resolve(cfg)
        return cfg

    return make


@pytest.fixture(scope="session")
def cfg_train_global() -> DictConfig:
    return compose_stage("train")


@pytest.fixture(scope="session")
def cfg_evaluate_global() -> DictConfig:
    return compose_stage("evaluate")


@pytest.fixture(scope="session")
def cfg_prepare_global() -> DictConfig:
    return compose_stage("prepare")


@pytest.fixture(scope="session")
def cfg_translate_global() -> DictConfig:
    return compose_stage("translate")


@pytest.fixture(scope="session")
def cfg_predict_global() -> DictConfig:
    return compose_stage("predict")


@pytest.fixture
def cfg_train(cfg_train_global: DictConfig, tmp_path: Path) -> DictConfig:
    """``tagseg train``'s config: tiny ResNetVAE, one epoch on the CPU, paths under ``tmp_path``."""
    return in_tmp(cfg_train_global, tmp_path)


@pytest.fixture
def cfg_evaluate(cfg_evaluate_global: DictConfig, tmp_path: Path) -> DictConfig:
    """``tagseg evaluate``'s config (set ``ckpt``), 32 px on the CPU, paths under ``tmp_path``."""
    return in_tmp(cfg_evaluate_global, tmp_path)


@pytest.fixture
def cfg_prepare(cfg_prepare_global: DictConfig, tmp_path: Path) -> DictConfig:
    """``tagseg prepare``'s config: a 4-subject 32 px phantom store under ``tmp_path/data``."""
    return in_tmp(cfg_prepare_global, tmp_path)


@pytest.fixture
def cfg_translate(cfg_translate_global: DictConfig, tmp_path: Path) -> DictConfig:
    """``tagseg translate``'s config: physics on a 1-subject 32 px cine phantom, paths under ``tmp_path``."""
    return in_tmp(cfg_translate_global, tmp_path)


@pytest.fixture
def cfg_predict(cfg_predict_global: DictConfig, tmp_path: Path) -> DictConfig:
    """``tagseg predict``'s config (set ``ckpt`` and ``input``), CPU, no overlays, output ``tmp_path/run``."""
    return in_tmp(cfg_predict_global, tmp_path)
