"""Slow, real sweeps: every cell of a strategy sweep reaches W&B (offline run files), also when re-run
from the stage cache; the Optuna demo search runs 3 trials and resumes its SQLite study."""

from __future__ import annotations

import csv
import sqlite3
import subprocess
from pathlib import Path

import pytest
from conftest import run_tagseg, tiny_overrides
from wandb_files import offline_runs

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "data.n_subjects=6",
    "data.n_frames=2",
    "data.image_size=32",
    "data.fov_mm=96",
    "strategy.use_existing_stores=false",
    *tiny_overrides(
        "train", without=("datamodule.augment.enabled", "trainer.enable_model_summary"), extra=["torch_threads=1"]
    ),
]


def _train(root: Path, *args: str, timeout: int = 1200) -> subprocess.CompletedProcess:
    return run_tagseg(
        ["train", *args], ROOT, root=root, env={"WANDB_SILENT": "true"}, wandb_mode="offline", timeout=timeout
    )


def _cell_runs(sweep_dir: Path) -> dict[str, dict]:
    return {r["name"]: r for r in offline_runs(sweep_dir) if r.get("job_type") == "cell"}


@pytest.mark.slow
def test_every_cell_of_a_strategy_sweep_reaches_wandb_also_from_the_cache(tmp_path):
    args = ["-m", *TINY, "strategy=scratch", "loss.gamma=0,0.1", "logger=wandb"]
    first = _train(tmp_path, *args)
    assert first.returncode == 0, first.stderr[-3000:]
    second = _train(tmp_path, *args)  # everything from the stage cache
    assert second.returncode == 0, second.stderr[-3000:]
    sweeps = sorted((tmp_path / "logs" / "train" / "multiruns").iterdir())
    assert len(sweeps) == 2
    for sweep, reused in zip(sweeps, (False, True)):
        cells = _cell_runs(sweep)
        assert sorted(cells) == ["gamma=0", "gamma=0.1"]  # short names from the swept key only
        for run in cells.values():
            assert 0.0 <= run["summary"]["test/dice"] <= 1.0 and run["summary"]["test/hd95_mm"] > 0
            assert run["summary"]["reused"] is reused and ("reused" in run["tags"]) is reused
            assert run["summary"]["test/images/_type"] == "table-file"
            assert run["group"] == f"train-{sweep.name}"  # one group per sweep
        summary_runs = [r for r in offline_runs(sweep) if r.get("job_type") == "sweep"]
        assert len(summary_runs) == 1 and summary_runs[0]["summary"]["sweep/summary/_type"] == "table-file"
        rows = list(csv.DictReader(open(sweep / "summary.csv")))
        assert [r["loss.gamma"] for r in rows] == ["0", "0.1"] and all(r["status"] == "ok" for r in rows)
    # the same test results, whether computed or reused
    a, b = (_cell_runs(s)["gamma=0.1"]["summary"]["test/dice"] for s in sweeps)
    assert a == pytest.approx(b)


def _trials(db: Path) -> list[tuple[int, str]]:
    with sqlite3.connect(db) as con:
        return con.execute("SELECT number, state FROM trials ORDER BY number").fetchall()


@pytest.mark.slow
def test_optuna_demo_runs_three_trials_and_resumes_its_study(tmp_path):
    small = ["data.n_subjects=6", "data.n_frames=2", "trainer.max_epochs=1", "torch_threads=1"]
    first = _train(tmp_path, "hparams_search=resnetvae_demo", *small)
    assert first.returncode == 0, first.stderr[-3000:]
    db = tmp_path / "logs" / "optuna" / "resnetvae_demo.db"
    assert [state for _, state in _trials(db)] == ["COMPLETE"] * 3
    again = _train(tmp_path, "hparams_search=resnetvae_demo", *small)  # the study is done: nothing to run
    assert again.returncode == 0 and len(_trials(db)) == 3, again.stderr[-3000:]
    more = _train(tmp_path, "hparams_search=resnetvae_demo", "hydra.sweeper.n_trials=4", *small)
    assert more.returncode == 0, more.stderr[-3000:]
    assert [state for _, state in _trials(db)] == ["COMPLETE"] * 4
    sweeps = sorted((tmp_path / "logs" / "resnetvae_demo" / "multiruns").iterdir())
    rows = list(csv.DictReader(open(sweeps[0] / "summary.csv")))
    assert len(rows) == 3 and {"loss.gamma", "model.optimizer.lr", "val_dice_best"} <= set(rows[0])
    assert "best_value" in (sweeps[-1] / "optimization_results.yaml").read_text()
