"""Test metrics gathered with torchmetrics: under DDP every test image is counted exactly once."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import numpy as np
import pytest

from tagseg.data.datamodule import SliceDataModule
from tagseg.models.segmentation import SegmentationModule

ROOT = Path(__file__).resolve().parents[1]

# run by torch.distributed.run on 2 CPU processes: rank 0 writes the rows it ends with
SCRIPT = """
import json, sys
import lightning as L
from tagseg.data.datamodule import SliceDataModule
from tagseg.models.segmentation import SegmentationModule

ckpt, store, out = sys.argv[1:4]
model = SegmentationModule.load_from_checkpoint(ckpt, map_location="cpu", weights_only=False)
dm = SliceDataModule(stores=[store], image_size=32, batch_size=3, augment={"enabled": False})
trainer = L.Trainer(accelerator="cpu", devices=2, strategy="ddp", logger=False, enable_progress_bar=False,
                    enable_model_summary=False, enable_checkpointing=False)
trainer.test(model, datamodule=dm, verbose=False)
if trainer.is_global_zero:
    open(out, "w").write(json.dumps(model.test_rows))
"""


def _single_process_rows(ckpt: Path, store: Path) -> list[dict]:
    model = SegmentationModule.load_from_checkpoint(ckpt, map_location="cpu", weights_only=False)
    dm = SliceDataModule(stores=[str(store)], image_size=32, batch_size=3, augment={"enabled": False})
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    trainer.test(model, datamodule=dm, verbose=False)
    return model.test_rows


def test_rows_are_one_per_dataset_index(trained_ckpt):
    model = SegmentationModule.load_from_checkpoint(trained_ckpt, map_location="cpu", weights_only=False)
    data = SimpleNamespace(subject=np.array(["a", "b", "c"]), group=np.array(["g1", "g2", "g1"]))
    model.trainer = SimpleNamespace(test_dataloaders=[SimpleNamespace(dataset=SimpleNamespace(data=data))])
    # rank 1's padded batch repeats index 0 (DistributedSampler)
    table = np.array(
        [
            [2, 1, 3, 0.5, 4.0, 0.5, 4.0],
            [0, 0, 1, 0.9, 1.0, 0.9, 1.0],
            [1, 0, 2, 0.7, 2.0, 0.7, 2.0],
            [0, 0, 1, 0.9, 1.0, 0.9, 1.0],
        ]
    )
    rows = model.rows_from_table(table)
    assert [r["index"] for r in rows] == [0, 1, 2]
    assert [(r["subject"], r["group"], r["frame"]) for r in rows] == [("a", "g1", 1), ("b", "g2", 2), ("c", "g1", 3)]
    assert rows[2]["dice"] == 0.5 and rows[2]["hd95_mm"] == 4.0


@pytest.mark.slow
def test_ddp_test_on_two_processes_counts_every_image_once(tmp_path, trained_ckpt, make_ring_store):
    # 3 slices x 3 frames: 9 test images, an odd count the distributed sampler pads with a repeat
    ring_store = make_ring_store("odd.h5", n_slices=3, n_frames=3)
    single = _single_process_rows(trained_ckpt, ring_store)
    assert len(single) == 9
    (tmp_path / "ddp_test.py").write_text(textwrap.dedent(SCRIPT))
    out = tmp_path / "rows.json"
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "LOCAL_RANK", "WORLD_SIZE")}
    env.update(OMP_NUM_THREADS="1", WANDB_MODE="disabled")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            str(tmp_path / "ddp_test.py"),
            str(trained_ckpt),
            str(ring_store),
            str(out),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    ddp = json.loads(out.read_text())
    assert [r["index"] for r in ddp] == [r["index"] for r in single]
    for a, b in zip(ddp, single):
        assert a["subject"] == b["subject"] and a["group"] == b["group"] and a["frame"] == b["frame"]
        assert a["dice"] == pytest.approx(b["dice"], abs=1e-6)
        assert a["hd95_mm"] == pytest.approx(b["hd95_mm"], abs=1e-6, nan_ok=True)
