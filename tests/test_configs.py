"""Every training config group composes (Hydra compose API) and instantiates."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from tagseg.data.datamodule import SliceDataModule
from tagseg.runtime.config import instantiate
from tagseg.losses import SegmentationLoss
from tagseg.models.networks import count_parameters
from tagseg.models.segmentation import SegmentationModule
from tagseg.runtime.config import instantiate_group

CONF = Path(__file__).resolve().parents[1] / "tagseg" / "conf"
PAPER_PARAMETERS = {"resnetvae": 3_555_891, "nnunet": 34_164_258}


def choices(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def compose_train(tmp_path: Path, *overrides: str, name: str = "train"):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        cfg = compose(name, overrides=[f"paths.output_dir={tmp_path}", *overrides])
    OmegaConf.resolve(cfg)  # every interpolation must resolve
    return cfg


def test_train_and_evaluate_compose(tmp_path):
    cfg = compose_train(tmp_path)
    assert cfg.datamodule.stores == [cfg.data.store] and cfg.datamodule.classes == [2]
    assert cfg.model.image_size == cfg.datamodule.image_size == 256
    assert cfg.datamodule.si_k == cfg.loss.k == 0.2
    assert cfg.model.optimizer.lr == 0.01 and cfg.model.scheduler.patience == 10
    ev = compose_train(tmp_path, name="evaluate")
    assert ev.split == "test" and ev.datamodule.stores == [ev.data.store]


@pytest.mark.parametrize("choice", choices("datamodule"))
def test_datamodule_configs(tmp_path, choice):
    dm = instantiate(compose_train(tmp_path, f"datamodule={choice}").datamodule, "datamodule")
    assert isinstance(dm, SliceDataModule) and dm.augment_cfg.enabled


@pytest.mark.parametrize("choice", choices("model"))
def test_model_configs_give_the_paper_networks(tmp_path, choice):
    model = instantiate(compose_train(tmp_path, f"model={choice}").model, "model")
    assert isinstance(model, SegmentationModule)
    assert count_parameters(model.net) == PAPER_PARAMETERS[choice]
    assert isinstance(model.configure_optimizers()["optimizer"], torch.optim.Adam)


@pytest.mark.parametrize("choice", choices("loss"))
def test_loss_configs(tmp_path, choice):
    loss = instantiate(compose_train(tmp_path, f"loss={choice}").loss, "loss")
    assert isinstance(loss, SegmentationLoss) and loss.gamma >= 0


@pytest.mark.parametrize("choice", choices("trainer"))
def test_trainer_configs(tmp_path, choice):
    cfg = compose_train(tmp_path, f"trainer={choice}")
    if cfg.trainer.accelerator == "gpu" and not torch.cuda.is_available():
        assert cfg.trainer.precision in ("16-mixed", "bf16-mixed")
        pytest.skip("no GPU here: composed only")
    assert isinstance(instantiate(cfg.trainer, "trainer", logger=False), L.Trainer)


@pytest.mark.parametrize("choice", choices("logger"))
def test_logger_configs_always_keep_csv(tmp_path, choice, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    loggers = instantiate_group(compose_train(tmp_path, f"logger={choice}").logger, "logger")
    names = {type(lg).__name__ for lg in loggers}
    assert "CSVLogger" in names and len(names) == len(loggers)


@pytest.mark.parametrize("choice", choices("callbacks"))
def test_callback_configs(tmp_path, choice):
    callbacks = instantiate_group(compose_train(tmp_path, f"callbacks={choice}").callbacks, "callbacks")
    assert callbacks and all(isinstance(c, L.Callback) for c in callbacks)


@pytest.mark.parametrize("choice", ["default", "minimal"])
def test_segmentation_callbacks_keep_last_and_best_by_val_dice(tmp_path, choice):
    callbacks = instantiate_group(compose_train(tmp_path, f"callbacks={choice}").callbacks, "callbacks")
    ckpt = [c for c in callbacks if isinstance(c, L.pytorch.callbacks.ModelCheckpoint)]
    assert len(ckpt) == 1 and ckpt[0].monitor == "val/dice" and ckpt[0].mode == "max" and ckpt[0].save_last


@pytest.mark.parametrize("choice", choices("debug"))
def test_debug_configs(tmp_path, choice):
    cfg = compose_train(tmp_path, f"debug={choice}")
    assert cfg.trainer.accelerator == "cpu" and cfg.datamodule.num_workers == 0
    assert isinstance(instantiate(cfg.trainer, "trainer", logger=False), L.Trainer)


# the strategy experiments need the strategy group in train.yaml: tested with the strategy pipeline
@pytest.mark.parametrize("choice", ["demo"])
def test_experiment_configs(tmp_path, choice):
    cfg = compose_train(tmp_path, f"experiment={choice}")
    assert isinstance(instantiate(cfg.datamodule, "datamodule"), SliceDataModule)
    assert isinstance(instantiate(cfg.model, "model"), SegmentationModule)


def test_demo_is_small_and_has_its_own_store(tmp_path):
    demo, default = compose_train(tmp_path, "experiment=demo"), compose_train(tmp_path)
    assert demo.data.store != default.data.store and demo.data.store.endswith("demo/phantom_tagged_128.h5")
    assert 96 <= demo.datamodule.image_size <= 128 and demo.data.image_size == demo.datamodule.image_size
    assert 100 <= demo.data.n_subjects * demo.data.n_slices * demo.data.n_frames <= 600
    assert demo.model.network.name == "resnetvae" and demo.trainer.accelerator == "cpu"
