"""Training-step throughput: tagseg (Lightning + SegmentationModule) vs a bare PyTorch loop.

Both run the same network (SegResNetVAE, same initial weights), the same batch (already in memory,
so no data loading is timed), the same loss (Eq. 4 with precomputed SI maps + 0.1 x VAE loss) and
Adam; the tagseg side goes through ``lightning.Trainer.fit`` and ``SegmentationModule.training_step``
(logging included). Rounds alternate between the two to share the machine's load fairly; the
median round is reported. Also reported: the shape loss's share of a step (forward + backward of
L_S alone vs the whole step), and what the authors' per-step CPU distance transform would cost.

    .venv/bin/python bench/train_step.py [--size 96] [--batch 8] [--filters 8] [--steps 12] [--rounds 3] [--threads 1]

Prints one JSON object (CPU-friendly defaults: 96x96, batch 8, init_filters 8). Images/s come from the median
step time of each round (robust to other jobs on a shared machine).
"""

from __future__ import annotations

import argparse
import copy
import json
import platform
import statistics
import time
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F

from tagseg.losses import SegmentationLoss, ShapeAwareLoss, shape_information_batch
from tagseg.models.networks import split_output
from tagseg.models.segmentation import SegmentationModule

GAMMA, K, VAE_WEIGHT, LR = 0.05, 0.2, 0.1, 0.01


def make_batch(size: int, batch: int) -> dict[str, Any]:
    """Rings of myocardium (class 1) at random centres, with their SI maps."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[:size, :size]
    label = np.zeros((batch, 1, size, size), np.int64)
    for i in range(batch):
        cy, cx = size / 2 + rng.uniform(-size / 10, size / 10, 2)
        r = np.hypot(yy - cy, xx - cx)
        label[i, 0] = (r > size * 0.15) & (r < size * 0.25)
    label_t = torch.from_numpy(label)
    return {
        "image": torch.randn(batch, 1, size, size),
        "label": label_t,
        "si": shape_information_batch(label_t.float(), K),
    }


def make_module(size: int, filters: int) -> SegmentationModule:
    return SegmentationModule(
        network={"_target_": "tagseg.models.networks.build_network", "name": "resnetvae", "init_filters": filters},
        loss={"_target_": "tagseg.losses.SegmentationLoss", "gamma": GAMMA, "k": K},
        optimizer={"_target_": "torch.optim.Adam", "_partial_": True, "lr": LR},
        scheduler=None,
        image_size=size,
        vae_weight=VAE_WEIGHT,
    )


class StepClock(L.Callback):
    """Timestamps at the end of every training batch."""

    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_end(self, *args: Any, **kwargs: Any) -> None:
        self.times.append(time.perf_counter())


def throughput(times: list[float], warmup: int, batch: int) -> float:
    """Images per second from the median step duration after ``warmup`` steps (robust to load spikes)."""
    steps = np.diff(np.asarray(times[warmup - 1 :]))
    return batch / float(np.median(steps))


def tagseg_round(module: SegmentationModule, data: dict[str, Any], steps: int, warmup: int) -> float:
    clock = StepClock()
    trainer = L.Trainer(
        max_steps=steps,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        callbacks=[clock],
    )
    loader = torch.utils.data.DataLoader([data] * steps, batch_size=None)
    trainer.fit(module, train_dataloaders=loader)
    return throughput(clock.times, warmup, data["image"].shape[0])


def bare_round(net: torch.nn.Module, data: dict[str, Any], steps: int, warmup: int) -> float:
    loss_fn = SegmentationLoss(gamma=GAMMA, k=K)
    opt = torch.optim.Adam(net.parameters(), lr=LR)
    net.train()
    times = []
    for _ in range(steps):
        logits, vae = split_output(net(data["image"]))
        loss = loss_fn(logits, data["label"], data["si"])["loss"] + VAE_WEIGHT * vae
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter())
    return throughput(times, warmup, data["image"].shape[0])


def shape_loss_ms(data: dict[str, Any], n_classes: int, repeats: int, precomputed: bool) -> float:
    """Forward + backward of L_S alone on probabilities of the batch's size (ms)."""
    shape = ShapeAwareLoss(k=K)
    b, _, h, w = data["image"].shape
    logits = torch.randn(b, n_classes + 1, h, w, requires_grad=True)
    target = F.one_hot(data["label"][:, 0], n_classes + 1).permute(0, 3, 1, 2)[:, 1:].float()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        probs = torch.softmax(logits, dim=1)[:, 1:]
        value = shape(probs, target, data["si"] if precomputed else None)
        value.backward()
        times.append(time.perf_counter() - t0)
    return 1000 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=96)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--filters", type=int, default=8)
    parser.add_argument("--steps", type=int, default=12)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads (0: torch's default; 1 keeps a shared machine from distorting the ratio)",
    )
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    torch.manual_seed(0)
    data = make_batch(args.size, args.batch)
    reference = make_module(args.size, args.filters)
    tagseg_ips, bare_ips = [], []
    for _ in range(args.rounds):
        bare_ips.append(bare_round(copy.deepcopy(reference.net), data, args.steps, args.warmup))
        tagseg_ips.append(tagseg_round(copy.deepcopy(reference), data, args.steps, args.warmup))
    tagseg_med, bare_med = statistics.median(tagseg_ips), statistics.median(bare_ips)
    step_ms = 1000 * args.batch / tagseg_med
    shape_ms = shape_loss_ms(data, 1, 20, precomputed=True)
    shape_on_the_fly_ms = shape_loss_ms(data, 1, 5, precomputed=False)
    print(
        json.dumps(
            {
                "benchmark": "train_step",
                "setting": {
                    "network": "resnetvae",
                    "init_filters": args.filters,
                    "image_size": args.size,
                    "batch": args.batch,
                    "gamma": GAMMA,
                    "vae_weight": VAE_WEIGHT,
                    "steps_per_round": args.steps,
                    "warmup_steps": args.warmup,
                    "rounds": args.rounds,
                    "device": "cpu",
                    "torch_threads": torch.get_num_threads(),
                    "cpu": platform.processor() or platform.machine(),
                },
                "tagseg_images_per_s": round(tagseg_med, 2),
                "bare_images_per_s": round(bare_med, 2),
                "ratio_tagseg_vs_bare": round(tagseg_med / bare_med, 3),
                "ratio_goal": 0.90,
                "rounds_tagseg_images_per_s": [round(v, 2) for v in tagseg_ips],
                "rounds_bare_images_per_s": [round(v, 2) for v in bare_ips],
                "step_ms": round(step_ms, 2),
                "shape_loss_ms": round(shape_ms, 3),
                "shape_loss_share": round(shape_ms / step_ms, 4),
                "shape_loss_share_goal": 0.05,
                "shape_loss_with_per_step_distance_transform_ms": round(shape_on_the_fly_ms, 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
