"""experiments/recipe_compare.py and store_overlays.py: recipes and masks on one external test set."""

from __future__ import annotations

import json
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import load_experiment_script


def write_eval(folder, dice_by_subject: dict[str, list[float]]) -> None:
    folder.mkdir(parents=True)
    rows = [
        dict(subject=s, slice=0, frame=i, dice=d) for s, values in dice_by_subject.items() for i, d in enumerate(values)
    ]
    pd.DataFrame(rows).to_csv(folder / "test_metrics.csv", index=False)


def test_paired_difference_is_the_mean_of_per_seed_per_subject_differences(tmp_path, capsys, monkeypatch):
    script = load_experiment_script("recipe_compare")
    write_eval(tmp_path / "a0", {"s1": [0.4, 0.6], "s2": [0.2, 0.2]})  # subject means 0.5, 0.2
    write_eval(tmp_path / "a1", {"s1": [0.7, 0.7], "s2": [0.3, 0.3]})
    write_eval(tmp_path / "b0", {"s1": [0.6, 0.6], "s2": [0.5, 0.5]})
    write_eval(tmp_path / "b1", {"s1": [0.8, 0.8], "s2": [0.4, 0.4], "s3": [0.9, 0.9]})  # s3 not in every folder
    records = script.compare(
        {"a": [tmp_path / "a0", tmp_path / "a1"], "b": [tmp_path / "b0", tmp_path / "b1"]}, n_boot=200
    )
    a, b, diff = records
    assert a["seeds"] == [0.35, 0.5] and a["mean"] == pytest.approx(0.425) and a["n_subjects"] == 2
    assert b["mean"] == pytest.approx(np.mean([0.6, 0.5, 0.8, 0.4]))
    # differences: seed 0 (+0.1, +0.3), seed 1 (+0.1, +0.1)
    assert diff["against"] == "a" and diff["diff"] == pytest.approx(0.15) and diff["low"] <= 0.15 <= diff["high"]
    monkeypatch.setattr(
        sys,
        "argv",
        [
            "recipe_compare.py",
            "--recipe",
            "a",
            str(tmp_path / "a0"),
            "--recipe",
            "b",
            str(tmp_path / "b0"),
            "--output",
            str(tmp_path / "p.png"),
            "--n-boot",
            "100",
        ],
    )
    script.main()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["recipe"] for r in lines] == ["a", "b", "b"] and lines[2]["diff"] == pytest.approx(0.2)
    assert (tmp_path / "p.png").stat().st_size > 1000


def test_a_folder_without_metrics_is_named(tmp_path):
    script = load_experiment_script("recipe_compare")
    with pytest.raises(
        SystemExit, match="nowhere/test_metrics.csv: not found; expected the output folder of `tagseg evaluate`"
    ):
        script.compare({"a": [tmp_path / "nowhere"]})


def test_store_overlays_draws_one_panel_per_slice_of_the_frame(trained_ckpt, tmp_path, monkeypatch, capsys):
    from conftest import write_ring_store

    script = load_experiment_script("store_overlays")
    store = write_ring_store(tmp_path / "rings.h5", n_subjects=3, n_slices=2, n_frames=2)
    out = tmp_path / "o.png"
    monkeypatch.setattr(
        sys, "argv", ["store_overlays.py", str(store), str(trained_ckpt), "--frame", "1", "--output", str(out)]
    )
    script.main()
    assert out.stat().st_size > 1000 and str(out) in capsys.readouterr().out
    monkeypatch.setattr(
        sys, "argv", ["store_overlays.py", str(store), str(trained_ckpt), "--frame", "5", "--output", str(out)]
    )
    with pytest.raises(SystemExit, match="rings.h5: no image at frame 5"):
        script.main()
