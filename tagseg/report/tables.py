"""Result tables from run folders: the paper's Table 3 (strategy x architecture) and Table 4 (gamma).

A *run* is a folder holding ``summary.json`` and ``test_metrics.csv`` (one row per test image:
subject, slice, frame, group, then each registered metric: dice, hd95_mm, ...), as written by ``tagseg train`` / ``tagseg evaluate``.
A *sweep* is a folder of runs (Hydra multirun), possibly with ``summary.csv``.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from tagseg.errors import TagsegError
from tagseg.io.run_dir import METRICS_FILE, STRATEGY_FILE, hydra_overrides, job_dirs, metric_stats
from tagseg.metric_registry import mean_std_keys, metric_names, metric_specs


def table_stats() -> tuple[str, ...]:
    """The statistics columns of the tables: each registered metric's mean and std, then ``n_images``
    (a subset of :func:`tagseg.io.run_dir.stat_keys`)."""
    return (*mean_std_keys(), "n_images")


def grouped_stats(metrics: pd.DataFrame, by: list[str]) -> pd.DataFrame:
    """:func:`~tagseg.io.run_dir.metric_stats` (the summary.json rule) of each group of rows, one row per group."""
    stats = table_stats()
    rows = [
        {
            **dict(zip(by, key if isinstance(key, tuple) else (key,))),
            **{k: v for k, v in metric_stats(d).items() if k in stats},
        }
        for key, d in metrics.groupby(by, sort=False)
    ]
    return pd.DataFrame(rows, columns=[*by, *stats])


def metrics_file(run: Path) -> Path:
    """A run's per-image table: its own ``test_metrics.csv``, or, for a strategy cell
    (``tagseg train strategy=...``, which tests in the stage cache), the test stage's, found
    through the cell's ``strategy.json``."""
    own = run / METRICS_FILE
    if own.exists() or not (run / STRATEGY_FILE).exists():
        return own
    record = json.loads((run / STRATEGY_FILE).read_text())
    return Path(record.get("summary_path", own)).with_name(METRICS_FILE)


def find_runs(root: str | Path) -> list[Path]:
    """Every run folder at or below ``root`` (sorted): each folder with a ``test_metrics.csv``,
    or with a ``strategy.json`` whose test stage wrote one.

    Raises:
        TagsegError: ``root`` is missing or holds no run.
    """
    root = Path(root)
    if not root.exists():
        raise TagsegError(f"{root}: no such run or sweep folder")
    cells = {p.parent for p in root.rglob(STRATEGY_FILE) if metrics_file(p.parent).exists()}
    runs = sorted({p.parent for p in root.rglob(METRICS_FILE)} | cells)
    if not runs:
        raise TagsegError(
            f"{root}: no {METRICS_FILE} found below it (is it a tagseg train/evaluate run or sweep folder?)"
        )
    return runs


def run_overrides(run: Path) -> str:
    """The Hydra overrides that made a run (its own, else its first job's), as ``k=v`` joined by spaces."""
    for job in (run, *job_dirs(run, recursive=False)):
        items = hydra_overrides(job)
        if items is not None:
            return " ".join(i for i in items if not i.startswith(("hydra", "paths")))
    return ""


def load_metrics(runs: list[Path], root: Path) -> pd.DataFrame:
    """All per-image rows of ``runs``, with a ``run`` column (path relative to ``root``) and ``overrides``."""
    frames = []
    for run in runs:
        path = metrics_file(run)
        df = pd.read_csv(path)
        missing = set(metric_names()) - set(df.columns)
        if missing:
            raise TagsegError(f"{path}: missing column(s) {sorted(missing)}")
        df["run"] = str(run.relative_to(root)) if run != root else "."
        df["overrides"] = run_overrides(run)
        frames.append(df)
    return pd.concat(frames, ignore_index=True)


def summary_table(metrics: pd.DataFrame) -> pd.DataFrame:
    """One row per run: each registered metric's mean/std, image count, and the cumulative rank of Table 4.

    The cumulative rank adds each metric's rank by its mean (``rank_dice``: higher is better,
    ``rank_hd95``: lower is better; a metric's direction); ties share the lower rank, as in the
    paper's gamma table.
    """
    table = grouped_stats(metrics, ["run", "overrides"])
    for m in metric_specs():
        table[m.rank_key] = table[f"{m.name}_mean"].rank(ascending=not m.higher_is_better, method="min").astype(int)
    table["cumulative_rank"] = table[[m.rank_key for m in metric_specs()]].sum(axis=1).astype(int)
    return table.sort_values(["cumulative_rank", "run"]).reset_index(drop=True)


def breakdown(metrics: pd.DataFrame, by: str) -> pd.DataFrame:
    """Mean/std of each registered metric per run and per ``by`` (e.g. ``frame`` or ``group``)."""
    if by not in metrics.columns:
        raise TagsegError(f"metrics have no '{by}' column (columns: {list(metrics.columns)})")
    table = grouped_stats(metrics, ["run", by]).rename(columns={"n_images": "n"})
    return table.sort_values(["run", by]).reset_index(drop=True)


def to_markdown(table: pd.DataFrame) -> str:
    """A Markdown table (no extra dependency): ``mean +/- std`` cells, like the paper's tables."""
    specs = metric_specs()
    head = "| run | overrides | " + " | ".join(m.title for m in specs) + " | images | rank |"
    lines = [head, "|---|---|" + "---|" * len(specs) + "---|---|"]
    for r in table.to_dict("records"):
        cells = [f"{r[f'{m.name}_mean']:.3f} +/- {r[f'{m.name}_std']:.3f}" for m in specs]
        lines.append(
            f"| {r['run']} | {r['overrides'] or '-'} | "
            + " | ".join(cells)
            + f" | {r['n_images']} | {r['cumulative_rank']} |"
        )
    return "\n".join(lines) + "\n"


def write_tables(root: str | Path, out_dir: str | Path) -> dict[str, Path]:
    """Write ``summary.csv``/``summary.md`` and per-frame / per-group breakdowns for runs below ``root``."""
    root, out_dir = Path(root), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    metrics = load_metrics(find_runs(root), root)
    table = summary_table(metrics)
    paths = {"summary_csv": out_dir / "summary.csv", "summary_md": out_dir / "summary.md"}
    table.to_csv(paths["summary_csv"], index=False)
    paths["summary_md"].write_text(to_markdown(table))
    for by in ("frame", "group"):
        if by in metrics.columns:
            paths[f"by_{by}"] = out_dir / f"by_{by}.csv"
            breakdown(metrics, by).to_csv(paths[f"by_{by}"], index=False)
    meta = {
        "root": str(root),
        "n_runs": int(table.shape[0]),
        "best_run": table.iloc[0]["run"],
        **{f"best_{name}_mean": float(table.iloc[0][f"{name}_mean"]) for name in metric_names()},
    }
    paths["report_json"] = out_dir / "report.json"
    paths["report_json"].write_text(json.dumps(meta, indent=2))
    return paths
