"""QC model, scoring and where QC shows: fit + round trip with a checkpoint and an exported model,
validation of untrusted model files, predict's columns / review / skip, the evaluation statistics."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from raw_fixtures import write_nifti
from torch import nn

from tagseg.errors import ConfigError
from tagseg.models.segmenter import Ensemble, Segmenter
from tagseg.qc.evaluation import auroc, calibration, caught_at_false_flags, qc_statistics, subject_bootstrap
from tagseg.qc.model import QC_MODEL_FILE, QCModel, fit_qc_model, fit_ridge, load_qc_model, qc_model_path
from tagseg.qc.scan import qc_settings
from tagseg.qc.signals import SIGNALS
from tagseg.qc.views import segment_with_uncertainty
from tagseg.stages.predict import predict


class ThresholdNet(nn.Module):
    """Myocardium where the normalised input is above 0 (bright)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([torch.zeros_like(x), 10.0 * x], dim=1)


def ring_frames(n: int = 4, shape=(40, 48), broken: bool = False) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    frames = []
    for t in range(n):
        r = np.hypot(yy - 20, xx - 24 - 0.5 * t)
        m = (r >= 6) & (r <= 11)
        if broken:
            m &= xx < 24  # half a ring: no hole, half the rays empty
        frames.append(m * 900.0 + 50.0)
    return np.stack(frames).astype(np.float32)


# -- the model ------------------------------------------------------------------------------------------------


def synthetic_rows(n: int = 60, seed: int = 0) -> tuple[list[dict], np.ndarray]:
    """Rows whose Dice is a known logistic function of the gap fraction and entropy."""
    rng = np.random.default_rng(seed)
    rows, dice = [], []
    for _ in range(n):
        gap, ent = rng.uniform(0, 0.6), rng.uniform(0, 0.5)
        row = {s: float("nan") for s in SIGNALS}
        row.update(gap_fraction=gap, entropy_myo=ent, ring=float(gap < 0.05), agreement_dice=1 - ent / 2)
        rows.append(row)
        dice.append(1 / (1 + np.exp(-(3.0 - 6.0 * gap - 4.0 * ent))))
    return rows, np.array(dice)


def test_ridge_recovers_a_logistic_relation() -> None:
    rows, dice = synthetic_rows()
    model = fit_qc_model(rows, dice, view_rows=rows, view_dice=dice, ridge=1e-6)
    assert [v.features for v in model.variants][1] == [s for s in SIGNALS if s != "agreement_dice"]
    test_rows, test_dice = synthetic_rows(20, seed=1)
    assert np.abs(model.predict(test_rows) - test_dice).max() < 0.02
    # without an agreement the view-free variant scores the row
    for row in test_rows:
        row["agreement_dice"] = float("nan")
    assert np.abs(model.predict(test_rows) - test_dice).max() < 0.02
    assert model.flag(np.array([0.79, 0.8, 0.95])).tolist() == [1, 0, 0]


def test_constant_and_missing_signals_get_no_weight() -> None:
    x = np.array([[1.0, 5.0, np.nan], [2.0, 5.0, np.nan], [3.0, 5.0, np.nan], [4.0, 5.0, np.nan]])
    v = fit_ridge(x, np.array([0.2, 0.4, 0.6, 0.8]), ["a", "b", "c"], ridge=0.0)
    assert v.weights[1] == 0 and v.weights[2] == 0 and v.weights[0] > 0
    assert v.scale[1] == 1 and v.mean[2] == 0


def test_qc_model_path_next_to_the_run(tmp_path: Path) -> None:
    assert qc_model_path(tmp_path / "run" / "checkpoints" / "best.ckpt") == tmp_path / "run" / QC_MODEL_FILE
    assert qc_model_path(tmp_path / "x" / "model.ckpt") == tmp_path / "x" / QC_MODEL_FILE
    assert qc_model_path(tmp_path) == tmp_path / QC_MODEL_FILE


