"""``tagseg export``: a trained checkpoint as an ONNX / torch.export model with a JSON sidecar."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from tagseg.runtime.config import CONF_DIR
from tagseg.runtime.task import user_errors


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="export")
@user_errors
def main(cfg: DictConfig) -> None:
    from tagseg.stages.export import export_stage  # imported when the stage runs: `--help` and `--cfg` stay quick

    sidecar = export_stage(cfg)
    print(f"exported {sidecar['checkpoint']} -> {cfg.output}/{sidecar['file']} ({sidecar['format']}) + model.json")


if __name__ == "__main__":
    main()
