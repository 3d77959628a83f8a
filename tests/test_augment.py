"""Batch augmentation (tagseg/augment): each transform's statistics, determinism, the config group,
and that only training batches are augmented."""

from __future__ import annotations

import math
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tagseg.augment.acquisition import KSpaceTruncation, RespiratoryGhosting, RicianNoise
from tagseg.augment.base import FAMILIES, log_uniform
from tagseg.augment.compose import BatchAugment, build_batch_augment
from tagseg.augment.geometry import ElasticDeform, RandomFlip, RandomScaleRotate
from tagseg.augment.tags import SpammTagging, TagContrast
from tagseg.conventions import NORM_MEAN, NORM_STD
from tagseg.errors import ConfigError
from tagseg.runtime.config import CONF_DIR, instantiate
from tests.conftest import tiny_segmentation_module

AUGMENT_DIR = Path(CONF_DIR) / "augment"


def ring_view(n: int = 4, size: int = 96, value: float = 0.8, spacing: float = 1.4) -> dict:
    """A batch view: a myocardial ring (label 1) of intensity ``value`` on 0.1 background."""
    yy, xx = torch.meshgrid(torch.arange(size), torch.arange(size), indexing="ij")
    r = ((yy - size / 2 + 0.5) ** 2 + (xx - size / 2 + 0.5) ** 2).float().sqrt()
    label = ((r > size * 0.15) & (r < size * 0.25)).float()
    return {
        "image": (0.1 + (value - 0.1) * label)[None, None].repeat(n, 1, 1, 1),
        "label": label[None, None].repeat(n, 1, 1, 1),
        "si": label[None, None].repeat(n, 1, 1, 1),
        "spacing_mm": torch.full((n, 2), spacing),
        "frame": torch.zeros(n, dtype=torch.long),
        "slice": torch.zeros(n, dtype=torch.long),
        "subject": [f"s{i}" for i in range(n)],
    }


def gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_rician_noise_snr_measured_back_from_the_noise(single_thread):
    n = 8
    view = ring_view(n)
    view["image"] = torch.full_like(view["image"], 0.5)
    view["label"] = torch.ones_like(view["label"])
    out = RicianNoise(prob=1.0, snr=(4.0, 40.0))(dict(view), gen(3))["image"]
    # replay the draws: which samples fire (all), then the SNRs
    g = gen(3)
    torch.rand(n, generator=g)
    drawn = log_uniform(g, n, (4.0, 40.0), torch.device("cpu"))
    measured = 0.5 / out.flatten(1).std(1)
    assert torch.allclose(measured, drawn, rtol=0.08), (measured, drawn)
    assert drawn.min() >= 4.0 and drawn.max() <= 40.0 and drawn.max() / drawn.min() > 2.0
    # Rician: the mean rises over the signal at low SNR, never falls below it
    assert (out.flatten(1).mean(1) >= 0.5 * 0.99).all()


@pytest.mark.parametrize("angle, axis", [(0.0, -2), (90.0, -1)])
def test_spamm_tag_period_found_in_the_spectrum(single_thread, angle, axis):
    size, spacing_mm, pixel_mm = 128, 8.0, 1.0
    view = ring_view(2, size, spacing=pixel_mm)
    view["image"] = torch.ones_like(view["image"])
    tagger = SpammTagging(
        prob=1.0, spacing_mm=spacing_mm, angle_deg=angle, flip_deg=90.0, patterns=[[1.0, 1.0]], one_d_prob=1.0
    )
    out = tagger(dict(view), gen(0))["image"][:, 0]
    profile = out.mean(dim=-1 if axis == -2 else -2)  # average along the lines
    spectrum = torch.fft.rfft(profile - profile.mean(-1, keepdim=True)).abs()
    assert (spectrum.argmax(-1) == size / (spacing_mm / pixel_mm)).all()
    across = out.mean(dim=axis)  # along the lines: flat (1-D tags)
    assert float(across.std(-1).max()) < 1e-3 and float(profile.std(-1).min()) > 0.2


