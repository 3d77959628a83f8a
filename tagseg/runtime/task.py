"""The task wrapper every stage runs under (:func:`task_wrapper`): W&B finish, and for the apps
``torch_threads``, one-line errors, exit status 2, failed multirun cells."""

from __future__ import annotations

import functools
import logging
import sys
import warnings
from collections.abc import Callable
from typing import Any

from omegaconf import DictConfig
from omegaconf.errors import MissingMandatoryValue

from tagseg.errors import ConfigError, TagsegError
from tagseg.runtime.schema import validate_config

log = logging.getLogger("tagseg")

# conf/hydra/launcher/submitit_{slurm,local}.yaml deliberately extend the launcher plugin's
# schemas of the same name (typed fields, `hydra/launcher=submitit_slurm` as documented there)
warnings.filterwarnings(
    "ignore", message=r"(?s).*is validated against ConfigStore schema with the same name", category=UserWarning
)


def in_multirun() -> bool:
    """Whether this job is one cell of a Hydra multirun (``-m``)."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    return HydraConfig.initialized() and HydraConfig.get().mode == RunMode.MULTIRUN


def failed_cell(exc: BaseException) -> dict[str, str]:
    """What a failed multirun cell returns: recorded in the sweep's ``summary.csv``."""
    return {"status": "failed", "error": f"{type(exc).__name__}: {exc}"}


def finish_wandb() -> None:
    # one W&B run per job: a sweep's next cell must not log into this one
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


def user_error(exc: BaseException) -> TagsegError | None:
    """The error to show the user as one line, or ``None`` when ``exc`` is a bug.

    A :class:`TagsegError`; the same wrapped by ``hydra.utils.instantiate`` (its ``__cause__``);
    or a mandatory config value left unset (``???`` in the YAML, e.g. ``tagseg predict``
    without ``ckpt=``), reported as a :class:`ConfigError` naming the key.
    """
    if isinstance(exc, TagsegError):
        return exc
    if isinstance(exc.__cause__, TagsegError):
        return exc.__cause__
    if isinstance(exc, MissingMandatoryValue):
        key = exc.full_key or "?"
        return ConfigError(f"{key}: no value given; pass {key}=<value> (`--help` lists the stage's options)")
    return None


def task_wrapper(task: Callable[[DictConfig], Any] | None = None, *, app: bool = False) -> Any:
    """The one wrapper of every task (the model: lightning-hydra-template's ``task_wrapper``).

    Always: an open W&B run is finished when the task ends, however it ends (one W&B run per
    job, and per stage of a strategy: the next one must not log into this one).

    With ``app=True`` (every ``tagseg.apps.<stage>.main``), also:

    * the config is validated first (:func:`tagseg.runtime.schema.validate_config`: types and
      ranges of the values users override most), so a bad value fails before any work;
    * ``torch_threads`` of the config is applied (:func:`~tagseg.runtime.config.set_torch_threads`);
    * a :class:`TagsegError` (see :func:`user_error`) becomes one line ``tagseg: error: ...`` on
      stderr and exit status 2; anything else is a bug and keeps its traceback;
    * in a multirun, a failing cell (any exception) is logged and returned as
      :func:`failed_cell`, so the sweep goes on and its summary records the failure.

    Without it (stage library functions: ``train``, ``evaluate``, ``train_cyclegan``), exceptions
    reach the caller unchanged.

    Usage: ``@task_wrapper`` or ``@task_wrapper(app=True)``.
    """
    if task is None:
        return functools.partial(task_wrapper, app=app)

    @functools.wraps(task)
    def wrapper(cfg: DictConfig) -> Any:
        try:
            if app:
                validate_config(cfg)
                from tagseg.runtime.config import set_torch_threads

                set_torch_threads(cfg.get("torch_threads"))
            return task(cfg)
        except Exception as exc:
            if not app:
                raise
            user = user_error(exc)
            if user is not None:
                log.error("%s", user)
                print(f"tagseg: error: {user}", file=sys.stderr)
                if in_multirun():
                    return failed_cell(user)
                raise SystemExit(2) from None
            if not in_multirun():
                raise
            log.exception("cell failed: %s", exc)
            return failed_cell(exc)
        finally:
            finish_wandb()

    return wrapper


def user_errors(task: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """``task_wrapper(app=True)``: the name the stage apps used before (kept for their callers)."""
    return task_wrapper(task, app=True)
