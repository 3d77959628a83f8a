"""``tagseg phantom``: write phantom subjects in the on-disk layout of a real dataset."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from tagseg.runtime.config import CONF_DIR
from tagseg.runtime.task import task_wrapper


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="phantom")
@task_wrapper(app=True)
def main(cfg: DictConfig) -> None:
    from tagseg.stages.phantom import (  # imported when the stage runs: `--help` and `--cfg` stay quick
        export_phantom,
        manifest_table,
    )

    manifests = export_phantom(cfg)
    print(manifest_table(manifests))
    for m in manifests:
        print(f"tagseg prepare data={m['format']} data.root={m['root']}")


if __name__ == "__main__":
    main()