def test_spamm_tags_fade_over_frames_and_grids_have_two_directions(single_thread):
    view = ring_view(2, 64, spacing=1.0)
    view["image"] = torch.ones_like(view["image"])
    view["frame"] = torch.tensor([0, 20])
    tagger = SpammTagging(prob=1.0, spacing_mm=8.0, angle_deg=0.0, one_d_prob=0.0, frame_ms=50.0, t1_ms=500.0)
    out = tagger(dict(view), gen(1))["image"][:, 0]
    depth = out.flatten(1).amax(1) - out.flatten(1).amin(1)
    assert depth[0] > 0.8 and depth[1] < 0.5 * depth[0]
    assert float(out[0].mean(0).std()) > 0.05 and float(out[0].mean(1).std()) > 0.05  # lines both ways


def test_tag_contrast_scales_the_modulation(single_thread):
    view = ring_view(2, 64, spacing=1.0)
    view["image"] = torch.ones_like(view["image"])
    tagged = SpammTagging(prob=1.0, spacing_mm=8.0, one_d_prob=0.0)(dict(view), gen(0))["image"]
    faded = TagContrast(prob=1.0, gain=0.25, sigma_px=4.0)({**view, "image": tagged}, gen(0))["image"]
    sharp = TagContrast(prob=1.0, gain=1.5, sigma_px=4.0)({**view, "image": tagged}, gen(0))["image"]
    inner = (slice(None), 0, slice(16, 48), slice(16, 48))
    assert float(faded[inner].std()) < 0.5 * float(tagged[inner].std()) < 0.5 * float(sharp[inner].std()) / 1.2


def test_labels_and_shape_maps_move_with_the_image(single_thread):
    view = ring_view(6, 96, spacing=1.4)
    area_in = view["label"].flatten(1).sum(1)
    rot = RandomScaleRotate(prob=1.0, pixel_mm=(1.0, 2.0), rotate_deg=180.0, translate=0.0)(dict(view), gen(5))
    # resampled to the drawn pixel size: the ring's area in pixels scales as (old / new spacing)^2
    new = rot["spacing_mm"][:, 0]
    assert ((new >= 1.0 - 1e-5) & (new <= 2.0 + 1e-5)).all() and torch.equal(
        rot["spacing_mm"][:, 0], rot["spacing_mm"][:, 1]
    )
    ratio = rot["label"].flatten(1).sum(1) / area_in
    assert torch.allclose(ratio, (1.4 / new) ** 2, rtol=0.05), (ratio, (1.4 / new) ** 2)
    out = ElasticDeform(prob=1.0, magnitude_px=(1.0, 2.0))(dict(rot), gen(6))
    assert not torch.equal(out["label"], rot["label"])
    for moved in (rot, out):
        # the image's ring is the label's ring, pixel for pixel up to the bilinear edge
        assert ((moved["image"] > 0.45) == (moved["label"] > 0.5)).float().mean() > 0.98
        assert ((moved["si"] > 0.5) != (moved["label"] > 0.5)).float().mean() < 0.01
        assert set(moved["label"].unique().tolist()) <= {0.0, 1.0}


def test_rotation_without_rescale_keeps_the_pixel_size(single_thread):
    # pixel_mm=None: turned within +-rotate_deg about the centre, spacing and areas unchanged
    view = ring_view(16, 64, spacing=1.4)
    view["label"][:, :, 6:14, 28:36] = 2.0  # a marker above the ring, at 90 degrees
    view["image"][:, :, 6:14, 28:36] = 1.0
    out = RandomScaleRotate(prob=1.0, pixel_mm=None, rotate_deg=40.0, translate=0.0)(dict(view), gen(4))
    assert torch.equal(out["spacing_mm"], view["spacing_mm"])
    for value in (1.0, 2.0):
        ratio = (out["label"] == value).flatten(1).sum(1) / (view["label"] == value).flatten(1).sum(1)
        assert torch.allclose(ratio, torch.ones_like(ratio), atol=0.06), (value, ratio)
    yy, xx = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    marker = (out["label"][:, 0] == 2.0).float()
    cy = (marker * yy).flatten(1).sum(1) / marker.flatten(1).sum(1) - 31.5
    cx = (marker * xx).flatten(1).sum(1) / marker.flatten(1).sum(1) - 31.5
    turned = torch.rad2deg(torch.atan2(-cy, cx)) - 90.0
    assert turned.abs().max() <= 41.0 and turned.abs().max() > 20.0 and turned.std() > 10.0, turned
    assert ((out["image"] > 0.9) == (out["label"] == 2.0)).float().mean() > 0.98


