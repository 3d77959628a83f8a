"""tagseg predict: input kinds, geometry round trips, reference points, outputs and errors."""

from __future__ import annotations

import csv
import json
import subprocess
from pathlib import Path

import h5py
import nibabel as nib
import numpy as np
import pytest
import torch
from conftest import run_tagseg
from raw_fixtures import write_dicom, write_matlab_imt, write_nifti
from torch import nn

from tagseg.contours import myocardial_contours
from tagseg.data.scans import find_inputs, read_scan
from tagseg.errors import DataError
from tagseg.io.store import read_store, write_store
from tagseg.metrics import dice
from tagseg.models.segmenter import Segmenter, resize_nearest
from tagseg.stages.predict import predict

SHAPE = (40, 56)  # rows, cols: not square, not the model size
R_IN, R_OUT = 6.0, 11.0


def ring(shape=SHAPE, centre=(14.0, 30.0), r_in=R_IN, r_out=R_OUT) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    r = np.hypot(yy - centre[0], xx - centre[1])
    return (r < r_out) & (r >= r_in)


def ring_frames(n=3) -> tuple[np.ndarray, np.ndarray]:
    """Bright myocardial rings on a dark background (raw scanner-like range), moving right by 1 px per frame."""
    masks = np.stack([ring(centre=(14.0, 28.0 + t)) for t in range(n)])
    return (masks * 900.0 + 50.0).astype(np.float32), masks


