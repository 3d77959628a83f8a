"""``tagseg strain`` on an input carrying the true motion: strain_truth.csv, its numbers, and nothing without it."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from tagseg.data.phantom.source import PhantomSource
from tagseg.data.prepare import prepare_store
from tagseg.errors import DataError
from tagseg.io.store import read_store, write_store
from tagseg.strain.harp import HarpTracker
from tagseg.strain.mesh import seed_mesh
from tagseg.strain.truth import TRUTH_FIELDS, TRUTH_FILE, store_true_strain, true_strain

N_FRAMES = 6


@pytest.fixture(scope="module")
def phantom_store(tmp_path_factory) -> Path:
    """One subject, one slice, 6 frames of the tagged phantom at 64 px (1.56 mm), noise-free."""
    path = tmp_path_factory.mktemp("phantom") / "phantom.h5"
    source = PhantomSource(
        image_size=64, fov_mm=100.0, n_subjects=1, n_slices=1, n_frames=N_FRAMES, noise=False,
        anatomy={"centre_jitter_mm": 0.0},
    )  # fmt: skip
    prepare_store(source, path, split_ratios=(1.0, 0.0, 0.0))
    return path


def _rows(path: Path) -> list[dict[str, str]]:
    with path.open() as f:
        return list(csv.DictReader(f))


def _run(store: Path, out: Path):
    from tagseg.stages.strain import strain

    return strain(store, out, HarpTracker(), tracker_name="harp", level="mid", progress=False)


def test_strain_of_a_phantom_store_is_compared_with_the_truth_of_its_mesh(phantom_store, tmp_path):
    report = _run(phantom_store, tmp_path / "out")
    assert report.exit_status() == 0
    rows = _rows(tmp_path / "out" / TRUTH_FILE)
    assert list(rows[0]) == TRUTH_FIELDS
    true = np.array([float(r["strain_true"]) for r in rows])
    measured = np.array([float(r["strain_measured"]) for r in rows])
    np.testing.assert_allclose([float(r["error"]) for r in rows], measured - true, atol=2e-6)
    # measured: the strain_curves.csv numbers, row for row
    curves = {
        (r["component"], r["region"], r["frame"]): float(r["strain"])
        for r in _rows(tmp_path / "out" / "strain_curves.csv")
    }
    assert [curves[(r["component"], r["region"], r["frame"])] for r in rows] == measured.tolist()
    # true: tagseg.strain.truth on the same mesh (seeded in the store's ED mask) and the same displacement
    store = read_store(phantom_store)
    m = seed_mesh(store.masks[0])
    truth = true_strain(store.extras["displacement"], m, tuple(store.meta["spacing_mm"][0]), "mid")
    for r in rows:
        expected = truth.component(r["component"])[r["region"]][int(r["frame"])]
        assert abs(float(r["strain_true"]) - expected) < 1e-6
    (lazy,) = store_true_strain(phantom_store, level="mid")  # the store's truth computed on demand: the same
    np.testing.assert_array_equal(lazy.curves.ecc["global"], truth.ecc["global"])
    assert {r["region"] for r in rows} == {"global", "7", "8", "9", "10", "11", "12"}
    assert len(rows) == 2 * 7 * N_FRAMES and truth.ecc["global"].min() < -0.1  # the heart contracts
    (t,) = report.truths
    assert t.es_frame == int(np.flatnonzero(store.meta["phase"] == "ES")[0])
    assert 0.0 < t.rmse_mm < 1.5 and abs(t.es_error("ecc")) < 0.05
    assert report.truth_table().startswith("truth: tag-000 slice 0 (mid): ES (frame ")
    assert "displacement RMSE" in report.truth_table()
    assert (tmp_path / "out" / "plots" / f"{report.slices[0].subject}_s0_curves.png").is_file()


def test_no_truth_file_without_displacement_and_a_stale_one_is_removed(phantom_store, tmp_path):
    store = read_store(phantom_store)
    plain = write_store(tmp_path / "plain.h5", store.images, store.masks, store.meta, name="plain")
    out = tmp_path / "out"
    assert _run(phantom_store, out).truths
    assert (out / TRUTH_FILE).is_file()
    report = _run(plain, out)  # the same folder, an input without the true motion
    assert report.exit_status() == 0 and report.truths == [] and report.truth_table() == ""
    assert not (out / TRUTH_FILE).exists()
    assert TRUTH_FILE not in {p.name for p in report.files}


def test_a_malformed_displacement_warns_and_keeps_the_measurement(phantom_store, tmp_path, capsys):
    store = read_store(phantom_store)
    bad = write_store(
        tmp_path / "bad.h5", store.images, store.masks, store.meta,
        extras={"displacement": store.extras["displacement"][:, :1]}, name="bad",
    )  # fmt: skip
    report = _run(bad, tmp_path / "out")
    assert report.exit_status() == 0 and len(report.slices) == 1 and report.truths == []
    err = capsys.readouterr().err
    assert "tagseg: warning: " in err and "bad.h5: /displacement rows of shape (1, 64, 64); expected (2, 64, 64)" in err
    assert not (tmp_path / "out" / TRUTH_FILE).exists()


def test_the_truth_needs_the_first_frame_to_be_ed(phantom_store, tmp_path):
    store = read_store(phantom_store)
    later = np.flatnonzero(store.meta["frame"] > 0)
    shifted = write_store(tmp_path / "late.h5", *(_subset(store, later)), name="late")
    with pytest.raises(
        DataError, match=r"late.h5 \(subject tag-000, slice 0\): the true displacement of the first frame is"
    ):
        store_true_strain(shifted)
    plain = write_store(tmp_path / "plain.h5", store.images, store.masks, store.meta, name="plain")
    with pytest.raises(DataError, match=r"plain.h5: no /displacement; the store carries no true motion"):
        store_true_strain(plain)


def _subset(store, rows):
    sub = store.subset(rows)
    return sub.images, sub.masks, sub.meta, sub.extras


def test_strain_cli_prints_the_truth_line_and_names_the_truth_file(phantom_store, tmp_path):
    from conftest import run_tagseg

    out = tmp_path / "out"
    proc = run_tagseg(
        ["strain", f"input={phantom_store}", f"output={out}", "progress=false"], None, root=tmp_path, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.startswith("truth: tag-000 slice 0 (")]
    assert len(lines) == 1 and "global Ecc error" in lines[0] and lines[0].endswith(" mm")
    assert "strain_truth.csv)" in proc.stdout and (out / TRUTH_FILE).is_file()
