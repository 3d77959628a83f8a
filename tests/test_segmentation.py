"""SegmentationModule: loss = Eq. 4 + VAE, metrics, checkpoint round trip, errors."""

from __future__ import annotations

import lightning as L
import numpy as np
import pytest
import torch

from tagseg.errors import ConfigError
from tagseg.losses import SegmentationLoss
from tagseg.models.networks import split_output
from tagseg.models.segmentation import SegmentationModule, image_metrics

pytestmark = pytest.mark.usefixtures("single_thread")

LOSS = {"_target_": "tagseg.losses.SegmentationLoss", "gamma": 0.5, "k": 0.2}
ADAM = {"_target_": "torch.optim.Adam", "_partial_": True, "lr": 0.01}
PLATEAU = {"_target_": "torch.optim.lr_scheduler.ReduceLROnPlateau", "_partial_": True, "patience": 10}
NETS = {
    "resnetvae": {"_target_": "tagseg.models.networks.build_network", "name": "resnetvae", "init_filters": 8},
    "nnunet": {
        "_target_": "tagseg.models.networks.build_network",
        "name": "nnunet",
        "strides": [1, 2, 2],
        "filters": [4, 8, 16],
    },
}


def module(name: str = "resnetvae", **kwargs) -> SegmentationModule:
    kwargs.setdefault("image_size", 32)
    return SegmentationModule(network=NETS[name], loss=LOSS, optimizer=ADAM, scheduler=PLATEAU, **kwargs)


def batch(n: int = 2, size: int = 32) -> dict:
    torch.manual_seed(0)
    label = torch.zeros(n, 1, size, size, dtype=torch.long)
    label[:, :, 8:20, 8:20] = 1
    from tagseg.losses import shape_information_batch

    return {
        "image": torch.randn(n, 1, size, size),
        "label": label,
        "si": shape_information_batch(label.float(), 0.2),
        "spacing_mm": torch.full((n, 2), 1.5),
        "subject": ["a"] * n,
        "slice": torch.zeros(n, dtype=torch.long),
        "frame": torch.arange(n),
        "group": ["control"] * n,
        "index": torch.arange(n),
    }


def test_training_loss_is_eq4_plus_weighted_vae():
    m = module(vae_weight=0.3)
    b = batch()
    torch.manual_seed(1)
    loss = m.training_step(b, 0)
    torch.manual_seed(1)
    logits, vae = split_output(m.net(b["image"]))
    parts = SegmentationLoss(gamma=0.5, k=0.2)(logits, b["label"], b["si"])
    # SegResNetVAE draws a random latent sample: same seed, same value
    assert torch.allclose(loss, parts["loss"] + 0.3 * vae, rtol=1e-5)
    assert m.loss_fn.gamma == 0.5


def test_xavier_init_is_applied():
    torch.manual_seed(0)
    m = module(init="xavier_normal")
    conv = m.net.convInit.conv
    fan_in = conv.weight[0].numel()
    fan_out = conv.weight.shape[0] * conv.weight[0, 0].numel()
    expected_std = (2.0 / (fan_in + fan_out)) ** 0.5
    assert abs(conv.weight.std().item() - expected_std) / expected_std < 0.25


def test_image_metrics_per_class_with_spacing():
    pred = torch.zeros(1, 8, 8, dtype=torch.long)
    label = torch.zeros(1, 8, 8, dtype=torch.long)
    label[0, 2:4, 2:4] = 1
    pred[0, 2:4, 2:5] = 1  # one extra column
    pred[0, 6, 6] = 2  # class 2 predicted, absent in truth
    dice, hd = image_metrics(pred, label, torch.tensor([[2.0, 1.0]]), 2)
    assert dice[0, 0] == pytest.approx(2 * 4 / (6 + 4))
    assert hd[0, 0] == pytest.approx(1.0)  # the extra column is 1 col (1 mm) away
    assert dice[0, 1] == 0.0
    assert hd[0, 1] == pytest.approx(np.hypot(8 * 2.0, 8 * 1.0))  # one empty mask: the image diagonal


@pytest.mark.parametrize("name", ["resnetvae", "nnunet"])
def test_two_step_fit_and_checkpoint_rebuilds_module(name, tmp_path):
    m = module(name)
    b = batch(4)
    samples = [{k: (v[i] if not isinstance(v, list) else v[i]) for k, v in b.items()} for i in range(4)]
    loader = torch.utils.data.DataLoader(samples, batch_size=2)
    trainer = L.Trainer(
        max_steps=2,
        limit_val_batches=1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=tmp_path,
    )
    trainer.fit(m, train_dataloaders=loader, val_dataloaders=loader)
    assert trainer.global_step == 2
    for key in ("train/loss", "train/dice_loss", "train/ce", "train/shape", "val/dice", "val/hd95_mm"):
        assert key in trainer.callback_metrics, key
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    loaded = SegmentationModule.load_from_checkpoint(path, map_location="cpu", weights_only=True)
    assert loaded.hparams.image_size == 32 and list(loaded.hparams.classes) == [2]
    m.eval(), loaded.eval()
    x = batch()["image"]
    assert torch.allclose(m(x), loaded(x), atol=1e-6)


def test_out_channels_must_match_classes():
    net = dict(NETS["resnetvae"], out_channels=3)
    with pytest.raises(ConfigError, match="out_channels: 3 but classes \\[2\\] need 1 \\+ 1"):
        SegmentationModule(network=net, loss=LOSS, optimizer=ADAM, image_size=32)


def test_image_size_not_accepted():
    with pytest.raises(ConfigError, match="image_size 40x40 is not accepted by network 'resnetvae'"):
        module(image_size=40)


def test_bad_init_and_vae_weight():
    with pytest.raises(ConfigError, match="model.init"):
        module(init="he")
    with pytest.raises(ConfigError, match="vae_weight"):
        module(vae_weight=-1.0)
