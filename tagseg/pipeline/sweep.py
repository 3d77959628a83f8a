"""The sweep summary: ``<sweep dir>/summary.csv`` with one row per cell of a multirun.

Each job writes ``<job dir>/cell.json`` when it ends (:class:`SweepSummary.on_job_end`, rank 0
only), so the record is made where the job ran (this machine, a ``submitit_local`` worker or a
SLURM node). When the sweep ends, :class:`SweepSummary.on_multirun_end` gathers them into
``summary.csv`` (and prints the table). A job folder without ``cell.json`` (a killed job) is listed
as ``failed``. ``python -m tagseg.pipeline.sweep <sweep dir>`` rebuilds the summary by hand, e.g.
after a SLURM sweep whose launcher was interrupted.

A failing cell does not stop the sweep: in multirun mode :func:`tagseg.runtime.task.task_wrapper`
turns its exception into a ``{"status": "failed", "error": ...}`` return value, recorded here.
The command then exits with status 1 after writing the summary, so scripts notice.
"""

from __future__ import annotations

import csv
import json
import logging
import math
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from hydra.core.utils import JobReturn, JobStatus
from hydra.experimental.callback import Callback
from hydra.types import RunMode
from omegaconf import DictConfig

from tagseg.io.run_dir import (
    STRATEGY_FILE,
    SUMMARY_FILE,
    SWEEP_SUMMARY_FILE,
    hydra_overrides,
    job_dirs,
    sweep_columns,
)
from tagseg.metric_registry import mean_std_keys
from tagseg.runtime.ddp import global_rank

log = logging.getLogger(__name__)

CELL = "cell.json"
SUMMARY = SWEEP_SUMMARY_FILE
#: the columns a cell's result fills besides the test metrics (:func:`result_columns`)
TRAINING_COLUMNS = ("val_dice_best", "val_dice_best_epoch", "epochs")


def result_columns() -> tuple[str, ...]:
    """The columns a cell's result fills: every registered metric's ``test_<name>_mean`` / ``_std``,
    then :data:`TRAINING_COLUMNS`."""
    return (*mean_std_keys("test_"), *TRAINING_COLUMNS)


#: overrides that are never a column of their own (folders, loggers, launcher settings)
NOT_KEYS = ("hydra", "paths", "logger", "experiment", "hparams_search")


def cell_record(
    value: Any,
    *,
    job: int | str,
    overrides: Sequence[str],
    wall_s: float,
    run_dir: str | Path,
    status: JobStatus = JobStatus.COMPLETED,
) -> dict[str, Any]:
    """One summary row from what a job returned.

    Args:
        value: the job's return value: a mapping with ``status`` / ``error`` and the metric
            columns (as :func:`tagseg.pipeline.strategy.run_strategy` returns), optionally
            nested under ``summary``; or the exception of a failed job.
        job: the job number in the sweep.
        overrides: the cell's overrides (``key=value``).
        wall_s: the job's wall time, seconds.
        run_dir: the job's output folder.
        status: Hydra's job status (``FAILED`` when the task raised).

    Returns:
        A mapping with every column of :func:`~tagseg.io.run_dir.sweep_columns` (missing metrics are ``None``).
    """
    row: dict[str, Any] = {c: None for c in sweep_columns()}
    row.update(
        job=job,
        overrides=",".join(overrides),
        wall_s=round(float(wall_s), 1),
        run_dir=str(run_dir),
        override_list=list(overrides),
    )
    if status == JobStatus.FAILED or isinstance(value, BaseException):
        row.update(status="failed", error=f"{type(value).__name__}: {value}")
        return row
    found = dict(value) if isinstance(value, Mapping) else {}
    nested = found.get("summary")
    if isinstance(nested, Mapping):
        found = {**nested, **found}
    row["status"] = str(found.get("status", "ok"))
    row["error"] = found.get("error")
    for key in result_columns():
        if found.get(key) is not None:
            row[key] = found[key]
    return row