def test_flip_moves_label_and_image_together(single_thread):
    view = ring_view(8, 32)
    view["image"][:, :, :, :8] = 1.0
    view["label"][:, :, :, :8] = 2.0
    out = RandomFlip(prob=0.5)(dict(view), gen(2))
    assert torch.equal(out["image"] == 1.0, out["label"] == 2.0)
    assert not torch.equal(out["image"], view["image"])


def test_kspace_truncation_blurs_only_the_drawn_axis_and_hard_cuts_ring(single_thread):
    g = gen(0)
    image = 1.0 + 0.1 * torch.randn(2, 1, 64, 64, generator=g)
    view = {"image": image}
    blur = KSpaceTruncation(prob=1.0, keep=0.25, taper=0.5)
    # keep one axis whole: bypass the per-axis draw with a fixed window
    freq = torch.fft.fftfreq(64)
    w = blur.window(freq, torch.tensor([0.25]))[0]
    assert w[freq.abs() > 0.125].abs().max() == 0 and w[0] == 1.0
    out = blur(dict(view), g)["image"]
    spec = torch.fft.fft2(out - out.mean()).abs()
    assert float(spec[..., 20:44, :].max()) < 1e-3 * float(spec.max())
    # a hard cut rings (overshoot past a step), a tapered one barely
    step = torch.zeros(1, 1, 64, 64)
    step[..., 16:48] = 1.0
    hard = KSpaceTruncation(prob=1.0, keep=0.3, taper=0.0)({"image": step}, gen(1))["image"]
    soft = KSpaceTruncation(prob=1.0, keep=0.3, taper=1.0)({"image": step}, gen(1))["image"]
    assert float(hard.max()) > 1.05 and float(soft.max()) < float(hard.max())


def test_respiratory_ghosting_puts_copies_at_size_over_period(single_thread):
    image = torch.zeros(1, 1, 64, 64)
    image[..., 28:36, 28:36] = 1.0
    ghost = RespiratoryGhosting(prob=1.0, strength=0.8, period_lines=4.0)
    out = ghost({"image": image}, gen(0))["image"][0, 0]
    # the copy sits 64 / 4 = 16 pixels away along the phase-encoding axis (rows or columns)
    rows, cols = float(out[12:20, 28:36].mean()), float(out[28:36, 12:20].mean())
    assert max(rows, cols) > 0.1 and min(rows, cols) < 0.02
    assert float(out[28:36, 28:36].mean()) < 1.0


def test_batch_augment_is_deterministic_under_its_seed(single_thread):
    cfg = {"transforms": {"noise": {"_target_": "tagseg.augment.acquisition.RicianNoise", "prob": 0.5}}}
    view = ring_view(6, 32)
    batch = {**view, "image": (view["image"] - NORM_MEAN) / NORM_STD, "label": view["label"].long()}
    a, b = build_batch_augment(cfg, seed=7), build_batch_augment(cfg, seed=7)
    assert torch.equal(a(batch, count=3)["image"], b(batch, count=3)["image"])
    assert not torch.equal(a(batch, count=3)["image"], a(batch, count=4)["image"])
    assert not torch.equal(a(batch, count=3)["image"], a(batch, count=3, rank=1)["image"])
    assert not torch.equal(a(batch, count=3)["image"], build_batch_augment(cfg, seed=8)(batch, count=3)["image"])
    out = a(batch, count=3)
    assert out["label"].dtype == torch.long and out["image"].dtype == batch["image"].dtype


