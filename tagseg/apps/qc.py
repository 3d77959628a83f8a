"""``tagseg qc``: fit a trained segmenter's quality-control model and store it next to its checkpoint."""

from __future__ import annotations

import hydra
from omegaconf import DictConfig

from tagseg.runtime.config import CONF_DIR
from tagseg.runtime.task import task_wrapper
from tagseg.stages.qc import fit_qc


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="qc")
@task_wrapper(app=True)
def main(cfg: DictConfig) -> None:
    model, path = fit_qc(cfg)
    info = model.fitted_on
    print(f"QC model fitted on {info.get('n_images')} images of {', '.join(info.get('sets', []))}")
    print(f"qc_flag: predicted_dice < {model.threshold}; written to {path}")


if __name__ == "__main__":
    main()
