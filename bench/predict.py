"""Benchmark of ``tagseg predict``: per-frame latency (batch 1 and batched) and whole-process time. Prints JSON.

A 25-frame 256x256 NIfTI scan (rings on noise) is segmented by a ResNetVAE (128 px, 8 filters, the
``make demo`` network; untrained unless ``--ckpt`` is given: the speed does not depend on the
weights) as a PyTorch checkpoint and as its ONNX export:

* ``latency_ms_per_frame``: network forward only, batch 1 and one batch of all 25 frames, and the
  whole ``segment()`` (pre-processing, forward, resize back) of the 25 frames; best of ``--repeat``;
* ``process``: wall time of ``tagseg predict`` in a fresh process (``overlays=false``), with
  the time split it prints (start-up = imports + config, wall and CPU seconds): the checkpoint
  and the ONNX model with the default ``orientation.mode=auto``, and the checkpoint without the
  orientation search (``ckpt_no_orientation``; ``orientation_segment_ratio``: segment time with /
  without it).

Usage: ``python bench/predict.py [--ckpt run.ckpt] [--repeat 3] [--threads N]``
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FRAMES, SIZE = 25, 256


def write_scan(path: Path) -> Path:
    import nibabel as nib

    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:SIZE, :SIZE]
    frames = []
    for t in range(FRAMES):
        r = np.hypot(yy - 128, xx - 120 - 0.4 * t)
        frames.append(((r < 42) & (r >= 27)) * 600.0 + rng.normal(100, 30, (SIZE, SIZE)))
    img = nib.Nifti1Image(np.stack(frames, -1).transpose(1, 0, 2).astype(np.float32), np.diag([1.4, 1.4, 8.0, 1.0]))
    img.header.set_xyzt_units("mm", "sec")
    nib.save(img, str(path))
    return path


def untrained_checkpoint(path: Path) -> Path:
    import torch

    from tagseg.models.networks import build_network

    net = build_network("resnetvae", image_size=128, out_channels=2, init_filters=8)
    hparams = {
        "network": {"_target_": "tagseg.models.networks.build_network", "name": "resnetvae", "init_filters": 8},
        "image_size": 128,
        "classes": [2],
        "mean": 0.456,
        "std": 0.224,
    }
    torch.save({"hyper_parameters": hparams, "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()}}, path)
    return path


def best_of(fn, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def latency(seg, frames: np.ndarray, repeat: int) -> dict[str, float]:
    x = seg.preprocess(frames)
    seg.logits(x[:2])  # warm-up
    one = best_of(lambda: [seg.logits(x[i : i + 1]) for i in range(len(x))], repeat) / len(x)
    batched = best_of(lambda: seg.logits(x), repeat) / len(x)
    whole = best_of(lambda: seg.segment(frames, batch_size=len(frames)), repeat) / len(x)
    return {
        "batch_1": round(1000 * one, 2),
        f"batch_{len(x)}": round(1000 * batched, 2),
        "segment_whole_scan": round(1000 * whole, 2),
    }


def process(args: list[str], cwd: Path) -> dict[str, object]:
    env = {**os.environ, "TAGSEG_ROOT": str(cwd), "WANDB_MODE": "disabled"}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "tagseg.cli", "predict", *args, "overlays=false", "progress=false"],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"tagseg predict failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    line = next((x for x in proc.stdout.splitlines() if x.startswith("time:")), "")
    split = {
        k.strip().replace(" ", "_").replace("-", "_"): float(v)
        for k, v in re.findall(r"([a-z -]+?) ([\d.]+) s", line[5:])
    }
    return {"wall_s": round(wall, 2), "split_s": split, "line": line}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ckpt", default=None)
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    import torch

    from tagseg.models.segmenter import load_segmenter
    from tagseg.stages.export import export_model, load_exported

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        scan = write_scan(tmp / "scan25.nii.gz")
        ckpt = Path(args.ckpt) if args.ckpt else untrained_checkpoint(tmp / "model.ckpt")
        export_model(ckpt, "onnx", tmp / "onnx")
        import nibabel as nib

        frames = np.asarray(nib.load(str(scan)).dataobj).transpose(2, 1, 0)
        out = {
            "scan": f"{FRAMES} frames {SIZE}x{SIZE}",
            "torch_threads": torch.get_num_threads(),
            "cpus": os.cpu_count(),
            "checkpoint": str(args.ckpt or "untrained resnetvae 128 px, 8 filters"),
            "latency_ms_per_frame": {
                "torch": latency(load_segmenter(ckpt), frames, args.repeat),
                "onnxruntime": latency(load_exported(tmp / "onnx"), frames, args.repeat),
            },
            "process": {
                "ckpt": process([f"ckpt={ckpt}", f"input={scan}", f"output={tmp / 'out1'}"], tmp),
                "model_onnx": process([f"model={tmp / 'onnx'}", f"input={scan}", f"output={tmp / 'out2'}"], tmp),
                "ckpt_no_orientation": process(
                    [f"ckpt={ckpt}", f"input={scan}", f"output={tmp / 'out3'}", "orientation.mode=none"], tmp
                ),
            },
        }
        runs = out["process"]
        with_search = runs["ckpt"]["split_s"].get("segment")
        without = runs["ckpt_no_orientation"]["split_s"].get("segment")
        if with_search and without:
            runs["orientation_segment_ratio"] = round(with_search / without, 2)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
