"""``tagseg prepare``: build a slice store from the phantom or a raw dataset."""

from __future__ import annotations

import logging

import hydra
from omegaconf import DictConfig

from tagseg.apps.common import CONF_DIR, config_yaml, user_errors
from tagseg.data.prepare import prepare_store

log = logging.getLogger("tagseg.prepare")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="prepare")
@user_errors
def main(cfg: DictConfig) -> None:
    source = hydra.utils.instantiate(cfg.data)
    report = prepare_store(
        source,
        cfg.output,
        seed=cfg.seed,
        split_ratios=cfg.prepare.split_ratios,
        strict=cfg.strict,
        verify=cfg.verify,
        image_size=cfg.prepare.image_size,
        spacing_mm=cfg.prepare.spacing_mm,
        attrs={"config": config_yaml(cfg)},
    )
    print(report.table())
    if cfg.verify:
        print(f"verified {source.name}: {report.n_slices} slices readable, {len(report.skipped)} problem(s)")
        return
    if cfg.prepare.figure:
        from tagseg.report.figures import store_montage

        png = store_montage(report.output)
        print(f"montage: {png}")
    print(f"store: {report.output}")


if __name__ == "__main__":
    main()
