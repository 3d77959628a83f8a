"""``hydra.sweeper._target_: hydra_plugins.tagseg_optuna_sweeper.sweeper.TagsegOptunaSweeper``."""

from __future__ import annotations

from typing import Any

from hydra_plugins.hydra_optuna_sweeper.optuna_sweeper import OptunaSweeper


class TagsegOptunaSweeper(OptunaSweeper):
    """The Optuna plugin's sweeper (same settings: sampler, direction, storage, study_name, n_trials,
    n_jobs, params) with failed trials recorded instead of fatal, and resumable studies."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # Hydra imports every hydra_plugins module at start-up: optuna (seconds) only once a search is configured
        from tagseg.pipeline.optuna_sweeper import TagsegOptunaSweeperImpl

        super().__init__(*args, **kwargs)
        self.sweeper = TagsegOptunaSweeperImpl(*args, **kwargs)
