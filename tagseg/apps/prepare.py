"""``tagseg prepare``: build a slice store from the phantom or a raw dataset."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from tagseg.errors import DataError
from tagseg.runtime.config import CONF_DIR
from tagseg.runtime.task import task_wrapper


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="prepare")
@task_wrapper(app=True)
def main(cfg: DictConfig) -> None:
    from tagseg.stages.prepare import prepare  # imported when the stage runs: `--help` and `--cfg` stay quick

    report, montage = prepare(cfg)
    print(report.table())
    print(report.table1())
    if cfg.verify:
        print(f"verified {report.name}: {report.n_slices} slices readable, {len(report.skipped)} problem(s)")
        if report.skipped:  # a check that found problems must fail a script or CI job
            raise DataError(f"verify {report.name}: {len(report.skipped)} problem(s) found (listed above)")
        return
    if montage is not None:
        print(f"montage: {montage}")
    print(f"store: {report.output}")


if __name__ == "__main__":
    main()
