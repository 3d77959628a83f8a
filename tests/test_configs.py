"""Every training config group composes (Hydra compose API) and instantiates."""

from __future__ import annotations

from pathlib import Path

import lightning as L
import pytest
import torch

from tagseg.data.datamodule import SliceDataModule
from tagseg.losses import SegmentationLoss
from tagseg.models.networks import count_parameters
from tagseg.models.segmentation import SegmentationModule
from tagseg.runtime.config import instantiate, instantiate_group

CONF = Path(__file__).resolve().parents[1] / "tagseg" / "conf"
#: the configs as shipped (no tiny overrides), every interpolation resolved
AS_SHIPPED = {"tiny": False, "resolve": True}
PAPER_PARAMETERS = {"resnetvae": 3_555_891, "nnunet": 34_164_258}


def choices(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF / group).glob("*.yaml"))


def test_train_and_evaluate_compose(compose_config):
    cfg = compose_config("train", **AS_SHIPPED)
    assert cfg.datamodule.stores == [cfg.data.store] and cfg.datamodule.classes == [2]
    assert cfg.model.image_size == cfg.datamodule.image_size == 256
    assert cfg.datamodule.si_k == cfg.loss.k == 0.2
    assert cfg.model.optimizer.lr == 0.01 and cfg.model.scheduler.patience == 10
    ev = compose_config("evaluate", **AS_SHIPPED)
    assert ev.split == "test" and ev.datamodule.stores == [ev.data.store]


@pytest.mark.parametrize("choice", choices("datamodule"))
def test_datamodule_configs(compose_config, choice):
    dm = instantiate(compose_config("train", f"datamodule={choice}", **AS_SHIPPED).datamodule, "datamodule")
    assert isinstance(dm, SliceDataModule) and dm.augment_cfg.enabled


@pytest.mark.parametrize("choice", choices("model"))
def test_model_configs_give_the_paper_networks(compose_config, choice):
    model = instantiate(compose_config("train", f"model={choice}", **AS_SHIPPED).model, "model")
    assert isinstance(model, SegmentationModule)
    assert count_parameters(model.net) == PAPER_PARAMETERS[choice]
    assert isinstance(model.configure_optimizers()["optimizer"], torch.optim.Adam)


@pytest.mark.parametrize("choice", choices("loss"))
def test_loss_configs(compose_config, choice):
    loss = instantiate(compose_config("train", f"loss={choice}", **AS_SHIPPED).loss, "loss")
    assert isinstance(loss, SegmentationLoss) and loss.gamma >= 0


@pytest.mark.parametrize("choice", choices("trainer"))
def test_trainer_configs(compose_config, choice):
    cfg = compose_config("train", f"trainer={choice}", **AS_SHIPPED)
    if cfg.trainer.accelerator == "gpu" and not torch.cuda.is_available():
        assert cfg.trainer.precision in ("16-mixed", "bf16-mixed")
        pytest.skip("no GPU here: composed only")
    assert isinstance(instantiate(cfg.trainer, "trainer", logger=False), L.Trainer)