class ThresholdNet(nn.Module):
    """A stand-in segmenter: myocardium where the normalised input is above 0 (bright)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros_like(x), 10.0 * x], dim=1)


def segmenter(size=32) -> Segmenter:
    return Segmenter(network=ThresholdNet(), image_size=size)


# -- reference points ---------------------------------------------------------------------------


def test_contours_of_a_ring_are_circles_clockwise_from_the_top():
    c = myocardial_contours(ring(), n_points=16)
    assert c.closed_ring and c.outer.shape == (16, 2) and c.inner.shape == (16, 2)
    cx, cy = 30.0, 14.0  # x = column, y = row
    r_outer = np.hypot(c.outer[:, 0] - cx, c.outer[:, 1] - cy)
    r_inner = np.hypot(c.inner[:, 0] - cx, c.inner[:, 1] - cy)
    assert np.abs(r_outer - (R_OUT - 0.5)).max() < 1.0
    assert np.abs(r_inner - (R_IN - 0.5)).max() < 1.0
    assert c.outer[0, 1] == pytest.approx(c.outer[:, 1].min())  # starts at the top
    # clockwise as displayed: the second point is to the right of the first
    assert c.outer[1, 0] > c.outer[0, 0]


def test_contours_of_an_open_or_empty_myocardium():
    open_ring = ring()
    open_ring[:, 30:33] = False  # cut: no cavity enclosed
    c = myocardial_contours(open_ring)
    assert len(c.outer) == 48 and len(c.inner) == 0 and not c.closed_ring
    empty = myocardial_contours(np.zeros(SHAPE, bool))
    assert empty.inner.shape == (0, 2) and empty.outer.shape == (0, 2)
    with pytest.raises(ValueError, match="n_points"):
        myocardial_contours(ring(), n_points=2)


# -- inputs -------------------------------------------------------------------------------------


def test_every_input_kind_reads_in_tagseg_orientation(tmp_path):
    frames, _ = ring_frames()
    write_nifti(tmp_path / "in" / "nii_scan.nii.gz", np.transpose(frames, (2, 1, 0)), zooms=(1.5, 1.2, 1.0))
    write_matlab_imt(tmp_path / "in" / "1_C_C_201_base.h5", frames, spacing=(1.1, 1.3))
    for t, f in enumerate(frames):
        write_dicom(tmp_path / "in" / "dcm_scan" / f"IM{t}.dcm", f, spacing=(0.9, 0.8), instance=t + 1)
    write_nifti(tmp_path / "in" / "nii_scan_mask.nii.gz", np.zeros((56, 40, 3), np.uint8), zooms=(1.5, 1.2, 1.0))
    paths = find_inputs(tmp_path / "in")
    assert [p.path.name for p in paths] == [
        "1_C_C_201_base.h5",
        "dcm_scan",
        "nii_scan.nii.gz",
    ]  # the mask file is skipped
    assert [p.name for p in paths] == ["1_C_C_201_base", "dcm_scan", "nii_scan"]
    spacings = {"1_C_C_201_base": (1.1, 1.3), "dcm_scan": (0.9, 0.8), "nii_scan": (1.2, 1.5)}
    for p in paths:
        scan = read_scan(p)
        np.testing.assert_allclose(scan.frames, frames, err_msg=scan.kind)
        np.testing.assert_allclose(scan.spacing_mm, np.tile(spacings[scan.name], (3, 1)))


def test_bad_inputs_are_failures_with_one_line_reasons(tmp_path):
    with pytest.raises(DataError, match="input not found"):
        predict(segmenter(), tmp_path / "missing", tmp_path / "out")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no scan found"):
        predict(segmenter(), tmp_path / "empty", tmp_path / "out")
    assert not (tmp_path / "out" / "predictions.csv").exists()
    with h5py.File(tmp_path / "odd.h5", "w") as f:
        f["x"] = np.zeros(3)
    (tmp_path / "notes.txt").write_text("hello")
    for name, reason in (("odd.h5", "HDF5 file with neither 'imt' nor"), ("notes.txt", "unrecognised input")):
        report = predict(segmenter(), tmp_path / name, tmp_path / "out", progress=False)
        assert report.scans == [] and len(report.failures) == 1
        file, why = report.failures[0]
        assert file == str(tmp_path / name) and why.startswith(reason)
        with open(tmp_path / "out" / "failed.csv") as fh:
            assert list(csv.DictReader(fh)) == [{"file": file, "reason": why}]


# -- predictions --------------------------------------------------------------------------------


def test_predicted_nifti_mask_is_in_the_input_geometry(tmp_path):
    frames, truth = ring_frames()
    affine = np.diag([1.5, 1.2, 8.0, 1.0])
    affine[:3, 3] = (-10.0, 5.0, 2.0)
    img = nib.Nifti1Image(np.transpose(frames, (2, 1, 0)), affine)
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, str(tmp_path / "scan.nii.gz"))
    report = predict(segmenter(), tmp_path / "scan.nii.gz", tmp_path / "out", batch_size=2, progress=False)
    out = nib.load(str(tmp_path / "out" / "scan_mask.nii.gz"))
    np.testing.assert_allclose(out.affine, affine)
    labels = np.transpose(np.asarray(out.dataobj), (2, 1, 0))
    assert labels.shape == truth.shape and set(np.unique(labels)) == {0, 2}
    for t in range(3):  # resized 40x56 -> 32x32 -> 40x56, nearest: close to the truth, in place
        assert dice(labels[t] == 2, truth[t]) > 0.85
        rows, cols = np.nonzero(labels[t] == 2)
        assert rows.mean() == pytest.approx(14.0, abs=0.7) and cols.mean() == pytest.approx(28.0 + t, abs=0.7)
    assert report.scans == ["scan"] and len(report.rows) == 3 and all(r["closed_ring"] for r in report.rows)
    assert report.rows[0]["myocardium_mm2"] == pytest.approx(report.rows[0]["myocardium_px"] * 1.2 * 1.5)


@pytest.mark.parametrize("postprocess", ["none", "largest_component"])
def test_largest_component_removes_a_bright_blob_away_from_the_heart(tmp_path, postprocess):
    frames, truth = ring_frames(2)
    frames[:, 32:40, 0:8] = 950.0  # bright fat at the body edge: segmented by the threshold network
    nib.save(nib.Nifti1Image(np.transpose(frames, (2, 1, 0)), np.eye(4)), str(tmp_path / "scan.nii.gz"))
    predict(segmenter(), tmp_path / "scan.nii.gz", tmp_path / "out", progress=False, postprocess=postprocess)
    labels = np.transpose(np.asarray(nib.load(str(tmp_path / "out" / "scan_mask.nii.gz")).dataobj), (2, 1, 0))
    blob = labels[:, 32:40, 0:8] == 2
    if postprocess == "none":
        assert blob.mean() > 0.5
    else:
        assert not blob.any()
        assert all(dice(labels[t] == 2, truth[t]) > 0.85 for t in range(2))


def test_reference_points_json_and_csv(tmp_path):
    frames, _ = ring_frames(2)
    write_matlab_imt(tmp_path / "slice.h5", frames, spacing=(2.0, 0.5))
    predict(segmenter(), tmp_path / "slice.h5", tmp_path / "out", n_points=24, progress=False)
    doc = json.loads((tmp_path / "out" / "slice_points.json").read_text())
    assert doc["scan"] == "slice" and len(doc["frames"]) == 2
    for t, frame in enumerate(doc["frames"]):
        outer, inner = np.asarray(frame["outer_xy"]), np.asarray(frame["inner_xy"])
        assert outer.shape == (24, 2) and inner.shape == (24, 2)
        r_out = np.hypot(outer[:, 0] - (28.0 + t), outer[:, 1] - 14.0)
        r_in = np.hypot(inner[:, 0] - (28.0 + t), inner[:, 1] - 14.0)
        assert abs(r_out.mean() - (R_OUT - 0.5)) < 1.0 and abs(r_in.mean() - (R_IN - 0.5)) < 1.0
    with open(tmp_path / "out" / "reference_points.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == 2 * 2 * 24
    first = rows[0]
    assert first["scan"] == "slice" and first["contour"] == "inner"
    assert float(first["x_mm"]) == pytest.approx(float(first["x"]) * 0.5, abs=1e-3)
    assert float(first["y_mm"]) == pytest.approx(float(first["y"]) * 2.0, abs=1e-3)
    assert (tmp_path / "out" / "slice_overlay.png").stat().st_size > 1000
    mask = nib.load(str(tmp_path / "out" / "slice_mask.nii.gz"))
    assert mask.shape == (56, 40, 2) and mask.header.get_zooms()[:2] == pytest.approx((0.5, 2.0))


def test_store_input_gives_a_store_with_predicted_masks(tmp_path):
    frames, truth = ring_frames(4)
    images = (frames - frames.min()) / (frames.max() - frames.min())
    meta = {
        "subject": ["a", "a", "b", "b"],
        "slice": [0, 0, 1, 1],
        "frame": [0, 1, 0, 1],
        "n_frames": [2] * 4,
        "phase": ["ED", "", "ED", ""],
        "group": ["control"] * 4,
        "spacing_mm": np.full((4, 2), 1.4, np.float32),
        "source": ["x"] * 4,
    }
    write_store(tmp_path / "new.h5", images, np.zeros_like(truth, np.uint8), meta, name="new")
    report = predict(
        segmenter(),
        tmp_path / "new.h5",
        tmp_path / "out",
        overlays=False,
        attrs={"checkpoint": "c.ckpt"},
        progress=False,
    )
    pred = read_store(tmp_path / "out" / "new_pred.h5")
    np.testing.assert_allclose(pred.images, images)
    assert list(pred.meta["subject"]) == meta["subject"] and pred.attrs["checkpoint"] == "c.ckpt"
    assert all(dice(pred.masks[i] == 2, truth[i]) > 0.85 for i in range(4))
    assert not (tmp_path / "out" / "new_overlay.png").exists()
    assert {p.name for p in report.files} >= {
        "new_pred.h5",
        "new_points.json",
        "reference_points.csv",
        "predictions.csv",
    }


# -- checkpoints and the command ------------------------------------------------------------------


def test_load_segmenter_reads_the_training_preprocessing(trained_ckpt):
    from tagseg.stages.predict import load_segmenter

    seg = load_segmenter(trained_ckpt.parents[1])  # a run folder with one checkpoint works too
    assert seg.image_size == 32 and seg.labels == (0, 2) and (seg.mean, seg.std) == (0.456, 0.224)
    frames, _ = ring_frames(2)
    labels = seg.segment(frames, batch_size=1)
    classes = seg.logits(seg.preprocess(frames)).argmax(1)  # at the model size, 32x32
    assert classes.shape == (2, 32, 32)
    back = resize_nearest(classes.astype(np.uint8), SHAPE)
    np.testing.assert_array_equal(labels, np.where(back == 1, 2, 0))  # class 1 -> store label 2, in the frame's size


def test_store_preprocessing_equals_the_datamodule(ring_store):
    from tagseg.data.datamodule import SliceDataModule

    dm = SliceDataModule(
        stores=[str(ring_store)], image_size=16, batch_size=4, augment={"enabled": False}, mean=0.4, std=0.3
    )
    dm.setup("fit")
    rows = dm.datasets["val"].rows
    expected = torch.stack([dm.datasets["val"][i]["image"] for i in range(len(rows))])
    images = read_store(ring_store).images[rows]
    got = Segmenter(network=ThresholdNet(), image_size=16, mean=0.4, std=0.3).preprocess(images, scaled=True)
    torch.testing.assert_close(torch.from_numpy(got), expected)


def test_checkpoint_errors(tmp_path, trained_ckpt):
    from tagseg.errors import ConfigError
    from tagseg.stages.predict import load_segmenter

    with pytest.raises(ConfigError, match=r"ckpt: checkpoint .*none\.ckpt not found"):
        load_segmenter(tmp_path / "none.ckpt")
    (tmp_path / "junk.ckpt").write_text("not a checkpoint")
    with pytest.raises(ConfigError, match="junk.ckpt: not a readable"):
        load_segmenter(tmp_path / "junk.ckpt")
    torch.save({"hyper_parameters": {"generator": {}, "lr": 2e-4}, "state_dict": {}}, tmp_path / "gan.ckpt")
    with pytest.raises(
        ConfigError, match=r"gan.ckpt: a checkpoint of another model type .*missing \['network', 'image_size'"
    ):
        load_segmenter(tmp_path / "gan.ckpt")
    state = torch.load(trained_ckpt, weights_only=True)
    state["state_dict"].pop(next(iter(state["state_dict"])))
    torch.save(state, tmp_path / "cut.ckpt")
    with pytest.raises(ConfigError, match="weights do not match.*missing"):
        load_segmenter(tmp_path / "cut.ckpt")
    with pytest.raises(ConfigError, match="candidate checkpoints"):
        load_segmenter(tmp_path)


def run_cli(*args: str, root: Path) -> subprocess.CompletedProcess[str]:
    return run_tagseg(["predict", *args, "progress=false"], None, root=root, timeout=300)


def test_predict_app_composes_and_runs(compose_config, tmp_path, trained_ckpt):
    from tagseg.stages.predict import predict_scans as run

    frames, _ = ring_frames(2)
    write_matlab_imt(tmp_path / "in" / "slice.h5", frames, spacing=(1.4, 1.4))
    out = tmp_path / "out"
    cfg = compose_config("predict", f"ckpt={trained_ckpt}", f"input={tmp_path / 'in'}", f"output={out}", output_dir=out)
    run(cfg)
    assert nib.load(str(out / "slice_mask.nii.gz")).shape == (56, 40, 2)
    assert json.loads((out / "slice_points.json").read_text())["scan"] == "slice"
    with open(out / "predictions.csv") as fh:
        assert [r["frame"] for r in csv.DictReader(fh)] == ["0", "1"]
    with open(out / "failed.csv") as fh:
        assert list(csv.DictReader(fh)) == []
    with pytest.raises(DataError, match="no scan found"):  # inputs are checked before the model is loaded
        (tmp_path / "empty").mkdir()
        run(compose_config("predict", f"ckpt={trained_ckpt}", f"input={tmp_path / 'empty'}", f"output={out}"))


@pytest.mark.slow
def test_tagseg_predict_command_end_to_end(tmp_path, trained_ckpt):
    frames, _ = ring_frames(3)
    write_matlab_imt(tmp_path / "in" / "1_D_D_301_mid.h5", frames, spacing=(1.4, 1.4))
    write_nifti(tmp_path / "in" / "other.nii.gz", np.transpose(frames, (2, 1, 0)), zooms=(1.2, 1.2, 1.0))
    out = tmp_path / "out"
    proc = run_cli(f"ckpt={trained_ckpt}", f"input={tmp_path / 'in'}", f"output={out}", "n_points=12", root=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert f"predictions: {out}" in proc.stdout and "1_D_D_301_mid" in proc.stdout
    for name in ("1_D_D_301_mid", "other"):
        mask = nib.load(str(out / f"{name}_mask.nii.gz"))
        assert mask.shape == (56, 40, 3)
        assert (out / f"{name}_overlay.png").exists() and (out / f"{name}_points.json").exists()
    with open(out / "predictions.csv") as fh:
        assert len(list(csv.DictReader(fh))) == 6
    bad = run_cli(f"ckpt={tmp_path / 'missing.ckpt'}", f"input={tmp_path / 'in'}", root=tmp_path)
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines()[-1] == (
        f"tagseg: error: ckpt: checkpoint {tmp_path / 'missing.ckpt'} not found (expected a .ckpt file or a run folder)"
    )