def _run_summary(run_dir: Path) -> dict[str, Any]:
    """The metrics a cell left in its folder: a strategy cell's ``strategy.json``, a plain ``tagseg train``
    cell's ``summary.json`` (test metrics, epochs, best validation Dice)."""
    strategy = run_dir / STRATEGY_FILE
    if strategy.exists():
        return json.loads(strategy.read_text())
    path = run_dir / SUMMARY_FILE
    if not path.exists():
        return {}
    found = json.loads(path.read_text())
    out = {f"test_{k}": found[k] for k in mean_std_keys() if k in found}
    out.update({k: found[k] for k in TRAINING_COLUMNS if k in found})
    return out


def swept_keys(rows: Sequence[Mapping[str, Any]], params: Sequence[str] = ()) -> list[str]:
    """The keys that get a column: those of the sweeper's ``params`` and those whose value differs
    between cells, in the order the overrides name them."""
    values: dict[str, set[str]] = {}
    for row in rows:
        for item in row.get("override_list") or []:
            key, _, value = str(item).partition("=")
            values.setdefault(key.lstrip("+~"), set()).add(value)
    keys = [k for k, v in values.items() if len(v) > 1 or k in params]
    return [k for k in keys if not k.startswith(NOT_KEYS)]


def _sweeper_params(sweep_dir: Path) -> list[str]:
    saved = sweep_dir / "multirun.yaml"
    if not saved.exists():
        return []
    from omegaconf import OmegaConf

    return [str(k) for k in (OmegaConf.select(OmegaConf.load(saved), "hydra.sweeper.params") or {})]