def test_clean_prob_leaves_that_share_of_the_samples_untouched(single_thread):
    noise = {"noise": {"_target_": "tagseg.augment.acquisition.RicianNoise", "prob": 1.0, "snr": [5.0, 5.0]}}
    flip = {"flip": {"_target_": "tagseg.augment.geometry.RandomFlip", "prob": 1.0}}
    view = ring_view(200, 16)
    view["label"][:, :, :4] = 2.0  # an asymmetric label, so a flip shows in it
    batch = {**view, "image": (view["image"] - NORM_MEAN) / NORM_STD, "label": view["label"].long()}
    out = build_batch_augment({"transforms": {**flip, **noise}, "clean_prob": 0.3}, seed=1)(batch, count=0)
    same = (out["image"] == batch["image"]).flatten(1).all(1)
    assert 40 <= int(same.sum()) <= 80  # 60 expected of 200 (binomial sd 6.5)
    labels_same = (out["label"] == batch["label"]).flatten(1).all(1)
    assert torch.equal(same, labels_same)  # a clean sample keeps its own label, an augmented one moves it
    assert not (out["image"] == batch["image"]).flatten(1).all(1)[~same].any()
    everything = build_batch_augment({"transforms": noise, "clean_prob": 1.0}, seed=1)(batch, count=0)
    assert torch.equal(everything["image"], batch["image"])
    with pytest.raises(ConfigError, match="clean_prob must be in"):
        build_batch_augment({"transforms": noise, "clean_prob": 1.5}, seed=1)


@pytest.mark.parametrize("choice", sorted(p.stem for p in AUGMENT_DIR.glob("*.yaml")))
def test_augment_group_composes_for_each_choice(compose_config, choice):
    cfg = compose_config("train", f"augment={choice}", tiny=False)
    dm = instantiate(cfg.datamodule, "datamodule")
    if choice == "paper":
        assert dm.augment_enabled and dm.batch_augment is None
    elif choice == "none":
        assert not dm.augment_enabled and dm.batch_augment is None
    else:
        assert not dm.augment_enabled
        left_out = choice.removeprefix("robust").removeprefix("_no_") or None
        families = {t.family for t in dm.batch_augment.transforms.values()}
        assert families == set(FAMILIES) - {left_out}


def test_tagged_rotate_turns_the_heart_at_the_models_own_pixel_size(compose_config, single_thread):
    # make demo's grid (1.5625 mm): rotation without rescaling keeps every sample on it
    cfg = compose_config("train", "experiment=demo", "augment=tagged_rotate", tiny=False)
    dm = instantiate(cfg.datamodule, "datamodule")
    rotate = dm.batch_augment.transforms["scale_rotate"]
    view = ring_view(16, 64, spacing=1.5625)
    view["label"][:, :, 6:14, 28:36] = 2.0  # a marker above the ring
    out = rotate(dict(view), gen(1))
    assert torch.equal(out["spacing_mm"], view["spacing_mm"])
    moved = (out["label"] == 2.0).flatten(1).float()
    assert 0 < int((moved != (view["label"] == 2.0).flatten(1).float()).any(1).sum()) < 16  # about half turned
    assert "flip" not in dm.batch_augment.transforms and not dm.batch_augment.transforms["intensity_free"].monotone


def test_tagged_rotate_tissue_is_tagged_rotate_plus_tissue_contrast(compose_config):
    chains = {
        c: instantiate(
            compose_config("train", f"augment={c}", tiny=False).datamodule, "datamodule"
        ).batch_augment.transforms
        for c in ("tagged_rotate", "tagged_rotate_tissue")
    }
    assert set(chains["tagged_rotate_tissue"]) == {*chains["tagged_rotate"], "tissue_contrast"}
    assert chains["tagged_rotate_tissue"]["tissue_contrast"].prob == 0.3


def test_bad_batch_augment_configs_are_config_errors():
    with pytest.raises(ConfigError, match="families"):
        build_batch_augment({"families": ["tags", "colour"], "transforms": {}}, 0)
    with pytest.raises(
        ConfigError, match=r"^datamodule\.batch_augment\.transforms\.n: RicianNoise\.prob: a probability"
    ):
        build_batch_augment({"transforms": {"n": {"_target_": "tagseg.augment.acquisition.RicianNoise", "prob": 2}}}, 0)
    with pytest.raises(ConfigError, match="snr"):
        RicianNoise(prob=0.5, snr=(40.0, 2.0))
    with pytest.raises(ConfigError, match="batch_augment"):
        build_batch_augment({"family": ["tags"]}, 0)


