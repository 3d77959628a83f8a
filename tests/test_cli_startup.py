"""``tagseg --help``, ``tagseg <stage> --help`` and ``--cfg job`` compose and print without importing the
heavy libraries (Lightning, torch, Optuna, MONAI): what they import is checked, not how long they take."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("lightning", "torch", "optuna", "monai", "wandb", "h5py", "scipy")

#: runs each command line in one process, then reports which heavy modules were imported
PROBE = """
import contextlib, io, json, sys
from hydra.core.global_hydra import GlobalHydra
from tagseg.cli import main

commands, heavy = json.loads(sys.argv[1]), json.loads(sys.argv[2])  # the CLI rewrites sys.argv
printed = {}
for args in commands:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        try:
            main(args)
        except SystemExit as exc:
            assert not exc.code, (args, exc.code)
    GlobalHydra.instance().clear()
    printed[" ".join(args)] = out.getvalue()
print(json.dumps({"printed": printed, "imported": [m for m in heavy if m in sys.modules]}))
"""


def probe(tmp_path: Path, *commands: list[str]) -> dict:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TAGSEG_ROOT": str(tmp_path), "WANDB_MODE": "disabled"}
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(PROBE), json.dumps(commands), json.dumps(HEAVY)],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.splitlines()[-1])


def test_help_and_cfg_job_import_no_heavy_library(tmp_path):
    result = probe(tmp_path, ["--help"], ["train", "--help"], ["train", "--cfg", "job", "experiment=demo"])
    assert result["imported"] == []
    printed = result["printed"]
    assert "usage: tagseg <stage>" in printed["--help"]
    assert (
        "== Configuration groups ==" in printed["train --help"]
        and "model: nnunet, resnetvae" in printed["train --help"]
    )
    assert "task_name: demo" in printed["train --cfg job experiment=demo"]


def test_every_stage_composes_without_heavy_libraries(tmp_path):
    stages = ["phantom", "prepare", "translate", "cyclegan", "evaluate", "predict", "export", "report"]
    result = probe(tmp_path, *[[stage, "--cfg", "job"] for stage in stages])
    assert result["imported"] == []
    assert all(result["printed"][f"{stage} --cfg job"].strip() for stage in stages)