@pytest.mark.parametrize("choice", choices("logger"))
def test_logger_configs_always_keep_csv(compose_config, choice, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    loggers = instantiate_group(compose_config("train", f"logger={choice}", **AS_SHIPPED).logger, "logger")
    names = {type(lg).__name__ for lg in loggers}
    assert "CSVLogger" in names and len(names) == len(loggers)


@pytest.mark.parametrize("choice", choices("callbacks"))
def test_callback_configs(compose_config, choice):
    callbacks = instantiate_group(compose_config("train", f"callbacks={choice}", **AS_SHIPPED).callbacks, "callbacks")
    assert callbacks and all(isinstance(c, L.Callback) for c in callbacks)


@pytest.mark.parametrize("choice", ["default", "minimal"])
def test_segmentation_callbacks_keep_last_and_best_by_val_dice(compose_config, choice):
    callbacks = instantiate_group(compose_config("train", f"callbacks={choice}", **AS_SHIPPED).callbacks, "callbacks")
    ckpt = [c for c in callbacks if isinstance(c, L.pytorch.callbacks.ModelCheckpoint)]
    # the best by val/dice first (train reads its best_model_path), then last.ckpt after every epoch
    # (Lightning's save_last rewrites last.ckpt only when the best changes)
    best, last = ckpt
    assert best.monitor == "val/dice" and best.mode == "max" and best.filename == "best"
    assert (
        last.monitor is None and last.filename == "last" and last.save_top_k == 1 and not last._enable_version_counter
    )


@pytest.mark.parametrize("choice", choices("debug"))
def test_debug_configs(compose_config, choice):
    cfg = compose_config("train", f"debug={choice}", **AS_SHIPPED)
    assert cfg.trainer.accelerator == "cpu" and cfg.datamodule.num_workers == 0
    assert isinstance(instantiate(cfg.trainer, "trainer", logger=False), L.Trainer)


# the strategy experiments need the strategy group in train.yaml: tested with the strategy pipeline
@pytest.mark.parametrize("choice", ["demo"])
def test_experiment_configs(compose_config, choice):
    cfg = compose_config("train", f"experiment={choice}", **AS_SHIPPED)
    assert isinstance(instantiate(cfg.datamodule, "datamodule"), SliceDataModule)
    assert isinstance(instantiate(cfg.model, "model"), SegmentationModule)


def test_demo_is_small_and_has_its_own_store(compose_config):
    demo = compose_config("train", "experiment=demo", **AS_SHIPPED)
    default = compose_config("train", **AS_SHIPPED)
    assert demo.data.store != default.data.store and demo.data.store.endswith("demo/phantom_tagged_128.h5")
    assert 96 <= demo.datamodule.image_size <= 128 and demo.data.image_size == demo.datamodule.image_size
    assert 100 <= demo.data.n_subjects * demo.data.n_slices * demo.data.n_frames <= 600
    assert demo.model.network.name == "resnetvae" and demo.trainer.accelerator == "cpu"
    # one pixel size, the phantom's own (the store is the resized one's, the model records the size)
    assert demo.prepare.fit == "crop" and demo.prepare.spacing_mm == demo.data.fov_mm / demo.data.image_size
    assert demo.datamodule.batch_augment.clean_last_epochs > 0 and not demo.datamodule.augment.enabled  # augment=tagged
    # no flips: mirrored scans are met at inference (orientation.mode=auto), not by training on them
    assert demo.datamodule.batch_augment.transforms.flip is None


def test_stage_fixtures_are_tiny_and_write_under_tmp_path(
    cfg_train, cfg_evaluate, cfg_prepare, cfg_translate, cfg_predict, cfg_train_global, tmp_path
):
    from tagseg.io.store import read_store
    from tagseg.stages.prepare import prepare

    for cfg in (cfg_train, cfg_evaluate, cfg_prepare, cfg_translate, cfg_predict):
        assert cfg.paths.root_dir == str(tmp_path) and cfg.paths.output_dir == str(tmp_path / "run")
    assert cfg_train_global.paths.root_dir != str(tmp_path)  # each test gets a copy; the session config is untouched
    assert cfg_train.trainer.accelerator == "cpu" and cfg_train.trainer.max_epochs == 1
    assert cfg_train.datamodule.image_size == 32 and cfg_train.model.network.init_filters == 8
    assert cfg_train.data.store == str(tmp_path / "data" / "phantom_tagged.h5")
    assert cfg_translate.input == str(tmp_path / "data" / "phantom_cine.h5")
    assert cfg_predict.output == str(tmp_path / "run")
    report, figure = prepare(cfg_prepare)
    assert report.output == tmp_path / "data" / "phantom_tagged.h5" and figure is None
    assert read_store(report.output).images.shape == (8, 32, 32)  # 4 subjects x 1 slice x 2 frames