def test_only_training_batches_are_augmented(ring_store, single_thread):
    from tagseg.data.datamodule import SliceDataModule

    cfg = {"transforms": {"noise": {"_target_": "tagseg.augment.acquisition.RicianNoise", "prob": 1.0, "snr": 3.0}}}
    dm = SliceDataModule([str(ring_store)], image_size=32, batch_size=4, augment={"enabled": False}, batch_augment=cfg)
    dm.setup("fit")
    batch = next(iter(dm.val_dataloader()))
    progress = SimpleNamespace(
        epoch_loop=SimpleNamespace(batch_progress=SimpleNamespace(total=SimpleNamespace(ready=0)))
    )
    for state in ("validating", "testing", "sanity_checking", "predicting"):
        dm.trainer = SimpleNamespace(training=False, global_rank=0, fit_loop=progress, **{state: True})
        assert dm.on_after_batch_transfer(batch, 0) is batch
    dm.trainer = SimpleNamespace(training=True, global_rank=0, fit_loop=progress)
    out = dm.on_after_batch_transfer(batch, 0)
    assert not torch.equal(out["image"], batch["image"]) and torch.equal(out["label"], batch["label"])


def test_training_fit_augments_train_batches_only(ring_store, single_thread, monkeypatch):
    import lightning as L

    from tagseg.data.datamodule import SliceDataModule

    seen: list[tuple[bool, int]] = []
    original = BatchAugment.forward
    trainers: list[L.Trainer] = []

    def spy(self, batch, count=0, rank=0):
        seen.append((trainers[-1].training, count))
        return original(self, batch, count, rank)

    def fit(max_epochs: int, batch_augment: dict) -> SliceDataModule:
        dm = SliceDataModule(
            [str(ring_store)], image_size=32, batch_size=4, augment={"enabled": False}, batch_augment=batch_augment
        )
        trainers.append(
            L.Trainer(
                max_epochs=max_epochs,
                limit_train_batches=2,
                limit_val_batches=1,
                logger=False,
                enable_checkpointing=False,
                enable_progress_bar=False,
                enable_model_summary=False,
                accelerator="cpu",
            )
        )
        trainers[-1].fit(tiny_segmentation_module(), datamodule=dm)
        return dm

    monkeypatch.setattr(BatchAugment, "forward", spy)
    cfg = {"transforms": {"flip": {"_target_": "tagseg.augment.geometry.RandomFlip", "prob": 0.5}}}
    fit(2, cfg)
    assert seen == [(True, 0), (True, 1), (True, 2), (True, 3)]
    # clean_last_epochs: the last epoch of three runs on images as they come
    seen.clear()
    dm = fit(3, {**cfg, "clean_last_epochs": 1})
    assert seen == [(True, 0), (True, 1), (True, 2), (True, 3)]
    assert dm.batch_augment.runs_at(1, 3) and not dm.batch_augment.runs_at(2, 3) and dm.batch_augment.runs_at(9, None)
    with pytest.raises(ConfigError, match="clean_last_epochs must be an integer"):
        build_batch_augment({**cfg, "clean_last_epochs": -1}, 0)


def test_scale_draw_covers_the_pixel_sizes(single_thread):
    view = ring_view(64, 16, spacing=1.4)
    out = RandomScaleRotate(prob=1.0, pixel_mm=(0.6, 2.5))(dict(view), gen(0))["spacing_mm"][:, 0]
    assert (
        out.min() < 0.75 and out.max() > 2.0 and math.isclose(float(out.median()), math.sqrt(0.6 * 2.5), rel_tol=0.25)
    )


