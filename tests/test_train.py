"""tagseg.stages.train: fit + test + results, resume, init_from, W&B offline, evaluate, bad input."""

from __future__ import annotations

import json
import os
from pathlib import Path
from types import SimpleNamespace

import h5py
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import run_tagseg
from lightning.pytorch.strategies import SingleDeviceStrategy

from tagseg.errors import ConfigError, StoreError, TagsegError
from tagseg.models.segmentation import SegmentationModule
from tagseg.runtime.config import set_torch_threads
from tagseg.stages.evaluate import evaluate
from tagseg.stages.train import fit_progress, load_weights, one_device_trainer, train

pytestmark = pytest.mark.usefixtures("single_thread")

ROOT = Path(__file__).resolve().parents[1]
TINY_NNUNET = ["model=nnunet", "+model.network.strides=[1,2,2]", "+model.network.filters=[4,8,16]"]


def test_train_writes_metrics_and_summary(compose_config, tmp_path, ring_store):
    result = train(compose_config("train", output_dir=tmp_path / "run", store=ring_store))
    run = tmp_path / "run"
    assert result["run_dir"] == run and result["global_step"] == 2 and result["epochs"] == 1
    assert result["best_ckpt"].exists() and result["last_ckpt"] == run / "checkpoints" / "last.ckpt"
    assert (run / "config.yaml").exists() and list((run / "csv").glob("version_*/metrics.csv"))
    logged = pd.read_csv(next((run / "csv").glob("version_*/metrics.csv")))
    for column in (
        "train/loss",
        "train/dice_loss",
        "train/ce",
        "train/shape",
        "train/vae",
        "val/dice",
        "val/hd95_mm",
        "val/loss",
    ):
        assert column in logged.columns, column
    df = pd.read_csv(run / "test_metrics.csv")
    assert list(df.columns[:6]) == ["subject", "slice", "frame", "group", "dice", "hd95_mm"]
    assert len(df) == 4 and set(df["subject"]) == {"s0"}  # s0 is the test subject of the fixture
    summary = json.loads((run / "summary.json").read_text())
    assert summary == result["summary"]
    assert summary["n_images"] == 4
    assert summary["dice_mean"] == pytest.approx(df["dice"].mean())
    assert summary["dice_std"] == pytest.approx(df["dice"].std(ddof=1))
    assert summary["hd95_mm_mean"] == pytest.approx(df["hd95_mm"].mean())
    assert summary["hd95_mm_std"] == pytest.approx(df["hd95_mm"].std(ddof=1))
    assert set(summary["per_frame"]) == {"0", "1"} and summary["per_frame"]["0"]["n_images"] == 2
    assert set(summary["per_group"]) == {"control"}
    assert ((df["dice"] >= 0) & (df["dice"] <= 1)).all() and np.isfinite(df["hd95_mm"]).all()


def test_resume_from_last_continues_the_run(compose_config, tmp_path, ring_store):
    run = tmp_path / "run"
    first = train(compose_config("train", "test=false", output_dir=run, store=ring_store))
    assert first["global_step"] == 2
    second = train(
        compose_config(
            "train",
            "test=false",
            "trainer.max_epochs=2",
            f"ckpt_path={first['last_ckpt']}",
            output_dir=run,
            store=ring_store,
        )
    )
    assert second["global_step"] == 4 and second["epochs"] == 2
    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert state["global_step"] == 4 and state["epoch"] == 1


def test_nnunet_fits_two_steps(compose_config, tmp_path, ring_store):
    result = train(compose_config("train", *TINY_NNUNET, "test=false", output_dir=tmp_path / "run", store=ring_store))
    assert result["global_step"] == 2
    hp = torch.load(result["last_ckpt"], map_location="cpu", weights_only=True)["hyper_parameters"]
    assert hp["network"]["name"] == "nnunet" and hp["image_size"] == 32


def test_init_from_strict_and_relaxed(compose_config, tmp_path, ring_store):
    source = train(compose_config("train", "test=false", output_dir=tmp_path / "a", store=ring_store))
    same = SegmentationModule.load_from_checkpoint(source["best_ckpt"], map_location="cpu", weights_only=True)
    fresh = SegmentationModule(**{k: v for k, v in same.hparams.items()})
    assert load_weights(fresh, tmp_path / "a") == {"missing": [], "unexpected": [], "mismatched": []}
    for key, value in same.state_dict().items():
        assert torch.equal(value, fresh.state_dict()[key]), key
    with pytest.raises(
        ConfigError, match=r"init_from .*best.ckpt: weights do not match the model \(missing \d+: net\..*unexpected \d+"
    ):
        train(
            compose_config(
                "train", *TINY_NNUNET, f"init_from={source['best_ckpt']}", output_dir=tmp_path / "b", store=ring_store
            )
        )
    assert not (tmp_path / "b" / "checkpoints").exists()
    wider = compose_config(
        "train",
        "model.network.init_filters=16",
        f"init_from={tmp_path / 'a'}",
        "init_from_strict=false",
        "test=false",
        "trainer.max_steps=1",
        output_dir=tmp_path / "c",
        store=ring_store,
    )
    assert train(wider)["global_step"] == 1


