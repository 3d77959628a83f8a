"""experiments/ensemble_size.py: Dice of every k-member ensemble, by hand on fixed probabilities."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import load_experiment_script


def probs(foreground: list[float]) -> np.ndarray:
    """(1, 2, 1, 4) softmax with the given foreground probability per pixel."""
    p = np.asarray(foreground, np.float32).reshape(1, 1, 1, 4)
    return np.concatenate([1 - p, p], axis=1)


def test_every_subset_is_scored_with_its_averaged_softmax():
    script = load_experiment_script("ensemble_size")
    truth = np.array([[[True, True, False, False]]])
    a = probs([0.9, 0.4, 0.2, 0.6])  # alone: pixels 0 and 3 -> Dice 0.5
    b = probs([0.8, 0.9, 0.3, 0.3])  # alone: pixels 0 and 1 -> Dice 1
    c = probs([0.15, 0.65, 0.9, 0.2])  # alone: pixels 1 and 2 -> Dice 0.5
    scores = script.subset_dice([a, b, c], truth, channel=1)
    assert scores[1] == pytest.approx([0.5, 1.0, 0.5])
    # a+b: 0.85, 0.65, 0.25, 0.45 -> pixels 0, 1 (Dice 1); a+c: 0.525, 0.525, 0.55, 0.4 -> pixels 0-2
    # (Dice 0.8); b+c: 0.475, 0.775, 0.6, 0.25 -> pixels 1, 2 (0.5)
    assert scores[2] == pytest.approx([1.0, 0.8, 0.5])
    # all three: 0.617, 0.65, 0.467, 0.367 -> pixels 0, 1
    assert scores[3] == pytest.approx([1.0])


def test_a_run_without_an_evaluation_is_named(tmp_path):
    script = load_experiment_script("ensemble_size")
    with pytest.raises(SystemExit, match=r"eval/summary.json not found: run `tagseg evaluate"):
        script.evaluated_sets(tmp_path, "eval")