@pytest.mark.parametrize(
    "edit, message",
    [
        (lambda d: "not json {", "not a readable QC model"),
        (lambda d: {**d, "schema": "other/1"}, "schema"),
        (lambda d: {**d, "threshold": 1.5}, "threshold"),
        (lambda d: {**d, "variants": []}, "variants"),
        (lambda d: {**d, "variants": [{**d["variants"][0], "features": ["os.system"]}]}, "features"),
        (lambda d: {**d, "variants": [{**d["variants"][0], "weights": [1.0]}]}, "weights"),
        (lambda d: {**d, "variants": [{**d["variants"][0], "bias": "NaN"}]}, "bias"),
        (lambda d: {**d, "variants": [{**d["variants"][0], "scale": [0.0] * len(d["variants"][0]["scale"])}]}, "scale"),
    ],
)
def test_load_rejects_bad_model_files(tmp_path: Path, edit, message: str) -> None:
    rows, dice = synthetic_rows()
    path = fit_qc_model(rows, dice).save(tmp_path / QC_MODEL_FILE)
    doc = edit(json.loads(path.read_text()))
    path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    with pytest.raises(ConfigError, match=message) as err:
        load_qc_model(path)
    assert str(path) in str(err.value)


def test_nan_in_json_is_rejected(tmp_path: Path) -> None:
    rows, dice = synthetic_rows()
    path = fit_qc_model(rows, dice).save(tmp_path / QC_MODEL_FILE)
    path.write_text(path.read_text().replace('"bias": ', '"bias": NaN, "x": ', 1))
    with pytest.raises(ConfigError, match="finite"):
        load_qc_model(path)


# -- segmentation by-products ----------------------------------------------------------------------------------


def test_uncertainty_labels_equal_segment_with_flips_and_ensembles(single_thread) -> None:
    frames = ring_frames(3)
    frames[1] += np.random.default_rng(0).normal(0, 300, frames[1].shape).astype(np.float32)
    one = Segmenter(network=ThresholdNet(), image_size=32)
    pair = Ensemble([one, Segmenter(network=ThresholdNet(), image_size=24)])
    for seg in (one, pair):
        for tta in (False, True):
            unc = segment_with_uncertainty(seg, frames, batch_size=2, tta=tta)
            assert np.array_equal(unc.labels, seg.segment(frames, batch_size=2, tta=tta))
            assert np.all((unc.entropy >= 0) & (unc.entropy <= 1))
            assert unc.n_views == (2 if seg is pair else 1) * (4 if tta else 1)
            if unc.n_views == 1:
                assert np.isnan(unc.agreement).all()
            else:
                assert np.all((unc.agreement > 0) & (unc.agreement <= 1))
    # a threshold network is flip-equivariant: the flips agree exactly on a clean ring
    clean = segment_with_uncertainty(one, ring_frames(2), tta=True)
    assert clean.agreement == pytest.approx([1.0, 1.0])


# -- fit with a checkpoint, round trip, export -------------------------------------------------------------------


@pytest.fixture
def qc_run(tmp_path: Path, trained_ckpt: Path, make_ring_store, compose_config, single_thread):
    """A copy of the tiny trained run with its QC model fitted on a ring store's validation split."""
    from tagseg.stages.qc import fit_qc

    run = tmp_path / "trained"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(trained_ckpt, run / "checkpoints" / "best.ckpt")
    store = make_ring_store("fit.h5", n_subjects=6, n_slices=2, n_frames=6)
    cfg = compose_config("qc", f"ckpt={run}", f"fit_store={store}", "shifts=[]")
    model, path = fit_qc(cfg)
    return run, model, path


def test_fit_stores_the_model_next_to_the_checkpoint(qc_run) -> None:
    run, model, path = qc_run
    assert path == run / QC_MODEL_FILE
    assert model.fitted_on["sets"] == ["val"] and model.fitted_on["n_images"] == 12  # 1 val subject x 2 x 6
    assert [("agreement_dice" in v.features) for v in model.variants] == [True, False]
    with open(run / "qc_fit.csv") as fh:
        fit_rows = list(csv.DictReader(fh))
    assert len(fit_rows) == 24 and {r["tta"] for r in fit_rows} == {"none", "flip"}
    assert {r["subject"] for r in fit_rows} == {"s1"}  # the validation subject only, never the test one
    loaded = load_qc_model(path)
    for v, w in zip(loaded.variants, model.variants):
        assert v.features == w.features and v.weights == pytest.approx(w.weights)
    predicted = loaded.predict(fit_rows)
    assert np.allclose(predicted, model.predict(fit_rows)) and np.all((predicted >= 0) & (predicted <= 1))


