"""Statistics of the data-efficiency report: bootstrap intervals, paired differences, convergence, the report."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from tagseg.report.stats import (
    convergence,
    epochs_to_fraction,
    expanded_level,
    find_cells,
    learning_curve,
    load_cells,
    paired_differences,
    seed_subject_interval,
    seed_subject_matrix,
    subject_means,
)


def test_one_factor_interval_is_scipys_bca_at_the_expanded_level():
    x = np.array([0.71, 0.80, 0.84, 0.90, 0.77, 0.88, 0.93])
    level = expanded_level(x[None, :])
    # one factor: the normal quantile is sqrt(n / (n - 1)) * t(n - 1), n = 7
    assert level == pytest.approx(2 * stats.norm.cdf(np.sqrt(7 / 6) * stats.t.ppf(0.975, 6)) - 1)
    expected = stats.bootstrap(
        (x,), np.mean, n_resamples=500, confidence_level=level, method="BCa", rng=np.random.default_rng(7)
    ).confidence_interval
    got = seed_subject_interval(x[None, :], n_resamples=500, seed=7)
    assert (got.low, got.high) == pytest.approx((expected.low, expected.high))
    assert got.mean == pytest.approx(x.mean()) and got.unit == "subjects (1 seed)"
    # the same values as 7 seeds of one subject: the same interval, resampling seeds
    by_seed = seed_subject_interval(x[:, None], n_resamples=500, seed=7)
    assert (by_seed.low, by_seed.high) == pytest.approx((got.low, got.high)) and by_seed.unit == "seeds (1 subject)"
    assert seed_subject_interval(x[None, :], seed=1) == seed_subject_interval(x[None, :], seed=1)  # reproducible


def test_expanded_level_has_a_cap_and_leaves_a_single_unit_alone():
    assert expanded_level(np.array([[0.1, 0.2, 0.4]]), n_resamples=1000) == pytest.approx(0.998)  # t(2) is far out
    assert expanded_level(np.array([[0.5, 0.5, 0.5]])) == 0.95  # no spread, nothing to widen
    rng = np.random.default_rng(0)
    ten = expanded_level(rng.normal(size=(10, 11)))
    assert 0.95 < ten < expanded_level(rng.normal(size=(3, 11)))  # fewer seeds, wider


@pytest.mark.parametrize(
    "matrix, mean, low, high, unit",
    [
        ([[0.8]], 0.8, np.nan, np.nan, "none (1 seed, 1 subject)"),
        ([[0.5] * 5] * 3, 0.5, 0.5, 0.5, "seeds and subjects"),  # identical values: every resample agrees
        ([[0.7, 0.9]], 0.8, 0.7, 0.9, "subjects (1 seed)"),
        ([[0.7], [0.9]], 0.8, 0.7, 0.9, "seeds (1 subject)"),
        # pure interaction: every leave-one-out mean is 0.5, BCa is undefined; the percentile interval
        ([[0.0, 1.0], [1.0, 0.0]], 0.5, 0.0, 1.0, "seeds and subjects"),
        (np.zeros((0, 4)), np.nan, np.nan, np.nan, "none (no complete seed)"),
    ],
)
def test_degenerate_inputs_give_a_documented_result_without_warnings(matrix, mean, low, high, unit):
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        got = seed_subject_interval(matrix, n_resamples=400)
    assert (got.mean, got.low, got.high) == pytest.approx((mean, low, high), nan_ok=True) and got.unit == unit


def test_a_matrix_with_nan_is_refused_and_incomplete_seeds_are_dropped():
    with pytest.raises(ValueError, match="finite seeds x subjects"):
        seed_subject_interval([[0.5, np.nan]])
    rows = pd.DataFrame(
        {
            "seed": [0, 0, 1, 1, 2, 3, 3],
            "subject": ["a", "b", "a", "b", "a", "a", "b"],
            "d": [0.1, 0.2, 0.3, np.inf, 0.5, 0.6, 0.7],
        }
    )
    # seed 1 has a non-finite value, seed 2 lacks subject b: the complete crossing is seeds 0 and 3
    assert seed_subject_matrix(rows, "d").tolist() == [[0.1, 0.2], [0.6, 0.7]]


def _crossed(rng, reps, n_seeds, n_subjects, sd_seed=0.02, sd_subject=0.02, sd_noise=0.01, mean=0.8):
    """Simulated seed x subject matrices: mean + seed effect + subject effect (shared by seeds) + noise."""
    return (
        mean
        + rng.normal(0, sd_seed, (reps, n_seeds, 1))
        + rng.normal(0, sd_subject, (reps, 1, n_subjects))
        + rng.normal(0, sd_noise, (reps, n_seeds, n_subjects))
    )


def _subject_only_coverage(sims, truth=0.8, n_boot=1000, seed=0):
    """The interval tagseg used before: subjects' means over seeds, percentile bootstrap of subjects."""
    rng = np.random.default_rng(seed)
    per_subject = sims.mean(axis=1)
    reps, n = per_subject.shape
    means = per_subject[np.arange(reps)[:, None, None], rng.integers(0, n, (reps, n_boot, n))].mean(axis=-1)
    low, high = np.percentile(means, [2.5, 97.5], axis=1)
    return float(np.mean((low <= truth) & (truth <= high)))


