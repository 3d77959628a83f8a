"""Shell completion of ``tagseg <stage> ...``: the stage, then Hydra's completion of that stage's config."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import run_tagseg

from tagseg.cli import STAGES, completion_script, stage_completion_line

ROOT = Path(__file__).resolve().parents[1]


def _query(line: str) -> list[str]:
    words = line.split()
    env = {"COMP_LINE": line, "COMP_POINT": str(len(line))}
    proc = run_tagseg([words[1], "-sc", "query=bash"], ROOT, env=env, wandb_mode=None, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc.stdout.split()


def test_stage_line_is_what_hydra_expects():
    assert stage_completion_line("tagseg train mod", "train") == "tagseg-train mod"
    assert stage_completion_line("/usr/bin/tagseg  train model=", "train") == "tagseg-train model="


def test_train_mod_completes_the_model_group_and_its_choices():
    assert "model=" in _query("tagseg train mod")
    assert set(_query("tagseg train model=")) == {"model=resnetvae", "model=nnunet"}
    assert "hparams_search=" in _query("tagseg train hparams")


def test_bash_script_completes_stages_and_delegates_the_rest(tmp_path):
    script = completion_script("bash")
    assert "complete -o nospace -o default -F _tagseg_complete tagseg" in script
    assert all(stage in script for stage in STAGES)
    bash = shutil.which("bash")
    if bash is None:
        pytest.skip("no bash")
    (tmp_path / "tagseg").write_text(f'#!/bin/sh\nexec {sys.executable} -m tagseg.cli "$@"\n')
    (tmp_path / "tagseg").chmod(0o755)
    probe = (
        'eval "$(tagseg --completion bash)"\n'
        'COMP_LINE="tagseg tr"; COMP_POINT=9; COMP_WORDS=(tagseg tr); COMP_CWORD=1; _tagseg_complete; echo "1:${COMPREPLY[*]}"\n'
        'COMP_LINE="tagseg train mod"; COMP_POINT=16; COMP_WORDS=(tagseg train mod); COMP_CWORD=2; _tagseg_complete; '
        'echo "2:${COMPREPLY[*]}"\n'
    )
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}"}
    proc = subprocess.run([bash, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True, timeout=180)
    lines = dict(line.split(":", 1) for line in proc.stdout.splitlines() if line[:2] in ("1:", "2:"))
    assert sorted(lines["1"].split()) == ["train", "translate"], proc.stderr[-2000:]
    assert "model=" in lines["2"].split(), proc.stderr[-2000:]
