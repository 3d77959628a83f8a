"""``tagseg store check <path>``: read every chunk of a slice store and check every value."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from tagseg.runtime.config import CONF_DIR
from tagseg.runtime.task import user_errors


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="store")
@user_errors
def main(cfg: DictConfig) -> None:
    from tagseg.stages.store import store  # imported when the stage runs: `--help` and `--cfg` stay quick

    result = store(cfg)
    print(
        f"{result['path']}: valid slice store, {result['n_slices']} slices "
        f"({result['bytes'] / 1e6:.1f} MB checked in {result['seconds']:.2f} s)"
    )


if __name__ == "__main__":
    main()
