"""Run a chain of stages through the artifact cache.

A :class:`Stage` says what it computes (``compute(out_dir, inputs)``), which earlier stages it
reads (``needs``) and the config that determines it. Its cache key hashes that config together
with the keys of the stages it needs, so a change anywhere upstream gives new keys downstream,
and all keys are known before anything runs (:func:`plan_table` shows what will be reused).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tagseg.errors import ConfigError
from tagseg.pipeline.cache import StageCache, StageResult, config_key

log = logging.getLogger(__name__)

ComputeFn = Callable[[Path, Mapping[str, StageResult]], Mapping[str, Any]]


@dataclass
class Stage:
    """One step of a strategy.

    Attributes:
        kind: the cache folder it lives in (``prepare``, ``cyclegan``, ``translate``,
            ``pretrain``, ``finetune``, ``test``).
        label: its unique name in the chain, e.g. ``pretrain[physics]``.
        config: the plain, resolved config that determines its output.
        compute: ``compute(out_dir, inputs)`` writes the stage into ``out_dir`` and returns its
            outputs; ``inputs`` maps each label of ``needs`` to that stage's result.
        needs: labels of earlier stages it reads.
        collective: runs on every DDP rank (training), not only on rank 0.
    """

    kind: str
    label: str
    config: Mapping[str, Any]
    compute: ComputeFn
    needs: tuple[str, ...] = ()
    collective: bool = False
    key: str = field(default="", init=False)


def assign_keys(stages: Sequence[Stage]) -> list[Stage]:
    """Set each stage's cache key from its config and its upstream keys.

    Raises:
        ConfigError: two stages share a label, or a stage needs one not defined before it.
    """
    keys: dict[str, str] = {}
    for stage in stages:
        if stage.label in keys:
            raise ConfigError(f"strategy: stage '{stage.label}' appears twice in the chain")
        missing = [n for n in stage.needs if n not in keys]
        if missing:
            raise ConfigError(f"strategy: stage '{stage.label}' needs {missing}, not produced before it")
        stage.key = config_key(stage.kind, _keyed(stage, keys))
        keys[stage.label] = stage.key
    return list(stages)


def _keyed(stage: Stage, keys: Mapping[str, str]) -> dict[str, Any]:
    return {"config": dict(stage.config), "needs": {n: keys[n] for n in stage.needs}}


def plan_table(stages: Sequence[Stage], cache: StageCache) -> str:
    """What a run will do: one line per stage with its key and cache status."""
    assign_keys(stages)
    width = max(len(s.label) for s in stages)
    lines = []
    for s in stages:
        status = cache.status(s.kind, s.key)
        if status == "done" and cache.forced(s.kind):
            status = "forced"
        action = {"done": "reuse", "partial": "resume", "new": "run", "forced": "recompute"}[status]
        lines.append(f"  {s.label:<{width}}  {s.kind}/{s.key}  {action}")
    return "\n".join(lines)


def run_stages(stages: Sequence[Stage], cache: StageCache) -> dict[str, StageResult]:
    """Run (or reuse) every stage in order.

    Args:
        stages: the chain, each stage after the ones it needs.
        cache: where the artifacts live.

    Returns:
        label -> :class:`StageResult`, in chain order.
    """
    assign_keys(stages)
    results: dict[str, StageResult] = {}
    for stage in stages:
        inputs = {n: results[n] for n in stage.needs}

        def compute(
            out_dir: Path, stage: Stage = stage, inputs: Mapping[str, StageResult] = inputs
        ) -> Mapping[str, Any]:
            return stage.compute(out_dir, inputs)

        results[stage.label] = cache.run(
            stage.kind,
            _keyed(stage, {n: r.key for n, r in inputs.items()}),
            compute,
            collective=stage.collective,
            label=stage.label,
        )
    return results
