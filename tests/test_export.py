"""tagseg export: ONNX / torch.export models with a sidecar, equal to the checkpoint they come from."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest

from tagseg.errors import ConfigError
from tagseg.models.segmenter import load_segmenter
from tagseg.stages.export import export_model, load_exported
from tagseg.stages.predict import predict


def _scan(tmp_path):
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:40, :56]
    ring = (np.hypot(yy - 18, xx - 26) < 11) & (np.hypot(yy - 18, xx - 26) >= 6)
    data = np.stack([ring * 800.0 + rng.normal(100, 30, ring.shape) for _ in range(3)], axis=-1).transpose(1, 0, 2)
    path = tmp_path / "in" / "scan.nii.gz"
    path.parent.mkdir()
    nib.save(nib.Nifti1Image(data.astype(np.float32), np.diag([1.3, 1.3, 8.0, 1.0])), str(path))
    return path


@pytest.fixture(scope="module")
def onnx_model(trained_ckpt, tmp_path_factory):
    folder = tmp_path_factory.mktemp("onnx")
    export_model(trained_ckpt, "onnx", folder)
    return folder


def test_onnx_runs_in_onnxruntime_alone_and_equals_pytorch(onnx_model, trained_ckpt):
    import onnxruntime as ort

    meta = json.loads((onnx_model / "model.json").read_text())
    assert meta["format"] == "onnx" and meta["image_size"] == 32 and meta["labels"] == [0, 2]
    assert (
        (meta["mean"], meta["std"]) == (0.456, 0.224)
        and len(meta["checkpoint_sha256"]) == 64
        and meta["tagseg_version"]
    )
    x = np.random.default_rng(1).normal(size=(5, 1, 32, 32)).astype(np.float32)  # batch size other than the export's
    session = ort.InferenceSession(str(onnx_model / meta["file"]), providers=["CPUExecutionProvider"])
    got = session.run(None, {meta["input"]["name"]: x})[0]
    want = load_segmenter(trained_ckpt).logits(x)
    assert got.shape == (5, 2, 32, 32)
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_predict_with_an_exported_model_gives_the_checkpoint_masks(onnx_model, trained_ckpt, tmp_path):
    scan = _scan(tmp_path)
    predict(load_segmenter(trained_ckpt), scan, tmp_path / "ckpt", overlays=False, progress=False)
    want = np.asarray(nib.load(str(tmp_path / "ckpt" / "scan_mask.nii.gz")).dataobj)
    folders = {"onnx": onnx_model, "torch_export": tmp_path / "te"}
    export_model(trained_ckpt, "torch_export", folders["torch_export"])
    for fmt, folder in folders.items():
        predict(load_exported(folder), scan, tmp_path / fmt, overlays=False, progress=False)
        got = np.asarray(nib.load(str(tmp_path / fmt / "scan_mask.nii.gz")).dataobj)
        np.testing.assert_array_equal(got, want, err_msg=fmt)


def test_exported_model_checks(onnx_model, tmp_path):
    with pytest.raises(ConfigError, match="model.json not found"):
        load_exported(tmp_path)
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "model.json").write_text((onnx_model / "model.json").read_text())
    (bad / "model.onnx").write_bytes((onnx_model / "model.onnx").read_bytes()[:-10] + b"0123456789")
    with pytest.raises(ConfigError, match="does not match the sha256"):
        load_exported(bad)
    with pytest.raises(ConfigError, match="format: expected one of"):
        export_model(tmp_path / "x.ckpt", "tflite", tmp_path / "o")


def test_predict_stage_takes_model_on_the_command_line(onnx_model, tmp_path):
    from hydra import compose, initialize_config_dir

    from tagseg.cli import alias
    from tagseg.runtime.config import CONF_DIR
    from tagseg.stages.predict import predict_scans

    assert alias("predict", f"model={onnx_model}") == f"exported_model={onnx_model}"  # `model` is a config group
    assert alias("train", "model=resnetvae") == "model=resnetvae"
    scan = _scan(tmp_path)
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose(
            "predict",
            overrides=[
                alias("predict", f"model={onnx_model}"),
                f"input={scan}",
                f"output={tmp_path / 'out'}",
                f"paths.output_dir={tmp_path}",
                "overlays=false",
                "progress=false",
            ],
        )
    report = predict_scans(cfg)
    assert report.scans == ["scan"] and not report.failures and report.timings["images"] == 3
    assert report.timing_line().startswith("time: ") and "ms/image" in report.timing_line()
    with pytest.raises(ConfigError, match="pass exactly one"):
        with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
            predict_scans(
                compose(
                    "predict",
                    overrides=[
                        f"exported_model={onnx_model}",
                        f"ckpt={onnx_model}",
                        f"input={scan}",
                        f"paths.output_dir={tmp_path}",
                    ],
                )
            )
