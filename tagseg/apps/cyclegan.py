"""``tagseg cyclegan``: train the cine (A) <-> tagged (B) CycleGAN."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from tagseg.runtime.config import CONF_DIR
from tagseg.runtime.task import task_wrapper


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="cyclegan")
@task_wrapper(app=True)
def main(cfg: DictConfig) -> None:
    from tagseg.stages.cyclegan import (  # imported when the stage runs: `--help` and `--cfg` stay quick
        format_tagness,
        train_cyclegan,
    )

    result = train_cyclegan(cfg)
    print(f"trained {result['epochs']} epoch(s), {result['global_step'] // 2} batch(es) in {result['seconds']:.0f} s")
    if result["grids"]:
        print(f"grids: {result['grids'][-1].parent} ({len(result['grids'])} PNG)")
    print(f"checkpoint: {result['last_ckpt']}")
    if "tagness" in result:
        print(format_tagness(result["tagness"]))


if __name__ == "__main__":
    main()
