"""Console output of runs: the resolved config as a tree, the test metrics table (rich)."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import rich
import rich.syntax
import rich.tree
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.table import Table

from tagseg.metric_registry import metric_specs


def on_rank_zero(fn: Callable[..., None]) -> Callable[..., None]:
    """Lightning's ``rank_zero_only``, looked up when called: importing this module (every app does) must
    not import Lightning, so ``tagseg <stage> --help`` / ``--cfg job`` stay quick."""

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> None:
        from lightning.pytorch.utilities import rank_zero_only

        rank_zero_only(fn)(*args, **kwargs)

    return wrapped


#: top-level config groups printed first, in this order
TREE_ORDER = ("data", "datamodule", "model", "loss", "trainer", "callbacks", "logger", "paths")


@on_rank_zero
def print_config_tree(cfg: DictConfig, order: Sequence[str] = TREE_ORDER, save_to: str | Path | None = None) -> None:
    """Print the resolved config as a rich tree (rank zero only) and optionally save it as text.

    Args:
        cfg: the composed config.
        order: top-level keys shown first; the rest follow in config order.
        save_to: a file to write the same tree to (e.g. ``<run dir>/config_tree.log``).
    """
    tree = rich.tree.Tree("CONFIG", style="dim", guide_style="dim")
    keys = [k for k in order if k in cfg] + [k for k in cfg if k not in order and k != "hydra"]
    for key in keys:
        branch = tree.add(str(key), style="bold", guide_style="dim")
        node = cfg[key]
        text = OmegaConf.to_yaml(node, resolve=True) if isinstance(node, DictConfig) else str(node)
        branch.add(rich.syntax.Syntax(text, "yaml"))
    rich.print(tree)
    if save_to is not None:
        Path(save_to).parent.mkdir(parents=True, exist_ok=True)
        with open(save_to, "w") as f:
            rich.print(tree, file=f)


def summary_table(summary: Mapping[str, Any], title: str = "test") -> Table:
    """A rich table of a test summary (each registered metric's mean and std in its format): overall,
    then per group and per frame when present."""
    specs = [m for m in metric_specs() if f"{m.name}_mean" in summary]
    table = Table(title=f"{title}: {' and '.join(m.title for m in specs)}, per image")
    names = [f"{m.title.replace('(', '').replace(')', '')} {s}" for m in specs for s in ("mean", "std")]
    for col in ("subset", "n", *names):
        table.add_column(col, justify="left" if col == "subset" else "right")

    def row(name: str, s: Mapping[str, Any]) -> None:
        values = [m.format(s[f"{m.name}_{stat}"]) for m in specs for stat in ("mean", "std")]
        table.add_row(name, str(s["n_images"]), *values)

    row("all", summary)
    for key, label in (("per_group", "group"), ("per_frame", "frame")):
        for name, s in (summary.get(key) or {}).items():
            row(f"{label} {name}", s)
    return table


@on_rank_zero
def print_summary(summary: Mapping[str, Any], summary_path: str | Path | None = None, title: str = "test") -> None:
    """Print the test table and the path of ``summary.json`` (rank zero only)."""
    console = Console()
    console.print(summary_table(summary, title))
    if summary_path is not None:
        console.print(f"summary: {summary_path}")


__all__ = ["print_config_tree", "print_summary", "summary_table"]
