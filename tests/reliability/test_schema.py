"""The config rules (tagseg.runtime.schema) accept every shipped config and name the key they refuse."""

from __future__ import annotations

from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from tagseg.errors import ConfigError
from tagseg.runtime.schema import Rule, config_problems, validate_config

CONF = Path(__file__).resolve().parents[2] / "tagseg" / "conf"
SHIPPED = [
    ("train", []),
    ("train", ["model=nnunet"]),
    ("train", ["experiment=demo"]),
    ("train", ["experiment=paper"]),
    ("train", ["experiment=strategy_matrix_demo"]),
    ("train", ["experiment=gamma_sweep_demo"]),
    ("train", ["augment=robust"]),
    ("train", ["experiment=augment_ablation_demo", "augment=robust_no_tags"]),
    ("train", ["trainer=ddp"]),
    ("train", ["debug=overfit"]),
    ("evaluate", []),
    ("translate", []),
    ("translate", ["method=cyclegan", "ckpt=x.ckpt"]),
    ("prepare", []),
    ("prepare", ["data=acdc"]),
    ("predict", ["ckpt=x.ckpt", "input=scans"]),
    ("strain", ["input=scans"]),
    ("strain", ["experiment=strain_validation_demo"]),
    ("cyclegan", []),
    ("cyclegan", ["experiment=cyclegan_demo"]),
    ("report", ["path=runs"]),
    ("store", ["path=x.h5"]),
]


def _compose(name: str, overrides: list[str]):
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        return compose(name, overrides=overrides, return_hydra_config=False)


@pytest.mark.parametrize(("name", "overrides"), SHIPPED, ids=[f"{n}:{','.join(o) or 'default'}" for n, o in SHIPPED])
def test_every_shipped_config_passes(name, overrides):
    cfg = _compose(name, [*overrides, "paths.output_dir=/tmp/x"])
    assert config_problems(cfg) == []


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("model.optimizer.lr=abc", "model.optimizer.lr: expected a number > 0, got 'abc'"),
        ("model.optimizer.lr=-0.01", "model.optimizer.lr: expected a number > 0, got -0.01"),
        ("seed=abc", "seed: expected an integer, got 'abc'"),
        ("seed=true", "seed: expected an integer, got True"),
        ("trainer.max_epochs=2.5", "trainer.max_epochs: expected an integer >= -1 or null, got 2.5"),
        (
            "datamodule.augment.noise_prob=-0.1",
            "datamodule.augment.noise_prob: expected a number >= 0 and <= 1, got -0.1",
        ),
        (
            "datamodule.augment.blur_sigma=[1]",
            "datamodule.augment.blur_sigma: expected a list of 2 numbers (each >= 0), got [1]",
        ),
        ("loss.gamma=-1", "loss.gamma: expected a number >= 0, got -1"),
    ],
)
def test_a_bad_value_is_one_error_naming_the_key(override, message):
    cfg = _compose("train", [override, "paths.output_dir=/tmp/x"])
    with pytest.raises(ConfigError) as err:
        validate_config(cfg)
    assert str(err.value) == message


def test_several_problems_are_counted_in_the_one_line():
    cfg = _compose("train", ["seed=abc", "datamodule.batch_size=0", "model.optimizer.lr=x", "paths.output_dir=/tmp/x"])
    with pytest.raises(ConfigError, match=r"^seed: expected an integer, got 'abc' \(and 2 more: "):
        validate_config(cfg)


def test_unset_mandatory_values_are_left_to_the_task_wrapper():
    cfg = OmegaConf.create({"seed": "???", "batch_size": 4})
    assert config_problems(cfg) == []


def test_rules_spell_what_they_expect():
    assert Rule("int", low=1, null=True).expected() == "an integer >= 1 or null"
    assert Rule("number", low=0.0, low_open=True).expected() == "a number > 0"
    assert not Rule("number").accepts(float("inf")) and not Rule("int").accepts(True) and Rule("int").accepts(3)
