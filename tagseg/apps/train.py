"""``tagseg train``: fit a segmenter on a slice store, test it, print the Dice / HD95 table."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from tagseg.pipeline.objective import objective_value
from tagseg.runtime.config import CONF_DIR
from tagseg.runtime.console import print_summary
from tagseg.runtime.task import task_wrapper


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
@task_wrapper(app=True)
def main(cfg: DictConfig) -> float:
    """Returns ``optimized_metric`` of the cell (what a sweeper optimises); the sweep table reads the rest
    from the run folder."""
    from tagseg.stages.train import cell_metrics, train  # imported when the stage runs: `--help` and `--cfg` stay quick

    if cfg.get("strategy") is not None:
        from tagseg.pipeline.strategy import run_strategy

        record = run_strategy(cfg)
        return objective_value(record["metrics"], cfg.get("optimized_metric"))
    result = train(cfg)
    if "summary" in result:
        print_summary(result["summary"], result["summary_path"])
    return objective_value(cell_metrics(result), cfg.get("optimized_metric"))


if __name__ == "__main__":
    main()