def test_degraded_phantom_keeps_labels_and_is_seeded(single_thread):
    from tagseg.data.degraded import DegradedPhantomSource
    from tagseg.data.phantom import PhantomSource

    phantom = {"modality": "tagged", "image_size": 32, "fov_mm": 96.0, "n_subjects": 1, "n_slices": 1, "n_frames": 2}
    degrade = {
        "transforms": {
            "ghosting": {"_target_": "tagseg.augment.acquisition.RespiratoryGhosting", "prob": 1.0, "strength": 1.0}
        }
    }
    plain = PhantomSource(**phantom).load(0, 1)
    a = DegradedPhantomSource(degrade=degrade, **phantom).load(0, 1)
    b = DegradedPhantomSource(degrade=degrade, **phantom).load(0, 1)
    for p, x, y in zip(plain, a, b):
        assert np.array_equal(p.mask, x.mask) and np.array_equal(x.image, y.image)
        assert not np.allclose(p.image, x.image) and x.image.dtype == np.float32
    assert not np.array_equal(a[0].image, DegradedPhantomSource(degrade=degrade, **phantom).load(0, 2)[0].image)
    with pytest.raises(ConfigError, match="move pixels"):
        DegradedPhantomSource(
            degrade={"transforms": {"f": {"_target_": "tagseg.augment.geometry.RandomFlip", "prob": 1.0}}}, **phantom
        )


def test_a_bad_transform_probability_is_caught_before_any_work(compose_config):
    from tagseg.runtime.schema import validate_config

    cfg = compose_config("train", "augment=robust", "datamodule.batch_augment.transforms.noise.prob=1.5", tiny=False)
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    assert str(err.value) == "datamodule.batch_augment.transforms.noise.prob: expected a number >= 0 and <= 1, got 1.5"


def test_field_of_view_zeroes_outside_a_window_of_the_drawn_extent(single_thread):
    from tagseg.augment.geometry import FieldOfView

    view = ring_view(64, 40)
    view["image"] = view["image"] + 0.5  # nowhere zero before
    out = FieldOfView(prob=1.0, extent=(0.5, 0.8), shift=0.0)(dict(view), gen(3))
    for i in range(64):
        kept = out["image"][i, 0] > 0
        rows, cols = kept.any(1).nonzero().flatten(), kept.any(0).nonzero().flatten()
        assert kept.sum() == len(rows) * len(cols)  # one rectangle
        assert 0.5 * 40 - 1 <= len(rows) <= 0.8 * 40 + 1 and 0.5 * 40 - 1 <= len(cols) <= 0.8 * 40 + 1
        assert abs((rows[0] + rows[-1]) / 2 - 19.5) <= 1 and abs((cols[0] + cols[-1]) / 2 - 19.5) <= 1  # centred
        assert torch.equal(out["label"][i, 0][~kept], torch.zeros_like(out["label"][i, 0][~kept]))
        assert torch.equal(out["image"][i, 0][kept], view["image"][i, 0][kept])
    with pytest.raises(ConfigError, match="extent"):
        FieldOfView(prob=0.5, extent=(0.9, 0.2))


def test_free_intensity_curves_swap_tissue_brightness_and_keep_air_dark(single_thread):
    from tagseg.augment.appearance import IntensityCurve

    view = ring_view(64, 24, value=0.8)  # ring 0.8 on 0.1 background
    view["image"][:, :, :2] = 0.0  # air
    monotone = IntensityCurve(prob=1.0, points=4, jitter=0.6)(dict(view), gen(1))["image"]
    free = IntensityCurve(prob=1.0, points=4, monotone=False)(dict(view), gen(1))["image"]
    ring, back = view["label"].bool(), (view["label"] == 0) & (view["image"] > 0)

    def brighter(img):
        return torch.stack([img[i][ring[i]].mean() > img[i][back[i]].mean() for i in range(64)])

    assert brighter(monotone).all()  # a monotone curve keeps the order of the tissues
    swapped = int((~brighter(free)).sum())
    assert 5 <= swapped <= 59  # free curves make the background the brighter one in a share of samples
    for out in (monotone, free):
        assert (out[:, :, :2] == 0).all() and float(out.max()) <= 0.8 + 1e-6 and float(out.min()) >= 0.0


def heart_view(n: int, size: int = 48) -> dict:
    """A flat 0.5 image with an LV pool inside a myocardial square, an RV beside it and background."""
    from tagseg.conventions import LV, MYO, RV

    label = torch.zeros(n, 1, size, size)
    label[:, :, 8:40, 6:30] = MYO
    label[:, :, 14:34, 12:24] = LV
    label[:, :, 10:38, 32:44] = RV
    return {"image": torch.full((n, 1, size, size), 0.5), "label": label}


