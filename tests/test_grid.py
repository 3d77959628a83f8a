"""One pixel size (``prepare.fit=crop``): stores, the network grid and predict's way back to the scan."""

from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from tagseg.data.grid import from_grid, resampled_shape, to_grid
from tagseg.data.prepare import normalise_record
from tagseg.data.records import SliceRecord
from tagseg.data.store_spec import StoreSpec
from tagseg.errors import ConfigError
from tagseg.models.segmenter import Segmenter, load_segmenter
from tagseg.stages.export import export_model, load_exported


def _ring(shape, spacing_mm, centre_mm=None, radii_mm=(12.0, 20.0)):
    """A bright ring of fixed size in mm on a frame of ``shape`` pixels at ``spacing_mm``."""
    rows, cols = np.mgrid[: shape[0], : shape[1]]
    centre = centre_mm if centre_mm is not None else (shape[0] * spacing_mm / 2, shape[1] * spacing_mm / 2)
    r = np.hypot((rows + 0.5) * spacing_mm - centre[0], (cols + 0.5) * spacing_mm - centre[1])
    return ((r >= radii_mm[0]) & (r < radii_mm[1])).astype(np.float32)


class Threshold:
    """An exported-model stand-in: myocardium where the [0, 1] input is above one half."""

    def __init__(self, mean: float, std: float) -> None:
        self.mean, self.std = mean, std

    def run(self, x: np.ndarray) -> np.ndarray:
        unit = x * self.std + self.mean
        return np.concatenate([0.5 - unit, unit - 0.5], axis=1) * 20.0


def _dice(a, b):
    return 2 * (a & b).sum() / (a.sum() + b.sum())


@pytest.mark.parametrize("n, size", [(5, 9), (9, 5), (8, 8), (7, 4), (4, 7)])
def test_to_grid_and_back_are_inverse_where_nothing_was_cropped(n, size):
    a = np.arange(n * (n + 1), dtype=np.float32).reshape(n, n + 1) + 1
    placed = to_grid(a, size)
    assert placed.shape == (size, size)
    back = from_grid(placed, a.shape)
    kept = back != 0
    np.testing.assert_array_equal(back[kept], a[kept])  # what survives is where it was
    if size >= n + 1:
        np.testing.assert_array_equal(back, a)  # a pad loses nothing
        assert placed.sum() == a.sum()
    else:
        assert kept.sum() == min(n, size) * min(n + 1, size)


def test_a_ring_keeps_its_size_in_pixels_whatever_the_scanners_pixel_size():
    net = Segmenter(network=Threshold(0.5, 0.25), image_size=48, mean=0.5, std=0.25, spacing_mm=2.0)
    big = _ring((80, 90), 1.0)  # 1 mm pixels: the ring is 40 px wide
    small = _ring((160, 180), 0.5)  # the same heart at 0.5 mm pixels
    xa = net.preprocess(big[None], spacing_mm=(1.0, 1.0))[0, 0] * 0.25 + 0.5
    xb = net.preprocess(small[None], spacing_mm=(0.5, 0.5))[0, 0] * 0.25 + 0.5
    assert abs((xa > 0.5).sum() - (xb > 0.5).sum()) <= 0.03 * (xa > 0.5).sum()
    # 20 mm outer radius at 2 mm pixels: a 20 px wide ring on the 48 px grid
    ring_mm2 = np.pi * (20.0**2 - 12.0**2)
    assert (xa > 0.5).sum() * 4.0 == pytest.approx(ring_mm2, rel=0.06)
    # without a spacing the frames are resized whole (the old behaviour): sizes differ with the field of view
    whole = Segmenter(network=Threshold(0.5, 0.25), image_size=48, mean=0.5, std=0.25)
    assert (whole.preprocess(big[None])[0, 0] > 0).sum() != pytest.approx((xa > 0.5).sum(), rel=0.1)


