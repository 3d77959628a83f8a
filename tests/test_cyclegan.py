"""CycleGAN: networks, image pool, schedule, training step, unpaired data, intensity convention."""

from __future__ import annotations

import lightning.pytorch as pl
import numpy as np
import pytest
import torch
from cyclegan_fixtures import TINY_DISCRIMINATOR, TINY_GENERATOR, make_store, one_thread

from tagseg.data.intensity import from_gan, to_gan
from tagseg.data.unpaired import UnpairedDataModule
from tagseg.errors import ConfigError, DataError
from tagseg.models.cyclegan import CycleGANModule, lr_factor
from tagseg.models.cyclegan_grid import CycleGANGrid
from tagseg.models.gan_networks import ImagePool, PatchDiscriminator, ResnetGenerator, receptive_field

_one_thread = pytest.fixture(autouse=True)(one_thread)

NETWORKS = ("g_ab", "g_ba", "d_a", "d_b")


def tiny_module(**kwargs) -> CycleGANModule:
    return CycleGANModule(generator=TINY_GENERATOR, discriminator=TINY_DISCRIMINATOR, **kwargs)


def tiny_trainer(tmp_path, **kwargs) -> pl.Trainer:
    base = dict(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    return pl.Trainer(**{**base, **kwargs})


@pytest.fixture()
def stores(tmp_path):
    a = make_store(tmp_path / "cine.h5", n=4, tagged=False, seed=0)
    b = make_store(tmp_path / "tagged.h5", n=4, tagged=True, seed=5)
    return a, b


# ---- intensity convention --------------------------------------------------------------------


def test_intensity_conversion_maps_store_range_to_gan_range_and_back():
    x = torch.tensor([0.0, 0.25, 0.5, 1.0])
    np.testing.assert_allclose(to_gan(x).numpy(), [-1.0, -0.5, 0.0, 1.0])
    np.testing.assert_allclose(from_gan(to_gan(x)).numpy(), x.numpy())
    # (g + 1) / 2, not the authors' 0.5 * g + 1 (which maps -1 -> 0.5 and 1 -> 1.5)
    np.testing.assert_allclose(from_gan(torch.tensor([-1.0, 0.0, 1.0])).numpy(), [0.0, 0.5, 1.0])


# ---- networks ----------------------------------------------------------------------------------


def test_generator_outputs_stay_in_gan_range_and_keep_the_size():
    torch.manual_seed(0)
    g = ResnetGenerator(ngf=8, n_blocks=2)
    x = torch.randn(3, 1, 32, 32) * 50.0  # far outside [-1, 1] on purpose
    y = g(x)
    assert y.shape == x.shape
    y = y.detach()
    assert float(y.min()) >= -1.0 and float(y.max()) <= 1.0
    assert float(y.abs().max()) > 0.5  # not trivially zero


@pytest.mark.parametrize("size", [(8, 8), (12, 20), (24, 40), (36, 36)])
def test_generator_is_fully_convolutional_for_sides_divisible_by_four(size):
    g = ResnetGenerator(ngf=4, n_blocks=1)
    g.check_size(*size)
    assert g(torch.zeros(1, 1, *size)).shape == (1, 1, *size)


@pytest.mark.parametrize("size", [(30, 32), (32, 18), (4, 4)])
def test_generator_rejects_other_sizes_with_a_clear_error(size):
    with pytest.raises(ConfigError, match=r"multiple of 4 .* at least 8"):
        ResnetGenerator(ngf=4, n_blocks=1).check_size(*size, where="input store x.h5")


def test_patchgan_is_70_pixels_and_scores_a_map():
    assert receptive_field(3) == 70
    d = PatchDiscriminator(ndf=8, n_layers=3)
    assert d(torch.zeros(2, 1, 64, 64)).shape == (2, 1, 6, 6)
    # reference layout: three stride-2 4x4 convolutions, then two stride-1 ones
    convs = [m for m in d.modules() if isinstance(m, torch.nn.Conv2d)]
    assert [c.stride[0] for c in convs] == [2, 2, 2, 1, 1] and convs[-1].out_channels == 1


# ---- image pool --------------------------------------------------------------------------------


def test_image_pool_fills_first_then_swaps_with_probability_one_half():
    pool = ImagePool(size=50, seed=123)
    first = torch.arange(50, dtype=torch.float32).reshape(50, 1, 1, 1)
    np.testing.assert_array_equal(pool.query(first).numpy(), first.numpy())  # filling: returned as is
    assert len(pool) == 50
    n = 4000
    fresh = (1000 + torch.arange(n, dtype=torch.float32)).reshape(n, 1, 1, 1)
    out = pool.query(fresh).reshape(-1)
    from_pool = out != fresh.reshape(-1)
    # binomial(4000, 0.5): sd 0.0079, tolerance ~4 sd
    assert abs(float(from_pool.float().mean()) - 0.5) < 0.03
    # what came from the pool was stored earlier: an initial image or an earlier fresh one
    earlier = out[from_pool]
    idx = torch.nonzero(from_pool).reshape(-1)
    assert bool(((earlier < 50) | ((earlier >= 1000) & (earlier < 1000 + idx))).all())
    assert len(pool) == 50


def test_image_pool_of_size_zero_is_a_pass_through():
    x = torch.randn(3, 1, 4, 4)
    assert ImagePool(0).query(x) is x


# ---- schedule ----------------------------------------------------------------------------------


def test_lr_factor_is_constant_then_linear():
    assert [lr_factor(e, 100, 100) for e in (0, 50, 99)] == [1.0, 1.0, 1.0]
    assert lr_factor(100, 100, 100) == pytest.approx(100 / 101)
    assert lr_factor(199, 100, 100) == pytest.approx(1 / 101)
    assert [lr_factor(e, 2, 3) for e in range(5)] == pytest.approx([1.0, 1.0, 0.75, 0.5, 0.25])


class RecordLR(pl.Callback):
    def __init__(self):
        self.lrs: list[tuple[float, float]] = []

    def on_train_epoch_start(self, trainer, pl_module):
        self.lrs.append(tuple(o.param_groups[0]["lr"] for o in trainer.optimizers))


def test_training_follows_the_schedule_and_saves_grids(tmp_path, stores):
    model = tiny_module(n_epochs=2, n_epochs_decay=3, lr=1e-3)
    record = RecordLR()
    grid = CycleGANGrid(tmp_path / "grids", every_n_epochs=2, n_examples=2)
    dm = UnpairedDataModule(*stores, batch_size=4)
    tiny_trainer(tmp_path, max_epochs=model.max_epochs, callbacks=[record, grid]).fit(model, dm)
    expected = [1e-3 * f for f in (1.0, 1.0, 0.75, 0.5, 0.25)]
    assert [a for a, _ in record.lrs] == pytest.approx(expected)
    assert [b for _, b in record.lrs] == pytest.approx(expected)  # discriminators too
    names = sorted(p.name for p in (tmp_path / "grids").glob("*.png"))
    assert names == ["epoch_002.png", "epoch_004.png", "epoch_005.png"]  # every 2 and the last
    import matplotlib.image

    png = matplotlib.image.imread(tmp_path / "grids" / "epoch_005.png")
    assert png.shape[1] > png.shape[0]  # 5 columns x 2 rows


# ---- training step -----------------------------------------------------------------------------


def test_one_training_step_changes_all_four_networks(tmp_path, stores):
    torch.manual_seed(0)
    model = tiny_module()
    before = {n: {k: v.detach().clone() for k, v in getattr(model, n).state_dict().items()} for n in NETWORKS}
    dm = UnpairedDataModule(*stores, batch_size=2)
    trainer = tiny_trainer(tmp_path, max_epochs=1, limit_train_batches=1)
    trainer.fit(model, dm)
    for name in NETWORKS:
        after = getattr(model, name).state_dict()
        changed = [k for k, v in before[name].items() if not torch.equal(v, after[k])]
        assert changed, f"{name} did not change"
        # the last layer of every network gets a gradient: it must have moved
        last_weight = [k for k in after if k.endswith("weight")][-1]
        assert last_weight in changed, f"{name}.{last_weight} did not change"
    # both optimisers stepped once each; after the step every network is trainable again (untoggled)
    assert trainer.global_step == 2
    assert all(p.requires_grad for p in model.parameters())
    assert {"loss/g", "loss/cycle", "loss/identity", "loss/d_a", "loss/d_b"} <= set(trainer.callback_metrics)


def test_discriminators_are_frozen_during_the_generator_step(stores):
    model = tiny_module()
    a, b = torch.rand(2, 1, 32, 32) * 2 - 1, torch.rand(2, 1, 32, 32) * 2 - 1
    for p in model.parameters():
        p.grad = None
    for net in (model.d_a, model.d_b):
        net.requires_grad_(False)
    loss, _ = model.generator_loss(a, b)
    loss.backward()
    assert all(p.grad is None for n in ("d_a", "d_b") for p in getattr(model, n).parameters())
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.g_ab.parameters())


