"""``tagseg predict``: segment new tagged scans with a trained checkpoint."""

from __future__ import annotations

import logging

import hydra
import torch
from omegaconf import DictConfig, OmegaConf

from tagseg.apps.common import CONF_DIR, config_yaml, user_errors
from tagseg.data.scans import check_inputs, find_inputs
from tagseg.predict import find_checkpoint, load_segmenter, predict

log = logging.getLogger("tagseg.predict")


def run(cfg: DictConfig) -> None:
    """Load the checkpoint, segment every input scan, print the summary and the output folder."""
    device = ("cuda" if torch.cuda.is_available() else "cpu") if cfg.device == "auto" else str(cfg.device)
    ckpt = find_checkpoint(cfg.ckpt)
    check_inputs(find_inputs(cfg.input))  # bad input fails before the model is loaded
    segmenter = load_segmenter(ckpt, device=device)
    report = predict(
        segmenter,
        cfg.input,
        cfg.output,
        batch_size=cfg.batch_size,
        device=device,
        n_points=cfg.n_points,
        overlays=cfg.overlays,
        overlay_max_frames=cfg.overlay_max_frames,
        reader=OmegaConf.to_container(cfg.reader, resolve=True),
        attrs={"config": config_yaml(cfg), "checkpoint": str(ckpt)},
        progress=cfg.progress,
    )
    print(report.table())
    print(f"predictions: {report.output} ({len(report.files)} files; reference_points.csv, predictions.csv)")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="predict")
@user_errors
def main(cfg: DictConfig) -> None:
    run(cfg)


if __name__ == "__main__":
    main()
