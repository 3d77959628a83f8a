"""``tagseg predict``: segment new tagged scans with a trained checkpoint or an exported model."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from tagseg.runtime.config import CONF_DIR
from tagseg.runtime.task import task_wrapper


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="predict")
@task_wrapper(app=True)
def main(cfg: DictConfig) -> None:
    from tagseg.stages.predict import predict_scans  # imported when the stage runs: `--help` and `--cfg` stay quick

    report = predict_scans(cfg)
    print(report.table())
    print(
        f"predictions: {report.output} ({len(report.files)} files; reference_points.csv, predictions.csv, failed.csv)"
    )
    print(report.timing_line())
    if report.exit_status():
        raise SystemExit(report.exit_status())


if __name__ == "__main__":
    main()