def test_exported_model_carries_the_qc_model(qc_run, tmp_path: Path) -> None:
    from tagseg.qc.model import find_qc_model
    from tagseg.stages.export import SIDECAR, export_model, load_exported

    run, model, _ = qc_run
    out = tmp_path / "exported"
    export_model(run, "onnx", out)
    assert json.loads((out / SIDECAR).read_text())["qc_model"] == QC_MODEL_FILE
    seg = load_exported(out)
    settings = qc_settings({"enabled": True, "model": "auto"}, seg.source, ensemble=False)
    assert settings is not None and settings.model is not None
    with open(run / "qc_fit.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert np.allclose(settings.model.predict(rows), model.predict(rows))
    assert find_qc_model(out).threshold == model.threshold


# -- predict ----------------------------------------------------------------------------------------------------


def flag_everything_below(threshold: float = 0.8) -> QCModel:
    """A QC model reading only the ring signal: ring -> Dice 0.95, no ring -> 0.27."""
    rows = [{**{s: 0.0 for s in SIGNALS}, "ring": float(i % 2)} for i in range(20)]
    dice = [0.95 if i % 2 else 0.27 for i in range(20)]
    return fit_qc_model(rows, dice, ridge=1e-6, threshold=threshold)


@pytest.mark.parametrize("action", ["flag", "skip"])
def test_predict_writes_qc_columns_review_and_lists_flagged_scans(tmp_path: Path, action: str, single_thread) -> None:
    from tagseg.qc.scan import QCSettings
    from tagseg.qc.scoring import QC_COLUMNS, SCAN_COLUMNS

    write_nifti(tmp_path / "in" / "good.nii.gz", np.transpose(ring_frames(4), (2, 1, 0)), zooms=(1.5, 1.5, 1.0))
    write_nifti(
        tmp_path / "in" / "bad.nii.gz", np.transpose(ring_frames(4, broken=True), (2, 1, 0)), zooms=(1.5, 1.5, 1.0)
    )
    settings = QCSettings(model=flag_everything_below(), action=action)
    seg = Segmenter(network=ThresholdNet(), image_size=32)
    report = predict(seg, tmp_path / "in", tmp_path / "out", overlays=False, progress=False, qc=settings)
    out = tmp_path / "out"
    with open(out / "predictions.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0])[-len(QC_COLUMNS) :] == list(QC_COLUMNS)
    by_scan = {s: [r for r in rows if r["scan"] == s] for s in ("good", "bad")}
    assert {r["ring"] for r in by_scan["good"]} == {"1.0"} and {r["qc_flag"] for r in by_scan["good"]} == {"0"}
    assert {r["ring"] for r in by_scan["bad"]} == {"0.0"} and {r["qc_flag"] for r in by_scan["bad"]} == {"1"}
    assert float(by_scan["bad"][0]["predicted_dice"]) == pytest.approx(0.27, abs=0.01)
    with open(out / "qc_scans.csv") as fh:
        scans = {r["scan"]: r for r in csv.DictReader(fh)}
    assert list(next(iter(scans.values()))) == list(SCAN_COLUMNS)
    assert scans["bad"]["qc_flag"] == "1" and scans["bad"]["n_flagged"] == "4" and scans["good"]["qc_flag"] == "0"
    page = (out / "review.html").read_text()
    assert page.count("data:image/png;base64,") == 6 and "http" not in page and "<script" not in page
    assert page.index(">bad<") < page.index(">good<")  # worst predicted Dice first
    assert "QC flagged 1 scan(s)" in report.table() and "bad: predicted Dice" in report.table()
    assert report.exit_status() == 0
    assert (out / "good_mask.nii.gz").exists()
    assert (out / "bad_mask.nii.gz").exists() == (action == "flag")
    assert (out / "bad_points.json").exists() == (action == "flag")


def test_qc_settings_errors(tmp_path: Path) -> None:
    assert qc_settings({"enabled": False}, "x", False) is None
    with pytest.raises(ConfigError, match="qc.action"):
        qc_settings({"action": "drop"}, "x", False)
    with pytest.raises(ConfigError, match="qc.model"):
        qc_settings({"model": str(tmp_path / "missing.json")}, "x", False)
    assert qc_settings({"model": "auto"}, str(tmp_path / "run" / "checkpoints" / "best.ckpt"), False).model is None


# -- evaluation statistics -----------------------------------------------------------------------------------------


def test_auroc_and_catch_rate_by_hand() -> None:
    # positives score 0.35 and 0.8, negatives 0.1 and 0.4: 3 of the 4 pairs ordered -> 0.75
    assert auroc(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1])) == pytest.approx(0.75)
    assert auroc(np.array([0.5, 0.5]), np.array([0, 1])) == pytest.approx(0.5)  # a tie counts half
    assert np.isnan(auroc(np.array([0.1, 0.2]), np.array([0, 0])))
    neg = np.arange(100) / 100.0  # 95th percentile 0.9405
    scores = np.concatenate([neg, [0.5, 0.95, 0.99]])
    positive = np.r_[np.zeros(100, bool), np.ones(3, bool)]
    assert caught_at_false_flags(scores, positive) == pytest.approx(2 / 3)


