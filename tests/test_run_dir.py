"""tagseg.io.run_dir: one summary rule (summary.json and the report's tables), typed results, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tagseg.errors import ConfigError
from tagseg.io.run_dir import (
    METRICS_FILE,
    SUMMARY_FILE,
    EvalResult,
    TestResult,
    TrainResult,
    metric_stats,
    summarise,
    write_test_results,
)
from tagseg.report.tables import breakdown, summary_table


def rows(n: int = 6) -> list[dict]:
    rng = np.random.default_rng(0)
    return [
        {
            "subject": f"s{i % 3}",
            "slice": 0,
            "frame": i % 2,
            "group": "control" if i % 3 else "dmd",
            "dice": float(rng.uniform(0.5, 1)),
            "hd95_mm": float(rng.uniform(1, 9)),
            "index": i,
        }
        for i in range(n)
    ]


def test_summarise_by_hand():
    r = rows()
    df = pd.DataFrame(r)
    s = summarise(r)
    assert s["n_images"] == 6 and s["dice_mean"] == pytest.approx(df.dice.mean())
    assert s["dice_std"] == pytest.approx(df.dice.std(ddof=1)) and s["hd95_mm_median"] == pytest.approx(
        df.hd95_mm.median()
    )
    assert set(s["per_frame"]) == {"0", "1"} and s["per_frame"]["1"]["n_images"] == 3
    assert s["per_group"]["dmd"]["dice_mean"] == pytest.approx(df[df.group == "dmd"].dice.mean())
    assert metric_stats(df.iloc[:1])["dice_std"] == 0.0  # one image: std 0, not NaN
    with pytest.raises(ConfigError, match="no test images"):
        summarise([])


def test_report_tables_use_the_same_rule(tmp_path):
    df = pd.DataFrame(rows())
    df["run"], df["overrides"] = "a", ""
    table = summary_table(df)
    stats = metric_stats(df)
    for key in ("dice_mean", "dice_std", "hd95_mm_mean", "hd95_mm_std", "n_images"):
        assert table.loc[0, key] == pytest.approx(stats[key]), key
    by_frame = breakdown(df, "frame")
    assert by_frame["n"].tolist() == [3, 3]
    assert by_frame.loc[0, "dice_std"] == pytest.approx(metric_stats(df[df.frame == 0])["dice_std"])


def test_write_test_results_and_typed_results(tmp_path):
    metrics_path, summary_path, summary = write_test_results(rows(), tmp_path / "run", {"split": "test"})
    assert metrics_path == tmp_path / "run" / METRICS_FILE and summary_path == tmp_path / "run" / SUMMARY_FILE
    assert list(pd.read_csv(metrics_path).columns) == ["subject", "slice", "frame", "group", "dice", "hd95_mm", "index"]
    assert json.loads(summary_path.read_text()) == summary and summary["split"] == "test"
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [SUMMARY_FILE, METRICS_FILE]  # no temporary left
    result = TrainResult(run_dir=Path("r"), best_ckpt=None, last_ckpt=Path("r/last.ckpt"), epochs=1, global_step=2)
    assert "summary" not in result and result.get("best_ckpt") is None and result["global_step"] == 2
    result.add_test(TestResult(summary=summary, summary_path=summary_path, metrics_path=metrics_path))
    assert result["summary"] is summary and result.summary_path == summary_path
    ev = EvalResult(
        run_dir=Path("e"),
        checkpoint=Path("c.ckpt"),
        summary=summary,
        summary_path=summary_path,
        metrics_path=metrics_path,
    )
    assert ev["checkpoint"] == Path("c.ckpt") and set(ev.keys()) == {
        "run_dir",
        "checkpoint",
        "summary",
        "summary_path",
        "metrics_path",
    }
    ev["shifts"] = Path("shifts.csv")  # a key of its own: kept in extra, read back like the fields
    ev.update({"summary_path": Path("s.json")})
    assert (
        ev["shifts"] == Path("shifts.csv")
        and ev.extra == {"shifts": Path("shifts.csv")}
        and ev.summary_path == Path("s.json")
    )
    assert {**ev}["shifts"] == Path("shifts.csv")


def test_run_folder_locations_and_hydra_files(tmp_path):
    from omegaconf import OmegaConf

    from tagseg.io.run_dir import (
        hydra_config_path,
        hydra_overrides,
        job_dirs,
        last_checkpoint,
        last_checkpoint_in,
        write_run_config,
    )

    assert last_checkpoint(tmp_path) == tmp_path / "checkpoints" / "last.ckpt"
    assert last_checkpoint_in(tmp_path / "ckpts") == tmp_path / "ckpts" / "last.ckpt"
    cfg = OmegaConf.create({"a": 1, "b": "${a}"})
    written = write_run_config(cfg, tmp_path / "run")
    assert written == tmp_path / "run" / "config.yaml"
    assert OmegaConf.to_container(OmegaConf.load(written)) == {"a": 1, "b": 1}  # resolved
    for job, overrides in (("0", "- x=1\n- y=a\n"), ("1", "[]\n"), ("nested/2", "- x=2\n")):
        (tmp_path / "sweep" / job / ".hydra").mkdir(parents=True)
        (tmp_path / "sweep" / job / ".hydra" / "overrides.yaml").write_text(overrides)
    sweep = tmp_path / "sweep"
    assert job_dirs(sweep) == [sweep / "0", sweep / "1", sweep / "nested" / "2"]
    assert job_dirs(sweep, recursive=False) == [sweep / "0", sweep / "1"]
    assert hydra_overrides(sweep / "0") == ["x=1", "y=a"] and hydra_overrides(sweep / "1") == []
    assert hydra_overrides(sweep) is None
    assert hydra_config_path(sweep / "0") == sweep / "0" / ".hydra" / "config.yaml"


def test_cyclegan_result_reads_as_the_former_dict():
    from tagseg.io.run_dir import CycleGANResult
    from tagseg.stages.cyclegan import train_cyclegan

    result = CycleGANResult(run_dir=Path("r"), last_ckpt=None, epochs=2, global_step=8, seconds=1.5)
    assert result["epochs"] == 2 and result.grids == [] and "tagness" not in result and "last_ckpt" not in result
    result["tagness"] = {"ratio": 2.0}
    assert result.tagness == {"ratio": 2.0} and result["tagness"]["ratio"] == 2.0
    assert train_cyclegan.__wrapped__  # the stage runs under the task wrapper (W&B finished when it ends)
