"""W&B dashboards: test metrics, tables, best validation Dice, cell runs from cached results (offline W&B),
the sweep table and figure, the Optuna trial values, callbacks=minimal."""

from __future__ import annotations

import math
import time
from pathlib import Path

import pandas as pd
import pytest
from hydra.core.utils import JobReturn, JobStatus
from omegaconf import OmegaConf
from wandb_files import offline_runs

from tagseg.pipeline.optuna_sweeper import trial_value
from tagseg.report.dashboard import best_validation, log_cell_run, summary_metrics
from tagseg.report.sweep import plot_sweep, sweep_markdown, swept_columns
from tagseg.runtime.wandb_run import flatten, short_key
from tagseg.stages.train import write_test_results

ROWS = [
    {
        "index": i,
        "subject": f"s{i // 2}",
        "slice": 0,
        "frame": i % 2,
        "group": "control" if i < 2 else "dmd",
        "dice": 0.5 + 0.1 * i,
        "hd95_mm": 10.0 - i,
    }
    for i in range(4)
]


def _csv_log(run_dir: Path, values: list[float]) -> None:
    folder = run_dir / "csv" / "version_0"
    folder.mkdir(parents=True)
    rows = []
    for epoch, dice in enumerate(values):
        rows += [
            {"epoch": epoch, "step": 2 * epoch, "train/loss": 1.0 / (epoch + 1)},
            {"epoch": epoch, "step": 2 * epoch + 1, "val/dice": dice, "val/loss": 1 - dice},
        ]
    pd.DataFrame(rows).to_csv(folder / "metrics.csv", index=False)


def test_summary_keys_cover_mean_std_median_group_and_frame(tmp_path):
    _, _, summary = write_test_results(ROWS, tmp_path)
    m = summary_metrics(summary)
    assert m["test/dice"] == pytest.approx(0.65) and m["test/hd95_mm_median"] == pytest.approx(8.5)
    assert m["test/dice_std"] > 0 and m["test/n_images"] == 4
    assert m["test/group/dmd/dice"] == pytest.approx(0.75) and m["test/frame/1/hd95_mm"] == pytest.approx(8.0)


def test_best_validation_is_the_max_and_its_epoch(tmp_path):
    _csv_log(tmp_path, [0.3, 0.7, 0.6])
    assert best_validation(tmp_path) == {"val/dice_best": pytest.approx(0.7), "val/dice_best_epoch": 1}
    assert best_validation(tmp_path / "none") == {}