def test_qc_statistics_and_subject_bootstrap() -> None:
    true = np.array([0.9, 0.85, 0.5, 0.95, 0.3, 0.88])
    stats = qc_statistics(true + 0.01, true)
    assert stats["auroc"] == 1.0 and stats["spearman"] == pytest.approx(1.0) and stats["mae"] == pytest.approx(0.01)
    assert stats["n_failed"] == 2
    subjects = ["a", "a", "b", "b", "c", "c"]
    lo, hi = subject_bootstrap(subjects, lambda idx: {"mean": float(true[idx].mean())}, n_boot=200)["mean"]
    per_subject = [0.875, 0.725, 0.59]
    assert min(per_subject) <= lo <= hi <= max(per_subject)
    bins = calibration(np.array([0.05, 0.15, 0.92, 0.97]), np.array([0.1, 0.2, 0.9, 0.8]), bins=10)
    assert [(b["n"], b["true"]) for b in bins] == [(1, 0.1), (1, 0.2), (2, pytest.approx(0.85))]


# -- evaluate and report ----------------------------------------------------------------------------------------


def test_evaluate_adds_qc_next_to_the_true_metrics_and_report_plots_it(qc_run, tmp_path, make_ring_store) -> None:
    import pandas as pd
    from hydra import compose, initialize_config_dir

    from tagseg.report.qc import write_qc_report
    from tagseg.runtime.config import CONF_DIR
    from tagseg.stages.evaluate import evaluate

    run, model, _ = qc_run
    store = make_ring_store("eval.h5", n_subjects=6, n_slices=2, n_frames=6)
    overrides = [f"ckpt={run}", f"paths.output_dir={tmp_path / 'eval'}", f"data.store={store}"]
    overrides += ["datamodule.image_size=32", "datamodule.num_workers=0", "trainer=cpu", "logger=csv"]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        cfg = compose("evaluate", overrides=[*overrides, "trainer.enable_model_summary=false"])
    result = evaluate(cfg)
    keys = ["subject", "slice", "frame"]
    truth = pd.read_csv(result["metrics_path"]).sort_values(keys).reset_index(drop=True)
    qc = pd.read_csv(result["qc"]).sort_values(keys).reset_index(drop=True)
    assert len(qc) == len(truth) == 12 and set(qc["subject"]) == {"s0"}  # the test subject
    # the QC pass segments the same images to the same masks as the test loop
    np.testing.assert_allclose(qc["dice"], truth["dice"], atol=1e-4)
    assert qc["predicted_dice"].between(0, 1).all() and set(qc["qc_flag"]) <= {0, 1}
    summary = json.loads((tmp_path / "eval" / "qc_summary.json").read_text())
    assert summary["model"] is True and summary["n_images"] == 12
    assert summary["mae"] == pytest.approx(float(np.abs(qc["predicted_dice"] - qc["dice"]).mean()), abs=1e-3)
    paths = write_qc_report(tmp_path / "eval", tmp_path / "report", n_boot=50)
    assert {p.name for p in paths.values()} == {"qc.csv", "qc.md", "qc_scatter.png", "qc_calibration.png"}
    assert "| test | 12 |" in paths["qc_md"].read_text()


