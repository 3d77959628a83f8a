"""The metrics registry: one ``register_metric`` call puts a metric into every table that lists metrics."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from hydra.core.utils import JobReturn, JobStatus
from hydra.types import RunMode
from omegaconf import OmegaConf

from tagseg.errors import ConfigError
from tagseg.metric_registry import (
    MetricSpec,
    get_metric,
    metric_names,
    metric_specs,
    register_metric,
    resolve_function,
    unregister_metric,
)
from tagseg.metrics import dice_batch

pytestmark = pytest.mark.usefixtures("single_thread")

DUMMY = "dice_loss_value"


def one_minus_dice(pred, target, spacing_mm):
    """A metric whose value a test knows without computing it: 1 - Dice, lower is better."""
    return 1.0 - dice_batch(pred, target)


@pytest.fixture
def dummy_metric():
    """The one place the test adds a metric."""
    spec = register_metric(MetricSpec(DUMMY, one_minus_dice, "lower", fmt=".4f", label="1 - Dice", short="loss"))
    yield spec
    unregister_metric(DUMMY)


def test_builtins_come_first_with_their_directions():
    assert metric_names()[:2] == ("dice", "hd95_mm")
    assert get_metric("dice").higher_is_better and not get_metric("hd95_mm").higher_is_better
    assert get_metric("hd95_mm").unit == "mm" and get_metric("hd95_mm").rank_key == "rank_hd95"
    # a dotted path resolves to the function itself
    assert resolve_function(get_metric("dice").function) is dice_batch


def test_registration_errors_name_the_metric():
    with pytest.raises(ConfigError, match="'dice' is registered already"):
        register_metric(MetricSpec("dice", dice_batch, "higher"))
    with pytest.raises(ConfigError, match="direction must be 'higher' or 'lower'"):
        MetricSpec("x", dice_batch, "up")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="expected an identifier"):
        MetricSpec("hd 95", dice_batch, "lower")
    with pytest.raises(ConfigError, match="'nope': not registered .*dice, hd95_mm"):
        get_metric("nope")
    with pytest.raises(ConfigError, match="cannot import it"):
        resolve_function("tagseg.metrics.no_such_function")
    assert metric_names()[:2] == ("dice", "hd95_mm") and "x" not in metric_names()


def _tested_rows(ckpt: Path, store: Path) -> list[dict]:
    """Per-image rows of a real Lightning test of a checkpoint on a store."""
    import lightning as L

    from tagseg.data.datamodule import SliceDataModule
    from tagseg.models.segmentation import SegmentationModule

    model = SegmentationModule.load_from_checkpoint(ckpt, map_location="cpu", weights_only=False)
    dm = SliceDataModule(stores=[str(store)], image_size=32, batch_size=4, augment={"enabled": False})
    trainer = L.Trainer(
        accelerator="cpu", devices=1, logger=False, enable_progress_bar=False, enable_model_summary=False
    )
    trainer.test(model, datamodule=dm, verbose=False)
    return model.test_rows


def _sweep_cell(sweep: Path, job: int, gamma: str, rows: list[dict]) -> None:
    """A finished ``tagseg train`` multirun cell: its test files, and the record the sweep callback keeps."""
    from tagseg.io.run_dir import write_test_results
    from tagseg.pipeline.sweep import SweepSummary

    run = sweep / str(job)
    (run / ".hydra").mkdir(parents=True)
    (run / ".hydra" / "overrides.yaml").write_text(f"- loss.gamma={gamma}\n")
    write_test_results(rows, run)
    config = OmegaConf.create(
        {
            "hydra": {
                "mode": RunMode.MULTIRUN,
                "runtime": {"output_dir": str(run)},
                "job": {"num": job},
                "overrides": {"task": [f"loss.gamma={gamma}"]},
            }
        }
    )
    SweepSummary().on_job_end(config, JobReturn(status=JobStatus.COMPLETED, _return_value=0.5))


def test_a_registered_metric_reaches_every_table(dummy_metric, trained_ckpt, make_ring_store, tmp_path):
    from tagseg.io.run_dir import write_test_results
    from tagseg.pipeline.sweep import write_summary
    from tagseg.report.dashboard import summary_metrics
    from tagseg.report.sweep import write_sweep_report
    from tagseg.report.tables import write_tables
    from tagseg.runtime.console import summary_table
    from tagseg.runtime.wandb_run import define_metrics

    rows = _tested_rows(trained_ckpt, make_ring_store("rings.h5"))
    assert rows and all(r[DUMMY] == pytest.approx(1.0 - r["dice"]) for r in rows)

    # the test CSV (right after the built-in metrics) and summary.json
    metrics_path, summary_path, _ = write_test_results(rows, tmp_path / "run")
    table = pd.read_csv(metrics_path)
    assert list(table.columns[:7]) == ["subject", "slice", "frame", "group", "dice", "hd95_mm", DUMMY]
    summary = json.loads(summary_path.read_text())
    dice = np.array([r["dice"] for r in rows])
    assert summary[f"{DUMMY}_mean"] == pytest.approx(1.0 - dice.mean())
    assert summary[f"{DUMMY}_std"] == pytest.approx(dice.std(ddof=1))
    assert summary[f"{DUMMY}_median"] == pytest.approx(1.0 - np.median(dice))
    assert all(f"{DUMMY}_mean" in s for s in summary["per_group"].values())

    # a sweep of two cells: summary.csv and its Markdown table; the report's tables
    sweep = tmp_path / "sweep"
    worse = [{**r, DUMMY: r[DUMMY] + 0.25} for r in rows]
    _sweep_cell(sweep, 0, "0.1", rows)
    _sweep_cell(sweep, 1, "0.5", worse)
    csv_path, _ = write_summary(sweep)
    cells = pd.read_csv(csv_path)
    assert cells[f"test_{DUMMY}_mean"].tolist() == pytest.approx([1.0 - dice.mean(), 1.25 - dice.mean()])
    assert "1 - Dice" in write_sweep_report(csv_path, tmp_path / "sweep_report")["sweep_md"].read_text()

    report = write_tables(sweep, tmp_path / "report")
    runs = pd.read_csv(report["summary_csv"], dtype={"run": str}).set_index("run")
    assert runs.loc["0", f"{DUMMY}_mean"] == pytest.approx(1.0 - dice.mean())
    # lower is better: the cell with the smaller value ranks first on this metric
    assert runs.loc["0", "rank_loss"] == 1 and runs.loc["1", "rank_loss"] == 2
    assert (runs["cumulative_rank"] == runs["rank_dice"] + runs["rank_hd95"] + runs["rank_loss"]).all()
    assert "| 1 - Dice |" in report["summary_md"].read_text()
    assert json.loads(report["report_json"].read_text())[f"best_{DUMMY}_mean"] == pytest.approx(1.0 - dice.mean())
    assert f"{DUMMY}_mean" in pd.read_csv(report["by_frame"]).columns

    # console and W&B
    assert "1 - Dice mean" in [c.header for c in summary_table(summary).columns]
    assert summary_metrics(summary)[f"test/{DUMMY}"] == pytest.approx(1.0 - dice.mean())
    defined: dict[str, str | None] = {}
    define_metrics(SimpleNamespace(define_metric=lambda name, summary=None: defined.setdefault(name, summary)))
    assert defined[f"val/{DUMMY}"] == "min" and defined["val/dice"] == "max"


def test_unregistering_restores_the_builtin_tables(dummy_metric):
    from tagseg.io.run_dir import metric_columns, sweep_columns

    assert DUMMY in metric_columns() and f"test_{DUMMY}_mean" in sweep_columns()
    unregister_metric(DUMMY)
    assert metric_columns() == ("subject", "slice", "frame", "group", "dice", "hd95_mm")
    assert [m.name for m in metric_specs()] == ["dice", "hd95_mm"]
