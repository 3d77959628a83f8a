"""Types and ranges of the config values users override most, checked before any work.

Every stage's task wrapper (:func:`tagseg.runtime.task.user_errors`) runs :func:`validate_config`
on the composed config first, so ``model.optimizer.lr=abc``, ``seed=abc`` or
``model.optimizer.lr=-0.01`` is one line naming the key (exit status 2), not a traceback
mid-fit. The rules are data (:data:`RULES`): a key path (``*`` matches one level, as in
``datamodule.augment.*_prob``) and what its value must be. A key a config does not have is
skipped, so one table serves every stage.
"""

from __future__ import annotations

import fnmatch
import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import InterpolationResolutionError, MissingMandatoryValue

from tagseg.errors import ConfigError


@dataclass(frozen=True)
class Rule:
    """What a config value must be.

    Attributes:
        kind: ``int`` (not bool), ``number`` (int or float, finite), ``bool``, ``str`` or
            ``numbers`` (a list of numbers).
        low: smallest allowed value (``None``: no bound).
        low_open: ``low`` itself is not allowed (``> low`` instead of ``>= low``).
        high: largest allowed value.
        null: ``null`` is allowed.
        length: the exact length of a ``numbers`` list.
        choices: the allowed values of a ``str``.
        words: strings accepted besides the kind (e.g. ``auto`` for a size).
    """

    kind: str
    low: float | None = None
    low_open: bool = False
    high: float | None = None
    null: bool = False
    length: int | None = None
    choices: tuple[str, ...] = ()
    words: tuple[str, ...] = ()

    def expected(self) -> str:
        what = {
            "int": "an integer",
            "number": "a number",
            "bool": "true or false",
            "str": "a string",
            "numbers": f"a list of {self.length or ''} numbers".replace("  ", " "),
        }[self.kind]
        if self.choices:
            what = f"one of {list(self.choices)}"
        bounds = []
        if self.low is not None:
            bounds.append(f"{'>' if self.low_open else '>='} {self.low:g}")
        if self.high is not None:
            bounds.append(f"<= {self.high:g}")
        if bounds:
            what += (
                (" (each " if self.kind == "numbers" else " ")
                + " and ".join(bounds)
                + (")" if self.kind == "numbers" else "")
            )
        return what + "".join(f" or {w!r}" for w in self.words) + (" or null" if self.null else "")

    def accepts(self, value: Any) -> bool:
        if value is None:
            return self.null
        if isinstance(value, str) and value in self.words:
            return True
        if self.kind == "bool":
            return isinstance(value, bool)
        if self.kind == "str":
            return isinstance(value, str) and (not self.choices or value in self.choices)
        if self.kind == "numbers":
            if not isinstance(value, (list, tuple)) or (self.length is not None and len(value) != self.length):
                return False
            return all(self._number_ok(v) for v in value)
        if self.kind == "int" and (isinstance(value, bool) or not isinstance(value, int)):
            return False
        return self._number_ok(value)

    def _number_ok(self, value: Any) -> bool:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return False
        if self.low is not None and (value < self.low or (self.low_open and value == self.low)):
            return False
        return self.high is None or value <= self.high


INT = Rule("int")
POSITIVE = Rule("number", low=0.0, low_open=True)
NON_NEGATIVE = Rule("number", low=0.0)
PROBABILITY = Rule("number", low=0.0, high=1.0)
COUNT = Rule("int", low=1)
SIDE = Rule("int", low=8)

