"""Scan orientation (tagseg/models/orientation.py): the eight views, the confidence that picks one, and
predict / evaluate reading a mirrored scan in the view the model knows, masks back in the scan's order."""

from __future__ import annotations

import csv
from types import SimpleNamespace

import nibabel as nib
import numpy as np
import pytest
import torch
from torch import nn

from tagseg.errors import ConfigError
from tagseg.models.orientation import (
    IDENTITY,
    VIEWS,
    OrientationSettings,
    apply_view,
    frame_confidences,
    invert_view,
    pick_view,
    scan_view,
    spread_rows,
    subject_views,
    view_named,
    view_spacing,
)
from tagseg.models.segmenter import Segmenter
from tagseg.stages.predict import predict

S = 32


class MarkerNet(nn.Module):
    """Myocardium wherever the image is bright, the more confident the brighter its top-left band
    (rows 0-3, columns 0-11): the one view that puts a scan's wide marker band there wins."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        band = x[:, :, :4, :12].mean(dim=(1, 2, 3)).clamp(min=0.0)
        return torch.cat([torch.zeros_like(x), x * (1.0 + 4.0 * band).view(-1, 1, 1, 1)], dim=1)


def marker_frames(n: int = 3) -> np.ndarray:
    """(n, S, S) frames in [0, 1]: an asymmetric bright L and a wide marker band at the top right."""
    f = np.zeros((n, S, S), np.float32)
    f[:, 10:24, 12:15] = 1.0
    f[:, 21:24, 12:22] = 1.0
    f[:, :4, -12:] = 1.0
    return f


def segmenter() -> Segmenter:
    return Segmenter(network=MarkerNet(), image_size=S)


def test_views_are_the_eight_distinct_symmetries_and_invert():
    a = np.arange(3 * 5 * 7, dtype=np.float32).reshape(3, 5, 7)
    seen = set()
    for view in VIEWS:
        b = apply_view(a, view)
        assert b.shape == ((3, 7, 5) if view.transpose else (3, 5, 7))
        np.testing.assert_array_equal(invert_view(b, view), a)
        t = apply_view(torch.from_numpy(a), view)
        np.testing.assert_array_equal(t.numpy(), b)  # numpy and torch agree
        np.testing.assert_array_equal(invert_view(t, view).numpy(), a)
        seen.add(b.tobytes())
        assert view_named(view.name) == view
    assert len(seen) == 8 and VIEWS[0] == IDENTITY
    np.testing.assert_array_equal(apply_view(a, view_named("flip_x")), a[..., ::-1])
    np.testing.assert_array_equal(apply_view(a, view_named("transpose")), a.swapaxes(-1, -2))
    np.testing.assert_array_equal(view_spacing(np.array([[1.0, 2.0]]), view_named("transpose")), [[2.0, 1.0]])
    assert view_spacing((1.0, 2.0), view_named("flip_xy")) == (1.0, 2.0)
    with pytest.raises(ConfigError, match="unknown view 'rotate'"):
        view_named("rotate")


def test_frame_confidences_by_hand():
    p = np.zeros((2, 2, 2, 2), np.float32)
    p[0, 1] = [[0.9, 0.7], [0.2, 0.4]]  # myocardium at two pixels: 0.9, 0.7
    p[0, 0] = 1.0 - p[0, 1]
    p[1, 0] = 1.0  # no myocardium: counts 0
    np.testing.assert_allclose(frame_confidences(p, channel=1), [0.8, 0.0])


def test_pick_view_needs_the_margin():
    scores = {v.name: 0.5 for v in VIEWS} | {"flip_x": 0.52}
    assert pick_view(scores, margin=0.01).name == "flip_x"
    assert pick_view(scores, margin=0.05) == IDENTITY


def test_pick_view_needs_most_frames_to_agree():
    # flip_x wins the mean (0.52 against 0.50) through one frame only: not a view the scan is stored in
    frames = {v.name: np.full(4, 0.5) for v in VIEWS} | {"flip_x": np.array([0.58, 0.5, 0.5, 0.5])}
    scores = {name: float(f.mean()) for name, f in frames.items()}
    assert pick_view(scores, margin=0.01).name == "flip_x"  # the mean alone would turn it
    assert pick_view(scores, margin=0.01, frame_scores=frames, agreement=0.75) == IDENTITY
    # winning on 3 of 4 frames is enough at 0.75, not at 1.0
    frames["flip_x"] = np.array([0.53, 0.53, 0.53, 0.49])
    scores = {name: float(f.mean()) for name, f in frames.items()}
    assert pick_view(scores, margin=0.01, frame_scores=frames, agreement=0.75).name == "flip_x"
    assert pick_view(scores, margin=0.01, frame_scores=frames, agreement=1.0) == IDENTITY


def test_spread_rows():
    np.testing.assert_array_equal(spread_rows(10, 4), [0, 3, 6, 9])
    np.testing.assert_array_equal(spread_rows(3, 8), [0, 1, 2])
    assert len(spread_rows(0, 8)) == 0


def test_settings_from_config():
    assert OrientationSettings.from_config(None) == OrientationSettings("auto", 0.005, 8, 0.75)
    assert not OrientationSettings.from_config({"mode": "none"}).enabled
    for bad, msg in (
        ({"mode": "on"}, "orientation.mode"),
        ({"margin": -1}, "margin"),
        ({"frames": 0}, "frames"),
        ({"agreement": 1.5}, "agreement"),
    ):
        with pytest.raises(ConfigError, match=msg):
            OrientationSettings.from_config(bad)
    with pytest.raises(ConfigError, match="unknown keys"):
        OrientationSettings.from_config({"views": 4})


def test_scan_view_finds_the_view_the_model_knows():
    frames = marker_frames()
    view, scores = scan_view(segmenter(), frames, OrientationSettings(), scaled=True)
    assert view.name == "flip_x" and max(scores, key=scores.get) == "flip_x"
    # the scan already in the model's view stays as it is
    assert scan_view(segmenter(), frames[..., ::-1], OrientationSettings(), scaled=True)[0] == IDENTITY
    assert scan_view(segmenter(), frames, OrientationSettings(margin=10.0), scaled=True)[0] == IDENTITY
    assert scan_view(segmenter(), frames, OrientationSettings(mode="none"), scaled=True) == (IDENTITY, {})


def test_subject_views_decide_each_subject_on_its_own():
    frames = np.concatenate([marker_frames(2), marker_frames(2)[..., ::-1]])
    subjects = np.array(["mirrored", "mirrored", "plain", "plain"])
    views = subject_views(segmenter(), frames, subjects, OrientationSettings(), scaled=True, spacing_mm=np.ones((4, 2)))
    assert {k: v.name for k, v in views.items()} == {"mirrored": "flip_x", "plain": "identity"}
    assert subject_views(segmenter(), frames, subjects, OrientationSettings(mode="none")) == {}


def test_predict_reads_a_mirrored_scan_in_the_model_view_and_writes_masks_in_its_own(tmp_path):
    frames = marker_frames() * 800.0 + 20.0  # (T, rows, cols), raw scanner-like range
    nib.save(
        nib.Nifti1Image(np.transpose(frames, (2, 1, 0)).astype(np.int16), np.eye(4)), str(tmp_path / "scan.nii.gz")
    )
    report = predict(
        segmenter(),
        tmp_path / "scan.nii.gz",
        tmp_path / "out",
        overlays=False,
        progress=False,
        orientation=OrientationSettings(),
    )
    assert report.reoriented == [("scan", "flip_x")] and "scan (flip_x)" in report.table()
    mask = np.transpose(np.asarray(nib.load(str(tmp_path / "out" / "scan_mask.nii.gz")).dataobj), (2, 1, 0))
    np.testing.assert_array_equal(mask == 2, frames > 400)  # the bright pixels where the scan has them
    with open(tmp_path / "out" / "predictions.csv") as fh:
        assert {r["orientation"] for r in csv.DictReader(fh)} == {"flip_x"}
    stored = predict(segmenter(), tmp_path / "scan.nii.gz", tmp_path / "plain", overlays=False, progress=False)
    assert stored.reoriented == [] and {r["orientation"] for r in stored.rows} == {"identity"}


def test_evaluate_logits_follow_each_row_view():
    from tests.conftest import tiny_segmentation_module

    torch.manual_seed(0)
    module = tiny_segmentation_module().eval()
    image = torch.randn(3, 1, S, S)
    module.test_views = {11: view_named("flip_x"), 12: view_named("transpose_flip_y")}
    with torch.no_grad():
        got = module.oriented_logits(image, [10, 11, 12])
        want = [module(image[:1])[0]]
        for i, name in ((1, "flip_x"), (2, "transpose_flip_y")):
            view = view_named(name)
            want.append(invert_view(module(apply_view(image[i : i + 1], view)), view)[0])
    torch.testing.assert_close(got, torch.stack(want), atol=1e-5, rtol=1e-4)
    module.test_views = {}
    with torch.no_grad():
        torch.testing.assert_close(module.oriented_logits(image, [10, 11, 12]), module(image))


def marker_store(path, mirrored: bool, subjects=("m", "p")):
    """Two subjects of 2 frames; the first mirrored when ``mirrored``; no split column."""
    from tagseg.io.store import write_store

    first = marker_frames(2)[..., ::-1] if not mirrored else marker_frames(2)
    frames = np.concatenate([first, marker_frames(2)[..., ::-1]])
    meta = {
        "subject": [subjects[0]] * 2 + [subjects[1]] * 2,
        "slice": [0] * 4,
        "frame": [0, 1, 0, 1],
        "n_frames": [2] * 4,
        "phase": ["ED", "", "ED", ""],
        "group": ["control"] * 4,
        "spacing_mm": np.ones((4, 2), np.float32),
        "source": ["markers"] * 4,
    }
    return write_store(path, frames, (frames > 0.5).astype(np.uint8) * 2, meta, name="markers")


def test_evaluate_views_are_per_store_and_subject_and_follow_the_tested_rows(tmp_path):
    from tagseg.data.datamodule import SliceDataModule
    from tagseg.stages.evaluate import split_rows, split_views, turned

    a = marker_store(tmp_path / "a.h5", mirrored=True)  # subject m needs flip_x here
    b = marker_store(tmp_path / "b.h5", mirrored=False)  # and not here (same id, another store)
    dm = SliceDataModule(stores=[str(a), str(b)], image_size=S, batch_size=2, augment={"enabled": False})
    dm.setup("test")
    loader = dm.eval_dataloader("all")
    module = SimpleNamespace()
    views = split_views(module, loader, segmenter(), OrientationSettings())
    assert {s: {k: v.name for k, v in c.items()} for s, c in views.items()} == {
        str(a): {"m": "flip_x", "p": "identity"},
        str(b): {"m": "identity", "p": "identity"},
    }
    assert {r: v.name for r, v in module.test_views.items()} == {0: "flip_x", 1: "flip_x"}
    assert turned(views) == {f"{a}::m": "flip_x"}
    rows = split_rows(loader)
    np.testing.assert_array_equal(rows[str(a)], [0, 1, 2, 3])
    np.testing.assert_array_equal(rows[str(b)], [0, 1, 2, 3])
    # a store without a split column: the seeded split's rows, in the store's own numbering
    dm1 = SliceDataModule(
        stores=[str(a)], image_size=S, batch_size=2, augment={"enabled": False}, split_ratios=[0.5, 0, 0.5]
    )
    dm1.setup("test")
    test = dm1.eval_dataloader("test")
    picked = split_rows(test)[str(a)]
    assert len(picked) == 2 and set(dm1.data.subject[picked]) == {
        str(s) for s in test.dataset.data.subject[test.dataset.rows]
    }
    assert split_views(SimpleNamespace(), test, segmenter(), OrientationSettings(mode="none")) == {}


@pytest.mark.parametrize("stage", ["predict", "evaluate", "strain"])
def test_stages_search_the_orientation_by_default_and_can_skip_it(stage):
    from tests.conftest import compose_stage

    shipped = OrientationSettings.from_config(
        compose_stage(stage, ["ckpt=x", "input=y"] if stage != "evaluate" else ["ckpt=x"]).orientation
    )
    assert shipped == OrientationSettings("auto", 0.005, 8, 0.75)
    off = compose_stage(
        stage, ["orientation.mode=none", "orientation.frames=2"] + (["input=y"] if stage != "evaluate" else [])
    )
    assert OrientationSettings.from_config(off.orientation) == OrientationSettings("none", 0.005, 2, 0.75)