class RecordCycle(pl.Callback):
    def __init__(self):
        self.values: list[float] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        self.values.append(float(trainer.callback_metrics["loss/cycle_step"]))


def test_cycle_loss_decreases_on_a_tiny_fixed_batch(tmp_path):
    a = make_store(tmp_path / "a.h5", n=2, size=16, seed=1)
    b = make_store(tmp_path / "b.h5", n=2, size=16, tagged=True, seed=2)
    pl.seed_everything(0)
    model = CycleGANModule(
        generator={"ngf": 8, "n_blocks": 1}, discriminator=TINY_DISCRIMINATOR, lr=2e-3, n_epochs=40, n_epochs_decay=0
    )
    record = RecordCycle()
    tiny_trainer(tmp_path, max_epochs=40, callbacks=[record]).fit(model, UnpairedDataModule(a, b, batch_size=2))
    first, last = np.mean(record.values[:3]), np.mean(record.values[-3:])
    assert len(record.values) == 40
    assert last < 0.6 * first, (first, last)


def test_bf16_mixed_precision_step_runs(tmp_path, stores):
    model = tiny_module()
    trainer = tiny_trainer(tmp_path, max_epochs=1, limit_train_batches=1, precision="bf16-mixed")
    trainer.fit(model, UnpairedDataModule(*stores, batch_size=2))
    assert trainer.global_step == 2 and torch.isfinite(trainer.callback_metrics["loss/g"])


