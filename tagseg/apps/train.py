"""``tagseg train``: fit a segmenter on a slice store, test it, print the Dice / HD95 table."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from tagseg.runtime.config import CONF_DIR
from tagseg.runtime.console import print_summary
from tagseg.runtime.task import task_wrapper
from tagseg.stages.train import train


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="train")
@task_wrapper(app=True)
def main(cfg: DictConfig) -> float | dict | None:
    if cfg.get("strategy") is not None:
        from tagseg.pipeline.strategy import run_strategy

        return run_strategy(cfg)
    result = train(cfg)
    if "summary" in result:
        print_summary(result["summary"], result["summary_path"])
        return result["summary"]["dice_mean"]
    return None


if __name__ == "__main__":
    main()
