"""Hydra's Optuna sweeper (as the plugin ``hydra_plugins.tagseg_optuna_sweeper``), made to survive failed trials and to resume a study (``conf/hparams_search``).

hydra-optuna-sweeper 1.2.0 marks a trial failed when its job returns NaN, a non-number or raises,
and then re-raises, which ends the whole search at the first failed cell. tagseg's cells return
their ``optimized_metric`` (a float), and a failed cell returns a record (see
:func:`tagseg.runtime.task.failed_cell`) or NaN: here such a trial is told ``FAIL`` (its error
kept as the trial's ``error`` user attribute) and the search goes on.

``n_trials`` counts the whole study: a search started again with the same SQLite ``storage`` and
``study_name`` (e.g. after being killed) runs only the trials still missing.
"""

from __future__ import annotations

import functools
import logging
import math
from pathlib import Path
from typing import Any

import optuna
from hydra_plugins.hydra_optuna_sweeper._impl import OptunaSweeperImpl, create_params_from_overrides
from omegaconf import OmegaConf

log = logging.getLogger(__name__)

FINISHED = (optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL, optuna.trial.TrialState.PRUNED)


def trial_value(ret: Any) -> tuple[float | None, str | None]:
    """(value, None) for a usable result; (None, why) for a failed job, NaN, or a non-number."""
    try:
        value = ret.return_value  # re-raises the job's exception
    except Exception as exc:  # noqa: BLE001 - any job error is a failed trial
        return None, f"{type(exc).__name__}: {exc}"
    if isinstance(value, dict):
        return None, str(value.get("error") or value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None, f"the cell returned {value!r}, not a number (is optimized_metric set?)"
    if math.isnan(number):
        return None, "the cell's optimized_metric is NaN"
    return number, None


def _sqlite_folder(storage: Any) -> None:
    url = str(storage or "")
    if url.startswith("sqlite:///"):
        Path(url[len("sqlite:///") :]).parent.mkdir(parents=True, exist_ok=True)


class TagsegOptunaSweeperImpl(OptunaSweeperImpl):
    """The plugin's implementation with a sweep loop that records failed trials and resumes studies."""

    def sweep(self, arguments: list[str]) -> None:
        assert self.config is not None and self.launcher is not None
        self._process_searchspace_config()
        params_conf = self._parse_sweeper_params_config()
        params_conf.extend(arguments)
        is_grid = isinstance(self.sampler, functools.partial) and self.sampler.func == optuna.samplers.GridSampler
        distributions, fixed = create_params_from_overrides(params_conf)
        if is_grid:
            grid = {name: self._to_grid_sampler_choices(d) for name, d in distributions.items()}
            self.sampler = self.sampler(grid)
            self.n_trials = min(self.n_trials, math.prod(len(v) for v in grid.values()))
        for name in fixed:
            distributions.pop(name, None)
        _sqlite_folder(self.storage)
        study = optuna.create_study(
            study_name=self.study_name,
            storage=self.storage,
            sampler=self.sampler,
            directions=self._get_directions(),
            load_if_exists=True,
        )
        done = sum(t.state in FINISHED for t in study.trials)
        to_go = max(0, self.n_trials - done)
        log.info(
            "Optuna study %s in %s: %d of %d trials done, %d to run",
            study.study_name,
            self.storage,
            done,
            self.n_trials,
            to_go,
        )
        while to_go > 0:
            batch = min(to_go, self.n_jobs)
            trials = [study.ask() for _ in range(batch)]
            overrides = self._configure_trials(trials, distributions, fixed)
            returns = self.launcher.launch(overrides, initial_job_idx=self.job_idx)
            self.job_idx += len(returns)
            for trial, ret in zip(trials, returns):
                value, error = trial_value(ret)
                if error is None:
                    study.tell(trial, value)
                else:
                    trial.set_user_attr("error", error[:500])
                    study.tell(trial, state=optuna.trial.TrialState.FAIL)
                    log.warning("trial %d failed: %s", trial.number, error)
            to_go -= batch
        self._write_results(study)

    def _write_results(self, study: optuna.Study) -> None:
        complete = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        results: dict[str, Any] = {
            "name": "optuna",
            "study_name": study.study_name,
            "storage": str(self.storage),
            "n_complete": len(complete),
            "n_failed": sum(t.state == optuna.trial.TrialState.FAIL for t in study.trials),
        }
        if complete and len(study.directions) == 1:
            best = study.best_trial
            results.update(best_params=best.params, best_value=best.value, best_trial=best.number)
            log.info("Best value %s with %s (trial %d)", best.value, best.params, best.number)
        Path(str(self.config.hydra.sweep.dir)).mkdir(parents=True, exist_ok=True)
        OmegaConf.save(OmegaConf.create(results), f"{self.config.hydra.sweep.dir}/optimization_results.yaml")


__all__ = ["TagsegOptunaSweeperImpl", "trial_value"]
