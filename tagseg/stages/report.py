"""``tagseg report path=<run or sweep folder>``: tables (Table 3/4 style) and figures."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
from omegaconf import DictConfig

from tagseg.io.atomic import atomic_path, atomic_write_text
from tagseg.report.claims import MIN_SEEDS, claim_rule
from tagseg.report.curves import plot_convergence, plot_per_frame, plot_per_group
from tagseg.report.efficiency import write_data_efficiency
from tagseg.report.examples import plot_examples
from tagseg.report.qc import write_qc_report
from tagseg.report.tables import find_runs, load_metrics, write_tables


def add_claims(report_json: Path, claims_csv: Path) -> Path:
    """Add the claims table (verdict, effect, interval, half-width, n_seeds, n_subjects per claim) to ``report.json``."""
    meta = json.loads(report_json.read_text())
    table = pd.read_csv(claims_csv, keep_default_na=False, na_values=[""])
    meta["claims"] = json.loads(table.to_json(orient="records"))
    return atomic_write_text(report_json, json.dumps(meta, indent=2))


def report(cfg: DictConfig) -> tuple[dict[str, Path], list[Path]]:
    """Write the tables and figures of ``cfg.path`` under ``cfg.output`` (default ``<path>/report``).

    A data-efficiency sweep (cells with ``datamodule.n_train_subjects``) also gets learning curves,
    paired differences against scratch (and ``cfg.references``), the claims they decide (``cfg.claims``;
    also under ``claims`` in ``report.json``) and convergence (:mod:`tagseg.report.efficiency`); its
    per-run example figures are skipped (one per cell would be dozens).

    Returns:
        The table files by kind (``summary_md``, ...) and the figures written.

    Raises:
        ConfigError: ``claims`` or ``n_boot`` out of range (:func:`~tagseg.report.claims.claim_rule`).
    """
    claims_cfg = cfg.get("claims") or {}
    n_boot = cfg.get("n_boot", 2000)
    # checked before anything is written
    limits, min_seeds = claim_rule(claims_cfg.get("limits"), claims_cfg.get("min_seeds", MIN_SEEDS), n_boot)
    root = Path(cfg.path)
    final = Path(cfg.output) if cfg.output else root / "report"
    # written under a temporary name and published whole: a refused report (e.g. a bad checkpoint
    # for the examples) leaves no folder that looks finished, and the previous report stays
    with atomic_path(final, what="report folder") as out:
        paths, figures = _write_report(cfg, root, out, n_boot, limits, min_seeds)
    return {k: _moved(p, out, final) for k, p in paths.items()}, [_moved(f, out, final) for f in figures]


def _moved(path: Path, tmp: Path, final: Path) -> Path:
    """Where a file written under ``tmp`` is once published as ``final``."""
    return final / path.relative_to(tmp) if path.is_relative_to(tmp) else path


def _write_report(
    cfg: DictConfig, root: Path, out: Path, n_boot: int, limits: dict[str, float], min_seeds: int
) -> tuple[dict[str, Path], list[Path]]:
    figures: list[Path | None] = []
    out.mkdir(parents=True)
    paths = write_tables(root, out)
    references = cfg.get("references") or ["scratch"]
    references = [references] if isinstance(references, str) else [str(r) for r in references]
    efficiency = write_data_efficiency(
        root, out, n_boot=n_boot, references=references, limits=limits, min_seeds=min_seeds
    )
    if "claims_csv" in efficiency:
        add_claims(paths["report_json"], efficiency["claims_csv"])
    if (root / "summary.csv").exists():  # a sweep folder: its table (Table 3/4 layout) and bar figure
        from tagseg.report.sweep import write_sweep_report

        sweep = write_sweep_report(root / "summary.csv", out)
        figures += [sweep.pop("sweep_png")] if "sweep_png" in sweep else []
        paths.update(sweep)
    runs = find_runs(root)
    metrics = load_metrics(runs, root)
    figures += [
        plot_per_frame(metrics, out / "per_frame.png"),
        plot_per_group(metrics, out / "per_group.png"),
        plot_convergence(root, out / "convergence.png"),
    ]
    if cfg.examples and not efficiency:
        for run in runs:
            name = (
                "examples.png" if run == root else f"examples_{run.relative_to(root).as_posix().replace('/', '_')}.png"
            )
            figures.append(plot_examples(run, out / name))
    figures += [p for k, p in efficiency.items() if k.endswith("_png")]
    qc = write_qc_report(root, out, n_boot=int(cfg.get("n_boot", 2000)))  # runs evaluated with QC (qc.csv)
    figures += [p for k, p in qc.items() if k.endswith("_png")]
    paths.update({k: p for k, p in qc.items() if not k.endswith("_png")})
    paths.update({k: p for k, p in efficiency.items() if not k.endswith("_png")})
    return paths, [f for f in figures if f]


__all__ = ["report"]
