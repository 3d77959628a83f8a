"""experiments/seed_spread.py: per-seed Dice per recipe and test set from strategy sweep cells."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from conftest import load_experiment_script


def write_cell(folder: Path, seed: int, augment: str, dice: dict[str, float], status: str = "ok") -> None:
    (folder / ".hydra").mkdir(parents=True)
    # the augment choice where `tagseg report` reads it (the sweep's hydra.yaml)
    (folder / ".hydra" / "hydra.yaml").write_text(f"hydra:\n  runtime:\n    choices:\n      augment: {augment}\n")
    tests = {name: {"dice_mean": value} for name, value in dice.items()}
    record = {"status": status, "strategy": "physics", "seed": seed, "n_train_subjects": 16, "tests": tests}
    (folder / "strategy.json").write_text(json.dumps(record))


def test_seeds_are_grouped_by_recipe_and_failed_cells_left_out(tmp_path, capsys, monkeypatch):
    script = load_experiment_script("seed_spread")
    write_cell(tmp_path / "a" / "0", 0, "tagged", {"test": 0.9, "scanner": 0.5})
    write_cell(tmp_path / "a" / "1", 1, "tagged", {"test": 0.8, "scanner": 0.7})
    write_cell(tmp_path / "b" / "0", 0, "paper", {"test": 0.95, "scanner": 0.4})
    write_cell(tmp_path / "b" / "1", 1, "paper", {"test": 0.1, "scanner": 0.1}, status="failed")
    table = script.read_cells([tmp_path / "a", tmp_path / "b"])
    assert table["physics@tagged n=16"]["scanner"] == {"0": 0.5, "1": 0.7}
    assert table["physics n=16"]["test"] == {"0": 0.95}  # paper is the plain strategy; a failed cell is not a seed
    monkeypatch.setattr(
        sys, "argv", ["seed_spread.py", str(tmp_path / "a"), "--sets", "scanner", "--output", str(tmp_path / "s.png")]
    )
    script.main()
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.startswith("{")]
    assert lines == [
        {"recipe": "physics@tagged n=16", "test_set": "scanner", "mean": 0.6, "seeds": {"0": 0.5, "1": 0.7}}
    ]
    assert (tmp_path / "s.png").stat().st_size > 1000
