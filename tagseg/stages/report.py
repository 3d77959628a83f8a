"""``tagseg report path=<run or sweep folder>``: tables (Table 3/4 style) and figures."""

from __future__ import annotations

from pathlib import Path

from omegaconf import DictConfig

from tagseg.report.curves import plot_convergence, plot_per_frame, plot_per_group
from tagseg.report.efficiency import write_data_efficiency
from tagseg.report.examples import plot_examples
from tagseg.report.qc import write_qc_report
from tagseg.report.tables import find_runs, load_metrics, write_tables


def report(cfg: DictConfig) -> tuple[dict[str, Path], list[Path]]:
    """Write the tables and figures of ``cfg.path`` under ``cfg.output`` (default ``<path>/report``).

    A data-efficiency sweep (cells with ``datamodule.n_train_subjects``) also gets learning curves,
    paired differences against scratch (and ``cfg.references``) and convergence (:mod:`tagseg.report.efficiency`); its
    per-run example figures are skipped (one per cell would be dozens).

    Returns:
        The table files by kind (``summary_md``, ...) and the figures written.
    """
    root = Path(cfg.path)
    figures: list[Path | None] = []
    out = Path(cfg.output) if cfg.output else root / "report"
    paths = write_tables(root, out)
    references = cfg.get("references") or ["scratch"]
    references = [references] if isinstance(references, str) else [str(r) for r in references]
    efficiency = write_data_efficiency(root, out, n_boot=int(cfg.get("n_boot", 2000)), references=references)
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