@pytest.mark.parametrize(
    "shape, spacing, centre",
    [((70, 60), 1.25, None), ((200, 180), 1.0, (100.0, 90.0)), ((200, 180), 1.0, (60.0, 50.0))],
    ids=["padded", "cropped", "cropped-off-centre"],
)
def test_masks_come_back_in_the_scans_own_geometry(shape, spacing, centre):
    net = Segmenter(network=Threshold(0.5, 0.25), image_size=40, mean=0.5, std=0.25, spacing_mm=2.0)
    ring = _ring(shape, spacing, centre_mm=centre) > 0
    labels = net.segment(np.stack([ring * 1.0, ring * 1.0]), spacing_mm=np.array([[spacing] * 2] * 2))
    assert labels.shape == (2, *shape)
    grid_mm = 40 * 2.0  # what the grid sees around the frame's centre
    rows, cols = np.mgrid[: shape[0], : shape[1]]

    def within(margin_mm):
        half = grid_mm / 2 + margin_mm
        off_r, off_c = (rows + 0.5) * spacing - shape[0] * spacing / 2, (cols + 0.5) * spacing - shape[1] * spacing / 2
        return (np.abs(off_r) < half) & (np.abs(off_c) < half)

    pred = labels[0] == 2
    assert not pred[~within(1.0)].any()  # what the crop cut off is background
    assert _dice(pred & within(-2.0), ring & within(-2.0)) > 0.9
    if centre is not None and centre != (100.0, 90.0):
        assert (ring & ~within(1.0)).sum() > 100  # the case does cut part of the ring off


def test_spacing_errors_and_store_spec_checks():
    net = Segmenter(network=Threshold(0.5, 0.25), image_size=32, spacing_mm=2.0)
    with pytest.raises(ConfigError, match="spacing_mm"):
        net.segment(np.zeros((3, 20, 20)), spacing_mm=np.ones((2, 2)))
    with pytest.raises(ConfigError, match="spacing_mm"):
        net.segment(np.zeros((1, 20, 20)), spacing_mm=(0.0, 1.0))
    with pytest.raises(ConfigError, match="fit=crop needs prepare.spacing_mm"):
        StoreSpec.from_config({"fit": "crop"})
    with pytest.raises(ConfigError, match="prepare.fit must be one of"):
        StoreSpec.from_config({"fit": "stretch", "spacing_mm": 2.0})
    with pytest.raises(ConfigError, match="needs prepare.image_size"):
        StoreSpec.from_config({"fit": "crop", "spacing_mm": 2.0, "image_size": None})
    spec = StoreSpec.from_config({"fit": "crop", "spacing_mm": 2.0, "image_size": 64})
    assert spec.network_spacing(64) == 2.0 and spec.network_spacing(128) == 1.0
    assert StoreSpec.from_config({"spacing_mm": 2.0, "image_size": 64}).network_spacing(64) is None


def test_a_cropped_store_slice_keeps_its_pixel_size_and_its_motion_in_mm():
    img = _ring((60, 80), 1.0)
    disp = np.stack([np.full((60, 80), 2.0, np.float32), np.full((60, 80), -4.0, np.float32)])  # pixels at 1 mm
    rec = SliceRecord(
        image=img * 500.0 + 10.0,
        mask=(img * 2).astype(np.uint8),
        spacing_mm=(1.0, 1.0),
        subject="s",
        slice=0,
        frame=0,
        n_frames=1,
        phase="",
        group="",
        source="t",
        extras={"displacement": disp},
    )
    out = normalise_record(rec, image_size=32, spacing_mm=2.0, fit="crop")
    assert out.image.shape == (32, 32) and out.spacing_mm == (2.0, 2.0)
    assert resampled_shape((60, 80), (1.0, 1.0), 2.0) == (30, 40)
    # 30 rows padded to 32, 40 columns cropped to 32: the ring (40 mm across) is 20 px across, centred
    assert out.image.max() == pytest.approx(1.0) and out.image[0].max() == 0.0
    assert (out.mask == 2).sum() * 4.0 == pytest.approx(np.pi * (20.0**2 - 12.0**2), rel=0.08)
    d = out.extras["displacement"]
    assert d.shape == (2, 32, 32)
    assert d[0, 16, 16] == pytest.approx(1.0) and d[1, 16, 16] == pytest.approx(-2.0)  # 2 and -4 mm in 2 mm pixels


