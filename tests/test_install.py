"""A non-editable install (``pip install --target``) works from any folder: CLI, package configs, user configs.

Fast: the install, ``--help`` and ``train --cfg job`` (with a user's --config-dir). Slow (``make test-all``):
a tiny ``tagseg train experiment=demo`` run from the empty folder.

The project is copied and installed into a temporary folder, then run with ``PYTHONPATH=<that folder>``
from another, empty folder, so nothing can come from the checkout (the installed ``tagseg`` is asserted).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
CONF = ROOT / "tagseg" / "conf"

#: a user's own experiment, built on the shipped demo (found through --config-dir / hydra.searchpath)
USER_EXPERIMENT = """# @package _global_
defaults:
  - demo
task_name: my_demo
trainer:
  max_epochs: 2
"""
#: a user's machine-specific overrides (the optional `local: default` group of every stage config)
USER_LOCAL = """# @package _global_
torch_threads: 3
"""


def shipped_configs(conf: Path) -> set[str]:
    return {str(p.relative_to(conf)) for p in conf.rglob("*.yaml")}


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, Path]:
    """The project installed with ``pip install --no-deps --target``, an empty working folder and a user config folder."""
    tmp = tmp_path_factory.mktemp("install")
    src = tmp / "src"
    # a copy, so the build leaves no build/ or *.egg-info in the checkout
    shutil.copytree(ROOT / "tagseg", src / "tagseg", ignore=shutil.ignore_patterns("__pycache__"))
    # a developer's git-ignored machine settings must not ship
    (src / "tagseg" / "conf" / "local" / "default.yaml").write_text("# @package _global_\ntorch_threads: 99\n")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    site = tmp / "site"
    pip = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--no-deps",
        "--no-build-isolation",
        "--target",
        str(site),
        str(src),
    ]
    done = subprocess.run(pip, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    user = tmp / "user_conf"
    (user / "experiment").mkdir(parents=True)
    (user / "experiment" / "my_demo.yaml").write_text(USER_EXPERIMENT)
    (user / "local").mkdir()
    (user / "local" / "default.yaml").write_text(USER_LOCAL)
    cwd = tmp / "elsewhere"
    cwd.mkdir()
    return {"site": site, "cwd": cwd, "user": user}


def run_installed(installed: dict[str, Path], *args: str, timeout: int = 300) -> subprocess.CompletedProcess[str]:
    """``python -m tagseg.cli <args>`` from the empty folder, importing tagseg from the install only."""
    env = {k: v for k, v in os.environ.items() if k not in ("TAGSEG_ROOT", "PYTHONPATH")}
    env.update(PYTHONPATH=str(installed["site"]), WANDB_MODE="disabled")
    return subprocess.run(
        [sys.executable, *args], cwd=installed["cwd"], env=env, capture_output=True, text=True, timeout=timeout
    )


def test_install_ships_every_config(installed):
    conf = installed["site"] / "tagseg" / "conf"
    assert shipped_configs(conf) == {c for c in shipped_configs(CONF) if not c.startswith("local/")}
    assert not (conf / "local" / "default.yaml").exists()
    assert "experiment/demo.yaml" in shipped_configs(conf) and "train.yaml" in shipped_configs(conf)
    done = run_installed(installed, "-c", "import tagseg.runtime.config as c; print(c.CONF_DIR)")
    assert done.returncode == 0, done.stderr
    assert Path(done.stdout.strip()) == conf  # the installed copy, not the checkout


def test_help_from_another_folder(installed):
    done = run_installed(installed, "-m", "tagseg.cli", "--help")
    assert done.returncode == 0, done.stderr
    assert "usage: tagseg <stage>" in done.stdout and "train" in done.stdout and "predict" in done.stdout
    script = installed["site"] / "bin" / "tagseg"  # the console script pip wrote for the `tagseg` command
    assert script.exists()
    env = {**os.environ, "PYTHONPATH": str(installed["site"])}
    done = subprocess.run([str(script), "--help"], cwd=installed["cwd"], env=env, capture_output=True, text=True)
    assert done.returncode == 0 and "usage: tagseg <stage>" in done.stdout, done.stderr


def test_cfg_job_finds_package_and_user_configs(installed):
    """``train --cfg job experiment=demo`` from another folder; a user's experiment and local overrides by --config-dir."""
    done = run_installed(installed, "-m", "tagseg.cli", "train", "--cfg", "job", "--resolve", "experiment=demo")
    assert done.returncode == 0, done.stderr
    assert "task_name: demo" in done.stdout and "max_epochs: 15" in done.stdout
    # ${paths.root_dir} is the folder the command was started from (TAGSEG_ROOT, set by the CLI)
    assert f"root_dir: {installed['cwd']}" in done.stdout and f"data_dir: {installed['cwd']}/data" in done.stdout
    assert "torch_threads: null" in done.stdout

    user = installed["user"]
    done = run_installed(
        installed, "-m", "tagseg.cli", "train", "--cfg", "job", "experiment=my_demo", "--config-dir", str(user)
    )
    assert done.returncode == 0, done.stderr
    # the user's experiment on top of the shipped demo (only the user's file names the task my_demo), and the
    # user's local/default.yaml
    assert "task_name: my_demo" in done.stdout and "max_epochs: 2" in done.stdout and "image_size: 128" in done.stdout
    assert "torch_threads: 3" in done.stdout


@pytest.mark.slow
def test_train_demo_from_another_folder(installed):
    """``tagseg train experiment=demo`` (tiny: 64 px store, 6 subjects, 1 epoch; ~10 s): data and run under the start folder.

    The user's folder comes in through ``hydra.searchpath`` here (its local/default.yaml sets torch_threads).
    """
    done = run_installed(
        installed,
        "-m",
        "tagseg.cli",
        "train",
        "experiment=demo",
        "hydra.searchpath=[file://" + str(installed["user"]) + "]",
        "data.store=${paths.data_dir}/demo/tiny.h5",
        "data.image_size=64",
        "datamodule.image_size=32",
        "data.n_subjects=6",
        "data.n_slices=1",
        "data.n_frames=2",
        "trainer.max_epochs=1",
        "callbacks=minimal",
        "print_config=false",
        timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    cwd = installed["cwd"]
    assert (cwd / "data" / "demo" / "tiny.h5").exists()
    runs = list((cwd / "logs" / "demo" / "runs").glob("*/summary.json"))
    assert len(runs) == 1, list(cwd.rglob("*"))
    assert (runs[0].parent / "test_metrics.csv").exists()
