"""``tagseg translate``: turn a labelled cine store into a tagged-looking store."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from tagseg.runtime.config import CONF_DIR
from tagseg.runtime.task import task_wrapper


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="translate")
@task_wrapper(app=True)
def main(cfg: DictConfig) -> None:
    from tagseg.stages.translate import translate  # imported when the stage runs: `--help` and `--cfg` stay quick

    report = translate(cfg)
    print(report.summary())
    if report.figure is not None:
        print(f"figure: {report.figure}")
    print(f"store: {report.output}")


if __name__ == "__main__":
    main()
