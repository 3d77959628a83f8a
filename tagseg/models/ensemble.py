"""Several trained segmenters tested as one (``tagseg evaluate ckpt=[a,b,c]``): the members' softmax
is averaged, exactly as ``tagseg predict`` does with several checkpoints
(:class:`tagseg.models.segmenter.Ensemble`), so a test table measures the masks predict writes.

The members must read their input the same way (image size, classes, normalisation, pixel grid):
the test batches are built once, from the first member's hyper-parameters. Averaging the softmax
of models trained with different seeds is the standard way to steady a recipe whose seeds spread
under a shift (docs/experiments.md, "Seed ensembles").
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from torch import nn

from tagseg.errors import CheckpointError
from tagseg.models.networks import main_head, split_output
from tagseg.runtime.config import plain

if TYPE_CHECKING:
    from tagseg.models.segmentation import SegmentationModule

#: hyper-parameters that decide how a test batch is built; every member must share them
SHARED_INPUT = ("image_size", "classes", "mean", "std", "spacing_mm")

#: probabilities are clamped here before the log (an averaged softmax of exactly 0 has no logit)
_TINY = 1e-8


class MeanSoftmax(nn.Module):
    """The members' networks as one: ``log(mean softmax)``, whose argmax is the ensemble's mask.

    The output stands in for logits wherever a single network's would go (the test step takes its
    argmax; a softmax of it gives back the mean probabilities).
    """

    def __init__(self, networks: Sequence[nn.Module]) -> None:
        super().__init__()
        if not networks:
            raise ValueError("an ensemble needs at least one network")
        self.networks = nn.ModuleList(networks)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        total = None
        for network in self.networks:
            logits, _ = split_output(network(image))
            p = torch.softmax(main_head(logits).float(), dim=1)
            total = p if total is None else total + p
        return torch.log((total / len(self.networks)).clamp_min(_TINY))


def check_members(paths: Sequence[Path], modules: Sequence[SegmentationModule]) -> None:
    """Refuse members that would need different test batches (:data:`SHARED_INPUT`).

    Raises:
        CheckpointError: naming the first member that differs from the first, and how.
    """
    first = modules[0].hparams
    for path, module in zip(paths[1:], modules[1:]):
        for key in SHARED_INPUT:
            mine, theirs = module.hparams.get(key), first.get(key)
            if _plain(mine) != _plain(theirs):
                raise CheckpointError(
                    f"ckpt: ensemble member {path} has {key}={_plain(mine)} but {paths[0]} has "
                    f"{_plain(theirs)}; evaluate members trained on one input (`tagseg predict` averages "
                    "models of other sizes)"
                )


def load_ensemble_module(paths: Sequence[str | Path]) -> tuple[SegmentationModule, list[Path]]:
    """The first member's :class:`~tagseg.models.segmentation.SegmentationModule` whose network is the
    :class:`MeanSoftmax` of every member (each read with ``weights_only=True``), in eval mode.

    Returns:
        ``(module, checkpoint files)``; one path gives that model unchanged.

    Raises:
        CheckpointError: an unreadable member or members that disagree on :data:`SHARED_INPUT`.
    """
    from tagseg.models.segmenter import load_segmentation_module

    loaded = [load_segmentation_module(p) for p in paths]
    modules, files = [m for m, _ in loaded], [f for _, f in loaded]
    if len(modules) == 1:
        return modules[0], files
    check_members(files, modules)
    head = modules[0]
    head.net = MeanSoftmax([m.net for m in modules])
    return head.eval(), files


def _plain(value: object) -> object:
    # a config node as plain values; a tuple and a list of the same classes are one input
    value = plain(value)
    return list(value) if isinstance(value, tuple) else value


__all__ = ["MeanSoftmax", "SHARED_INPUT", "check_members", "load_ensemble_module"]
