"""The per-image metrics of a test, in one registry: what every table, summary and dashboard iterates.

A metric is a :class:`MetricSpec`: its column name in ``test_metrics.csv`` (``dice``, ``hd95_mm``),
the function computing it on a batch of binary masks, whether higher or lower is better, its unit,
its print format and its label. The test step (``tagseg.models.segmentation``) computes every
registered metric per image and per class; the run folder's summary (``tagseg.io.run_dir``), the
sweep's ``summary.csv``, the report's tables and figures, the console table and the W&B summaries
then read the registry, so a new metric is one :func:`register_metric` call::

    register_metric(MetricSpec("sensitivity", "mypkg.metrics.sensitivity_batch", "higher", label="Sensitivity"))

A function is given as a callable or, for the built-in ones, as a dotted path imported on first
use (as a config's ``_target_``), which keeps this module free of heavy imports. Its signature:
``function(pred, target, spacing_mm) -> float64 (B,)`` with ``pred`` and ``target`` boolean
(B, H, W) masks of one class and ``spacing_mm`` (B, 2) (row, col) spacing of each image.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

from tagseg.errors import ConfigError

MetricFunction = Callable[[Any, Any, Any], Any]
Direction = Literal["higher", "lower"]
#: the statistics of one metric in a summary (``<name>_mean`` ...), in order
STATS = ("mean", "std", "median")


@dataclass(frozen=True)
class MetricSpec:
    """One per-image metric.

    Attributes:
        name: the column in ``test_metrics.csv`` and the stem of every derived key
            (``<name>_mean`` in ``summary.json``, ``test_<name>_mean`` in a sweep's ``summary.csv``,
            ``test/<name>`` and ``val/<name>`` in the logs).
        function: ``(pred, target, spacing_mm) -> (B,)`` on one class's masks, or its dotted path.
        direction: ``"higher"`` or ``"lower"`` is better (ranks, W&B summaries).
        unit: e.g. ``"mm"``; empty for a ratio.
        fmt: format spec of a value on the console (``".3f"``).
        label: how tables and figures name it (``"HD95 (mm)"``); defaults to the name.
        short: the stem of its rank column in the report (``rank_<short>``); defaults to the name.
    """

    name: str
    function: MetricFunction | str
    direction: Direction
    unit: str = ""
    fmt: str = ".3f"
    label: str = ""
    short: str = ""

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ConfigError(f"metric name {self.name!r}: expected an identifier (it names columns and keys)")
        if self.direction not in ("higher", "lower"):
            raise ConfigError(f"metric {self.name}: direction must be 'higher' or 'lower', got {self.direction!r}")

    @property
    def title(self) -> str:
        """The label, or the name when none was given."""
        return self.label or self.name

    @property
    def rank_key(self) -> str:
        """The report's rank column, ``rank_<short>``."""
        return f"rank_{self.short or self.name}"

    @property
    def higher_is_better(self) -> bool:
        return self.direction == "higher"

    def stat_keys(self, prefix: str = "") -> tuple[str, ...]:
        """``<prefix><name>_mean``, ``_std``, ``_median``."""
        return tuple(f"{prefix}{self.name}_{s}" for s in STATS)

    def format(self, value: float) -> str:
        """``value`` in this metric's console format."""
        return format(value, self.fmt)

    def compute(self, pred: Any, target: Any, spacing_mm: Any) -> Any:
        """The metric of each pair of masks (see the module's signature)."""
        return resolve_function(self.function)(pred, target, spacing_mm)


_REGISTRY: dict[str, MetricSpec] = {}


def resolve_function(function: MetricFunction | str) -> MetricFunction:
    """A metric function itself, or the object its dotted path (``package.module.name``) names.

    Raises:
        ConfigError: the path does not name a callable.
    """
    if callable(function):
        return function
    module, _, name = str(function).rpartition(".")
    try:
        found = getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError, ValueError) as exc:
        raise ConfigError(f"metric function {function!r}: cannot import it ({exc})") from exc
    if not callable(found):
        raise ConfigError(f"metric function {function!r}: not callable")
    return found


def register_metric(spec: MetricSpec, replace: bool = False) -> MetricSpec:
    """Add a metric to every test table from now on (registration order is column order).

    Raises:
        ConfigError: a metric of that name is registered already (and ``replace`` is false).
    """
    if spec.name in _REGISTRY and not replace:
        raise ConfigError(f"metric {spec.name!r} is registered already")
    _REGISTRY[spec.name] = spec
    return spec


def unregister_metric(name: str) -> None:
    """Remove a registered metric (a no-op when absent)."""
    _REGISTRY.pop(name, None)


def metric_specs() -> tuple[MetricSpec, ...]:
    """Every registered metric, in registration order (the built-ins first)."""
    return tuple(_REGISTRY.values())


def metric_names() -> tuple[str, ...]:
    """The registered metrics' column names (``("dice", "hd95_mm", ...)``)."""
    return tuple(_REGISTRY)


def get_metric(name: str) -> MetricSpec:
    """The registered metric ``name``.

    Raises:
        ConfigError: none is registered under that name (the message lists those that are).
    """
    if name not in _REGISTRY:
        raise ConfigError(f"metric {name!r}: not registered (registered: {', '.join(_REGISTRY)})")
    return _REGISTRY[name]


def stat_keys(prefix: str = "") -> tuple[str, ...]:
    """Every metric's ``<prefix><name>_mean/_std/_median``, metric by metric."""
    return tuple(k for spec in metric_specs() for k in spec.stat_keys(prefix))


def mean_std_keys(prefix: str = "") -> tuple[str, ...]:
    """Every metric's ``<prefix><name>_mean`` and ``_std`` (the tables' and sweep's columns)."""
    return tuple(k for spec in metric_specs() for k in (f"{prefix}{spec.name}_mean", f"{prefix}{spec.name}_std"))


register_metric(
    MetricSpec("dice", "tagseg.metrics.dice_batch", "higher", fmt=".3f", label="Dice", short="dice"),
)
register_metric(
    MetricSpec("hd95_mm", "tagseg.metrics.hd95_batch", "lower", unit="mm", fmt=".2f", label="HD95 (mm)", short="hd95"),
)

__all__ = [
    "STATS",
    "MetricSpec",
    "get_metric",
    "mean_std_keys",
    "metric_names",
    "metric_specs",
    "register_metric",
    "resolve_function",
    "stat_keys",
    "unregister_metric",
]