def test_cell_run_from_cached_results_has_test_metrics_table_and_reused_tag(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    test_dir, train_dir, out = tmp_path / "test", tmp_path / "finetune", tmp_path / "cell"
    write_test_results(ROWS, test_dir)
    _csv_log(train_dir, [0.3, 0.7])
    cfg = OmegaConf.create(
        {
            "task_name": "train",
            "tags": ["demo"],
            "loss": {"gamma": 0.1},
            "paths": {"output_dir": str(out)},
            "strategy": {"name": "scratch"},
            "logger": {"wandb": {"project": "tagseg", "group": None, "tags": [], "log_model": False}},
        }
    )
    log_cell_run(cfg, name="gamma=0.1", test_dir=test_dir, train_dir=train_dir, reused=True, extra={"epochs": 2})
    (run,) = offline_runs(out)
    assert run["name"] == "gamma=0.1" and run["job_type"] == "cell" and run["group"] == "train"
    assert {"reused", "demo", "strategy:scratch", "task:train"} <= set(run["tags"])
    s = run["summary"]
    assert s["test/dice"] == pytest.approx(0.65) and s["reused"] is True
    assert s["val/dice_best"] == pytest.approx(0.7) and s["val/dice_best_epoch"] == 1
    assert s["val/dice"] == {"max": pytest.approx(0.7)}  # define_metric: the best, not the last epoch
    assert s["test/images/_type"] == "table-file" and s["test/images/nrows"] == 4
    assert run["config"]["loss.gamma"] == 0.1  # flat keys


def test_sweep_table_and_figure_in_table3_layout(tmp_path):
    rows = []
    for model in ("resnetvae", "nnunet"):
        for strategy in ("scratch", "cine"):
            rows.append(
                {
                    "job": len(rows),
                    "model": model,
                    "strategy": strategy,
                    "overrides": "",
                    "status": "ok",
                    "error": None,
                    "test_dice_mean": 0.8,
                    "test_dice_std": 0.05,
                    "test_hd95_mm_mean": 3.0,
                    "test_hd95_mm_std": 1.0,
                    "val_dice_best": 0.82,
                    "val_dice_best_epoch": 3,
                    "epochs": 5,
                    "wall_s": 1.0,
                    "run_dir": "r",
                }
            )
    rows[-1].update(status="failed", error="boom", test_dice_mean=None)
    df = pd.DataFrame(rows)
    assert swept_columns(df) == ["model", "strategy"]
    table = sweep_markdown(df)
    assert (
        table.splitlines()[0]
        == "| strategy | model=resnetvae Dice | model=resnetvae HD95 (mm) | model=nnunet Dice | model=nnunet HD95 (mm) |"
    )
    assert "| cine | 0.800 +/- 0.050 | 3.000 +/- 1.000 | - | - |" in table and "failed: job 3" in table
    assert plot_sweep(df, tmp_path / "sweep.png").stat().st_size > 0


def test_flat_config_and_short_keys():
    assert flatten({"model": {"optimizer": {"lr": 0.01}}, "tags": ["a"]}) == {"model.optimizer.lr": 0.01, "tags": ["a"]}
    assert short_key("loss.gamma") == "gamma" and short_key("model") == "model"


def _ret(value=None, exc: BaseException | None = None) -> JobReturn:
    ret = JobReturn()
    ret.status = JobStatus.FAILED if exc is not None else JobStatus.COMPLETED
    ret._return_value = exc if exc is not None else value
    return ret


def test_optuna_trial_values_failed_cells_are_failures():
    assert trial_value(_ret(0.7)) == (0.7, None)
    assert trial_value(_ret(math.nan))[1] == "the cell's optimized_metric is NaN"
    assert trial_value(_ret({"status": "failed", "error": "ConfigError: x"})) == (None, "ConfigError: x")
    assert trial_value(_ret(exc=ValueError("boom"))) == (None, "ValueError: boom")


def test_minimal_callbacks_keep_the_lr_monitor_and_draw_no_progress_bar(tmp_path):
    from lightning.pytorch.callbacks import LearningRateMonitor, ProgressBar

    from tagseg.runtime.config import compose, instantiate, instantiate_group
    from tagseg.stages.train import progress_bar_setting

    cfg = compose("train", ["callbacks=minimal", "trainer=cpu", f"paths.output_dir={tmp_path}"])
    callbacks = instantiate_group(cfg.callbacks, "callbacks")
    assert any(isinstance(c, LearningRateMonitor) for c in callbacks)
    trainer = instantiate(
        cfg.trainer, "trainer", callbacks=callbacks, logger=False, **progress_bar_setting(cfg.trainer, callbacks)
    )
    assert trainer.progress_bar_callback is None
    assert not any(isinstance(c, ProgressBar) for c in trainer.callbacks)
    default = instantiate_group(
        compose("train", ["callbacks=default", f"paths.output_dir={tmp_path}"]).callbacks, "callbacks"
    )
    assert progress_bar_setting(cfg.trainer, default) == {"enable_progress_bar": True}


def test_report_on_a_sweep_folder_writes_the_sweep_table_and_figure(tmp_path):
    from tagseg.stages.report import report

    sweep = tmp_path / "sweep"
    for job in range(2):
        write_test_results(ROWS, sweep / str(job))
    pd.DataFrame(
        [
            {
                "job": j,
                "loss.gamma": g,
                "overrides": f"loss.gamma={g}",
                "status": "ok",
                "error": None,
                "test_dice_mean": 0.65,
                "test_dice_std": 0.1,
                "test_hd95_mm_mean": 8.5,
                "test_hd95_mm_std": 1.3,
                "val_dice_best": 0.6,
                "val_dice_best_epoch": 2,
                "epochs": 3,
                "wall_s": 1.0,
                "run_dir": str(sweep / str(j)),
            }
            for j, g in enumerate(("0", "0.1"))
        ]
    ).to_csv(sweep / "summary.csv", index=False)
    paths, figures = report(OmegaConf.create({"path": str(sweep), "output": None, "examples": False}))
    assert paths["sweep_md"].read_text().splitlines()[0] == "| loss.gamma | Dice | HD95 (mm) | best val Dice | epochs |"
    assert sweep / "report" / "sweep.png" in figures


def test_checkpoint_artifact_named_by_its_cache_key(tmp_path, monkeypatch):
    import wandb
    from wandb_files import records

    from tagseg.report.dashboard import log_artifacts

    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    (tmp_path / "best.ckpt").write_bytes(b"weights")
    (tmp_path / "store.h5").write_bytes(b"slices")
    run = wandb.init(project="tagseg", dir=str(tmp_path), reinit="finish_previous")
    log_artifacts(
        run,
        checkpoint=tmp_path / "best.ckpt",
        checkpoint_key="abc123",
        stores={"prepare[phantom_tagged]": (tmp_path / "store.h5", "k1")},
    )
    run.finish()
    # wandb-core may still be writing the run file when finish() returns (seen once under load): wait for it
    deadline = time.monotonic() + 20
    while True:
        (path,) = tmp_path.glob("wandb/offline-run-*/run-*.wandb")
        arts = [r.artifact for r in records(path) if r.WhichOneof("record_type") == "artifact"]
        if arts or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert [(a.name, a.type) for a in arts] == [("model-abc123", "model")]
