"""tagseg report: tables and figures from run folders."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import run_tagseg

from tagseg.errors import TagsegError
from tagseg.report.curves import plot_convergence, plot_per_frame, plot_per_group
from tagseg.report.examples import pick_quartile_rows, plot_examples
from tagseg.report.tables import find_runs, load_metrics, summary_table, write_tables


def _run(folder: Path, dice: list[float], hd95: list[float], overrides: list[str]) -> None:
    folder.mkdir(parents=True)
    n = len(dice)
    pd.DataFrame(
        {
            "subject": [f"s{i // 2}" for i in range(n)],
            "slice": 0,
            "frame": [i % 2 for i in range(n)],
            "group": ["control" if i % 2 else "dmd" for i in range(n)],
            "dice": dice,
            "hd95_mm": hd95,
        }
    ).to_csv(folder / "test_metrics.csv", index=False)
    (folder / ".hydra").mkdir()
    (folder / ".hydra" / "overrides.yaml").write_text("".join(f"- {o}\n" for o in overrides))
    pd.DataFrame({"epoch": [0, 1], "val/dice": [0.2, 0.5], "val/loss": [1.0, 0.8]}).to_csv(
        folder / "metrics.csv", index=False
    )


@pytest.fixture()
def sweep(tmp_path: Path) -> Path:
    _run(tmp_path / "0", [0.8, 0.6, 0.7, 0.9], [2.0, 4.0, 3.0, 1.0], ["loss.gamma=0"])
    _run(tmp_path / "1", [0.5, 0.5, 0.5, 0.5], [1.0, 1.0, 1.0, 1.0], ["loss.gamma=0.1"])
    _run(tmp_path / "2", [0.1, 0.2, 0.3, 0.2], [9.0, 9.0, 9.0, 9.0], ["loss.gamma=1.0"])
    return tmp_path


def test_summary_means_stds_and_cumulative_rank(sweep: Path) -> None:
    table = summary_table(load_metrics(find_runs(sweep), sweep)).set_index("run")
    assert table.loc["0", "dice_mean"] == pytest.approx(0.75)
    assert table.loc["0", "dice_std"] == pytest.approx(pd.Series([0.8, 0.6, 0.7, 0.9]).std())
    assert table.loc["0", "hd95_mm_mean"] == pytest.approx(2.5)
    assert table.loc["1", "dice_std"] == 0.0
    # run 0: best Dice (1) + second HD95 (2) = 3; run 1: 2 + 1 = 3; run 2: 3 + 3 = 6
    assert table["cumulative_rank"].to_dict() == {"0": 3, "1": 3, "2": 6}
    assert table.loc["1", "overrides"] == "loss.gamma=0.1"


def test_write_tables_and_figures(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "report"
    paths = write_tables(sweep, out)
    assert "0.750 +/- 0.129" in paths["summary_md"].read_text()
    by_frame = pd.read_csv(paths["by_frame"], dtype={"run": str})
    row = by_frame[(by_frame["run"] == "0") & (by_frame["frame"] == 1)].iloc[0]
    assert row["dice_mean"] == pytest.approx((0.6 + 0.9) / 2)
    metrics = load_metrics(find_runs(sweep), sweep)
    for png in (
        plot_per_frame(metrics, out / "f.png"),
        plot_per_group(metrics, out / "g.png"),
        plot_convergence(sweep, out / "c.png"),
    ):
        assert png is not None and png.stat().st_size > 1000


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(TagsegError, match="no such run"):
        find_runs(tmp_path / "nope")
    with pytest.raises(TagsegError, match="no test_metrics.csv"):
        find_runs(tmp_path)


def test_cli_report(sweep: Path, tmp_path: Path) -> None:
    cmd = ["report", f"path={sweep}", f"hydra.run.dir={tmp_path / 'hydra'}"]
    res = run_tagseg(cmd, None, wandb_mode=None, timeout=120)
    assert res.returncode == 0, res.stderr
    assert (sweep / "report" / "summary.csv").exists() and "loss.gamma=0.1" in res.stdout
    bad = run_tagseg([cmd[0], f"path={tmp_path / 'missing'}", cmd[-1]], None, wandb_mode=None, timeout=120)
    assert bad.returncode == 2 and "tagseg: error:" in bad.stderr


def test_quartile_examples_are_picked_by_dice_and_drawn(trained_ckpt: Path) -> None:
    run = trained_ckpt.parents[1]
    dice = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]
    pd.DataFrame(
        {"subject": "s", "slice": 0, "frame": range(9), "group": "g", "dice": dice, "hd95_mm": 1.0, "index": range(9)}
    ).to_csv(run / "test_metrics.csv", index=False)
    picked = pick_quartile_rows(pd.read_csv(run / "test_metrics.csv"))
    assert picked["dice"].tolist() == [0.3, 0.5, 0.7] and picked["quantile"].tolist() == ["Q1", "median", "Q3"]
    (run / "config.yaml").write_text(f"data:\n  store: {trained_ckpt.parents[2] / 'rings.h5'}\n")
    png = plot_examples(run, run / "examples.png")
    assert png is not None and png.stat().st_size > 5000
    (run / "config.yaml").unlink()
    assert plot_examples(run, run / "none.png") is None  # no config: nothing to re-segment, no error


def test_example_rows_are_found_across_the_runs_stores(tmp_path: Path) -> None:
    # test_metrics.csv's index numbers the rows of datamodule.stores concatenated in order
    from tagseg.io.store import write_store
    from tagseg.report.examples import run_slices

    stores = []
    for k, n in enumerate((3, 2)):
        images = np.stack([np.full((8, 8), (10 * k + i) / 100, np.float32) for i in range(n)])
        meta = {
            "subject": [f"s{k}{i}" for i in range(n)],
            "slice": [0] * n,
            "frame": [0] * n,
            "n_frames": [1] * n,
            "phase": [""] * n,
            "group": ["g"] * n,
            "spacing_mm": [(1.0, 1.0)] * n,
            "source": ["t"] * n,
        }
        write_store(tmp_path / f"s{k}.h5", images, np.full((n, 8, 8), k, np.uint8), meta, name=f"s{k}")
        stores.append(str(tmp_path / f"s{k}.h5"))
    found = run_slices({"data": {"store": stores[0]}, "datamodule": {"stores": stores}}, [4, 0, 3])
    assert [round(float(img[0, 0]) * 100) for img, _ in found] == [11, 0, 10]
    assert [int(mask[0, 0]) for _, mask in found] == [1, 0, 1]
    assert run_slices({"data": {"store": str(tmp_path / "gone.h5")}}, [0]) is None


def test_strategy_cells_are_reported_from_their_test_stage(tmp_path: Path) -> None:
    # a `tagseg train -m ... strategy=...` cell tests in the stage cache; strategy.json points there
    import json

    from tagseg.report.tables import find_runs, write_tables

    sweep = tmp_path / "sweep"
    for job, dice in ((0, [0.8, 0.6]), (1, [0.9, 0.7])):
        test_dir = tmp_path / "cache" / "test" / f"k{job}"
        test_dir.mkdir(parents=True)
        pd.DataFrame(
            {
                "subject": "s",
                "slice": 0,
                "frame": [0, 1],
                "group": "g",
                "dice": dice,
                "hd95_mm": [2.0, 4.0],
                "index": [0, 1],
            }
        ).to_csv(test_dir / "test_metrics.csv", index=False)
        cell = sweep / str(job)
        (cell / ".hydra").mkdir(parents=True)
        (cell / ".hydra" / "overrides.yaml").write_text(f"- strategy=s{job}\n")
        (cell / "strategy.json").write_text(
            json.dumps({"status": "ok", "summary_path": str(test_dir / "summary.json")})
        )
    assert find_runs(sweep) == [sweep / "0", sweep / "1"]
    table = pd.read_csv(write_tables(sweep, tmp_path / "report")["summary_csv"])
    assert table["overrides"].tolist() == ["strategy=s1", "strategy=s0"]
    assert table["dice_mean"].tolist() == pytest.approx([0.8, 0.7])
    assert plot_examples(sweep / "0", tmp_path / "ex.png") is None  # checkpoints live in the cache
