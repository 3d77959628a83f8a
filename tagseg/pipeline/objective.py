"""The one number a sweep cell returns (``optimized_metric``), e.g. for the Optuna sweeper."""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)


def objective_value(metrics: Mapping[str, Any], name: str | None) -> float:
    """``metrics[name]`` as a float; NaN (a failed trial for the Optuna sweeper) when the cell did not
    produce it (e.g. ``test/dice`` with ``test=false``), logged with the names it has."""
    name = str(name or "test/dice")
    value = metrics.get(name)
    if value is None:
        log.error("optimized_metric %s: not produced by this cell (it has %s)", name, sorted(metrics) or "none")
        return math.nan
    return float(value)


__all__ = ["objective_value"]
