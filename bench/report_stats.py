"""Benchmark of the report's interval over seeds and test subjects. Prints JSON.

* ``interval_ms``: one :func:`tagseg.report.stats.seed_subject_interval` (BCa, ``--n-boot``
  resamples) of a ``--seeds`` x ``--subjects`` matrix, best of ``--repeat``;
* ``sweep_s``: :func:`~tagseg.report.stats.learning_curve` + :func:`~tagseg.report.stats.paired_differences`
  + :func:`~tagseg.report.claims.claims` of a simulated sweep as large as the decisive re-run
  (3 strategies x 2 n x ``--seeds`` seeds x 7 test sets of ``--subjects`` subjects), best of ``--repeat``.

Usage: ``python bench/report_stats.py [--seeds 10] [--subjects 11] [--n-boot 2000] [--repeat 3]``
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import pandas as pd

from tagseg.report.claims import claims
from tagseg.report.stats import learning_curve, paired_differences, seed_subject_interval

TEST_SETS = ("test", "none", "tag_angle", "pixel_size", "low_snr", "anatomy", "scanner")


def simulated_subjects(n_seeds: int, n_subjects: int, rng: np.random.Generator) -> pd.DataFrame:
    """Per (test set, strategy, n, seed, subject) Dice / HD95, as :func:`~tagseg.report.stats.subject_means` gives them."""
    rows = []
    for test_set in TEST_SETS:
        hearts = rng.normal(0, 0.03, n_subjects)
        for strategy, gain in (("scratch", 0.0), ("cine", 0.01), ("physics", 0.005)):
            for n in (1, 2):
                for seed in range(n_seeds):
                    shift = rng.normal(0, 0.02)
                    for j, heart in enumerate(hearts):
                        dice = 0.8 + gain + heart + shift + rng.normal(0, 0.01)
                        rows.append((test_set, strategy, n, seed, f"s{j}", dice, 5 - 20 * (dice - 0.8)))
    return pd.DataFrame(rows, columns=["test_set", "strategy", "n", "seed", "subject", "dice", "hd95_mm"])


def best_s(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--subjects", type=int, default=11)
    parser.add_argument("--n-boot", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    matrix = rng.normal(0.8, 0.03, (args.seeds, args.subjects))
    subjects = simulated_subjects(args.seeds, args.subjects, rng)

    def sweep() -> None:
        learning_curve(subjects, args.n_boot)
        claims(paired_differences(subjects, n_boot=args.n_boot), "scratch")

    print(
        json.dumps(
            {
                "seeds": args.seeds,
                "subjects": args.subjects,
                "n_boot": args.n_boot,
                "interval_ms": round(1e3 * best_s(lambda: seed_subject_interval(matrix, args.n_boot), args.repeat), 2),
                "sweep_cells": 3 * 2 * args.seeds,
                "sweep_s": round(best_s(sweep, args.repeat), 2),
            }
        )
    )


if __name__ == "__main__":
    main()