#: key pattern -> rule (checked in this order; the first failure is reported)
RULES: dict[str, Rule] = {
    "seed": INT,  # (torch_threads: checked by runtime.config.set_torch_threads)
    # optimisers and schedulers (train: model.optimizer; cyclegan: model.lr)
    "model.optimizer.lr": POSITIVE,
    "model.optimizer.weight_decay": NON_NEGATIVE,
    "model.optimizer.momentum": NON_NEGATIVE,
    "model.lr": POSITIVE,
    "model.betas": Rule("numbers", low=0.0, high=1.0, length=2),
    "model.scheduler.factor": Rule("number", low=0.0, low_open=True, high=1.0),
    "model.scheduler.patience": Rule("int", low=0),
    "model.vae_weight": NON_NEGATIVE,
    "model.n_epochs": Rule("int", low=0),
    "model.n_epochs_decay": Rule("int", low=0),
    "model.lambda_cycle": NON_NEGATIVE,
    "model.lambda_identity": NON_NEGATIVE,
    "model.pool_size": Rule("int", low=0),
    "model.generator.dropout": PROBABILITY,
    # loss
    "loss.gamma": NON_NEGATIVE,
    "loss.k": POSITIVE,
    # trainer
    "trainer.max_epochs": Rule("int", low=-1, null=True),
    "trainer.min_epochs": Rule("int", low=0, null=True),
    "trainer.max_steps": Rule("int", low=-1),
    "trainer.num_nodes": COUNT,
    "trainer.log_every_n_steps": COUNT,
    "trainer.check_val_every_n_epoch": Rule("int", low=1, null=True),
    "trainer.num_sanity_val_steps": Rule("int", low=-1),
    "trainer.accumulate_grad_batches": COUNT,
    "trainer.gradient_clip_val": Rule("number", low=0.0, null=True),
    "trainer.limit_train_batches": Rule("number", low=0.0, null=True),
    "trainer.limit_val_batches": Rule("number", low=0.0, null=True),
    "trainer.limit_test_batches": Rule("number", low=0.0, null=True),
    # data
    "datamodule.batch_size": COUNT,
    "datamodule.eval_batch_size": Rule("int", low=1, null=True),
    "datamodule.image_size": SIDE,
    "datamodule.num_workers": Rule("int", low=0),
    "datamodule.split_ratios": Rule("numbers", low=0.0, length=3),
    "datamodule.std": POSITIVE,
    "datamodule.mean": Rule("number"),
    "datamodule.si_k": POSITIVE,
    "datamodule.augment.*_prob": PROBABILITY,
    "datamodule.augment.noise_std": NON_NEGATIVE,
    "datamodule.augment.rotate_deg": NON_NEGATIVE,
    "datamodule.augment.scale": Rule("number", low=0.0, high=1.0),
    "datamodule.augment.translate": Rule("number", low=0.0, high=1.0),
    "datamodule.augment.elastic_grid": POSITIVE,
    "datamodule.augment.blur_sigma": Rule("numbers", low=0.0, length=2),
    "datamodule.augment.elastic_magnitude": Rule("numbers", low=0.0, length=2),
    "datamodule.batch_augment.transforms.*.prob": PROBABILITY,
    # prepare / translate / predict / evaluate
    "prepare.image_size": Rule("int", low=8, null=True, words=("auto",)),
    "prepare.spacing_mm": Rule("number", low=0.0, low_open=True, null=True),
    "prepare.split_ratios": Rule("numbers", low=0.0, length=3),
    "batch_size": COUNT,
    "n_points": Rule("int", low=3),
    "overlay_max_frames": Rule("int", low=0),
    "split": Rule("str", choices=("train", "val", "test", "all")),
    "physics.spacing_px": POSITIVE,
    "physics.flip_deg": Rule("number", low=0.0, high=180.0),
    "physics.*_jitter": NON_NEGATIVE,
    "physics.angle_jitter_deg": NON_NEGATIVE,
    "tagness_check.max_images": Rule("int", low=0, null=True),
}


def _keys(node: Any, prefix: str = "") -> Iterator[str]:
    """Every key path of a config, without resolving any value."""
    if isinstance(node, DictConfig):
        for key in node.keys():
            path = f"{prefix}{key}"
            yield path
            child = node._get_node(key)
            if isinstance(child, DictConfig):
                yield from _keys(child, f"{path}.")


def _value(cfg: DictConfig, key: str) -> Any:
    try:
        value = OmegaConf.select(cfg, key, throw_on_missing=True)
    except MissingMandatoryValue:
        raise
    except InterpolationResolutionError as exc:
        raise ConfigError(f"{key}: cannot resolve its value ({exc})") from None
    if isinstance(value, ListConfig):
        value = OmegaConf.to_container(value, resolve=True)
    return value


def config_problems(cfg: DictConfig, rules: dict[str, Rule] | None = None) -> list[str]:
    """Every value of ``cfg`` that breaks a rule, as ``<key>: expected ..., got <value>`` lines."""
    rules = RULES if rules is None else rules
    keys = list(_keys(cfg))
    problems = []
    for pattern, rule in rules.items():
        matched = [k for k in keys if fnmatch.fnmatchcase(k, pattern) and k.count(".") == pattern.count(".")]
        for key in matched:
            node = cfg
            *parents, leaf = key.split(".")
            for p in parents:
                node = node._get_node(p)
            if node._get_node(leaf)._is_missing():
                continue  # an unset mandatory value is reported by the task wrapper with its own hint
            value = _value(cfg, key)
            if isinstance(value, (dict, DictConfig)):
                continue
            if not rule.accepts(value):
                problems.append(f"{key}: expected {rule.expected()}, got {value!r}")
    return problems


def validate_config(cfg: DictConfig) -> None:
    """Raise one :class:`ConfigError` naming the first key whose value has the wrong type or range.

    Raises:
        ConfigError: e.g. ``model.optimizer.lr: expected a number > 0, got 'abc'``.
    """
    problems = config_problems(cfg)
    if problems:
        more = f" (and {len(problems) - 1} more: {'; '.join(problems[1:3])})" if len(problems) > 1 else ""
        raise ConfigError(problems[0] + more)


__all__ = ["RULES", "Rule", "config_problems", "validate_config"]
