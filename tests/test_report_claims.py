"""The claims rule: verdicts, when more seeds are needed, the claims table and the interval captions."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from tagseg.report.claims import claims, claims_markdown, drop_mirrors, needs_more_seeds, seeds_needed, verdict
from tagseg.report.stats import interval_caption, learning_curve, paired_differences


@pytest.mark.parametrize(
    "low, high, direction, expected",
    [
        (0.01, 0.05, 1, "held"),  # Dice up, interval above 0
        (-0.05, -0.01, 1, "contradicted"),
        (-0.01, 0.05, 1, "not shown"),
        (0.0, 0.05, 1, "not shown"),  # touching 0 does not exclude it
        (-2.0, -0.5, -1, "held"),  # HD95 down
        (0.5, 2.0, -1, "contradicted"),
        (math.nan, math.nan, 1, "not shown"),  # no interval (one seed and one subject)
    ],
)
def test_verdict(low, high, direction, expected):
    assert verdict(low, high, direction) == expected


def test_more_seeds_while_the_half_width_exceeds_the_effect_or_the_limit():
    assert not needs_more_seeds(effect=0.037, half_width=0.02, n_seeds=10, limit=0.01)  # resolved
    assert needs_more_seeds(effect=0.003, half_width=0.02, n_seeds=10, limit=0.01)  # neither resolved nor bounded
    assert not needs_more_seeds(effect=0.003, half_width=0.008, n_seeds=10, limit=0.01)  # bounded below 0.01
    assert needs_more_seeds(effect=0.1, half_width=0.01, n_seeds=3, limit=0.01)  # fewer than 5 seeds
    assert not needs_more_seeds(effect=0.1, half_width=0.01, n_seeds=3, limit=0.01, min_seeds=3)
    assert needs_more_seeds(effect=0.1, half_width=math.nan, n_seeds=10, limit=0.01)


def test_seeds_needed_scales_with_the_square_of_the_half_width():
    # 10 seeds, half-width 0.02, target max(0.003, 0.01) = 0.01: 10 * (0.02 / 0.01)^2 = 40
    assert seeds_needed(0.003, 0.02, 10, 0.01) == 40
    assert seeds_needed(0.05, 0.01, 10, 0.01) == 10  # already enough: never fewer than were run
    assert seeds_needed(0.05, 0.001, 3, 0.01) == 5  # the minimum
    assert seeds_needed(0.05, 0.01, 1, 0.01) == 5  # one seed: no seed spread to scale


def _diff_rows():
    return pd.DataFrame(
        [
            {
                "test_set": "test",
                "strategy": "cine",
                "n": 1,
                "seeds": 10,
                "subjects": 11,
                "unit": "seeds and subjects",
                "d_dice": 0.004,
                "d_dice_lo": -0.016,
                "d_dice_hi": 0.024,
                "d_dice_half": 0.020,
                "d_hd95_mm": -0.8,
                "d_hd95_mm_lo": -1.2,
                "d_hd95_mm_hi": -0.4,
                "d_hd95_mm_half": 0.4,
            }
        ]
    )


def test_claims_table_carries_verdict_effect_interval_half_width_and_counts():
    table = claims(_diff_rows(), "scratch").set_index("metric")
    dice, hd95 = table.loc["dice"], table.loc["hd95_mm"]
    assert dice["verdict"] == "not shown" and dice["more_seeds"] and dice["seeds_needed"] == 40
    assert (dice["effect"], dice["low"], dice["high"], dice["half_width"]) == (0.004, -0.016, 0.024, 0.020)
    assert dice["n_seeds"] == 10 and dice["n_subjects"] == 11 and dice["reference"] == "scratch"
    # HD95 down by 0.8 mm [-1.2, -0.4]: held, half-width 0.4 below |effect|: settled
    assert hd95["verdict"] == "held" and not hd95["more_seeds"]
    assert not claims(_diff_rows(), "scratch", limits={"dice": 0.03}).set_index("metric").loc["dice", "more_seeds"]
    text = claims_markdown(claims(_diff_rows(), "scratch"))
    assert (
        "| cine beats scratch | test | 1 | +0.004 [-0.016, +0.024] | 0.020 | 10 | 11 | not shown | yes (>= 40) |"
        in text
    )
    assert claims_markdown(claims(pd.DataFrame(), "scratch")) == "(no paired dice differences)\n"
    single = _diff_rows().assign(seeds=1, subjects=1, d_dice_lo=np.nan, d_dice_hi=np.nan, d_dice_half=np.nan)
    row = claims(single, "scratch").set_index("metric").loc["dice"]
    assert row["verdict"] == "not shown" and row["more_seeds"] and row["seeds_needed"] == 5
    assert "| +0.004 [no interval] | - | 1 | 1 | not shown | yes (>= 5) |" in claims_markdown(claims(single, "scratch"))


def test_a_claim_against_a_second_reference_drops_the_first_ones_mirror():
    """references=[scratch,cine]: "scratch beats cine" is "cine beats scratch" negated: stated once."""
    vs_scratch = claims(_diff_rows(), "scratch")
    mirrored = _diff_rows().assign(strategy="scratch", d_dice=-0.004, d_dice_lo=-0.024, d_dice_hi=0.016)
    physics = _diff_rows().assign(strategy="physics")
    vs_cine = claims(pd.concat([mirrored, physics], ignore_index=True), "cine")
    other_set = claims(mirrored.assign(test_set="none"), "cine")  # a mirror only within the same set, n, metric
    table = drop_mirrors(pd.concat([vs_scratch, vs_cine, other_set], ignore_index=True))
    pairs = list(zip(table.strategy, table.reference, table.test_set))
    assert pairs.count(("cine", "scratch", "test")) == 2  # Dice and HD95
    assert ("scratch", "cine", "test") not in pairs and pairs.count(("physics", "cine", "test")) == 2
    assert pairs.count(("scratch", "cine", "none")) == 2 and len(table) == 6


def test_captions_name_the_unit_and_the_counts():
    table = pd.DataFrame({"unit": ["seeds and subjects"] * 2, "seeds": [10, 10], "subjects": [11, 6]})
    assert (
        interval_caption(table)
        == "95 % interval: BCa bootstrap resampling seeds and subjects (n_seeds=10, n_subjects=6-11)"
    )
    mixed = pd.DataFrame({"unit": ["seeds and subjects", "subjects (1 seed)"], "seeds": [3, 1], "subjects": [6, 6]})
    assert interval_caption(mixed) == (
        "95 % interval: BCa bootstrap resampling seeds and subjects / subjects (1 seed) (n_seeds=1-3, n_subjects=6)"
    )


def _arms(seed_effect, subject_effect, gain, noise_sd=0.002, seed=0):
    """Scratch and cine on the same seeds x subjects: what the seed and the heart do is shared by both arms."""
    rng = np.random.default_rng(seed)
    rows = []
    for i, a in enumerate(seed_effect):
        for j, b in enumerate(subject_effect):
            base = 0.8 + a + b
            rows.append(("test", "scratch", 1, i, f"s{j}", base + rng.normal(0, noise_sd), 5.0))
            rows.append(("test", "cine", 1, i, f"s{j}", base + gain + rng.normal(0, noise_sd), 5.0))
    return pd.DataFrame(rows, columns=["test_set", "strategy", "n", "seed", "subject", "dice", "hd95_mm"])


def test_paired_resampling_draws_the_same_seeds_and_subjects_for_both_arms():
    # seeds move both arms by up to +/- 0.05, subjects by +/- 0.1; cine adds 0.01 everywhere
    rng = np.random.default_rng(3)
    subjects = _arms(rng.normal(0, 0.05, 6), rng.normal(0, 0.1, 8), gain=0.01)
    diff = paired_differences(subjects, n_boot=1000).iloc[0]
    assert diff["d_dice"] == pytest.approx(0.01, abs=0.002) and diff["d_dice_lo"] > 0 and diff["dice_better"]
    assert diff["d_dice_half"] < 0.003 and diff["seeds"] == 6 and diff["subjects"] == 8
    # drawn independently for each arm, the shared seed and subject effects would not cancel:
    # the unpaired difference of means has a spread far wider than the gain
    curve = learning_curve(subjects, n_boot=1000).set_index("strategy")
    assert curve.loc["cine", "dice_half"] > 5 * diff["d_dice_half"]
    assert curve.loc["cine", "dice_lo"] < curve.loc["scratch", "dice_hi"]  # the arms' intervals overlap


def test_a_gain_that_reverses_with_the_seed_is_not_shown():
    # the case: +0.020, -0.031, +0.020 at three seeds, mean +0.003
    rows = []
    for seed, d in enumerate((0.020, -0.031, 0.020)):
        for j in range(11):
            rows.append(("test", "scratch", 1, seed, f"s{j}", 0.85 + 0.005 * j, 5.0))
            rows.append(("test", "cine", 1, seed, f"s{j}", 0.85 + 0.005 * j + d + 0.001 * (j % 3), 5.0))
    diff = paired_differences(
        pd.DataFrame(rows, columns=["test_set", "strategy", "n", "seed", "subject", "dice", "hd95_mm"])
    )
    table = claims(diff, "scratch").set_index("metric")
    assert table.loc["dice", "verdict"] == "not shown" and table.loc["dice", "more_seeds"]
    assert table.loc["dice", "low"] < 0 < table.loc["dice", "high"] and table.loc["dice", "n_seeds"] == 3


def test_the_rule_settings_are_checked_with_one_line_naming_the_key():
    from tagseg.errors import ConfigError
    from tagseg.report.claims import LIMITS, claim_rule

    assert claim_rule(None, 5) == (LIMITS, 5)
    assert claim_rule({"dice": 0.02}, 3) == ({**LIMITS, "dice": 0.02}, 3)
    with pytest.raises(ConfigError, match=r"claims.limits.dice: expected a number >= 0 .* got 'abc'"):
        claim_rule({"dice": "abc"}, 5)
    with pytest.raises(ConfigError, match=r"claims.limits.dice: expected a number >= 0 .* got -0.01"):
        claim_rule({"dice": -0.01}, 5)
    with pytest.raises(ConfigError, match=r"claims.limits.dcie: not a metric; expected some of \['dice', 'hd95_mm'\]"):
        claim_rule({"dcie": 0.01}, 5)
    with pytest.raises(ConfigError, match=r"claims.min_seeds: expected an integer >= 1, got 0"):
        claim_rule(None, 0)
    with pytest.raises(ConfigError, match=r"n_boot: expected an integer >= 100 .* got 10"):
        claim_rule(None, 5, 10)


def test_the_report_refuses_a_bad_rule_before_writing(tmp_path):
    from hydra import compose, initialize_config_dir

    from tagseg.errors import ConfigError
    from tagseg.runtime.config import CONF_DIR
    from tagseg.stages.report import report

    with initialize_config_dir(CONF_DIR, version_base="1.3"):
        cfg = compose("report", overrides=[f"path={tmp_path}", f"output={tmp_path / 'out'}", "claims.min_seeds=0"])
    with pytest.raises(ConfigError, match="claims.min_seeds"):
        report(cfg)
    assert not (tmp_path / "out").exists()
