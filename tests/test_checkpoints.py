"""tagseg.io.checkpoints: one resolution rule, one weights_only=True loader, and every entry point refusing
a trojaned checkpoint (one whose unpickling would run a shell command) before the payload can run."""

from __future__ import annotations

import importlib
import json
import os
import shutil
import sys
from pathlib import Path

import pytest
import torch

from tagseg.errors import CheckpointError, ConfigError
from tagseg.io.checkpoints import (
    CYCLEGAN,
    SEGMENTATION,
    check_checkpoint,
    checkpoint_kind,
    load_checkpoint,
    resolve_checkpoint,
    run_checkpoints,
)
from tests.conftest import TINY, TINY_MODEL, compose_stage, write_ring_store

pytestmark = pytest.mark.usefixtures("single_thread")

#: the tiny train overrides of conftest, as command-line arguments
TINY_TRAIN = [*TINY["train"], *TINY_MODEL, "logger=csv"]


class Payload:
    """Unpickling this calls ``os.system(command)``: what a trojaned checkpoint carries."""

    def __init__(self, command: str) -> None:
        self.command = command

    def __reduce__(self):
        return (os.system, (self.command,))


def trojan(state: dict, marker: Path, path: Path) -> Path:
    """``state`` plus one entry whose unpickling would create ``marker``, saved at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({**state, "notes": Payload(f"touch {marker}")}, path)
    return path


def run_app(stage: str, *overrides: str, capsys) -> tuple[int, list[str]]:
    """Run ``tagseg <stage> overrides`` in this process; (exit status, the ``tagseg: error:`` lines)."""
    module = importlib.import_module(f"tagseg.apps.{stage}")
    old = sys.argv
    sys.argv = [f"tagseg-{stage}", *overrides]
    code = 0
    try:
        module.main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    finally:
        sys.argv = old
    err = capsys.readouterr().err
    return code, [line for line in err.splitlines() if line.startswith("tagseg: error:")]


@pytest.fixture(scope="module")
def seg_run(tmp_path_factory) -> Path:
    """A tiny `tagseg train` run folder (config.yaml, checkpoints/best.ckpt + last.ckpt, test_metrics.csv)."""
    from tagseg.stages.train import train

    tmp = tmp_path_factory.mktemp("segrun")
    store = write_ring_store(tmp / "rings.h5")
    cfg = compose_stage("train", [f"paths.output_dir={tmp / 'run'}", f"data.store={store}", "logger=csv"])
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        result = train(cfg)
    finally:
        torch.set_num_threads(before)
    assert result.best_ckpt is not None and result.last_ckpt is not None
    return tmp / "run"


@pytest.fixture
def marker(tmp_path) -> Path:
    path = tmp_path / "PAYLOAD_RAN"
    yield path
    assert not path.exists(), "the trojaned checkpoint's payload ran"


def test_own_checkpoints_load_with_weights_only(seg_run, trained_ckpt):
    for path in (seg_run / "checkpoints" / "best.ckpt", seg_run / "checkpoints" / "last.ckpt", trained_ckpt):
        state = load_checkpoint(path, kind=SEGMENTATION)
        assert checkpoint_kind(state) == SEGMENTATION and "state_dict" in state
    assert load_checkpoint(seg_run / "checkpoints" / "last.ckpt")["tagseg_model"] == SEGMENTATION


def test_resolution_rule(tmp_path, seg_run):
    ckpts = seg_run / "checkpoints"
    assert resolve_checkpoint(seg_run) == ckpts / "best.ckpt"  # a run folder: its best
    assert resolve_checkpoint(ckpts) == ckpts / "best.ckpt"  # the checkpoint folder itself
    assert resolve_checkpoint(seg_run, which="last") == ckpts / "last.ckpt"  # resuming
    assert resolve_checkpoint(ckpts / "last.ckpt") == ckpts / "last.ckpt"  # a file is itself
    assert resolve_checkpoint(seg_run.parent) == ckpts / "best.ckpt"  # the one run below a folder
    only_last = tmp_path / "only_last" / "checkpoints"
    only_last.mkdir(parents=True)
    shutil.copy(ckpts / "last.ckpt", only_last / "last.ckpt")
    assert resolve_checkpoint(only_last.parent) == only_last / "last.ckpt"  # no best: last
    shutil.copy(ckpts / "best.ckpt", only_last / "a.ckpt")
    shutil.copy(ckpts / "best.ckpt", only_last / "b.ckpt")
    with pytest.raises(CheckpointError, match=r"ckpt: .* holds 2 candidate checkpoints"):
        resolve_checkpoint(only_last.parent)
    other = tmp_path / "two_runs"
    for name in ("r1", "r2"):
        (other / name / "checkpoints").mkdir(parents=True)
        shutil.copy(ckpts / "best.ckpt", other / name / "checkpoints" / "best.ckpt")
    with pytest.raises(CheckpointError, match=r"checkpoints of 2 runs"):
        resolve_checkpoint(other)
    assert run_checkpoints(other) == [
        other / n / "checkpoints" / "best.ckpt" for n in ("r1", "r2")
    ]  # a sweep: one per run
    assert run_checkpoints(seg_run) == [ckpts / "best.ckpt"]
    assert run_checkpoints([seg_run, ckpts / "last.ckpt"]) == [ckpts / "best.ckpt", ckpts / "last.ckpt"]  # ckpt=[a, b]
    with pytest.raises(CheckpointError, match="an empty list"):
        run_checkpoints([])
    with pytest.raises(CheckpointError, match=r"init_from: checkpoint .*nope\.ckpt not found"):
        resolve_checkpoint(tmp_path / "nope.ckpt", key="init_from")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="no checkpoint found"):
        resolve_checkpoint(tmp_path / "empty")
    with pytest.raises(CheckpointError, match="no last.ckpt to resume from"):
        resolve_checkpoint(other / "r1", which="last")


def test_loader_refuses_unsafe_broken_and_foreign_files(tmp_path, trained_ckpt, marker, monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")  # torch's escape hatch cannot undo an explicit True
    assert issubclass(CheckpointError, ConfigError)
    state = torch.load(trained_ckpt, weights_only=True)
    evil = trojan(state, marker, tmp_path / "evil.ckpt")
    with pytest.raises(CheckpointError, match=r"^\S*evil\.ckpt: refused: unpickling it needs posix\.system"):
        load_checkpoint(evil)
    (tmp_path / "text.ckpt").write_text("not a checkpoint\n")
    with pytest.raises(CheckpointError, match=r"text\.ckpt: not a readable PyTorch checkpoint"):
        load_checkpoint(tmp_path / "text.ckpt")
    data = trained_ckpt.read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.ckpt: not a readable PyTorch checkpoint .*truncated"):
        load_checkpoint(tmp_path / "cut.ckpt")
    torch.save([1, 2], tmp_path / "list.ckpt")
    with pytest.raises(CheckpointError, match=r"list\.ckpt: not a checkpoint \(holds a list"):
        load_checkpoint(tmp_path / "list.ckpt")
    gan = tmp_path / "gan.ckpt"
    torch.save({"tagseg_model": CYCLEGAN, "state_dict": {"g_ab.w": torch.zeros(1)}, "hyper_parameters": {}}, gan)
    with pytest.raises(
        CheckpointError,
        match=r"gan\.ckpt: a cyclegan checkpoint; expected a segmentation checkpoint written by `tagseg train`",
    ):
        load_checkpoint(gan, kind=SEGMENTATION)
    with pytest.raises(
        CheckpointError,
        match=r"best\.ckpt: a segmentation checkpoint; expected a cyclegan checkpoint written by `tagseg cyclegan`",
    ):
        check_checkpoint(trained_ckpt, kind=CYCLEGAN)
    assert check_checkpoint(gan, kind=CYCLEGAN) == gan


# -- every entry point, through its app: exit 2, one line naming the file, the payload never runs --------


def assert_refused(code: int, lines: list[str], evil: Path) -> None:
    assert code == 2
    assert len(lines) == 1, lines
    assert lines[0].startswith(f"tagseg: error: {evil}: refused: unpickling it needs posix.system"), lines[0]


def test_predict_refuses_a_trojaned_checkpoint(tmp_path, trained_ckpt, ring_store, marker, capsys):
    evil = trojan(torch.load(trained_ckpt, weights_only=True), marker, tmp_path / "evil.ckpt")
    code, lines = run_app(
        "predict",
        f"ckpt={evil}",
        f"input={ring_store}",
        f"output={tmp_path / 'out'}",
        "progress=false",
        f"hydra.run.dir={tmp_path / 'h'}",
        capsys=capsys,
    )
    assert_refused(code, lines, evil)
    assert not (tmp_path / "out" / "predictions.csv").exists()


def test_evaluate_refuses_a_trojaned_checkpoint(tmp_path, trained_ckpt, ring_store, marker, capsys):
    evil = trojan(torch.load(trained_ckpt, weights_only=True), marker, tmp_path / "run" / "checkpoints" / "best.ckpt")
    code, lines = run_app(
        "evaluate",
        f"ckpt={evil.parents[1]}",
        f"data.store={ring_store}",
        f"paths.output_dir={tmp_path / 'ev'}",
        f"hydra.run.dir={tmp_path / 'h'}",
        capsys=capsys,
    )  # a run folder resolves to the same file
    assert_refused(code, lines, evil)


def test_train_init_from_refuses_a_trojaned_checkpoint(tmp_path, trained_ckpt, ring_store, marker, capsys):
    evil = trojan(torch.load(trained_ckpt, weights_only=True), marker, tmp_path / "evil.ckpt")
    code, lines = run_app(
        "train",
        f"init_from={evil}",
        f"data.store={ring_store}",
        f"paths.output_dir={tmp_path / 'run'}",
        *TINY_TRAIN,
        f"hydra.run.dir={tmp_path / 'h'}",
        capsys=capsys,
    )
    assert_refused(code, lines, evil)
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_train_resume_refuses_a_trojaned_last_ckpt(tmp_path, seg_run, ring_store, marker, capsys):
    evil = trojan(
        torch.load(seg_run / "checkpoints" / "last.ckpt", weights_only=True),
        marker,
        tmp_path / "old" / "checkpoints" / "last.ckpt",
    )
    code, lines = run_app(
        "train",
        f"ckpt_path={evil}",
        f"data.store={ring_store}",
        f"paths.output_dir={tmp_path / 'run'}",
        *TINY_TRAIN,
        f"hydra.run.dir={tmp_path / 'h'}",
        capsys=capsys,
    )
    assert_refused(code, lines, evil)


def test_resume_never_loads_the_best_file_named_in_last_ckpt_unchecked(tmp_path, seg_run, ring_store, marker, capsys):
    """A clean last.ckpt whose ModelCheckpoint state names a trojaned best checkpoint: the resumed
    fit runs, and the best file is refused before it is tested."""
    run = tmp_path / "run"
    ckpts = run / "checkpoints"
    ckpts.mkdir(parents=True)
    clean = torch.load(seg_run / "checkpoints" / "last.ckpt", weights_only=True)
    evil = trojan(torch.load(seg_run / "checkpoints" / "best.ckpt", weights_only=True), marker, ckpts / "best.ckpt")
    key = next(k for k in clean["callbacks"] if k.startswith("ModelCheckpoint"))
    clean["callbacks"][key].update(
        dirpath=str(ckpts),
        best_model_path=str(evil),
        best_model_score=torch.tensor(1.0),
        best_k_models={str(evil): torch.tensor(1.0)},
        kth_best_model_path=str(evil),
        kth_value=torch.tensor(1.0),
        last_model_path=str(ckpts / "last.ckpt"),
    )
    torch.save(clean, ckpts / "last.ckpt")
    code, lines = run_app(
        "train",
        f"ckpt_path={run}",
        f"data.store={ring_store}",
        f"paths.output_dir={run}",
        *TINY_TRAIN,
        "trainer.max_epochs=2",
        f"hydra.run.dir={tmp_path / 'h'}",
        capsys=capsys,
    )
    assert_refused(code, lines, evil)
    steps = clean["global_step"]
    assert load_checkpoint(ckpts / "last.ckpt")["global_step"] == 2 * steps  # the resumed fit ran its epoch first
    assert not (run / "summary.json").exists()


def test_report_examples_refuse_a_trojaned_checkpoint(tmp_path, seg_run, marker, capsys):
    run = tmp_path / "run"
    shutil.copytree(seg_run, run, ignore=shutil.ignore_patterns("*.ckpt"))
    evil = trojan(
        torch.load(seg_run / "checkpoints" / "best.ckpt", weights_only=True), marker, run / "checkpoints" / "best.ckpt"
    )
    code, lines = run_app("report", f"path={run}", f"hydra.run.dir={tmp_path / 'h'}", capsys=capsys)
    assert_refused(code, lines, evil)


def test_translate_cyclegan_refuses_a_trojaned_checkpoint(tmp_path, ring_store, marker, capsys):
    evil = trojan(
        {"tagseg_model": CYCLEGAN, "state_dict": {"g_ab.w": torch.zeros(1)}, "hyper_parameters": {}},
        marker,
        tmp_path / "gan" / "checkpoints" / "last.ckpt",
    )
    code, lines = run_app(
        "translate",
        "method=cyclegan",
        f"ckpt={evil}",
        f"input={ring_store}",
        f"output={tmp_path / 'o.h5'}",
        f"hydra.run.dir={tmp_path / 'h'}",
        capsys=capsys,
    )
    assert_refused(code, lines, evil)
    assert not (tmp_path / "o.h5").exists()


def test_cyclegan_resume_refuses_a_trojaned_checkpoint(tmp_path, marker, capsys):
    evil = trojan(
        {"tagseg_model": CYCLEGAN, "state_dict": {}, "hyper_parameters": {}},
        marker,
        tmp_path / "gan" / "checkpoints" / "last.ckpt",
    )
    code, lines = run_app(
        "cyclegan",
        f"ckpt_path={evil}",
        f"paths.output_dir={tmp_path / 'run'}",
        f"data_a.store={tmp_path / 'none_a.h5'}",
        f"data_b.store={tmp_path / 'none_b.h5'}",
        f"hydra.run.dir={tmp_path / 'h'}",
        capsys=capsys,
    )
    assert_refused(code, lines, evil)
    assert not (tmp_path / "none_a.h5").exists()  # refused before any preparation


def test_model_types_are_not_mixed_up(tmp_path, trained_ckpt, ring_store, capsys):
    gan = tmp_path / "gan.ckpt"
    torch.save({"tagseg_model": CYCLEGAN, "state_dict": {"g_ab.w": torch.zeros(1)}, "hyper_parameters": {}}, gan)
    code, lines = run_app(
        "predict",
        f"ckpt={gan}",
        f"input={ring_store}",
        f"output={tmp_path / 'out'}",
        "progress=false",
        f"hydra.run.dir={tmp_path / 'h'}",
        capsys=capsys,
    )
    assert code == 2 and lines == [
        f"tagseg: error: {gan}: a cyclegan checkpoint; expected a segmentation checkpoint written by `tagseg train`"
    ]
    code, lines = run_app(
        "translate",
        "method=cyclegan",
        f"ckpt={trained_ckpt}",
        f"input={ring_store}",
        f"output={tmp_path / 'o.h5'}",
        f"hydra.run.dir={tmp_path / 'h2'}",
        capsys=capsys,
    )
    assert code == 2 and lines == [
        f"tagseg: error: {trained_ckpt}: a segmentation checkpoint; expected a cyclegan "
        "checkpoint written by `tagseg cyclegan`"
    ]
    assert json.loads(json.dumps(lines))  # plain one-line strings


def _cell(folder: Path, **record) -> Path:
    folder.mkdir(parents=True)
    (folder / "strategy.json").write_text(json.dumps(record))
    return folder


def test_a_strategy_cell_means_the_model_it_names_in_the_stage_cache(tmp_path, seg_run, caplog):
    best = seg_run / "checkpoints" / "best.ckpt"
    cell = _cell(tmp_path / "sweep" / "0", status="ok", run_dir=str(seg_run))
    assert resolve_checkpoint(cell) == best
    other = tmp_path / "cache" / "finetune" / "k1"
    shutil.copytree(seg_run, other)
    _cell(tmp_path / "sweep" / "1", status="ok", run_dir=str(other))
    failed = _cell(tmp_path / "sweep" / "2", status="failed", run_dir=None)
    # a strategy sweep: each finished cell's model; the failed cell is left out, with a warning naming it
    assert run_checkpoints(tmp_path / "sweep") == [best, other / "checkpoints" / "best.ckpt"]
    assert "sweep/2/strategy.json: the cell did not finish" in caplog.text
    with pytest.raises(CheckpointError, match=r"2/strategy.json: the cell did not finish \(status 'failed'\)"):
        resolve_checkpoint(failed)
    gone = _cell(tmp_path / "gone", status="ok", run_dir=str(tmp_path / "cleared"))
    with pytest.raises(CheckpointError, match=r"gone/strategy.json names the model folder .*cleared.*not there"):
        resolve_checkpoint(gone)
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "strategy.json").write_text("{not json")
    with pytest.raises(CheckpointError, match=r"broken/strategy.json: unreadable strategy record"):
        resolve_checkpoint(broken)