def test_tissue_contrast_draws_pool_gains_against_the_myocardium(single_thread):
    from tagseg.augment.appearance import TissueContrast

    view = heart_view(64)
    sharp = TissueContrast(prob=1.0, blood=(0.4, 1.5), other=(0.6, 1.7), sigma_px=(0.1, 0.1))
    out = sharp(dict(view), gen(2))
    assert torch.equal(out["label"], view["label"])  # the label does not move

    def ratio(region):  # a tissue's mean signal over the myocardium's, deep inside both
        rows, cols = region
        return out["image"][:, 0, rows, cols].mean((1, 2)) / out["image"][:, 0, 9:12, 7:10].mean((1, 2))

    lv, rv, other = (
        ratio((slice(20, 28), slice(15, 21))),
        ratio((slice(16, 32), slice(35, 41))),
        ratio((slice(42, 46), slice(2, 46))),
    )
    for gains, (low, high) in ((lv, (0.4, 1.5)), (rv, (0.4, 1.5)), (other, (0.6, 1.7))):
        assert float(gains.min()) >= low - 1e-4 and float(gains.max()) <= high + 1e-4
        # log-uniform: the median near the geometric mean, both ends reached
        assert math.isclose(float(gains.median()), math.sqrt(low * high), rel_tol=0.2)
        assert float(gains.min()) < low * 1.25 and float(gains.max()) > high / 1.25
    assert float((lv - rv).abs().mean()) > 0.1  # the two pools are drawn apart
    assert int((lv < 0.8).sum()) >= 16  # darker blood than myocardium in a good share (the scanner shift's 0.5-0.6)
    # softened maps: across the LV edge the gain changes over pixels, not in one step
    soft = TissueContrast(prob=1.0, blood=(0.4, 0.4), other=(1.0, 1.0), sigma_px=(2.0, 2.0))(dict(view), gen(2))
    profile = soft["image"][0, 0, 24, 6:18]  # myocardium (cols 6-11) into the pool centre (12-17)
    steps = profile[1:] - profile[:-1]
    assert float(profile[0]) > 0.45 and float(profile[-1]) < 0.25 and float(steps.abs().max()) < 0.5 * 0.3
    again = sharp(dict(view), gen(2))["image"]
    assert torch.equal(again, out["image"]) and not torch.equal(sharp(dict(view), gen(3))["image"], out["image"])


def test_blood_tag_washout_flattens_the_pools_and_nothing_else(single_thread):
    from tagseg.augment.tags import BloodTagWashout
    from tagseg.conventions import LV, RV

    view = heart_view(4)
    cols = torch.arange(48).float()
    view["image"] = (0.5 + 0.4 * torch.cos(2 * math.pi * cols / 5)).view(1, 1, 1, 48).repeat(4, 1, 48, 1)
    out = BloodTagWashout(prob=1.0, fade=(1.0, 1.0), sigma_px=(2.0, 2.0))(dict(view), gen(0))
    assert torch.equal(out["label"], view["label"])
    pool_in, pool_out = view["image"][:, 0, 20:28, 15:21], out["image"][:, 0, 20:28, 15:21]  # deep in the LV
    assert float(pool_out.std()) < 0.1 * float(pool_in.std())  # the tags are gone from the blood
    assert math.isclose(float(pool_out.mean()), 0.5, abs_tol=0.05)  # at the pool's own mean signal
    assert float((out["image"][:, 0, 16:32, 35:41] - 0.5).abs().max()) < 0.1  # the RV pool too
    # the myocardium and background keep every tag (the pool map does not reach past its edge)
    blood = ((view["label"] == LV) | (view["label"] == RV))[:, 0]
    assert torch.equal(out["image"][:, 0][~blood], view["image"][:, 0][~blood])
    # fade is the share removed: half of it leaves half the modulation
    half = BloodTagWashout(prob=1.0, fade=(0.5, 0.5), sigma_px=(2.0, 2.0))(dict(view), gen(0))["image"]
    ratio = float((half[:, 0, 20:28, 15:21] - 0.5).std() / (pool_in - 0.5).std())
    assert 0.4 < ratio < 0.6
    with pytest.raises(ConfigError, match="BloodTagWashout.fade"):
        BloodTagWashout(prob=1.0, fade=(0.5, 1.5))
