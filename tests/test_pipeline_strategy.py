"""Strategies: the stage plan and its cache keys (fast), real cached / resumed runs (slow)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import run_tagseg, tiny_overrides
from omegaconf import OmegaConf

from tagseg.errors import ConfigError
from tagseg.pipeline.runner import assign_keys
from tagseg.pipeline.strategy import plan_strategy, run_tags, translator_training
from tagseg.runtime.config import RUN_DIR, key_config

# a tiny phantom (6 subjects x 3 slices x 2 frames, 32 px) and a tiny ResNetVAE
TINY_DATA = [
    "data.n_subjects=6",
    "data.n_frames=2",
    "data.image_size=32",
    "data.fov_mm=96",
    "strategy.source.n_subjects=6",
    "strategy.source.n_frames=2",
    "strategy.source.image_size=32",
    "strategy.source.fov_mm=96",
    "strategy.use_existing_stores=false",
]
TINY_TRAIN = tiny_overrides(
    "train",
    without=("datamodule.augment.enabled", "trainer.enable_model_summary"),
    extra=["strategy.pretrain.trainer.max_epochs=1"],
)


@pytest.fixture
def strategy_cfg(compose_config):
    """``strategy_cfg(*overrides)``: the train config with the tiny data and stages above (paths under tmp_path)."""
    return lambda *overrides: compose_config("train", *TINY_DATA, *TINY_TRAIN, *overrides, tiny=False)


@pytest.fixture
def plan(strategy_cfg):
    """``plan(*overrides)``: stage label -> cache key of the planned strategy."""
    return lambda *overrides: {s.label: s.key for s in assign_keys(plan_strategy(strategy_cfg(*overrides)))}


def test_each_strategy_chains_its_stages(plan):
    assert list(plan("strategy=scratch")) == ["prepare[phantom_tagged]", "finetune", "test"]
    assert list(plan("strategy=cine")) == [
        "prepare[phantom_tagged]",
        "prepare[phantom_cine]",
        "pretrain[cine]",
        "finetune",
        "test",
    ]
    assert list(plan("strategy=physics")) == [
        "prepare[phantom_tagged]",
        "prepare[phantom_cine]",
        "translate[physics]",
        "pretrain[physics]",
        "finetune",
        "test",
    ]
    assert list(plan("strategy=cyclegan")) == [
        "prepare[phantom_tagged]",
        "prepare[phantom_cine]",
        "cyclegan",
        "translate[cyclegan]",
        "pretrain[cyclegan]",
        "finetune",
        "test",
    ]
    three = plan("strategy=three_stage")
    assert [k for k in three if k.startswith("pretrain")] == ["pretrain[cine]", "pretrain[cine>physics]"]
    assert three["pretrain[cine]"] == plan("strategy=cine")["pretrain[cine]"]  # shared with strategy=cine


def test_keys_share_what_the_sweeps_share(plan):
    gammas = [plan("strategy=physics", f"loss.gamma={g}") for g in (0.0, 0.5)]
    for label in ("prepare[phantom_tagged]", "prepare[phantom_cine]", "translate[physics]"):
        assert gammas[0][label] == gammas[1][label], label  # data preparation never repeated over gamma
    assert gammas[0]["finetune"] != gammas[1]["finetune"]
    # the pretraining depends on the architecture and source only, not on the fine-tuning data or settings
    a = plan("strategy=physics")
    b = plan("strategy=physics", "data.n_subjects=7", "strategy.finetune.trainer.max_epochs=3")
    assert a["pretrain[physics]"] == b["pretrain[physics]"]
    assert a["prepare[phantom_tagged]"] != b["prepare[phantom_tagged]"] and a["finetune"] != b["finetune"]
    assert (
        plan("strategy=physics", "model=nnunet", "~model.network.init_filters")["pretrain[physics]"]
        != a["pretrain[physics]"]
    )
    # runtime-only settings do not change any key
    c = plan("strategy=physics", "trainer.devices=2", "datamodule.num_workers=3", "logger=tensorboard")
    assert c == a


def test_bad_chain_is_reported_before_any_work(plan):
    with pytest.raises(ConfigError, match=r"strategy.chain: unknown source\(s\) \['gan'\]"):
        plan("strategy=physics", "strategy.chain=[gan]")


def test_key_config_drops_keys_and_hides_the_run_folder():
    cfg = OmegaConf.create(
        {
            "paths": {"output_dir": "${hydra:runtime.output_dir}", "data_dir": "/d"},
            "ckpt": "${paths.output_dir}/checkpoints",
            "data": {"store": "${paths.data_dir}/x.h5", "n": 3},
        }
    )
    out = key_config(cfg, ["paths", "data.store"])
    assert out == {"ckpt": f"{RUN_DIR}/checkpoints", "data": {"n": 3}}
    assert key_config(cfg.data, ["store"]) == {"n": 3}


class _TrainedElsewhere:
    trained_by = "diffusion"  # no such training stage


def test_a_translator_class_says_whether_it_is_trained_first():
    from tagseg.errors import ConfigError
    from tagseg.runtime.config import compose

    assert translator_training(compose("translate", ["method=cyclegan"])) == "cyclegan"
    assert translator_training(compose("translate", ["method=physics"])) is None
    bogus = OmegaConf.create({"method": {"_target_": f"{__name__}._TrainedElsewhere"}})
    with pytest.raises(
        ConfigError, match=r"trained by 'diffusion', which is no training stage \(known: \['cyclegan'\]\)"
    ):
        translator_training(bogus)


def test_run_tags_name_strategy_arch_and_gamma(strategy_cfg):
    cfg = strategy_cfg("strategy=cine", "loss.gamma=0.1")
    assert run_tags(cfg) == ["strategy:cine", "arch:resnetvae", "gamma:0.1"]


# --------------------------------------------------------------------------- slow: real runs

ROOT = Path(__file__).resolve().parents[1]
TAGSEG = [sys.executable, "-m", "tagseg.cli"]


def _cli(root: Path, *args: str, timeout: int = 900, **popen) -> subprocess.CompletedProcess:
    flags = [a for a in args if a.startswith("-")]  # argparse: flags before the overrides
    overrides = [a for a in args if not a.startswith("-")]
    return run_tagseg(["train", *flags, *TINY_DATA, *TINY_TRAIN, *overrides], ROOT, root=root, timeout=timeout)


def _done(root: Path, kind: str) -> list[Path]:
    return sorted((root / "cache" / kind).glob("*/done"))


@pytest.mark.slow
def test_second_run_reuses_the_cached_pretraining(tmp_path):
    first = _cli(tmp_path, "strategy=cine")
    assert first.returncode == 0, first.stderr[-3000:]
    (marker,) = _done(tmp_path, "pretrain")
    stamp = marker.read_text()
    second = _cli(tmp_path, "strategy=cine", "strategy.finetune.trainer.max_epochs=2")
    assert second.returncode == 0, second.stderr[-3000:]
    log = second.stdout + second.stderr
    assert "reusing pretrain[cine]" in log and "reusing prepare[phantom_cine]" in log
    assert _done(tmp_path, "pretrain") == [marker] and marker.read_text() == stamp  # not recomputed
    assert len(_done(tmp_path, "finetune")) == 2
    runs = sorted((tmp_path / "logs" / "train" / "runs").glob("*/strategy.json"))
    record = json.loads(runs[-1].read_text())
    assert record["stages"]["pretrain[cine]"]["reused"] is True and record["stages"]["finetune"]["reused"] is False
    assert 0.0 <= record["test_dice_mean"] <= 1.0 and record["epochs"] >= 1


@pytest.mark.slow
def test_run_killed_after_pretraining_resumes_without_redoing_it(tmp_path):
    env = {**os.environ, "TAGSEG_ROOT": str(tmp_path), "WANDB_MODE": "disabled"}
    args = [*TAGSEG, "train", *TINY_DATA, *TINY_TRAIN, "strategy=cine", "strategy.finetune.trainer.max_epochs=8"]
    proc = subprocess.Popen(
        args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        deadline = time.monotonic() + 600
        while not _done(tmp_path, "pretrain") and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
        assert _done(tmp_path, "pretrain"), "pretraining never completed"
        time.sleep(1.0)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    assert not _done(tmp_path, "finetune")
    (marker,) = _done(tmp_path, "pretrain")
    stamp = marker.read_text()
    resumed = _cli(tmp_path, "strategy=cine", "strategy.finetune.trainer.max_epochs=8")
    log = resumed.stdout + resumed.stderr
    assert resumed.returncode == 0, log[-3000:]
    assert "reusing pretrain[cine]" in log and "reusing prepare[phantom_cine]" in log
    assert marker.read_text() == stamp and len(_done(tmp_path, "finetune")) == 1


@pytest.mark.slow
def test_failing_strategy_cell_is_recorded_and_the_sweep_goes_on(tmp_path):
    # the nnunet cell fails (image size 32 is not a multiple of the default DynUNet's 64)
    proc = _cli(tmp_path, "-m", "strategy=scratch", "model=resnetvae,nnunet", "~model.network.init_filters")
    assert proc.returncode == 1, proc.stderr[-3000:]
    (summary,) = (tmp_path / "logs" / "train" / "multiruns").glob("*/summary.csv")
    import csv

    rows = {r["overrides"].split("model=")[1].split(",")[0]: r for r in csv.DictReader(open(summary))}
    assert rows["resnetvae"]["status"] == "ok" and float(rows["resnetvae"]["test_dice_mean"]) >= 0.0
    assert rows["nnunet"]["status"] == "failed" and "image_size 32x32 is not accepted" in rows["nnunet"]["error"]


def test_the_translate_stage_is_tagseg_translate_with_its_options(tmp_path, ring_store):
    """The strategy's translate stage calls the translate stage's function: ``compression`` applies."""
    from types import SimpleNamespace

    import h5py

    from tagseg.pipeline.strategy import translate_stage
    from tagseg.runtime.config import compose

    tr_cfg = compose("translate", ["method=physics", "compression=lzf", "method.n_figure=0", "method.progress=false"])
    stage = translate_stage(tr_cfg, "physics", "prepare[cine]", None)
    out = tmp_path / "translate"
    out.mkdir()
    result = stage.compute(out, {"prepare[cine]": SimpleNamespace(outputs={"store": ring_store})})
    with h5py.File(result["store"], "r") as f:
        assert f["images"].compression == "lzf" and f["images"].shape == (24, 32, 32)
        assert set(f["meta/source"].asstr()[...]) == {"physics(rings)"}


def test_a_test_stage_key_carries_the_orientation_rule_it_tests_with(strategy_cfg, monkeypatch):
    from tagseg.pipeline import strategy as strategy_module

    stages = {s.label: s for s in assign_keys(plan_strategy(strategy_cfg("strategy=scratch")))}
    assert stages["test"].config["orientation"] == {"mode": "auto", "margin": 0.005, "frames": 8, "agreement": 0.75}
    # a cached test made under another search rule is not reused: its key differs, the training's does not
    monkeypatch.setattr(strategy_module, "evaluate_orientation", lambda: {"mode": "auto", "margin": 0.01, "frames": 4})
    other = {s.label: s for s in assign_keys(plan_strategy(strategy_cfg("strategy=scratch")))}
    assert other["test"].key != stages["test"].key and other["finetune"].key == stages["finetune"].key
