"""Sweeps: the per-cell record, summary.csv, failing cells, launchers (a tiny Hydra app, fast)."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from hydra.core.utils import JobStatus

from tagseg.io.run_dir import sweep_columns
from tagseg.pipeline.sweep import cell_record, format_table, write_summary

ROOT = Path(__file__).resolve().parents[1]

# A stand-in for a stage app: same wrapper (user_errors) and the project's hydra defaults
# (which enable the SweepSummary callback); cell `fail=tagseg` raises a TagsegError, `fail=bug`
# a plain bug, the others return metrics.
APP = """
import hydra
from omegaconf import DictConfig
from tagseg.runtime.task import user_errors
from tagseg.errors import ConfigError

@hydra.main(version_base="1.3", config_path="conf", config_name="toy")
@user_errors
def main(cfg: DictConfig):
    if cfg.fail == "tagseg":
        raise ConfigError("loss.gamma must be >= 0, got -1")
    if cfg.fail == "bug":
        raise ZeroDivisionError("division by zero")
    return {"status": "ok", "test_dice_mean": 0.5 + cfg.x / 10, "test_dice_std": 0.01,
            "test_hd95_mm_mean": 4.0, "test_hd95_mm_std": 1.0, "epochs": 2}

if __name__ == "__main__":
    main()
"""

TOY = """
defaults:
  - _self_
  - paths: default
  - hydra: default
task_name: toy
x: 0
fail: none
"""


@pytest.fixture()
def toy_app(tmp_path: Path) -> Path:
    conf = tmp_path / "conf"
    for group in ("paths", "hydra"):
        (conf / group).mkdir(parents=True)
        (conf / group / "default.yaml").write_text((ROOT / "tagseg" / "conf" / group / "default.yaml").read_text())
    (conf / "toy.yaml").write_text(TOY)
    (tmp_path / "toy.py").write_text(textwrap.dedent(APP))
    return tmp_path


def _run(app: Path, *args: str, timeout: int = 120) -> subprocess.CompletedProcess:
    env = {**os.environ, "TAGSEG_ROOT": str(app), "WANDB_MODE": "disabled"}
    return subprocess.run(
        [sys.executable, str(app / "toy.py"), *args], cwd=app, env=env, capture_output=True, text=True, timeout=timeout
    )


def _summary(app: Path) -> list[dict[str, str]]:
    (found,) = list((app / "logs" / "toy" / "multiruns").glob("*/summary.csv"))
    with open(found) as fh:
        return list(csv.DictReader(fh))


def test_cell_record_from_returns_and_exceptions():
    ok = cell_record(
        {"summary": {"test_dice_mean": 0.8, "epochs": 3}, "status": "ok"},
        job=0,
        overrides=["model=resnetvae", "loss.gamma=0.1"],
        wall_s=12.34,
        run_dir="r",
    )
    assert ok["status"] == "ok" and ok["test_dice_mean"] == 0.8 and ok["epochs"] == 3
    assert ok["overrides"] == "model=resnetvae,loss.gamma=0.1" and ok["wall_s"] == 12.3
    assert ok["test_hd95_mm_mean"] is None and set(ok) == set(sweep_columns()) | {"override_list"}
    bad = cell_record(ValueError("boom"), job=1, overrides=[], wall_s=1, run_dir="r", status=JobStatus.FAILED)
    assert bad["status"] == "failed" and bad["error"] == "ValueError: boom"
    returned = cell_record({"status": "failed", "error": "ConfigError: x"}, job=2, overrides=[], wall_s=1, run_dir="r")
    assert returned["status"] == "failed" and returned["error"] == "ConfigError: x"
    assert "failed cells:" in format_table([ok, bad]) and "job 1: ValueError: boom" in format_table([ok, bad])


def test_write_summary_lists_killed_jobs(tmp_path):
    (tmp_path / "0" / ".hydra").mkdir(parents=True)
    (tmp_path / "0" / ".hydra" / "overrides.yaml").write_text("- x=1\n")
    with pytest.raises(FileNotFoundError, match="no such sweep folder"):
        write_summary(tmp_path / "missing")
    out, rows = write_summary(tmp_path)
    assert out == tmp_path / "summary.csv" and len(rows) == 1
    assert rows[0]["status"] == "failed" and "no result" in rows[0]["error"] and rows[0]["overrides"] == "x=1"


def test_failing_cells_are_recorded_and_the_sweep_goes_on(toy_app):
    proc = _run(toy_app, "-m", "x=1,2", "fail=none,tagseg,bug")
    assert proc.returncode == 1, proc.stderr[-2000:]  # summary written, then exit 1 for the failures
    rows = _summary(toy_app)
    assert len(rows) == 6
    by = {r["overrides"]: r for r in rows}
    assert by["x=2,fail=none"]["status"] == "ok" and float(by["x=2,fail=none"]["test_dice_mean"]) == pytest.approx(0.7)
    assert by["x=1,fail=tagseg"]["status"] == "failed"
    assert by["x=1,fail=tagseg"]["error"] == "ConfigError: loss.gamma must be >= 0, got -1"
    assert by["x=2,fail=bug"]["error"] == "ZeroDivisionError: division by zero"
    # one column per swept key, right after the job number
    assert list(rows[0])[:3] == ["job", "x", "fail"] and by["x=2,fail=bug"]["x"] == "2"
    sweep_dir = next((toy_app / "logs" / "toy" / "multiruns").iterdir())
    assert "| fail | x=1 Dice |" in (sweep_dir / "sweep_table.md").read_text()
    assert (sweep_dir / "sweep.png").stat().st_size > 0
    assert "2 of 6" not in proc.stdout and "4 of 6 cells failed" in proc.stderr + proc.stdout
    assert "summary:" in proc.stdout


def test_single_run_keeps_exit_2_for_user_errors(toy_app):
    proc = _run(toy_app, "fail=tagseg")
    assert proc.returncode == 2 and "tagseg: error: loss.gamma must be >= 0" in proc.stderr


@pytest.mark.slow
def test_submitit_local_two_jobs_with_summary(toy_app):
    proc = _run(toy_app, "-m", "hydra/launcher=submitit_local", "x=1,2", timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _summary(toy_app)
    assert [r["status"] for r in rows] == ["ok", "ok"]
    assert [float(r["test_dice_mean"]) for r in rows] == pytest.approx([0.6, 0.7])