def test_leave_one_set_out_scores_each_set_with_a_model_that_never_saw_it() -> None:
    import pandas as pd

    from tagseg.report.qc import leave_one_set_out

    frames = []
    for k, name in enumerate(("val", "shift:a")):
        rows, dice = synthetic_rows(40, seed=k)
        for tta in ("none", "flip"):
            df = pd.DataFrame(rows)
            df["dice"], df["tta"], df["test_set"] = dice, tta, name
            df["subject"] = [f"{name}-{i % 8}" for i in range(len(df))]
            frames.append(df)
    table = leave_one_set_out(pd.concat(frames), n_boot=50)
    assert list(table["test_set"]) == ["val (tta none)", "val (tta flip)", "shift:a (tta none)", "shift:a (tta flip)"]
    assert (table["n_images"] == 40).all() and (table["mae"] < 0.05).all()  # the same law holds in both sets
    assert leave_one_set_out(pd.concat(frames[:2])).empty  # one set: nothing to leave out


def test_qc_figures_and_statistics_go_to_wandb(tmp_path: Path, monkeypatch) -> None:
    import pandas as pd
    from lightning.pytorch.loggers import WandbLogger
    from wandb_files import offline_runs

    from tagseg.stages.qc import log_qc

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    true = np.r_[np.linspace(0.3, 0.79, 6), np.linspace(0.81, 0.95, 10)]
    rows = {"subject": [f"s{i % 4}" for i in range(16)], "dice": true, "predicted_dice": true + 0.01, "qc_flag": 0}
    (tmp_path / "eval").mkdir()
    pd.DataFrame(rows).to_csv(tmp_path / "eval" / "qc.csv", index=False)
    logger = WandbLogger(project="tagseg", save_dir=str(tmp_path), offline=True)
    log_qc([logger], tmp_path / "eval")
    logger.experiment.finish()
    (run,) = offline_runs(tmp_path)
    summary = run["summary"]
    assert summary["qc/test/auroc"] == 1.0 and summary["qc/test/mae"] == pytest.approx(0.01)
    assert summary["qc/scatter/_type"] == "image-file" and summary["qc/calibration/_type"] == "image-file", sorted(
        summary
    )
    assert (tmp_path / "eval" / "qc" / "qc_scatter.png").is_file()


def test_scoring_the_fit_split_is_marked_not_held_out(qc_run, tmp_path: Path) -> None:
    from tagseg.io.store import read_store
    from tagseg.models.segmenter import load_segmenter
    from tagseg.stages.qc import EvalQC, evaluate_qc

    run, model, _ = qc_run
    settings = EvalQC(load_segmenter(run), model, tta=False, batch_size=16)
    store = Path(model.fitted_on["store"])
    split = np.asarray(read_store(store, extras=False).meta["split"]).astype(str)
    evaluate_qc(settings, {str(store): np.flatnonzero(split == "val")}, tmp_path / "val", test_set="val")
    evaluate_qc(settings, {str(store): np.flatnonzero(split == "test")}, tmp_path / "test", test_set="test")
    assert json.loads((tmp_path / "val" / "qc_summary.json").read_text())["scored_on_fit_set"] is True
    assert "scored_on_fit_set" not in json.loads((tmp_path / "test" / "qc_summary.json").read_text())