def test_wandb_offline_writes_a_run_dir(compose_config, tmp_path, ring_store, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    cfg = compose_config(
        "train",
        "logger=wandb",
        "test=false",
        "trainer.max_steps=2",
        "callbacks=default",
        "~callbacks.rich_progress_bar",
        output_dir=tmp_path / "run",
        store=ring_store,
    )
    train(cfg)
    runs = list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and list(runs[0].glob("*.wandb"))
    import wandb

    assert wandb.run is None, "every job must end its W&B run"


def test_evaluate_a_checkpoint_alone(compose_config, tmp_path, ring_store):
    trained = train(compose_config("train", "test=false", output_dir=tmp_path / "run", store=ring_store))
    cfg = compose_config(
        "evaluate",
        f"ckpt={tmp_path / 'run'}",
        "split=val",
        "trainer=cpu",
        "trainer.enable_model_summary=false",
        output_dir=tmp_path / "eval",
        store=ring_store,
    )
    result = evaluate(cfg)
    assert result["checkpoint"] == trained["best_ckpt"]
    df = pd.read_csv(tmp_path / "eval" / "test_metrics.csv")
    assert len(df) == 4 and set(df["subject"]) == {"s1"}  # the fixture's val subject
    assert result["summary"]["split"] == "val" and result["summary"]["dice_mean"] == pytest.approx(df["dice"].mean())


def test_fit_progress_of_a_spawned_fit_comes_from_its_last_checkpoint(tmp_path):
    last = tmp_path / "last.ckpt"
    torch.save({"epoch": 2, "global_step": 9, "state_dict": {}}, last)  # Lightning's epoch is 0-based
    spawn_parent = SimpleNamespace(world_size=2, current_epoch=0, global_step=0)  # its counters never move
    assert fit_progress(spawn_parent, last) == (3, 9)
    assert fit_progress(spawn_parent, None) == (0, 0)
    one_device = SimpleNamespace(world_size=1, current_epoch=4, global_step=16)
    assert fit_progress(one_device, last) == (4, 16)  # a one-device trainer knows its own counters


def test_one_device_trainer_keeps_the_ddp_config_but_not_its_devices(compose_config, tmp_path, ring_store):
    cfg = compose_config(
        "train",
        "trainer=ddp",
        "trainer.accelerator=cpu",
        "trainer.max_epochs=7",
        output_dir=tmp_path / "run",
        store=ring_store,
    )
    assert cfg.trainer.devices == 2 and cfg.trainer.sync_batchnorm
    trainer = one_device_trainer(cfg.trainer, logger=False)
    assert trainer.world_size == 1 and trainer.num_devices == 1 and isinstance(trainer.strategy, SingleDeviceStrategy)
    assert trainer.max_epochs == 7 and trainer.default_root_dir == str(tmp_path / "run")


def test_torch_threads_sets_this_process_and_the_ranks_it_starts(monkeypatch):
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    before = torch.get_num_threads()
    set_torch_threads(None)
    assert torch.get_num_threads() == before and os.environ["OMP_NUM_THREADS"] == "1"
    set_torch_threads(2)
    assert torch.get_num_threads() == 2 and os.environ["OMP_NUM_THREADS"] == "2"
    with pytest.raises(ConfigError, match=r"torch_threads: expected null or an integer >= 1, got '4'"):
        set_torch_threads("4")


def _drop_key(store: Path) -> Path:
    with h5py.File(store, "a") as f:
        del f["masks"]
    return store


@pytest.mark.parametrize(
    ("overrides", "error", "match"),
    [
        (["datamodule.stores=[{missing}]"], StoreError, r"nope\.h5: slice store not found"),
        (["model.network.name=unet"], ConfigError, r"unknown network 'unet'"),
        (["loss.gamma=-0.5"], ConfigError, r"loss.gamma: the shape-loss weight must be >= 0, got -0.5"),
        (["datamodule.image_size=40"], ConfigError, r"image_size 40x40 is not accepted by network 'resnetvae'"),
        (["ckpt_path={missing}"], ConfigError, r"ckpt_path: .*nope\.h5 does not exist"),
        (["torch_threads=0"], ConfigError, r"torch_threads: expected null or an integer >= 1, got 0"),
    ],
)
def test_bad_input_fails_before_training(compose_config, tmp_path, ring_store, overrides, error, match):
    overrides = [o.format(missing=tmp_path / "nope.h5") for o in overrides]
    with pytest.raises(error, match=match):
        train(compose_config("train", *overrides, output_dir=tmp_path / "run", store=ring_store))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_store_without_required_key(compose_config, tmp_path, ring_store):
    with pytest.raises(StoreError, match=r"rings\.h5: missing required key\(s\) \['masks'\]"):
        train(compose_config("train", output_dir=tmp_path / "run", store=_drop_key(ring_store)))


@pytest.mark.slow
def test_cli_bad_input_is_one_line_and_exit_2(tmp_path):
    proc = run_tagseg(["train", f"datamodule.stores=[{tmp_path / 'nope.h5'}]"], ROOT, root=tmp_path, timeout=120)
    assert proc.returncode == 2
    errors = [line for line in proc.stderr.splitlines() if line.startswith("tagseg: error:")]
    assert len(errors) == 1 and "nope.h5: slice store not found" in errors[0]
    assert "Traceback" not in proc.stderr


def test_errors_are_tagseg_errors():
    assert issubclass(StoreError, TagsegError) and issubclass(ConfigError, TagsegError)


def test_missing_dataset_store_is_prepared_first(compose_config, tmp_path, monkeypatch):
    from conftest import write_ring_store

    import tagseg.data.prepare

    calls = []

    def fake_ensure_store(data_cfg, spec=None, prepare_missing=None):
        calls.append((data_cfg.name, spec.seed))
        return write_ring_store(Path(data_cfg.store))

    monkeypatch.setattr(tagseg.data.prepare, "ensure_store", fake_ensure_store)
    fresh = tmp_path / "fresh" / "phantom.h5"
    result = train(
        compose_config(
            "train",
            "test=false",
            "trainer.max_steps=1",
            "seed=7",
            "prepare.seed=3",
            output_dir=tmp_path / "run",
            store=fresh,
        )
    )
    # the store is split with the store specification's seed (prepare.seed), apart from the training seed
    assert calls == [("phantom_tagged", 3)] and fresh.exists() and result["global_step"] == 1
