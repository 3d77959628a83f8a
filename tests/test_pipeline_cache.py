"""The stage artifact cache and the stage runner, with fake stage functions (fast)."""

from __future__ import annotations

import json
import logging
import shutil
import threading
from collections import Counter
from pathlib import Path

import pytest

from tagseg.errors import ConfigError
from tagseg.pipeline.cache import DONE, RankSync, StageCache, config_key
from tagseg.pipeline.runner import Stage, assign_keys, plan_table, run_stages


def test_config_key_is_order_free_and_value_sensitive():
    a = config_key("pretrain", {"model": {"name": "resnetvae", "lr": 0.01}, "epochs": 3})
    b = config_key("pretrain", {"epochs": 3, "model": {"lr": 0.01, "name": "resnetvae"}})
    assert a == b and len(a) == 12
    assert config_key("pretrain", {"epochs": 4, "model": {"lr": 0.01, "name": "resnetvae"}}) != a
    assert config_key("finetune", {"epochs": 3, "model": {"lr": 0.01, "name": "resnetvae"}}) != a


def test_stage_computed_once_then_reused_with_log(tmp_path, caplog):
    calls = Counter()

    def fn(out: Path):
        calls["n"] += 1
        (out / "store.h5").write_text("x")
        return {"store": out / "store.h5", "n_slices": 7}

    cache = StageCache(tmp_path)
    first = cache.run("prepare", {"data": "phantom_cine", "size": 32}, fn)
    assert not first.reused and calls["n"] == 1
    assert (first.dir / DONE).exists() and (first.dir / "config.yaml").exists()
    with caplog.at_level(logging.INFO, logger="tagseg.pipeline.cache"):
        second = StageCache(tmp_path).run("prepare", {"size": 32, "data": "phantom_cine"}, fn)
    assert calls["n"] == 1 and second.reused
    assert second.outputs == {"store": first.dir / "store.h5", "n_slices": 7}
    assert any("reusing prepare" in r.message for r in caplog.records)


def test_outputs_survive_moving_the_cache(tmp_path):
    cache = StageCache(tmp_path / "a")
    res = cache.run("translate", {"m": 1}, lambda out: {"store": out / "s.h5", "figure": [out / "f.png"]})
    shutil.move(tmp_path / "a", tmp_path / "b")
    moved = StageCache(tmp_path / "b").load("translate", res.key)
    assert moved.outputs["store"] == tmp_path / "b" / "translate" / res.key / "s.h5"
    assert moved.outputs["figure"] == [tmp_path / "b" / "translate" / res.key / "f.png"]


def test_force_recomputes_all_or_listed_kinds(tmp_path):
    calls = Counter()

    def fn(kind):
        def compute(out: Path):
            calls[kind] += 1
            assert not (out / "old").exists(), "force must start from an empty folder"
            (out / "old").write_text("x")
            return {}

        return compute

    StageCache(tmp_path).run("prepare", {}, fn("prepare"))
    StageCache(tmp_path).run("pretrain", {}, fn("pretrain"))
    StageCache(tmp_path, force=True).run("prepare", {}, fn("prepare"))
    assert calls["prepare"] == 2
    only = StageCache(tmp_path, force=["pretrain"])
    only.run("prepare", {}, fn("prepare"))
    only.run("pretrain", {}, fn("pretrain"))
    assert calls == {"prepare": 2, "pretrain": 2}
    with pytest.raises(ConfigError, match="strategy.force"):
        StageCache(tmp_path, force="pretrain")


def test_interrupted_stage_has_no_marker_and_resumes_in_place(tmp_path):
    cache = StageCache(tmp_path)

    def killed(out: Path):
        (out / "last.ckpt").write_text("epoch 3")
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        cache.run("pretrain", {"epochs": 5}, killed)
    key = config_key("pretrain", {"epochs": 5})
    assert cache.status("pretrain", key) == "partial"
    with pytest.raises(ConfigError, match="not complete"):
        cache.load("pretrain", key)
    seen = {}

    def resume(out: Path):
        seen["ckpt"] = (out / "last.ckpt").read_text()
        return {"best": out / "best.ckpt"}

    res = cache.run("pretrain", {"epochs": 5}, resume)
    assert seen["ckpt"] == "epoch 3" and not res.reused and cache.status("pretrain", key) == "done"


