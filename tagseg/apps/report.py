"""``tagseg report path=<run or sweep folder>``: tables (Table 3/4 style) and figures."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from tagseg.runtime.config import CONF_DIR
from tagseg.runtime.task import task_wrapper


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="report")
@task_wrapper(app=True)
def main(cfg: DictConfig) -> None:
    from tagseg.stages.report import report  # imported when the stage runs: `--help` and `--cfg` stay quick

    paths, figures = report(cfg)
    print(paths["summary_md"].read_text())
    if "learning_curve_md" in paths:
        print(paths["learning_curve_md"].read_text())
    if "claims_md" in paths:
        print(paths["claims_md"].read_text().partition("\nClaims (HD95")[0])
    for p in [*paths.values(), *figures]:
        print(f"wrote {p}")


if __name__ == "__main__":
    main()
