"""``tagseg evaluate``: test a checkpoint on a store split; per-image table + summary.json."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from tagseg.runtime.config import CONF_DIR
from tagseg.runtime.console import print_summary
from tagseg.runtime.task import task_wrapper


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="evaluate")
@task_wrapper(app=True)
def main(cfg: DictConfig) -> float:
    from tagseg.stages.evaluate import evaluate  # imported when the stage runs: `--help` and `--cfg` stay quick

    result = evaluate(cfg)
    print_summary(result["summary"], result["summary_path"], title=f"{cfg.split} ({result['checkpoint']})")
    if "shifts" in result:
        print(result["shifts"].read_text())
        print(f"shifted test sets: {result['shifts']}")
    return result["summary"]["dice_mean"]


if __name__ == "__main__":
    main()
