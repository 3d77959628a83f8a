"""The stage apps' error policy: user mistakes are one line and exit status 2, bugs keep their traceback."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from tagseg.errors import ConfigError, StoreError
from tagseg.runtime.task import user_error, user_errors


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


def test_task_wrapper_applies_torch_threads_and_finishes_wandb(monkeypatch):
    import sys
    import types

    import torch

    from tagseg.runtime.task import task_wrapper

    finished = []
    fake = types.SimpleNamespace(run=object(), finish=lambda: finished.append(True))
    monkeypatch.setitem(sys.modules, "wandb", fake)
    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", str(before))

    @task_wrapper(app=True)
    def app(c):
        return torch.get_num_threads()

    try:
        assert app(OmegaConf.create({"torch_threads": 1})) == 1
    finally:
        torch.set_num_threads(before)
    assert finished == [True]

    @task_wrapper
    def stage(c):
        raise StoreError("x.h5: missing")

    with pytest.raises(StoreError):  # a stage function passes errors to its caller ...
        stage(OmegaConf.create({}))
    assert finished == [True, True]  # ... and still finishes its W&B run


def test_a_bad_torch_threads_is_one_line(capsys):
    from tagseg.runtime.task import task_wrapper

    @task_wrapper(app=True)
    def app(c):
        return 1

    with pytest.raises(SystemExit) as exit_info:
        app(OmegaConf.create({"torch_threads": 0}))
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == "tagseg: error: torch_threads: expected null or an integer >= 1, got 0"
