"""The paper's experiments from raw folders (slow): the four phantom-written raw trees through a shrunk
experiment=paper for every strategy, a gamma_sweep and a strategy_matrix cell with the nnU-Net."""

from __future__ import annotations

import csv
import json
import subprocess
import time
from pathlib import Path

import pytest
from conftest import run_tagseg
from phantom_raw import write_raw_trees

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32
SHRUNK = [
    "trainer=cpu",
    "trainer.accelerator=cpu",
    "trainer.devices=1",
    "trainer.precision=32",
    "trainer.max_epochs=1",
    "trainer.num_sanity_val_steps=0",
    "strategy.pretrain.trainer.max_epochs=1",
    f"datamodule.image_size={SIZE}",
    "datamodule.batch_size=16",
    "datamodule.num_workers=0",
    "datamodule.pin_memory=false",
    f"prepare.image_size={SIZE}",
    'strategy.cyclegan=["trainer=cpu","model.generator.ngf=4","model.generator.n_blocks=1",'
    '"model.discriminator.ndf=4",'
    '"model.discriminator.n_layers=1","model.n_epochs=1","model.n_epochs_decay=0","datamodule.batch_size=4",'
    '"+trainer.limit_train_batches=4"]',
    'strategy.translate.physics=["method=physics"]',
    'strategy.translate.cyclegan=["method=cyclegan"]',
    "print_config=false",
    "tags=[paper,raw]",
]
TINY_RESNET = ["+model.network.init_filters=8"]
TINY_NNUNET = ["+model.network.strides=[1,2,2]", "+model.network.filters=[4,8,16]"]


def _train(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    raw = tmp / "raw"
    roots = [
        f"data.root={raw / 'tagged'}",
        f"strategy.source.acdc_root={raw / 'acdc'}",
        f"strategy.source.mnms_root={raw / 'mnms'}",
        f"strategy.source.scd_root={raw / 'scd'}",
    ]
    cmd = ["train", *args, *roots, *SHRUNK, f"paths.cache_dir={tmp / 'cache'}"]
    return run_tagseg(cmd, ROOT, root=tmp, timeout=1800)


@pytest.mark.slow
def test_paper_experiments_from_raw_folders(tmp_path):
    manifests = write_raw_trees(tmp_path / "raw", n_subjects=4)
    seconds = {}
    for strategy in ("scratch", "cine", "physics", "cyclegan"):
        start = time.perf_counter()
        run_dir = tmp_path / "runs" / strategy
        res = _train(
            tmp_path,
            "experiment=paper",
            f"strategy={strategy}",
            "model=resnetvae",
            *TINY_RESNET,
            f"hydra.run.dir={run_dir}",
        )
        seconds[strategy] = round(time.perf_counter() - start, 1)
        assert res.returncode == 0, res.stderr[-3000:]
        record = json.loads((run_dir / "strategy.json").read_text())
        assert record["status"] == "ok" and 0.0 <= record["test_dice_mean"] <= 1.0
    # every prepared store: the counts written, 0 skipped, the configured size
    import h5py

    for store in (tmp_path / "cache" / "prepare").glob("*/store.h5"):
        with h5py.File(store, "r") as f:
            counts = json.loads(f.attrs["slice_counts"])
            assert f["images"].shape[1:] == (SIZE, SIZE) and int(f.attrs["n_skipped"]) == 0
        assert counts == {d: manifests[d]["counts"] for d in counts}
    assert len(list((tmp_path / "cache" / "prepare").glob("*/store.h5"))) == 2  # tagged + cine, shared by all
    print(json.dumps({"paper_raw_seconds": seconds}))
    # gamma_sweep (2 of its gammas) and a strategy_matrix cell with the other architecture
    sweep = tmp_path / "sweeps"
    res = _train(
        tmp_path, "-m", "experiment=gamma_sweep", "loss.gamma=0,0.5", *TINY_RESNET, f"hydra.sweep.dir={sweep / 'gamma'}"
    )
    assert res.returncode == 0, res.stderr[-3000:]
    res = _train(
        tmp_path,
        "-m",
        "experiment=strategy_matrix",
        "model=nnunet",
        "strategy=scratch",
        *TINY_NNUNET,
        f"hydra.sweep.dir={sweep / 'matrix'}",
    )
    assert res.returncode == 0, res.stderr[-3000:]
    for name, n in (("gamma", 2), ("matrix", 1)):
        rows = list(csv.DictReader((sweep / name / "summary.csv").open()))
        assert len(rows) == n and all(r["status"] == "ok" for r in rows)
