"""The task wrapper every stage runs under (:func:`task_wrapper`): W&B finish, and for the apps
``torch_threads``, one-line errors, exit status 2, failed multirun cells."""

from __future__ import annotations

import difflib
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
from tagseg.runtime.wandb_run import finish_active_run

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


def closest(word: str, choices: list[str], prefix: str = "") -> str:
    """`` (did you mean <prefix><choice>?)`` for the nearest of ``choices`` (difflib), ``""`` when none is close."""
    near = difflib.get_close_matches(word, choices, n=1, cutoff=0.6)
    return f" (did you mean {prefix}{near[0]}?)" if near else ""


def one_line(text: str) -> str:
    """A message as one line: its lines joined, runs of white space made single."""
    return " ".join(str(text).split())


def composition_error(exc: BaseException) -> ConfigError | None:
    """Hydra's refusal of the command line as one :class:`ConfigError`, or ``None`` for any other exception.

    An unknown key (``foo=1``, ``datamodule.foo=1``), a group choice that does not exist
    (``model=resnetvea``, with the closest choice), an override Hydra cannot parse, a missing config.
    """
    from hydra.errors import ConfigCompositionException, MissingConfigException, OverrideParseException
    from omegaconf.errors import ConfigAttributeError, ConfigKeyError

    if isinstance(exc, MissingConfigException):
        missing = str(exc.missing_cfg_file or "")
        group, _, choice = missing.rpartition("/")
        options = [str(o) for o in (exc.options or [])]
        if group and options:
            return ConfigError(
                f"{group}={choice}: no such choice in group '{group}'{closest(choice, options)}; "
                f"choices: {', '.join(options)}"
            )
        return ConfigError(one_line(str(exc).split("Config search path:")[0]))
    if isinstance(exc, OverrideParseException):
        return ConfigError(f"{exc.override}: not a valid override ({one_line(exc.message.splitlines()[0])})")
    if isinstance(exc, ConfigCompositionException):
        cause = exc.__cause__
        if isinstance(cause, ConfigAttributeError | ConfigKeyError) and getattr(cause, "full_key", None):
            key = str(cause.full_key)
            parent = getattr(cause, "parent_node", None)
            siblings = [str(k) for k in parent.keys()] if parent is not None else []
            prefix, _, leaf = key.rpartition(".")
            hint = closest(leaf, siblings, prefix=f"{prefix}." if prefix else "")
            return ConfigError(f"{key}: no such key in the config{hint} (`--cfg job` prints it; +{key}=... adds a key)")
        reason = f": {one_line(str(cause))}" if cause is not None else ""
        return ConfigError(f"{one_line(str(exc))}{reason}")
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
                refuse(user)
                if in_multirun():
                    return failed_cell(user)
                raise SystemExit(2) from None
            if not in_multirun():
                raise
            log.exception("cell failed: %s", exc)
            return failed_cell(exc)
        finally:
            finish_active_run()

    return wrapper


def log_to_files(message: str) -> None:
    """``message`` as an ERROR record in the run's log files only (the console shows ``tagseg: error:``)."""
    record = log.makeRecord(log.name, logging.ERROR, __file__, 0, message, None, None)
    for handler in logging.getLogger().handlers:
        if isinstance(handler, logging.FileHandler):
            handler.handle(record)


def refuse(error: BaseException) -> None:
    """Show a refusal once: one line ``tagseg: error: ...`` on stderr, the same in the run's log file."""
    message = one_line(str(error))
    log_to_files(message)
    print(f"tagseg: error: {message}", file=sys.stderr)


def user_errors(task: Callable[[DictConfig], Any]) -> Callable[[DictConfig], Any]:
    """``task_wrapper(app=True)``: the name the stage apps used before (kept for their callers)."""
    return task_wrapper(task, app=True)