def _coverage(sims, truth=0.8, n_resamples=1000):
    hits = []
    for i, matrix in enumerate(sims):
        interval = seed_subject_interval(matrix, n_resamples=n_resamples, seed=i)
        hits.append(interval.low <= truth <= interval.high)
    return float(np.mean(hits))


def test_the_interval_covers_the_truth_about_95_percent_of_the_time_with_10_seeds():
    sims = _crossed(np.random.default_rng(0), 200, 10, 10)
    assert 0.90 <= _coverage(sims) <= 0.99
    # the subject-only interval leaves the seed-to-seed variance out and under-covers
    assert _subject_only_coverage(sims) < 0.8


def _nested_coverage(sims, truth=0.8, n_boot=1000, seed=0):
    """Seeds resampled, then subjects drawn anew within each drawn seed (percentile interval)."""
    rng = np.random.default_rng(seed)
    reps, n_seeds, n_subjects = sims.shape
    hits = []
    for matrix in sims:
        rows = rng.integers(0, n_seeds, (n_boot, n_seeds))
        cols = rng.integers(0, n_subjects, (n_boot, n_seeds, n_subjects))
        means = matrix[rows[..., None], cols].mean(axis=(1, 2))
        low, high = np.percentile(means, [2.5, 97.5])
        hits.append(low <= truth <= high)
    return float(np.mean(hits))


@pytest.mark.slow
def test_subjects_drawn_within_each_seed_under_cover_when_the_seeds_share_the_test_hearts():
    # every seed is tested on the same hearts: drawing them anew per seed counts each heart once per seed
    sims = _crossed(np.random.default_rng(5), 1000, 10, 10, 0.005, 0.03, 0.01)
    nested = _nested_coverage(sims)
    print(f"nested resampling: coverage {nested:.3f}")
    assert nested < 0.7


@pytest.mark.slow
@pytest.mark.parametrize(
    "n_seeds, sds, band",
    [
        (10, (0.02, 0.02, 0.01), (0.93, 0.98)),
        (10, (0.03, 0.005, 0.01), (0.93, 0.98)),  # seeds dominate (paired differences)
        (10, (0.005, 0.03, 0.01), (0.93, 0.98)),  # subjects dominate (learning curves)
        (5, (0.02, 0.02, 0.01), (0.90, 0.98)),
        (5, (0.03, 0.005, 0.01), (0.88, 0.97)),
        (3, (0.03, 0.005, 0.01), (0.80, 0.92)),  # 3 seeds: the interval cannot reach 95 %
    ],
)
def test_coverage_by_seed_count(n_seeds, sds, band):
    sims = _crossed(np.random.default_rng(n_seeds), 1000, n_seeds, 10, *sds)
    coverage = _coverage(sims)
    print(f"n_seeds={n_seeds} sds={sds}: coverage {coverage:.3f}, subject-only {_subject_only_coverage(sims):.3f}")
    assert band[0] <= coverage <= band[1]


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
    # every table with an interval names what it resampled and on how many units
    caption = "95 % interval: BCa bootstrap resampling seeds and subjects (n_seeds=2, n_subjects=6)"
    assert caption in table and caption in (out / "paired_vs_scratch.md").read_text()
    assert set(curve["unit"]) == {"seeds and subjects"} and (curve["dice_half"] > 0).all()
    # the claims: one per paired difference and metric, in claims.csv and in report.json
    claims = pd.read_csv(out / "claims.csv")
    assert len(claims) == 2 * len(diff) and set(claims["verdict"]) <= {"held", "not shown", "contradicted"}
    cine_claim = claims[
        (claims["strategy"] == "cine") & (claims["test_set"] == "tag_angle") & (claims["metric"] == "dice")
    ]
    assert list(cine_claim["verdict"]) == ["held", "held"] and cine_claim["more_seeds"].all()  # 2 seeds < 5
    assert list(cine_claim["n_seeds"]) == [2, 2] and list(cine_claim["n_subjects"]) == [6, 6]
    meta = json.loads((out / "report.json").read_text())
    assert len(meta["claims"]) == len(claims) and {"verdict", "effect", "low", "high", "half_width"} <= set(
        meta["claims"][0]
    )
    assert "| cine beats scratch | tag_angle | 4 |" in (out / "claims.md").read_text()
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
