"""The stage apps' error policy: user mistakes are one line and exit status 2, bugs keep their traceback."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from tagseg.runtime.task import user_error, user_errors
from tagseg.errors import ConfigError, StoreError


def test_user_error_classifies_exceptions():
    own = StoreError("x.h5: missing")
    assert user_error(own) is own
    wrapped = RuntimeError("Error in call to target")
    wrapped.__cause__ = own  # how hydra.utils.instantiate re-raises a constructor's error
    assert user_error(wrapped) is own
    assert user_error(KeyError("bug")) is None


def test_unset_mandatory_value_is_one_line_naming_the_key(capsys):
    cfg = OmegaConf.create({"ckpt": "???", "input": "scan.h5"})

    @user_errors
    def task(c):
        return c.ckpt

    with pytest.raises(SystemExit) as exit_info:
        task(cfg)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["tagseg: error: ckpt: no value given; pass ckpt=<value> (`--help` lists the stage's options)"]
    with pytest.raises(Exception) as missing:
        cfg.ckpt  # noqa: B018
    assert isinstance(user_error(missing.value), ConfigError)


def test_a_bug_keeps_its_traceback():
    @user_errors
    def task(c):
        raise ZeroDivisionError("bug")

    with pytest.raises(ZeroDivisionError):
        task(OmegaConf.create({}))
