"""The notebooks only use tagseg's public API: run their code cells so they cannot rot."""

from __future__ import annotations

import json
from pathlib import Path

import matplotlib
import pytest

matplotlib.use("Agg")

NOTEBOOKS = sorted((Path(__file__).resolve().parents[1] / "notebooks").glob("*.ipynb"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.name)
def test_notebook_code_cells_run(path: Path, single_thread) -> None:
    import matplotlib.pyplot as plt

    cells = json.loads(path.read_text())["cells"]
    code = [("".join(c["source"])) for c in cells if c["cell_type"] == "code"]
    assert code, f"{path.name} has no code cells"
    scope: dict = {}
    for source in code:
        exec(compile(source, str(path), "exec"), scope)
    plt.close("all")
    if "t_tagged" in scope:  # the exploration notebook's own claim: tagged frames look tagged, cine does not
        assert scope["t_tagged"].mean() > 5 * scope["t_cine"].mean()
