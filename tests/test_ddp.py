"""DDP on 2 CPU processes (gloo), alone and inside a multirun: no re-launch, one set of outputs,
and a plain ``tagseg train trainer=ddp`` tested once, on one device."""

from __future__ import annotations

import csv
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from conftest import run_tagseg

from tagseg.runtime import ddp

ROOT = Path(__file__).resolve().parents[1]
TINY = [
    "data.n_subjects=6",
    "data.n_frames=2",
    "data.image_size=32",
    "data.fov_mm=96",
    "strategy.use_existing_stores=false",
    "datamodule.image_size=32",
    "datamodule.batch_size=4",
    "datamodule.num_workers=0",
    "+model.network.init_filters=8",
    "callbacks=minimal",
    "print_config=false",
    "trainer=ddp",
    "trainer.accelerator=cpu",
    "trainer.devices=2",
    "trainer.max_epochs=1",
    "++trainer.max_steps=2",
    "++trainer.limit_val_batches=1",
    "trainer.num_sanity_val_steps=0",
    "strategy=scratch",
]


# a plain run (no strategy) on a given store
PLAIN = [
    "datamodule.image_size=32",
    "datamodule.batch_size=2",
    "datamodule.num_workers=0",
    "datamodule.augment.enabled=false",
    "+model.network.init_filters=8",
    "callbacks=minimal",
    "print_config=false",
    "trainer=ddp",
    "trainer.accelerator=cpu",
    "trainer.devices=2",
    "trainer.max_epochs=2",
    "trainer.num_sanity_val_steps=0",
    "trainer.enable_model_summary=false",
    "torch_threads=1",
]


def _train(root: Path, *args: str, base: list[str] = TINY, torchrun: bool = False) -> subprocess.CompletedProcess:
    flags = [a for a in args if a.startswith("-")]  # argparse: flags before the overrides
    overrides = [a for a in args if not a.startswith("-")]
    # torchrun creates the ranks (plain ddp, each rank runs the job); otherwise the job spawns them
    python = (
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
        if torchrun
        else [sys.executable]
    )
    return run_tagseg(
        ["train", *flags, *base, *overrides],
        ROOT,
        root=root,
        unset=("RANK", "LOCAL_RANK", "WORLD_SIZE"),
        timeout=900,
        python=python,
    )


def test_rank_and_strategy_follow_the_launcher(monkeypatch):
    for var in (
        "RANK",
        "SLURM_PROCID",
        "SUBMITIT_LOCAL_GLOBALID",
        "LOCAL_RANK",
        "WORLD_SIZE",
        "SLURM_NTASKS",
        "SUBMITIT_LOCAL_NTASKS",
    ):
        monkeypatch.delenv(var, raising=False)
    assert (ddp.global_rank(), ddp.world_size(), ddp.launcher_created_ranks()) == (0, 1, False)
    assert ddp.ddp_strategy()._start_method == "spawn"
    monkeypatch.setenv("SLURM_PROCID", "1")
    monkeypatch.setenv("SLURM_NTASKS", "2")
    assert (ddp.global_rank(), ddp.world_size(), ddp.launcher_created_ranks()) == (1, 2, True)
    assert ddp.ddp_strategy()._start_method == "popen"