def write_summary(sweep_dir: str | Path) -> tuple[Path, list[dict[str, Any]]]:
    """Gather every job's ``cell.json`` under ``sweep_dir`` into ``summary.csv``.

    A job folder (one holding ``.hydra/overrides.yaml``) without ``cell.json`` is recorded as
    failed ("no result").

    Returns:
        The CSV path and its rows (sorted by job number).

    Raises:
        FileNotFoundError: ``sweep_dir`` does not exist.
    """
    sweep_dir = Path(sweep_dir)
    if not sweep_dir.is_dir():
        raise FileNotFoundError(f"{sweep_dir}: no such sweep folder")
    rows: list[dict[str, Any]] = []
    for job_dir in job_dirs(sweep_dir):
        cell = job_dir / CELL
        if cell.exists():
            rows.append(json.loads(cell.read_text()))
        else:
            rows.append(
                cell_record(
                    RuntimeError("no result (job killed or still running)"),
                    job=job_dir.name,
                    overrides=hydra_overrides(job_dir) or [],
                    wall_s=float("nan"),
                    run_dir=job_dir,
                    status=JobStatus.FAILED,
                )
            )
    rows.sort(key=lambda r: (int(r["job"]) if str(r["job"]).isdigit() else math.inf, str(r["job"])))
    keys = swept_keys(rows, _sweeper_params(sweep_dir))
    for row in rows:
        found = dict(str(i).partition("=")[::2] for i in row.get("override_list") or [])
        found = {k.lstrip("+~"): v for k, v in found.items()}
        row.update({k: found.get(k) for k in keys})
    out = sweep_dir / SUMMARY
    tmp = out.with_name(f".{SUMMARY}.tmp")
    with open(tmp, "w", newline="") as fh:
        columns = sweep_columns()
        writer = csv.DictWriter(fh, fieldnames=[columns[0], *keys, *columns[1:]], extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(out)
    return out, rows


def format_table(rows: Sequence[Mapping[str, Any]]) -> str:
    """The summary as a plain-text table (what the sweep prints at its end)."""

    def fmt(v: Any) -> str:
        if v is None:
            return "-"
        if isinstance(v, float):
            return "nan" if math.isnan(v) else f"{v:.3f}" if abs(v) < 100 else f"{v:.1f}"
        return str(v)

    fixed = sweep_columns()
    keys = [k for k in (rows[0] if rows else {}) if k not in fixed and k != "override_list"]
    cols = (
        "job",
        *(keys or ["overrides"]),
        "status",
        *mean_std_keys("test_"),
        "val_dice_best",
        "epochs",
        "wall_s",
    )
    cells = [[fmt(r.get(c)) for c in cols] for r in rows]
    widths = [max(len(c), *(len(x[i]) for x in cells)) if cells else len(c) for i, c in enumerate(cols)]
    lines = ["  ".join(c.ljust(w) for c, w in zip(cols, widths))]
    lines += ["  ".join(x.ljust(w) for x, w in zip(row, widths)) for row in cells]
    errors = [f"  job {r['job']}: {r['error']}" for r in rows if r.get("status") != "ok" and r.get("error")]
    return "\n".join(lines + (["failed cells:"] + errors if errors else []))


class SweepSummary(Callback):
    """Hydra callback: record each job's result and write ``summary.csv`` after a multirun.

    Enabled for every stage in ``conf/hydra/default.yaml`` (``hydra.callbacks.sweep_summary``).

    Args:
        exit_on_failure: after writing the summary, exit with status 1 when a cell failed.
    """

    def __init__(self, exit_on_failure: bool = True) -> None:
        self.exit_on_failure = exit_on_failure
        self._start: float | None = None

    def on_job_start(self, config: DictConfig, **kwargs: Any) -> None:
        self._start = time.monotonic()

    def on_job_end(self, config: DictConfig, job_return: JobReturn, **kwargs: Any) -> None:
        if global_rank() != 0:
            return
        hydra_cfg = config.hydra
        if hydra_cfg.mode != RunMode.MULTIRUN:
            return
        wall_s = time.monotonic() - self._start if self._start is not None else float("nan")
        out_dir = Path(hydra_cfg.runtime.output_dir)
        value = job_return._return_value
        if job_return.status == JobStatus.COMPLETED and not isinstance(value, Mapping):
            # the cell returned its optimized_metric (a float); the rest is in its folder
            objective = value
            value = _run_summary(out_dir)
            if isinstance(objective, float) and math.isnan(objective) and not value:
                value = {"status": "failed", "error": "the cell produced no metric"}
        row = cell_record(
            value,
            job=hydra_cfg.job.num,
            overrides=list(hydra_cfg.overrides.task),
            wall_s=wall_s,
            run_dir=out_dir,
            status=job_return.status,
        )
        out_dir.mkdir(parents=True, exist_ok=True)
        (out_dir / CELL).write_text(json.dumps(row, indent=2, default=str))

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        sweep_dir = Path(config.hydra.sweep.dir)
        if not sweep_dir.is_dir():
            return
        out, rows = write_summary(sweep_dir)
        print(format_table(rows))
        print(f"summary: {out}")
        report = {}
        try:
            from tagseg.report.dashboard import log_sweep
            from tagseg.report.sweep import write_sweep_report

            report = write_sweep_report(out, sweep_dir)
            log_sweep(config, rows, out, report.get("sweep_png"))
        except Exception as exc:  # the table is written; a figure or W&B problem must not hide it
            log.warning("sweep figure / W&B summary not written: %s: %s", type(exc).__name__, exc)
        failed = [r for r in rows if r.get("status") != "ok"]
        if failed:
            log.error("%d of %d cells failed (see %s)", len(failed), len(rows), out)
            if self.exit_on_failure:
                raise SystemExit(1)


def main(argv: Sequence[str] | None = None) -> None:
    """``python -m tagseg.pipeline.sweep <sweep dir>``: (re)write and print a sweep's summary."""
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m tagseg.pipeline.sweep <sweep dir>", file=sys.stderr)
        raise SystemExit(2)
    try:
        out, rows = write_summary(args[0])
    except FileNotFoundError as exc:
        print(f"tagseg: error: {exc}", file=sys.stderr)
        raise SystemExit(2) from None
    print(format_table(rows))
    print(f"summary: {out}")
    from tagseg.report.sweep import write_sweep_report

    for path in write_sweep_report(out, Path(args[0])).values():
        print(f"wrote {path}")


if __name__ == "__main__":
    main()
