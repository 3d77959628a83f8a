"""The bad inputs of the reliability corpus, built at test time (nothing binary is committed).

``bad`` (session-scoped) is a folder holding every input the cases refer to: slice stores broken
in one way each, checkpoints (truncated, text, a CycleGAN's), raw datasets with one defect each,
predict inputs, and a run folder for ``tagseg report``. ``run_tagseg`` runs a command in-process
(``tagseg.cli.main`` with its argv, ``SystemExit`` caught) and returns (status, stdout, stderr).
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np
import pytest
from conftest import write_ring_store


@dataclass
class Result:
    status: int | str
    out: str
    err: str


def _copy(src: Path, dst: Path) -> Path:
    shutil.copy(src, dst)
    return dst


def _edit(path: Path, fn: Callable[[h5py.File], None]) -> Path:
    with h5py.File(path, "a") as f:
        fn(f)
    return path


def _replace(f: h5py.File, key: str, data: np.ndarray) -> None:
    del f[key]
    f.create_dataset(key, data=data, chunks=(1, *data.shape[1:]) if data.ndim == 3 else None)


def _damage_chunk(path: Path, key: str = "images", row: int = 7) -> Path:
    """Overwrite the compressed bytes of one chunk: reading it fails in the HDF5 filter."""
    with h5py.File(path, "r") as f:
        info = f[key].id.get_chunk_info_by_coord((row, 0, 0))
        offset, size = info.byte_offset, info.size
    with open(path, "r+b") as fh:
        fh.seek(offset + size // 4)
        fh.write(b"\xff\x00" * (size // 4))
    return path


def build_stores(d: Path) -> dict[str, Path]:
    good = write_ring_store(d / "good.h5")
    s: dict[str, Path] = {"good": good}
    s["nan"] = _edit(_copy(good, d / "nan.h5"), lambda f: f["images"].__setitem__((5, 3, 3), np.nan))
    s["inf"] = _edit(_copy(good, d / "inf.h5"), lambda f: f["images"].__setitem__((9, 1, 2), np.inf))
    s["label7"] = _edit(_copy(good, d / "label7.h5"), lambda f: f["masks"].__setitem__((3, 10, 10), 7))

    def uint16(f: h5py.File) -> None:
        _replace(f, "images", (f["images"][...] * 4000).astype(np.uint16))

    s["uint16"] = _edit(_copy(good, d / "uint16.h5"), uint16)
    s["float64_masks"] = _edit(
        _copy(good, d / "float64_masks.h5"), lambda f: _replace(f, "masks", f["masks"][...].astype(np.float64))
    )
    s["above_one"] = _edit(_copy(good, d / "above_one.h5"), lambda f: _replace(f, "images", f["images"][...] * 3.0))
    s["negative"] = _edit(_copy(good, d / "negative.h5"), lambda f: f["images"].__setitem__((2, 0, 0), -0.5))

    def empty_split(split: str) -> Callable[[h5py.File], None]:
        def fn(f: h5py.File) -> None:
            rows = np.flatnonzero(f["meta/split"].asstr()[...] == split)
            masks = f["masks"][...]
            masks[rows] = 0
            f["masks"][...] = masks

        return fn

    s["empty_train"] = _edit(_copy(good, d / "empty_train.h5"), empty_split("train"))
    s["empty_val"] = _edit(_copy(good, d / "empty_val.h5"), empty_split("val"))
    s["empty_test"] = _edit(_copy(good, d / "empty_test.h5"), empty_split("test"))
    s["empty_all"] = _edit(_copy(good, d / "empty_all.h5"), lambda f: f["masks"].__setitem__(Ellipsis, 0))

    def bad_split(f: h5py.File) -> None:
        split = f["meta/split"].asstr()[...].astype(object)
        split[split == "val"] = "validation"
        del f["meta/split"]
        f.create_dataset("meta/split", data=split, dtype=h5py.string_dtype())

    s["bad_split"] = _edit(_copy(good, d / "bad_split.h5"), bad_split)

    def short_subject(f: h5py.File) -> None:
        subject = f["meta/subject"].asstr()[...][:-3].astype(object)
        del f["meta/subject"]
        f.create_dataset("meta/subject", data=subject, dtype=h5py.string_dtype())

    s["short_meta"] = _edit(_copy(good, d / "short_meta.h5"), short_subject)
    s["unreadable"] = _damage_chunk(_copy(good, d / "unreadable.h5"))
    s["no_masks"] = _edit(_copy(good, d / "no_masks.h5"), lambda f: f.__delitem__("masks"))
    s["rgb"] = _edit(
        _copy(good, d / "rgb.h5"), lambda f: _replace(f, "images", np.repeat(f["images"][...][..., None], 3, -1))
    )
    (d / "text.h5").write_text("subject,slice\ns0,0\n")
    s["text"] = d / "text.h5"
    s["missing"] = d / "missing.h5"
    return s


def build_checkpoints(d: Path, trained: Path, cyclegan: Path) -> dict[str, Path]:
    c = {"good": trained, "cyclegan": cyclegan}
    data = trained.read_bytes()
    (d / "truncated.ckpt").write_bytes(data[: len(data) // 3])
    c["truncated"] = d / "truncated.ckpt"
    (d / "text.ckpt").write_text("this is not a checkpoint\n")
    c["text"] = d / "text.ckpt"
    c["missing"] = d / "missing.ckpt"
    return c


def build_cyclegan_ckpt(d: Path) -> Path:
    from cyclegan_fixtures import train_tiny_cyclegan

    generator = {"ngf": 4, "n_blocks": 1, "n_downsampling": 1}
    ckpt, _ = train_tiny_cyclegan(d, "cyclegan.ckpt", generator, {"ndf": 4, "n_layers": 1}, prefix="cg_")
    return ckpt


def build_raw(d: Path) -> dict[str, Path]:
    import raw_fixtures as rf

    raw: dict[str, Path] = {}
    # ACDC: ED == ES in one patient's Info.cfg
    acdc = d / "acdc_ed_es"
    rf.make_acdc(acdc)
    info = next((acdc / "training").glob("patient*/Info.cfg"))
    text = info.read_text()
    ed = re.search(r"^ED: (\d+)$", text, re.M).group(1)
    info.write_text(re.sub(r"^ES: \d+$", f"ES: {ed}", text, flags=re.M))
    raw["acdc_ed_es"] = acdc
    # ACDC: one label file that is not NIfTI
    acdc2 = d / "acdc_bad_nifti"
    rf.make_acdc(acdc2)
    gt = sorted((acdc2 / "training").glob("patient*/*_gt.nii.gz"))[0]
    gt.write_bytes(b"not a nifti file")
    raw["acdc_bad_nifti"] = acdc2
    raw["acdc_bad_nifti_file"] = gt
    # SCD: one frame of a series with another matrix size
    scd = d / "scd_matrix"
    rf.make_scd(scd)
    series = sorted((scd / "challenge_training" / "SC-HF-I-1").glob("IM-0004-*.dcm"))
    rf.write_dicom(series[20], np.zeros((20, 18), np.int16), instance=21, n_phases=20)
    raw["scd_matrix"] = scd
    raw["scd_matrix_file"] = series[20]
    raw["missing_root"] = d / "no_such_dataset"
    return raw


def build_predict_inputs(d: Path, stores: dict[str, Path]) -> dict[str, Path]:
    from raw_fixtures import write_nifti

    p: dict[str, Path] = {}
    p["missing"] = d / "no_scans_here"
    (d / "empty_folder").mkdir()
    p["empty_folder"] = d / "empty_folder"
    frames = np.random.default_rng(0).random((16, 16, 3)).astype(np.float32)
    frames[4, 4, 1] = np.nan
    p["nan_nifti"] = write_nifti(d / "nan_scan.nii.gz", frames, (1.4, 1.4, 1.0))
    p["bad_nifti"] = d / "broken_scan.nii.gz"
    p["bad_nifti"].write_bytes(b"\x1f\x8b not really gzip")
    p["one_d_nifti"] = write_nifti(d / "line_scan.nii.gz", np.zeros((16,), np.float32))
    (d / "notes.txt").write_text("a scan?\n")
    p["text_file"] = d / "notes.txt"
    p["nan_store"] = stores["nan"]
    p["unreadable_store"] = stores["unreadable"]
    return p


def build_report_run(d: Path, trained: Path, nan_store: Path, good_store: Path, name: str = "report_run") -> Path:
    """A run folder (config + test table + checkpoint) whose store now holds a NaN image."""
    run = d / name
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(trained, run / "checkpoints" / "best.ckpt")
    (run / "config.yaml").write_text(f"data:\n  store: {nan_store}\ndatamodule:\n  stores: [{nan_store}]\n")
    rows = ["subject,slice,frame,group,dice,hd95_mm,index"] + [f"s0,0,{i},control,0.8,3.0,{i}" for i in range(4)]
    (run / "test_metrics.csv").write_text("\n".join(rows) + "\n")
    (run / "summary.json").write_text('{"dice_mean": 0.8, "hd95_mm_mean": 3.0, "n_images": 4}')
    return run


@dataclass
class BadInputs:
    root: Path
    stores: dict[str, Path]
    ckpts: dict[str, Path]
    raw: dict[str, Path]
    predict: dict[str, Path]
    report_run: Path
    #: a run folder whose checkpoint is truncated (its store is good)
    report_run_bad_ckpt: Path


@pytest.fixture(scope="session")
def bad(tmp_path_factory, trained_ckpt) -> BadInputs:
    d = tmp_path_factory.mktemp("bad_inputs")
    stores = build_stores(d)
    cyclegan = build_cyclegan_ckpt(d)
    return BadInputs(
        root=d,
        stores=stores,
        ckpts=build_checkpoints(d, trained_ckpt, cyclegan),
        raw=build_raw(d),
        predict=build_predict_inputs(d, stores),
        report_run=build_report_run(d, trained_ckpt, stores["nan"], stores["good"]),
        report_run_bad_ckpt=build_report_run(
            d, d / "truncated.ckpt", stores["good"], stores["good"], name="report_run_bad_ckpt"
        ),
    )


def _logging_state() -> dict:
    loggers = [
        logging.getLogger(),
        *(lg for lg in logging.root.manager.loggerDict.values() if isinstance(lg, logging.Logger)),
    ]
    return {lg: (list(lg.handlers), lg.level, lg.propagate, lg.disabled) for lg in loggers}


def _restore_logging(state: dict) -> None:
    for lg in [logging.getLogger(), *logging.root.manager.loggerDict.values()]:
        if not isinstance(lg, logging.Logger):
            continue
        handlers, level, propagate, disabled = state.get(lg, ([], logging.NOTSET, True, False))
        for h in lg.handlers[:]:
            if h not in handlers:
                lg.removeHandler(h)
                h.close()
        lg.handlers[:] = handlers
        lg.setLevel(level)
        lg.propagate, lg.disabled = propagate, disabled


@pytest.fixture
def run_tagseg(tmp_path, monkeypatch, capsys) -> Callable[[list[str]], Result]:
    """Run ``tagseg <argv>`` in this process (its Hydra output under ``tmp_path``)."""
    monkeypatch.setenv("TAGSEG_ROOT", str(tmp_path))
    monkeypatch.setenv("WANDB_MODE", "disabled")
    monkeypatch.chdir(tmp_path)

    def run(argv: list[str]) -> Result:
        from hydra.core.global_hydra import GlobalHydra

        from tagseg.cli import main

        GlobalHydra.instance().clear()
        logging_state = _logging_state()
        argv = [*argv, f"hydra.run.dir={tmp_path / 'hydra'}"]
        capsys.readouterr()
        old = list(sys.argv)
        try:
            main(argv)
            status: int | str = 0
        except SystemExit as exc:
            status = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except Exception as exc:  # a traceback: reported by the case, not raised into pytest
            import traceback

            status = "traceback"
            sys.stderr.write("Traceback (most recent call last):\n" + "".join(traceback.format_exception(exc)))
        finally:
            sys.argv = old
            GlobalHydra.instance().clear()
            _restore_logging(logging_state)  # Hydra's job logging would echo later tests' errors
        captured = capsys.readouterr()
        return Result(status, captured.out, captured.err)

    return run


_TABLE: list = []


@pytest.fixture
def case_table() -> list:
    """Rows (case, argv, message) of the cases run; written as Markdown to ``$TAGSEG_CASE_TABLE`` at the end."""
    return _TABLE


def pytest_sessionfinish(session, exitstatus):
    target = os.environ.get("TAGSEG_CASE_TABLE")
    if not target or not _TABLE:
        return
    lines = ["| case | input | command | exit: message |", "|---|---|---|---|"]
    for case, argv, message in sorted(_TABLE, key=lambda r: r[0].id):
        command = " ".join(["tagseg", *argv])
        lines.append(f"| {case.id} | {case.input} | `{command}` | {message.replace('|', '/')} |")
    Path(target).write_text("\n".join(lines) + "\n")