def test_checkpoint_and_export_carry_the_grid(trained_ckpt, tmp_path):
    state = torch.load(trained_ckpt, map_location="cpu", weights_only=True)
    state["hyper_parameters"]["spacing_mm"] = 2.5
    state["hyper_parameters"]["flips"] = False
    ckpt = tmp_path / "grid.ckpt"
    torch.save(state, ckpt)
    seg = load_segmenter(ckpt)
    assert seg.spacing_mm == 2.5 and load_segmenter(trained_ckpt).spacing_mm is None
    assert not seg.flips and load_segmenter(trained_ckpt).flips  # older checkpoints: trained with flips
    folder = tmp_path / "onnx"
    export_model(ckpt, "onnx", folder)
    meta = json.loads((folder / "model.json").read_text())
    assert meta["spacing_mm"] == 2.5 and "resampled" in meta["spacing_policy"]
    exported = load_exported(folder)
    assert exported.spacing_mm == 2.5 and meta["flips"] is False and not exported.flips
    frames = np.stack([_ring((50, 64), 1.6)] * 2) * 700.0
    sp = np.array([[1.6, 1.6]] * 2)
    np.testing.assert_array_equal(exported.segment(frames, spacing_mm=sp), seg.segment(frames, spacing_mm=sp))
    meta["spacing_mm"] = -1
    (folder / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ConfigError, match="malformed sidecar"):
        load_exported(folder)


def test_shifted_sets_are_placed_on_the_grid_of_the_store_the_model_trained_on(tmp_path):
    """The pixel-size shift stops being a shift for a one-pixel-size model: its hearts keep their size in pixels."""
    from tagseg.data.shifts import prepare_shift_store, shift_data_config
    from tagseg.io.store import read_store
    from tagseg.runtime.config import compose

    data = compose("train", ["data.image_size=64", "data.fov_mm=128", "data.n_frames=2", "data.n_slices=1"]).data
    spec = StoreSpec.from_config({"fit": "crop", "spacing_mm": 2.0}, data)
    assert spec.image_size == 64  # auto: the phantom's own size

    def myo_pixels(path):
        store = read_store(path)
        return store, float((np.asarray(store.masks) == 2).sum(axis=(1, 2)).mean())

    base, base_px = myo_pixels(prepare_shift_store(shift_data_config(data, "none", 1), 7, tmp_path, spec))
    grid, grid_px = myo_pixels(prepare_shift_store(shift_data_config(data, "pixel_size", 1), 7, tmp_path, spec))
    whole, whole_px = myo_pixels(prepare_shift_store(shift_data_config(data, "pixel_size", 1), 7, tmp_path))
    assert np.asarray(grid.meta["spacing_mm"]) == pytest.approx(2.0)
    assert np.asarray(whole.meta["spacing_mm"]) == pytest.approx(1.4)
    assert grid.images.shape[1:] == whole.images.shape[1:] == (64, 64)
    assert grid_px / base_px == pytest.approx(1.0, abs=0.15)
    assert whole_px / base_px == pytest.approx(1 / 0.7**2, rel=0.15)  # resized whole: 2x the pixels