def _chain(calls: Counter, fail: str | None = None, pre_epochs: int = 2, ft_epochs: int = 2) -> list[Stage]:
    def make(label):
        def compute(out: Path, inputs):
            calls[label] += 1
            if label == fail:
                raise RuntimeError(f"{label} killed")
            return {"from": sorted(inputs), "artifact": out / f"{label}.bin"}

        return compute

    return [
        Stage("prepare", "prepare[cine]", {"data": "phantom_cine"}, make("prepare[cine]")),
        Stage(
            "translate",
            "translate[physics]",
            {"method": "physics"},
            make("translate[physics]"),
            needs=("prepare[cine]",),
        ),
        Stage(
            "pretrain",
            "pretrain[physics]",
            {"epochs": pre_epochs},
            make("pretrain[physics]"),
            needs=("translate[physics]",),
            collective=True,
        ),
        Stage(
            "finetune",
            "finetune",
            {"epochs": ft_epochs},
            make("finetune"),
            needs=("pretrain[physics]",),
            collective=True,
        ),
    ]


def test_killed_run_resumes_after_last_complete_stage(tmp_path, caplog):
    calls = Counter()
    cache = StageCache(tmp_path)
    with pytest.raises(RuntimeError, match="finetune killed"):
        run_stages(_chain(calls, fail="finetune"), cache)
    assert "reuse" in plan_table(_chain(calls), cache).splitlines()[2]
    assert plan_table(_chain(calls), cache).splitlines()[3].endswith("resume")
    with caplog.at_level(logging.INFO, logger="tagseg.pipeline.cache"):
        results = run_stages(_chain(calls), cache)
    assert calls == {"prepare[cine]": 1, "translate[physics]": 1, "pretrain[physics]": 1, "finetune": 2}
    assert results["pretrain[physics]"].reused and not results["finetune"].reused
    assert results["finetune"].outputs["from"] == ["pretrain[physics]"]
    assert any("reusing pretrain[physics]" in r.message for r in caplog.records)


def test_upstream_change_gives_new_downstream_keys(tmp_path):
    base = assign_keys(_chain(Counter()))
    other_ft = assign_keys(_chain(Counter(), ft_epochs=9))
    other_pre = assign_keys(_chain(Counter(), pre_epochs=9))
    assert [s.key for s in base[:3]] == [s.key for s in other_ft[:3]]  # fine-tune change: pretraining shared
    assert base[3].key != other_ft[3].key
    assert base[2].key != other_pre[2].key and base[3].key != other_pre[3].key  # propagates downstream
    with pytest.raises(ConfigError, match="needs"):
        assign_keys(_chain(Counter())[1:])


def test_second_strategy_reuses_pretraining_from_marker(tmp_path):
    calls = Counter()
    cache = StageCache(tmp_path)
    run_stages(_chain(calls), cache)
    results = run_stages(_chain(calls, ft_epochs=5), cache)
    assert calls["pretrain[physics]"] == 1 and calls["finetune"] == 2
    marker = json.loads((results["pretrain[physics]"].dir / DONE).read_text())
    assert marker["label"] == "pretrain[physics]" and results["pretrain[physics]"].reused


def test_launcher_created_ranks_follow_rank_zero(tmp_path):
    """Rank 0 prepares alone; a collective (training) stage runs on both ranks; rank 1 waits."""
    calls = Counter()
    lock = threading.Lock()
    errors: list[BaseException] = []

    def stage_fn(name, rank):
        def compute(out: Path):
            with lock:
                calls[(name, rank)] += 1
            return {"name": name}

        return compute

    def worker(rank):
        try:
            cache = StageCache(tmp_path / "cache", sync=RankSync(tmp_path / "job", rank, 2, poll_s=0.01, timeout_s=20))
            cache.run("prepare", {"d": 1}, stage_fn("prepare", rank))
            cache.run("pretrain", {"e": 1}, stage_fn("pretrain", rank), collective=True)
            res = cache.run("prepare", {"d": 1}, stage_fn("prepare", rank))
            assert res.outputs == {"name": "prepare"}
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(r,)) for r in (1, 0)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert not errors, errors
    assert calls == {("prepare", 0): 1, ("pretrain", 0): 1, ("pretrain", 1): 1}


def test_rank_sync_times_out_with_a_clear_message(tmp_path):
    sync = RankSync(tmp_path, rank=1, world_size=2, poll_s=0.01, timeout_s=0.05)
    with pytest.raises(TimeoutError, match="rank 0's decision 'prepare-x'"):
        sync.wait_for("prepare-x")
