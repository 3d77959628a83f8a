"""``tagseg strain``: myocardial strain (displacement, Ecc / Err curves, peaks) from tagged cine series;
``experiment=strain_validation[_demo]``: the same measured against the phantom's true motion."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from tagseg.runtime.config import CONF_DIR
from tagseg.runtime.task import task_wrapper
from tagseg.stages.strain import strain_scans
from tagseg.stages.strain_validation import markdown_table, run_validation


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="strain")
@task_wrapper(app=True)
def main(cfg: DictConfig) -> None:
    if cfg.get("validation") is not None:
        summary = run_validation(cfg)
        print(markdown_table(summary))
        print(f"strain validation: {cfg.output} (validation_summary.json, validation_table.md)")
        return
    report = strain_scans(cfg)
    print(report.table())
    truth = ", strain_truth.csv" if report.truths else ""
    if report.truths:
        print(report.truth_table())
    print(
        f"strain: {report.output} ({len(report.slices)} slices; strain.json, strain_curves.csv, strain_peaks.csv{truth})"
    )
    if report.exit_status():
        raise SystemExit(report.exit_status())


if __name__ == "__main__":
    main()