def test_evaluate_places_any_store_on_the_models_grid(tmp_path):
    """A store at other pixel sizes is seen by a one-pixel-size model at the size it learnt (``grid_mm``)."""
    from tagseg.data.datamodule import SliceDataModule
    from tagseg.io.store import write_store
    from tagseg.stages.evaluate import model_geometry

    rings = [_ring((80, 80), 1.0), _ring((60, 60), 1.25)]  # the same ring in mm at two pixel sizes
    images = np.zeros((2, 80, 80), np.float32)
    images[0], images[1, 10:70, 10:70] = rings[0], rings[1]  # (the second padded to the store's shape)
    masks = (images > 0.5).astype(np.uint8) * 2
    meta = {
        "subject": ["a", "b"],
        "slice": [0, 0],
        "frame": [0, 0],
        "n_frames": [1, 1],
        "phase": ["", ""],
        "group": ["", ""],
        "spacing_mm": [[1.0, 1.0], [1.25, 1.25]],
        "source": ["t", "t"],
        "split": ["test", "test"],
    }
    store = write_store(tmp_path / "s.h5", images, masks, meta, name="t")
    geometry = model_geometry(SimpleNamespace(image_size=48, classes=[2], mean=0.5, std=0.25, get=lambda k: 2.0))
    dm = SliceDataModule(stores=[str(store)], **geometry, augment={"enabled": False})
    dm.setup("test")
    assert dm.data.images.shape == (2, 48, 48) and (dm.data.spacing_mm == 2.0).all()
    myo = (dm.data.labels == 1).sum(axis=(1, 2)) * 4.0  # mm^2 at 2 mm pixels
    np.testing.assert_allclose(myo, np.pi * (20.0**2 - 12.0**2), rtol=0.08)
    resized = SliceDataModule(stores=[str(store)], image_size=48, augment={"enabled": False})
    resized.setup("test")
    assert resized.data.spacing_mm[0] == pytest.approx([80 / 48] * 2)


def test_predict_reads_each_scans_spacing_and_writes_masks_in_its_geometry(tmp_path):
    import nibabel as nib

    from tagseg.stages.predict import predict

    image = _ring((120, 100), 1.0)
    image[5:15, 5:15] = 1.0  # a bright patch in a corner, outside the model's 64 mm field of view
    path = tmp_path / "in" / "scan.nii.gz"
    path.parent.mkdir()
    volume = np.stack([image * 900.0 + 50.0] * 2, axis=-1).transpose(1, 0, 2)  # (x, y, t)
    nib.save(nib.Nifti1Image(volume.astype(np.float32), np.diag([1.0, 1.0, 8.0, 1.0])), str(path))
    grid = Segmenter(network=Threshold(0.5, 0.25), image_size=32, mean=0.5, std=0.25, spacing_mm=2.0)
    whole = Segmenter(network=Threshold(0.5, 0.25), image_size=32, mean=0.5, std=0.25)
    for name, seg in (("grid", grid), ("whole", whole)):
        predict(seg, path, tmp_path / name, overlays=False, progress=False)
    masks = {n: np.asarray(nib.load(str(tmp_path / n / "scan_mask.nii.gz")).dataobj) for n in ("grid", "whole")}
    assert masks["grid"].shape == masks["whole"].shape == volume.shape
    first = {n: m[..., 0].T == 2 for n, m in masks.items()}  # back to (rows, cols)
    assert first["whole"][5:15, 5:15].mean() > 0.5 and not first["grid"][:20, :20].any()
    ring = _ring((120, 100), 1.0) > 0
    assert _dice(first["grid"], ring) > 0.9


@pytest.mark.parametrize(
    "choice, flips",
    [
        ("paper", True),
        ("robust", True),
        ("tagged", False),
        ("tagged_rotate", False),
        ("robust_no_geometry", False),
        ("none", False),
    ],
)
def test_test_time_flips_are_refused_for_a_model_that_never_saw_a_flipped_image(choice, flips):
    from tagseg.augment.compose import trains_on_flips
    from tagseg.models.segmenter import Ensemble, check_tta
    from tagseg.runtime.config import compose, plain

    assert trains_on_flips(plain(compose("train", [f"augment={choice}"]).datamodule)) is flips
    seg = Segmenter(network=Threshold(0.5, 0.25), image_size=32, flips=flips, source="m.ckpt")
    check_tta(seg, tta=False)
    if flips:
        check_tta(seg, tta=True)
    else:
        with pytest.raises(ConfigError, match=r"tta=flip: m\.ckpt was trained without flipped images"):
            check_tta(Ensemble([Segmenter(network=Threshold(0.5, 0.25), image_size=32), seg]), tta=True)