def test_submitit_local_tasks_get_torch_distributed_variables(monkeypatch):
    for var in ("LOCAL_RANK", "RANK", "WORLD_SIZE", "MASTER_PORT"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("SUBMITIT_LOCAL_NTASKS", "2")
    monkeypatch.setenv("SUBMITIT_LOCAL_GLOBALID", "1")
    monkeypatch.setenv("SUBMITIT_LOCAL_LOCALID", "1")
    monkeypatch.setenv("SUBMITIT_LOCAL_JOB_ID", "4242")
    ddp.export_submitit_local_env()
    assert (os.environ["RANK"], os.environ["LOCAL_RANK"], os.environ["WORLD_SIZE"]) == ("1", "1", "2")
    port = int(os.environ["MASTER_PORT"])
    assert 20000 <= port < 50000
    monkeypatch.setenv("SUBMITIT_LOCAL_GLOBALID", "0")
    monkeypatch.delenv("LOCAL_RANK")
    ddp.export_submitit_local_env()
    assert int(os.environ["MASTER_PORT"]) == port  # both ranks agree


@pytest.mark.slow
def test_ddp_two_cpu_processes_train_two_steps_one_set_of_outputs(tmp_path):
    proc = _train(tmp_path)
    assert proc.returncode == 0, proc.stderr[-4000:]
    (ft,) = [p.parent for p in (tmp_path / "cache" / "finetune").glob("*/done")]
    outputs = json.loads((ft / "outputs.json").read_text())
    assert outputs["global_step"] == 2
    assert [p.name for p in (ft / "csv").iterdir()] == ["version_0"]  # one logger output, from rank 0
    ckpts = {p.name for p in (ft / "checkpoints").iterdir()}
    assert "last.ckpt" in ckpts and ckpts <= {"best.ckpt", "last.ckpt"}  # no last-v1.ckpt from a second writer
    runs = list((tmp_path / "logs" / "train" / "runs").iterdir())
    assert len(runs) == 1 and (runs[0] / "strategy.json").exists()
    assert "world_size=2" in proc.stdout + proc.stderr or "distributed_backend=gloo" in proc.stdout + proc.stderr


@pytest.mark.slow
def test_multirun_with_ddp_runs_each_cell_once(tmp_path):
    proc = _train(tmp_path, "-m", "seed=0,1")
    assert proc.returncode == 0, proc.stderr[-4000:]
    log = proc.stdout + proc.stderr
    assert log.count("Launching 2 jobs locally") == 1
    (sweep,) = list((tmp_path / "logs" / "train" / "multiruns").iterdir())
    jobs = sorted(p.name for p in sweep.iterdir() if p.is_dir() and not p.name.startswith("."))
    assert jobs == ["0", "1"]
    rows = list(csv.DictReader(open(sweep / "summary.csv")))
    assert [r["status"] for r in rows] == ["ok", "ok"] and [r["overrides"].split(",")[-1] for r in rows] == [
        "seed=0",
        "seed=1",
    ]
    assert len(list((tmp_path / "cache" / "finetune").glob("*/done"))) == 2
    assert not (tmp_path / "logs" / "train" / "runs").exists()  # no rank re-ran the command as a single run


@pytest.mark.slow
@pytest.mark.parametrize("torchrun", [False, True], ids=["ddp_spawn", "torchrun_ranks"])
def test_plain_ddp_run_tests_every_image_once_on_one_device(tmp_path, make_ring_store, torchrun):
    # 6 subjects x 3 slices: 12 train images (3 steps/epoch at 2 per device on 2 devices), 3 test
    # images (s0): odd, so a DistributedSampler would pad one rank with a repeated image
    store = make_ring_store("rings.h5", n_slices=3, n_frames=1)
    # the ranks of torchrun start the job separately: one run folder for both, not one per start time
    same_dir = [f"hydra.run.dir={tmp_path / 'logs' / 'train' / 'runs' / 'torchrun'}"] if torchrun else []
    proc = _train(tmp_path, f"data.store={store}", *same_dir, base=PLAIN, torchrun=torchrun)
    assert proc.returncode == 0, proc.stderr[-4000:]
    (run,) = list((tmp_path / "logs" / "train" / "runs").iterdir())
    summary = json.loads((run / "summary.json").read_text())
    rows = list(csv.DictReader(open(run / "test_metrics.csv")))
    assert summary["n_images"] == 3 and summary["split"] == "test"
    assert [(r["subject"], r["slice"]) for r in rows] == [("s0", "0"), ("s0", "1"), ("s0", "2")]
    assert summary["dice_mean"] == pytest.approx(sum(float(r["dice"]) for r in rows) / 3)
    assert summary["checkpoint"] == str(run / "checkpoints" / "best.ckpt")
    assert re.search(r"│ all\s+│ 3 │", proc.stdout), proc.stdout[-2000:]  # the printed table: 3 images
    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert (state["epoch"], state["global_step"]) == (1, 6)
    assert "fit: 2 epochs, 6 steps on 2 device(s)" in (run / "train.log").read_text()
    assert proc.stdout.count("summary: ") == 1  # tested and printed by one process only
    logged = list(csv.DictReader(open(run / "csv" / "version_0" / "metrics.csv")))
    assert len(logged) >= 2 and all("val/dice" in r for r in logged)  # rank 0's epoch log is kept whole
