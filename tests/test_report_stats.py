"""Statistics of the data-efficiency report: bootstrap intervals, paired differences, convergence, the report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tagseg.report.stats import (
    bootstrap_ci,
    convergence,
    epochs_to_fraction,
    find_cells,
    learning_curve,
    load_cells,
    paired_differences,
    subject_means,
)


def test_bootstrap_matches_a_numpy_computation_with_the_same_seed():
    x = np.array([0.71, 0.80, 0.84, 0.90, 0.77, 0.88, 0.93])
    rng = np.random.default_rng(7)
    means = x[rng.integers(0, len(x), (500, len(x)))].mean(axis=1)
    expected = (x.mean(), np.percentile(means, 2.5), np.percentile(means, 97.5))
    assert bootstrap_ci(x, n_boot=500, seed=7) == pytest.approx(expected)
    assert bootstrap_ci(x, seed=1) == bootstrap_ci(x, seed=1)  # reproducible


def test_bootstrap_known_cases():
    assert bootstrap_ci([0.5] * 10) == (0.5, 0.5, 0.5)  # no spread, no interval
    mean, lo, hi = bootstrap_ci([3.0])
    assert mean == lo == hi == 3.0
    assert all(np.isnan(bootstrap_ci([])))
    # a balanced 0/1 sample of 400: the interval is the normal one, mean +/- 1.96 sqrt(p (1 - p) / n)
    mean, lo, hi = bootstrap_ci(np.repeat([0.0, 1.0], 200), n_boot=4000)
    half = 1.96 * np.sqrt(0.25 / 400)
    assert mean == 0.5 and lo == pytest.approx(0.5 - half, abs=0.01) and hi == pytest.approx(0.5 + half, abs=0.01)


def test_bootstrap_interval_covers_the_true_mean_about_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    hits = [
        lo <= 0.8 <= hi
        for lo, hi in (bootstrap_ci(rng.normal(0.8, 0.1, 30), n_boot=1000, seed=i)[1:] for i in range(300))
    ]
    assert 0.89 <= np.mean(hits) <= 0.98  # percentile bootstrap at n = 30 runs slightly below nominal


def _subjects(rows):
    return pd.DataFrame(rows, columns=["test_set", "strategy", "n", "seed", "subject", "dice", "hd95_mm"])


def test_paired_differences_use_the_pairing():
    rng = np.random.default_rng(1)
    rows = []
    level = rng.uniform(0.3, 0.95, 12)  # subjects differ much more than the strategies do
    for seed in (0, 1):
        for i, base in enumerate(level):
            rows.append(("test", "scratch", 2, seed, f"s{i}", base, 10.0))
            rows.append(("test", "cine", 2, seed, f"s{i}", base + 0.02, 9.0))
    subjects = _subjects(rows)
    diff = paired_differences(subjects).iloc[0]
    assert diff["strategy"] == "cine" and diff["seeds"] == 2 and diff["subjects"] == 12
    assert diff["d_dice"] == pytest.approx(0.02) and diff["d_dice_lo"] == pytest.approx(0.02)
    assert diff["d_hd95_mm"] == pytest.approx(-1.0) and diff["dice_better"] and diff["hd95_better"]
    # unpaired, the two strategies' intervals overlap: only the pairing shows the difference
    curve = learning_curve(subjects).set_index("strategy")
    assert curve.loc["cine", "dice_lo"] < curve.loc["scratch", "dice_hi"]


def test_paired_difference_without_an_effect_includes_zero():
    rng = np.random.default_rng(2)
    rows = []
    for i in range(15):
        base = rng.uniform(0.5, 0.9)
        rows.append(("test", "scratch", 1, 0, f"s{i}", base + rng.normal(0, 0.03), 10.0))
        rows.append(("test", "physics", 1, 0, f"s{i}", base + rng.normal(0, 0.03), 10.0))
    diff = paired_differences(_subjects(rows)).iloc[0]
    assert diff["d_dice_lo"] < 0 < diff["d_dice_hi"] and not diff["dice_better"]


def test_subjects_are_the_resampled_unit_not_images():
    images = pd.DataFrame(
        {
            "subject": ["a"] * 9 + ["b"],
            "dice": [0.9] * 9 + [0.5],
            "hd95_mm": [1.0] * 10,
            "strategy": "scratch",
            "n": 1,
            "seed": 0,
            "test_set": "test",
        }
    )
    curve = learning_curve(subject_means(images)).iloc[0]
    assert curve["subjects"] == 2 and curve["dice_mean"] == pytest.approx(0.7)  # not the image mean 0.86
    assert curve["dice_lo"] == pytest.approx(0.5) and curve["dice_hi"] == pytest.approx(0.9)


def test_epochs_to_95_percent_of_the_final_value():
    assert epochs_to_fraction([0.1, 0.5, 0.86, 0.9, 0.9]) == 3  # 0.95 * 0.9 = 0.855
    assert epochs_to_fraction([0.9, 0.2, 0.9]) == 1
    assert epochs_to_fraction([]) is None


# -- the report on a synthetic sweep ----------------------------------------------------------------

STRATEGY_GAIN = {"scratch": 0.0, "cine": 0.05, "physics": 0.03}
TEST_SETS = {"test": 0.0, "tag_angle": -0.3}


def make_sweep(root: Path) -> Path:
    """A sweep folder of 3 strategies x n in (1, 4) x 2 seeds; test tables and val curves in a fake cache."""
    sweep, cache = root / "sweep", root / "cache"
    rng = np.random.default_rng(0)
    job = 0
    for strategy, gain in STRATEGY_GAIN.items():
        for n in (1, 4):
            for seed in (0, 1):
                run = cache / f"finetune/{job}"
                (run / "csv/version_0").mkdir(parents=True)
                epochs = np.arange(10)
                val = (0.8 + gain) * (1 - np.exp(-(epochs + 1) / (2 - gain * 10)))
                pd.DataFrame({"epoch": epochs, "step": epochs * 5, "val/dice": val}).to_csv(
                    run / "csv/version_0/metrics.csv", index=False
                )
                tests = {}
                for test_set, shift in TEST_SETS.items():
                    rows = [
                        {
                            "subject": f"tag-{s:03d}",
                            "slice": 0,
                            "frame": f,
                            "group": "control",
                            "dice": float(
                                np.clip(0.6 + 0.05 * np.log2(n) + gain + shift + 0.01 * s + rng.normal(0, 0.01), 0, 1)
                            ),
                            "hd95_mm": float(5 - 10 * gain + rng.normal(0, 0.1)),
                        }
                        for s in range(6)
                        for f in range(3)
                    ]
                    path = cache / f"test/{job}-{test_set}/test_metrics.csv"
                    path.parent.mkdir(parents=True)
                    pd.DataFrame(rows).to_csv(path, index=False)
                    tests[test_set] = {"dice_mean": 0, "hd95_mm_mean": 0, "metrics_path": str(path)}
                cell = sweep / str(job)
                cell.mkdir(parents=True)
                (cell / "strategy.json").write_text(
                    json.dumps(
                        {
                            "status": "ok",
                            "strategy": strategy,
                            "seed": seed,
                            "n_train_subjects": n,
                            "tests": tests,
                            "run_dir": str(run),
                            "summary_path": str(cache / f"test/{job}-test/summary.json"),
                        }
                    )
                )
                job += 1
    return sweep


def test_report_on_a_synthetic_sweep(tmp_path):
    from hydra import compose, initialize_config_dir

    from tagseg.runtime.config import CONF_DIR
    from tagseg.stages.report import report

    sweep = make_sweep(tmp_path)
    cells = find_cells(sweep)
    assert len(cells) == 12 and len(load_cells(cells)) == 12 * 2 * 18
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("report", overrides=[f"path={sweep}", "n_boot=300"])
    paths, figures = report(cfg)
    out = sweep / "report"
    for name in (
        "learning_curve.csv",
        "learning_curve.md",
        "learning_curve.png",
        "learning_curve_hd95.png",
        "paired_vs_scratch.csv",
        "paired_vs_scratch.md",
        "convergence.csv",
        "convergence_summary.md",
        "validation_curves.png",
        "summary.csv",
    ):
        assert (out / name).exists(), name
    assert not list(out.glob("examples*.png"))
    curve = pd.read_csv(out / "learning_curve.csv")
    assert len(curve) == 3 * 2 * 2 and set(curve["test_set"]) == set(TEST_SETS)
    row = curve[(curve["strategy"] == "cine") & (curve["n"] == 4) & (curve["test_set"] == "test")].iloc[0]
    assert row["dice_mean"] == pytest.approx(0.6 + 0.1 + 0.05 + 0.025, abs=0.01)
    assert row["dice_lo"] < row["dice_mean"] < row["dice_hi"] and row["seeds"] == 2 and row["subjects"] == 6
    diff = pd.read_csv(out / "paired_vs_scratch.csv")
    cine = diff[(diff["strategy"] == "cine") & (diff["test_set"] == "tag_angle")]
    assert cine["d_dice"].to_numpy() == pytest.approx([0.05, 0.05], abs=0.01) and cine["dice_better"].all()
    assert "learning_curve_md" in paths and out / "learning_curve.png" in figures
    table = (out / "learning_curve.md").read_text()
    assert "| cine | 4 |" in table and "[" in table
    conv = pd.read_csv(out / "convergence.csv")
    assert len(conv) == 12
    # cine (gain 0.05) converges faster than scratch in the synthetic curves
    per = conv.groupby("strategy")["epochs_to_95"].mean()
    assert per["cine"] < per["scratch"]


def test_report_pairs_against_every_reference_and_names_an_unknown_one(tmp_path):
    from hydra import compose, initialize_config_dir

    from tagseg.errors import ConfigError
    from tagseg.runtime.config import CONF_DIR
    from tagseg.stages.report import report

    sweep = make_sweep(tmp_path)
    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("report", overrides=[f"path={sweep}", "n_boot=300", "references=[scratch,cine]"])
        bad = compose("report", overrides=[f"path={sweep}", "references=[scratch,phyiscs]"])
    report(cfg)
    diff = pd.read_csv(sweep / "report" / "paired_vs_cine.csv")
    assert set(diff["strategy"]) == {"scratch", "physics"}
    physics = diff[(diff["strategy"] == "physics") & (diff["test_set"] == "test")]
    assert physics["d_dice"].to_numpy() == pytest.approx([-0.02, -0.02], abs=0.01)  # gains 0.03 - 0.05
    assert "Dice difference to cine" in (sweep / "report" / "paired_vs_cine.md").read_text()
    assert (sweep / "report" / "paired_vs_scratch.csv").exists()
    with pytest.raises(ConfigError, match=r"references: 'phyiscs' is not a strategy of .*expected some of \['cine'"):
        report(bad)


def test_convergence_skips_cells_without_logs(tmp_path):
    per_cell, curves = convergence(
        [{"strategy": "scratch", "n_train_subjects": 1, "seed": 0, "run_dir": str(tmp_path)}]
    )
    assert per_cell.empty and curves.empty


def test_randomised_cells_are_their_own_strategy(tmp_path):
    import shutil

    sweep = make_sweep(tmp_path)
    shutil.copytree(sweep / "0", sweep / "0w")  # scratch n=1 seed 0, again, on the randomised phantom
    (sweep / "0w" / ".hydra").mkdir()
    (sweep / "0w" / ".hydra" / "config.yaml").write_text("data:\n  randomise: wide\n")
    (sweep / "1" / ".hydra").mkdir()
    (sweep / "1" / ".hydra" / "config.yaml").write_text("data:\n  randomise: null\n")
    cells = {c["cell_dir"]: c["strategy"] for c in find_cells(sweep)}
    assert (
        cells[str(sweep / "0w")] == "scratch+wide" and cells[str(sweep / "0")] == cells[str(sweep / "1")] == "scratch"
    )
    diff = paired_differences(subject_means(load_cells(find_cells(sweep))))
    wide = diff[diff["strategy"] == "scratch+wide"]
    # the same tables: no difference; the tagged test split is not paired across phantoms (other hearts)
    assert list(wide["test_set"]) == ["tag_angle"] and wide["d_dice"].abs().max() < 1e-12
    assert set(diff[diff["strategy"] == "cine"]["test_set"]) == {"test", "tag_angle"}


def test_post_processed_cells_are_labelled_and_paired_on_every_test_set(tmp_path):
    import json
    import shutil

    sweep = make_sweep(tmp_path)
    shutil.copytree(sweep / "0", sweep / "0p")  # scratch n=1 seed 0, tested again after post-processing
    record = json.loads((sweep / "0p" / "strategy.json").read_text())
    (sweep / "0p" / "strategy.json").write_text(json.dumps({**record, "postprocess": "largest_component"}))
    labels = {c["cell_dir"]: c["strategy"] for c in find_cells(sweep)}
    assert labels[str(sweep / "0p")] == "scratch/largest_component" and labels[str(sweep / "0")] == "scratch"
    diff = paired_differences(subject_means(load_cells(find_cells(sweep))))
    pp = diff[diff["strategy"] == "scratch/largest_component"]
    assert list(pp["test_set"]) == ["test", "tag_angle"]  # same store, same hearts: paired on the split too


def test_augmented_cells_are_labelled_and_paired_against_paper(tmp_path):
    import shutil

    sweep = make_sweep(tmp_path)
    for cell, choice in (("0r", "robust"), ("0p", "paper")):
        shutil.copytree(sweep / "0", sweep / cell)  # scratch n=1 seed 0, again, with another augment= choice
        (sweep / cell / ".hydra").mkdir()
        (sweep / cell / ".hydra" / "hydra.yaml").write_text(
            f"hydra:\n  runtime:\n    choices:\n      augment: {choice}\n"
        )
    (sweep / "0p" / "strategy.json").unlink()  # paper is the reference itself: one copy of cell 0 is enough
    labels = {c["cell_dir"]: c["strategy"] for c in find_cells(sweep)}
    assert labels[str(sweep / "0r")] == "scratch@robust" and labels[str(sweep / "0")] == "scratch"
    diff = paired_differences(subject_means(load_cells(find_cells(sweep))))
    robust = diff[diff["strategy"] == "scratch@robust"]
    # same store and hearts: paired on the tagged test split and every shift; identical tables, no difference
    assert list(robust["test_set"]) == ["test", "tag_angle"] and robust["d_dice"].abs().max() < 1e-12