# ---- unpaired data -----------------------------------------------------------------------------


def test_unpaired_datamodule_converts_once_and_uses_the_tagged_train_split(tmp_path):
    a = make_store(tmp_path / "a.h5", n=6, seed=1, splits=["train", "val", "test"] * 2)
    b = make_store(
        tmp_path / "b.h5", n=6, tagged=True, seed=2, splits=["train", "test", "test", "train", "val", "train"]
    )
    dm = UnpairedDataModule(a, b, batch_size=2)
    dm.setup()
    assert len(dm.domain_a) == 6 and len(dm.domain_b) == 3  # all cine frames; tagged train rows only
    from tagseg.io.store import read_store

    raw_b = read_store(b).images[[0, 3, 5]]
    np.testing.assert_allclose(dm.domain_b.images.numpy(), raw_b)
    item = dm.domain_b[1]
    assert item.shape == (1, 32, 32)
    np.testing.assert_allclose(item[0].numpy(), 2 * raw_b[1] - 1, atol=1e-6)
    batch, _, _ = next(iter(dm.train_dataloader()))
    assert set(batch) == {"A", "B"} and batch["A"].shape == (2, 1, 32, 32)
    assert float(batch["A"].min()) >= -1 and float(batch["A"].max()) <= 1
    ex = dm.examples(2)
    assert ex["A"].shape == (2, 1, 32, 32) and ex["B"].shape == (2, 1, 32, 32)


def test_domains_are_shuffled_independently(tmp_path):
    a = make_store(tmp_path / "a.h5", n=40, size=8, seed=1)
    b = make_store(tmp_path / "b.h5", n=40, size=8, seed=2)
    dm = UnpairedDataModule(a, b, batch_size=40, seed=3)
    loader = dm.train_dataloader()
    order_a = list(iter(loader.iterables["A"].sampler))
    order_b = list(iter(loader.iterables["B"].sampler))
    assert sorted(order_a) == sorted(order_b) == list(range(40))
    assert order_a != order_b and order_a != list(range(40))


def test_unpaired_bad_input(tmp_path):
    a = make_store(tmp_path / "a.h5", n=2, seed=1)
    with pytest.raises(DataError, match=r"data_b.*no images in splits \['train'\]"):
        make_store(tmp_path / "b.h5", n=2, seed=2, splits=["test", "test"])
        UnpairedDataModule(a, tmp_path / "b.h5").setup()
    with pytest.raises(ConfigError, match="batch_size"):
        UnpairedDataModule(a, a, batch_size=0)
    from tagseg.errors import StoreError

    with pytest.raises(StoreError, match="not found"):
        UnpairedDataModule(a, tmp_path / "missing.h5").setup()


def test_grid_goes_to_wandb_when_a_wandb_logger_is_attached(tmp_path, stores):
    from types import SimpleNamespace

    from lightning.pytorch.loggers import WandbLogger

    class RecordingWandb(WandbLogger):
        def __init__(self):  # no W&B run: only the call is recorded
            self.calls = []

        def log_image(self, key, images, step=None, **kwargs):
            self.calls.append((key, images, step, kwargs))

    wandb = RecordingWandb()
    dm = UnpairedDataModule(*stores)
    trainer = SimpleNamespace(datamodule=dm, loggers=[wandb], global_step=7)
    CycleGANGrid(tmp_path / "g", every_n_epochs=1, n_examples=2)._save(trainer, tiny_module(), 2)
    ((key, images, step, kwargs),) = wandb.calls
    assert key == "cyclegan/grid" and step == 7 and images == [str(tmp_path / "g" / "epoch_003.png")]
    assert (tmp_path / "g" / "epoch_003.png").exists() and "fake B" in kwargs["caption"][0]
