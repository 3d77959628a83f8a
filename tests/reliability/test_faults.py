"""Faults: concurrent writers of one output, a fit killed and resumed, writers killed half-way.

The fast tests run in-process; the real-process ones (two ``tagseg prepare`` at once, ``kill -9``
then resume) are marked slow (``make test-all``).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from conftest import ring_slices, tiny_overrides, write_ring_store

from tagseg.data.sampling import SeededSampler
from tagseg.errors import StoreError
from tagseg.io.atomic import OutputLock, lock_path
from tagseg.io.store import StoreWriter, read_store, verify_store
from tagseg.stages.train import train

ROOT = Path(__file__).resolve().parents[2]


def _meta(n: int) -> dict:
    return {
        "subject": [f"s{i}" for i in range(n)],
        "slice": [0] * n,
        "frame": list(range(n)),
        "n_frames": [n] * n,
        "phase": [""] * n,
        "group": ["control"] * n,
        "spacing_mm": [[1.0, 1.0]] * n,
        "source": ["t"] * n,
    }


def test_a_second_writer_of_the_same_store_is_refused_in_one_line(tmp_path):
    images, masks = ring_slices(4, 16)
    first = StoreWriter(tmp_path / "s.h5", (16, 16))
    first.append(images, masks, _meta(4))
    with pytest.raises(StoreError, match=r"s\.h5: another tagseg process is writing this slice store"):
        StoreWriter(tmp_path / "s.h5", (16, 16))
    first.close()
    assert verify_store(tmp_path / "s.h5") == 4
    # the lock is released: the next writer replaces the store, and no lock or temporary file is left
    with StoreWriter(tmp_path / "s.h5", (16, 16)) as again:
        again.append(images[:2], masks[:2], _meta(2))
    assert len(read_store(tmp_path / "s.h5")) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"]


def test_two_writers_never_share_a_temporary_file(tmp_path):
    a = StoreWriter(tmp_path / "a.h5", (8, 8))
    b = StoreWriter(tmp_path / "b.h5", (8, 8))
    assert a.tmp != b.tmp and a.tmp.name.startswith(".a.h5.") and str(os.getpid()) in a.tmp.name
    a.abort()
    b.abort()
    assert list(tmp_path.iterdir()) == []


def test_a_killed_writers_partial_file_is_removed_by_the_next_writer(tmp_path):
    stale = tmp_path / ".s.h5.12345-deadbeef.partial"
    stale.write_bytes(b"half a store")
    images, masks = ring_slices(2, 8)
    with StoreWriter(tmp_path / "s.h5", (8, 8)) as w:
        w.append(images, masks, _meta(2))
    assert not stale.exists() and (tmp_path / "s.h5").exists()


def test_a_store_failing_the_full_check_is_never_renamed_into_place(tmp_path):
    images, masks = ring_slices(3, 8)
    masks[1, 2, 2] = 9
    with pytest.raises(
        StoreError, match=r"s\.h5: /masks row 1 \(subject s1, slice 0, frame 1\) holds label 9.*nothing was written"
    ):
        with StoreWriter(tmp_path / "s.h5", (8, 8)) as w:
            w.append(images, masks, _meta(3))
    assert list(tmp_path.iterdir()) == []


def test_waiting_lock_blocks_until_released(tmp_path):
    held = OutputLock(tmp_path / "out").acquire()
    with pytest.raises(StoreError, match="another tagseg process"):
        OutputLock(tmp_path / "out").acquire()
    held.release()
    assert not lock_path(tmp_path / "out").exists()
    with OutputLock(tmp_path / "out", wait=True) as again:
        assert again.held


def test_sampler_order_and_augmentation_seeds_depend_on_seed_and_epoch_only():
    progress = {"epochs": 0}
    sampler = SeededSampler(10, seed=3, progress=progress)
    first, second = list(sampler), list(sampler)
    assert progress["epochs"] == 2 and first != second
    assert sorted(r for r, _ in first) == list(range(10))
    torch.manual_seed(123)  # the global generators play no part
    resumed = SeededSampler(10, seed=3, progress={"epochs": 1})
    assert list(resumed) == second


TINY = tiny_overrides(
    "train",
    without=("trainer.max_epochs", "datamodule.augment.enabled"),
    extra=[
        "trainer.deterministic=true",
        "seed=7",
        "datamodule.augment.enabled=true",
        "datamodule.augment.noise_prob=0.5",
        "datamodule.augment.affine_prob=0.5",
    ],
)


def _compose(run: Path, store: Path, *overrides: str):
    from hydra import compose, initialize_config_dir

    with initialize_config_dir(config_dir=str(ROOT / "tagseg" / "conf"), version_base="1.3"):
        return compose("train", overrides=[f"paths.output_dir={run}", f"data.store={store}", *TINY, *overrides])


def _weights(ckpt: Path) -> dict[str, torch.Tensor]:
    return torch.load(ckpt, map_location="cpu", weights_only=False)["state_dict"]


def _same_run(a: Path, b: Path) -> None:
    for name in ("last.ckpt", "best.ckpt"):  # the final weights and the tested ones
        wa, wb = _weights(a / "checkpoints" / name), _weights(b / "checkpoints" / name)
        assert wa.keys() == wb.keys()
        for k in wa:
            assert torch.equal(wa[k], wb[k]), f"{name}: {k}"
    sa, sb = (json.loads((r / "summary.json").read_text()) for r in (a, b))
    sa.pop("checkpoint"), sb.pop("checkpoint")
    assert sa == sb
    assert (a / "test_metrics.csv").read_text() == (b / "test_metrics.csv").read_text()
    assert [p.name for p in (b / "csv").iterdir()] == ["version_0"]  # one metrics file
    ma, mb = (pd.read_csv(r / "csv" / "version_0" / "metrics.csv") for r in (a, b))
    pd.testing.assert_frame_equal(ma, mb[ma.columns])


@pytest.mark.usefixtures("single_thread")
def test_resumed_fit_is_bit_identical_to_the_uninterrupted_one(tmp_path):
    store = write_ring_store(tmp_path / "rings.h5")
    train(_compose(tmp_path / "a", store, "trainer.max_epochs=3"))
    first = train(_compose(tmp_path / "b", store, "trainer.max_epochs=2", "test=false"))
    train(_compose(tmp_path / "b", store, "trainer.max_epochs=3", f"ckpt_path={first['last_ckpt']}"))
    _same_run(tmp_path / "a", tmp_path / "b")


# -- real processes ---------------------------------------------------------------------------------------------


def _env(root: Path) -> dict[str, str]:
    return dict(os.environ, TAGSEG_ROOT=str(root), WANDB_MODE="disabled", OMP_NUM_THREADS="1")


@pytest.mark.slow
@pytest.mark.parametrize("trial", range(3))
def test_two_prepare_processes_on_one_output_give_a_valid_store_or_a_clear_refusal(tmp_path, trial):
    out = tmp_path / "data" / "phantom.h5"
    cmd = [
        sys.executable,
        "-m",
        "tagseg.cli",
        "prepare",
        "data.n_subjects=6",
        "data.n_frames=5",
        "data.image_size=128",
        f"output={out}",
        "prepare.figure=false",
        f"seed={trial}",
    ]
    procs = [
        subprocess.Popen(
            [*cmd, f"hydra.run.dir={tmp_path / f'h{i}'}"],
            cwd=tmp_path,
            env=_env(tmp_path),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(2)
    ]
    results = [(p.wait(timeout=600), *p.communicate()) for p in procs]
    for status, stdout, stderr in results:
        assert "Traceback" not in stderr, stderr[-3000:]
        assert status in (0, 2), stderr[-2000:]
        if status == 2:
            errors = [line for line in stderr.splitlines() if line.startswith("tagseg: error:")]
            assert len(errors) == 1 and "another tagseg process is writing this slice store" in errors[0], stderr[
                -2000:
            ]
        else:
            assert f"store: {out}" in stdout
    assert any(status == 0 for status, _, _ in results)
    n = verify_store(out)  # every chunk readable, every value valid
    store = read_store(out)
    assert n == len(store) == 6 * 3 * 5
    assert all(store.meta["subject"]) and set(store.meta["split"]) <= {"train", "val", "test"}
    assert sorted(p.name for p in out.parent.iterdir()) == ["phantom.h5"]  # no lock or temporary file left


def _last_epoch(ckpt: Path) -> int:
    try:
        return int(torch.load(ckpt, map_location="cpu", weights_only=False)["epoch"])
    except Exception:  # not there yet, or being replaced
        return -1


@pytest.mark.slow
def test_kill_9_then_resume_gives_identical_weights_and_summary(tmp_path):
    store = write_ring_store(tmp_path / "rings.h5", n_subjects=8, size=48)
    args = [
        f"datamodule.stores=[{store}]",
        "datamodule.image_size=48",
        *[o for o in TINY if "image_size" not in o],
        "trainer.max_epochs=8",
        "torch_threads=1",
    ]
    base = [sys.executable, "-m", "tagseg.cli", "train", *args]
    a, b = tmp_path / "a", tmp_path / "b"
    subprocess.run(
        [*base, f"hydra.run.dir={a}"], cwd=tmp_path, env=_env(tmp_path), check=True, capture_output=True, timeout=900
    )
    proc = subprocess.Popen(
        [*base, f"hydra.run.dir={b}"],
        cwd=tmp_path,
        env=_env(tmp_path),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 600
    while _last_epoch(b / "checkpoints" / "last.ckpt") < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    assert proc.wait() == -signal.SIGKILL, "the fit ended before it could be killed"
    killed_at = _last_epoch(b / "checkpoints" / "last.ckpt")
    assert 2 <= killed_at < 7 and not (b / "summary.json").exists()
    subprocess.run(
        [*base, f"hydra.run.dir={b}", f"ckpt_path={b / 'checkpoints' / 'last.ckpt'}"],
        cwd=tmp_path,
        env=_env(tmp_path),
        check=True,
        capture_output=True,
        timeout=900,
    )
    _same_run(a, b)
