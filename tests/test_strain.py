"""Strain: HARP tracking of a known affine motion, strain of known motions, AHA segments, the schema, the errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_tagseg

from tagseg.errors import DataError
from tagseg.io.store import write_store
from tagseg.strain.aha import aha_segments, level_of
from tagseg.strain.analysis import analyse_slice, stack_frames
from tagseg.strain.harp import HarpTracker, find_tag_peaks
from tagseg.strain.mesh import seed_mesh
from tagseg.strain.schema import SCHEMA_VERSION, read_strain, write_strain
from tagseg.strain.tensors import strain_curves
from tagseg.strain.truth import true_positions

SIZE = 96
CENTRE = np.array([48.0, 48.0])


def tag_grid(ed_rc: np.ndarray, spacing_px: float, angle_deg: float) -> np.ndarray:
    """A two-direction cosine tag grid evaluated at ED positions (2, H, W) (tags carried by the tissue)."""
    a = np.radians(angle_deg)
    p1 = ed_rc[0] * np.sin(a) + ed_rc[1] * np.cos(a)
    p2 = ed_rc[0] * np.cos(a) - ed_rc[1] * np.sin(a)
    return 0.25 * (1 + np.cos(2 * np.pi * p1 / spacing_px)) * (1 + np.cos(2 * np.pi * p2 / spacing_px))


def affine_series(
    spacing_px: float, angle_deg: float, n_frames: int = 8, noise: float = 0.05, seed: int = 0
) -> tuple[np.ndarray, list[np.ndarray], list[np.ndarray]]:
    """Frames of a tag grid deformed by an affine map growing linearly from identity (ED) to ``A, b``."""
    rng = np.random.default_rng(seed)
    a_end, b_end = np.array([[0.9, 0.05], [-0.04, 1.08]]), np.array([1.5, -2.0])
    rows, cols = np.mgrid[:SIZE, :SIZE].astype(float)
    frames, mats, shifts = [], [], []
    for s in np.linspace(0.0, 1.0, n_frames):
        mat, shift = np.eye(2) + s * (a_end - np.eye(2)), s * b_end
        rel = np.stack([rows - CENTRE[0] - shift[0], cols - CENTRE[1] - shift[1]])
        ed = np.einsum("ij,jhw->ihw", np.linalg.inv(mat), rel) + CENTRE[:, None, None]
        frames.append(tag_grid(ed, spacing_px, angle_deg) + noise * rng.normal(size=(SIZE, SIZE)))
        mats.append(mat)
        shifts.append(shift)
    return np.stack(frames), mats, shifts


@pytest.mark.parametrize(("spacing_px", "angle_deg"), [(6.0, 45.0), (8.0, 17.0), (5.0, 0.0), (10.0, 70.0)])
def test_harp_recovers_an_affine_deformation_at_any_grid_angle_and_spacing(spacing_px, angle_deg):
    """Tolerance: every point within 0.25 px of the true affine position in every frame (SNR ~10)."""
    frames, mats, shifts = affine_series(spacing_px, angle_deg)
    points = CENTRE + np.random.default_rng(1).uniform(-20, 20, (100, 2))
    tracked = HarpTracker().track(frames, points, (1.0, 1.0))
    truth = np.stack([(points - CENTRE) @ m.T + CENTRE + b for m, b in zip(mats, shifts)])
    assert tracked.shape == (len(frames), 100, 2)
    np.testing.assert_array_equal(tracked[0], points)
    assert np.linalg.norm(tracked - truth, axis=2).max() < 0.25
    peaks = find_tag_peaks(frames[0])
    np.testing.assert_allclose(peaks.spacing_px, spacing_px, rtol=0.01)
    for expected in (angle_deg, angle_deg + 90.0):  # tag directions, modulo 180 degrees
        gap = np.abs((peaks.angle_deg - expected + 90.0) % 180.0 - 90.0)
        assert gap.min() < 0.5


def ring_labels(size: int = SIZE, r_in: float = 16.0, r_out: float = 26.0, rv_side: int = -1) -> np.ndarray:
    """Labels of a circular LV ring (2 MYO, 3 LV) with a crescent RV (1) on the left (-1) or right (+1)."""
    rows, cols = np.mgrid[:size, :size].astype(float)
    r = np.hypot(rows - CENTRE[0], cols - CENTRE[1])
    labels = np.zeros((size, size), np.uint8)
    labels[r < r_out] = 2
    labels[r < r_in] = 3
    rv = (np.hypot(rows - CENTRE[0], cols - (CENTRE[1] + rv_side * 30.0)) < 16.0) & (r >= r_out)
    labels[rv] = 1
    return labels


def test_uniform_contraction_gives_its_scale_as_ecc_and_err_everywhere():
    """Tissue scaled by ``a`` about any point: every element's length scales by ``a``, so Ecc = Err = a - 1."""
    mesh = seed_mesh(ring_labels())
    scales = np.array([1.0, 0.95, 0.85, 0.8])
    pivot = np.array([50.0, 47.0])
    positions = np.stack([pivot + a * (mesh.points_rc - pivot) for a in scales]) * 1.4
    curves = strain_curves(positions, mesh, "mid")
    for comp in (curves.ecc, curves.err):
        assert set(comp) == {"global", "7", "8", "9", "10", "11", "12"}
        for curve in comp.values():
            np.testing.assert_allclose(curve, scales - 1.0, atol=1e-12)


def test_rigid_motion_gives_no_strain_and_radial_thickening_gives_known_err():
    mesh = seed_mesh(ring_labels())
    theta = np.radians(12.0)
    rot = np.array([[np.cos(theta), -np.sin(theta)], [np.sin(theta), np.cos(theta)]])
    moved = (mesh.points_rc - CENTRE) @ rot.T + CENTRE + [2.0, -3.0]
    curves = strain_curves(np.stack([mesh.points_rc, moved]), mesh, "basal")
    for comp in (curves.ecc, curves.err):
        for curve in comp.values():
            np.testing.assert_allclose(curve, 0.0, atol=1e-12)
    # each layer keeps its radius fraction but the wall thickens: r' = r_mid + k (r - r_mid), k = 1.3
    rel = mesh.points_rc - np.asarray(mesh.centre_rc)
    radius = np.linalg.norm(rel, axis=1, keepdims=True)
    mid = radius.reshape(mesh.n_layers, mesh.n_sectors)[1].mean()
    thick = np.asarray(mesh.centre_rc) + rel / radius * (mid + 1.3 * (radius - mid))
    curves = strain_curves(np.stack([mesh.points_rc, thick]), mesh, "basal")
    np.testing.assert_allclose(curves.err["global"][1], 0.3, atol=1e-9)


def test_phantom_motion_gives_its_mid_wall_ecc():
    """The phantom's analytic motion shortens its mid-wall by exactly ``ecc * s`` (any shape, with twist)."""
    from tagseg.data.phantom.motion import SliceMotion, displacement_mm
    from tagseg.data.phantom.source import PhantomSource
    from tagseg.strain.mesh import MyocardialMesh
    from tagseg.strain.tensors import element_lengths

    anatomy = PhantomSource(image_size=128, fov_mm=179.2, n_subjects=1, n_slices=1).subject(0, 0)["slices"][0]
    theta = np.linspace(0.0, 2 * np.pi, 96, endpoint=False)
    endo, epi = anatomy.radii(np.cos(theta), np.sin(theta))
    fractions = np.array([0.2, 0.5, 0.8])
    radius = endo[None] + fractions[:, None] * (epi - endo)[None]
    cy, cx = anatomy.lv_centre_mm
    points = np.stack([(cy + radius * np.sin(theta)).ravel(), (cx + radius * np.cos(theta)).ravel()], axis=1)
    mesh = MyocardialMesh(points, fractions, 96, (cy, cx), 0.0, 1, "angle")
    motion = SliceMotion(ecc=-0.2, area_gain=0.08, twist_rad=0.1, rv_pull_mm=6.0)
    s = np.array([0.0, 0.5, 1.0])[:, None]
    u_row, u_col = displacement_mm(anatomy, motion, s, points[:, 0], points[:, 1])
    positions = points[None] + np.stack([u_row, u_col], axis=-1)
    circ, _ = element_lengths(positions, mesh)
    mid = circ[:, 1].sum(axis=-1)
    np.testing.assert_allclose(mid / mid[0] - 1.0, [0.0, -0.1, -0.2], atol=1e-9)
    endo_ecc, epi_ecc = (circ[2, i].sum() / circ[0, i].sum() - 1.0 for i in (0, 2))
    assert endo_ecc < -0.2 < epi_ecc  # the endocardium shortens most
    curves = strain_curves(positions, mesh, "mid")
    assert curves.err["global"][2] > 0.1  # the wall thickens


def test_aha_segments_are_counted_from_the_rv_insertion_towards_the_septum():
    assert aha_segments(np.array([0.0, 59.0, 61.0, 179.0, 181.0, 299.0, 301.0]), "basal").tolist() == [
        2,
        2,
        3,
        4,
        5,
        6,
        1,
    ]
    assert aha_segments(np.array([10.0, 16.0, 106.0, 196.0, 286.0]), "apical").tolist() == [13, 14, 15, 16, 13]
    assert [level_of(i, 3) for i in range(3)] == ["basal", "mid", "apical"]
    left = seed_mesh(ring_labels(rv_side=-1))
    right = seed_mesh(ring_labels(rv_side=+1))
    assert left.landmark == right.landmark == "rv_insertion"
    # RV on the image left: the septum is left, the anterior insertion at the upper left, sectors
    # turn counter-clockwise (towards the RV); mirrored, they turn clockwise
    assert left.sense == 1 and right.sense == -1
    assert 90.0 < left.start_angle_deg < 180.0
    # the ray 60 degrees past the insertion points at the septum (the RV): it is the anteroseptal /
    # inferoseptal boundary of a mid slice, and mirror images give mirrored points the same segments
    offsets = left.sector_offset_deg
    ray = left.points_rc[int(np.argmin(np.abs(offsets - 60.0)))]
    assert ray[1] < CENTRE[1] - 10  # left of the LV: the septum
    seg_left = aha_segments(left.sector_offset_deg, "mid")
    seg_right = aha_segments(right.sector_offset_deg, "mid")
    np.testing.assert_array_equal(seg_left, seg_right)
    mirrored = right.points_rc.copy()
    mirrored[:, 1] = 2 * CENTRE[1] - mirrored[:, 1]
    np.testing.assert_allclose(mirrored, left.points_rc, atol=0.75)


def small_result(tmp_path: Path):
    frames, _, _ = affine_series(6.0, 30.0, n_frames=5)
    result, mesh = analyse_slice(frames, ring_labels(), (1.4, 1.4), HarpTracker(), level="apical", subject="s0")
    return frames, result, mesh


def test_schema_round_trip(tmp_path):
    _, result, mesh = small_result(tmp_path)
    files = write_strain(tmp_path / "out", [result], attrs={"config": "x"})
    assert [f.name for f in files] == ["strain.json", "strain_curves.csv", "strain_peaks.csv", "displacement.csv"]
    back = read_strain(tmp_path / "out")
    assert len(back) == 1
    got = back[0]
    for key in ("subject", "slice", "level", "spacing_mm", "tracker", "landmark", "sense", "n_sectors", "segments"):
        assert getattr(got, key) == getattr(result, key), key
    np.testing.assert_allclose(got.displacement_mm, result.displacement_mm)
    np.testing.assert_allclose(got.points_ed_mm, result.points_ed_mm)
    for comp in ("ecc", "err"):
        assert set(getattr(got, comp)) == set(getattr(result, comp))
        for k, v in getattr(result, comp).items():
            np.testing.assert_allclose(getattr(got, comp)[k], v)
    assert got.peaks() == result.peaks()
    doc = json.loads((tmp_path / "out" / "strain.json").read_text())
    assert doc["schema"] == "tagseg-strain" and doc["version"] == SCHEMA_VERSION
    n_points, n_frames = mesh.points_rc.shape[0], result.n_frames
    with open(tmp_path / "out" / "displacement.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert len(rows) == n_points * n_frames
    last = rows[-1]
    assert float(last["u_row_mm"]) == pytest.approx(result.displacement_mm[-1, -1, 0], abs=1e-4)
    with open(tmp_path / "out" / "strain_curves.csv") as fh:
        curves = list(csv.DictReader(fh))
    assert len(curves) == n_frames * 2 * (1 + 4)  # ecc and err, global + 4 apical segments
    doc["version"] = SCHEMA_VERSION + 1
    (tmp_path / "newer.json").write_text(json.dumps(doc))
    with pytest.raises(DataError, match="newer.json: strain schema version"):
        read_strain(tmp_path / "newer.json")


def test_error_too_few_frames():
    frames, _, _ = affine_series(6.0, 30.0, n_frames=2)
    with pytest.raises(DataError, match=r"scan.h5: 2 frame\(s\); expected a cine series of >= 3 frames"):
        analyse_slice(frames, ring_labels(), (1.0, 1.0), HarpTracker(), where="scan.h5")


def test_error_no_tags_in_the_spectrum():
    rows, cols = np.mgrid[:SIZE, :SIZE].astype(float)
    rng = np.random.default_rng(0)
    cine = np.stack(
        [
            np.exp(-((rows - 48) ** 2 + (cols - 48) ** 2) / (2 * (20 - t) ** 2)) + 0.03 * rng.normal(size=rows.shape)
            for t in range(5)
        ]
    )
    with pytest.raises(DataError, match="cine.nii.gz: no tags detectable in the spectrum.*not a cine"):
        analyse_slice(cine, ring_labels(), (1.0, 1.0), HarpTracker(), where="cine.nii.gz")


def test_error_mask_not_a_ring():
    frames, _, _ = affine_series(6.0, 30.0, n_frames=4)
    disc = ring_labels()
    disc[disc == 3] = 2  # a filled disc: no cavity
    with pytest.raises(DataError, match="scan.h5: the ED myocardium is not a ring"):
        analyse_slice(frames, disc, (1.0, 1.0), HarpTracker(), where="scan.h5")
    open_ring = ring_labels()
    open_ring[42:55, 60:] = 0  # cut through the wall: the cavity is not enclosed
    with pytest.raises(DataError, match="not a ring"):
        analyse_slice(frames, open_ring, (1.0, 1.0), HarpTracker(), where="scan.h5")


def test_error_frames_of_different_sizes():
    frames, _, _ = affine_series(6.0, 30.0, n_frames=4)
    mixed = [frames[0], frames[1], frames[2][:90, :90], frames[3]]
    with pytest.raises(DataError, match=r"scan.h5: frames of different sizes \['90x90', '96x96'\]"):
        stack_frames(mixed, where="scan.h5")


def tagged_store(path: Path, n_frames: int = 5, ring: bool = True) -> Path:
    frames, _, _ = affine_series(6.0, 30.0, n_frames=n_frames)
    labels = ring_labels()
    if not ring:
        labels[labels == 3] = 2
    n = len(frames)
    meta = {
        "subject": ["s0"] * n,
        "slice": np.zeros(n, int),
        "frame": np.arange(n),
        "n_frames": np.full(n, n),
        "phase": ["ED"] + [""] * (n - 1),
        "group": ["control"] * n,
        "spacing_mm": np.full((n, 2), 1.4, np.float32),
        "source": ["grid"] * n,
    }
    images = (frames - frames.min()) / (frames.max() - frames.min())
    return write_store(path, images.astype(np.float32), np.repeat(labels[None], n, 0), meta, name="grid")


def test_strain_stage_on_a_store_with_its_masks(tmp_path):
    from tagseg.stages.strain import strain

    store = tagged_store(tmp_path / "grid.h5")
    report = strain(store, tmp_path / "out", HarpTracker(), tracker_name="harp", level="mid", progress=False)
    assert report.exit_status() == 0 and not report.failures
    names = {p.name for p in report.files}
    assert {"strain.json", "strain_peaks.csv", "s0_s0_curves.png", "s0_s0_mesh.png", "s0_bullseye.png"} <= names
    (result,) = read_strain(tmp_path / "out")
    # the grid's affine motion is homogeneous: every segment's Ecc is close to the global one
    ecc = np.array([result.ecc[str(s)][-1] for s in result.segments])
    assert np.ptp(ecc) < 0.15 and result.tracker == "harp"


@pytest.mark.slow
def test_strain_cli_refuses_a_mask_that_is_not_a_ring_in_one_line(tmp_path):
    store = tagged_store(tmp_path / "disc.h5", ring=False)
    proc = run_tagseg(
        ["strain", f"input={store}", f"output={tmp_path / 'out'}", "progress=false"], None, root=tmp_path, timeout=300
    )
    assert proc.returncode == 2, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("tagseg: error:")]
    assert len(errors) == 1 and "disc.h5 (subject s0, slice 0): the ED myocardium is not a ring" in errors[0]
    assert "Traceback" not in proc.stderr


def test_phantom_dysfunction_is_off_by_default_and_weakens_its_sector():
    from tagseg.data.phantom.source import PhantomSource

    plain = PhantomSource(image_size=64, fov_mm=179.2, n_subjects=2, n_slices=1)
    assert plain.subject(0, 0)["dysfunction"] is None
    assert all(m.dysfunction is None for m in plain.subject(0, 0)["motions"])
    sick = PhantomSource(image_size=64, fov_mm=179.2, n_subjects=2, n_slices=1, motion={"dysfunction_fraction": 1.0})
    a, b = plain.subject(0, 0), sick.subject(0, 0)
    assert a["motions"][0].ecc == b["motions"][0].ecc  # the other draws are untouched
    dys = b["dysfunction"]
    assert 0.7 <= dys.severity <= 1.0
    w = dys.weight(
        np.cos(np.array([dys.angle_rad, dys.angle_rad + np.pi])),
        np.sin(np.array([dys.angle_rad, dys.angle_rad + np.pi])),
    )
    np.testing.assert_allclose(w, [1.0 - dys.severity, 1.0])


def test_true_positions_follow_a_uniform_displacement():
    u = np.zeros((3, 2, 20, 20))
    u[1, 0], u[2, 1] = 1.5, -2.0
    pts = np.array([[5.0, 5.0], [10.3, 12.7]])
    np.testing.assert_allclose(true_positions(u, pts)[1], pts + [1.5, 0.0])
    np.testing.assert_allclose(true_positions(u, pts)[2], pts + [0.0, -2.0])


def test_validation_experiments_compose_with_their_conditions(compose_config):
    from tagseg.stages.strain_validation import conditions

    full = compose_config("strain", "experiment=strain_validation")
    demo = compose_config("strain", "experiment=strain_validation_demo")
    assert full.validation.trackers == ["harp"] and full.validation.mesh.n_sectors == full.mesh.n_sectors
    names = [c.name for c in conditions(dict(demo.validation))]
    assert names == ["base", "snr=5", "snr=10", "tag_spacing=6mm", "tag_spacing=9mm", "readout_flip=16deg"]
    assert demo.validation.n_subjects < full.validation.n_subjects and demo.torch_threads == 1


def test_validation_experiment_runs_a_tiny_cohort(tmp_path, compose_config):
    """One subject, one slice, 6 frames, two conditions: every row has numbers and the table names them."""
    from tagseg.stages.strain_validation import conditions, markdown_table, run_validation

    cfg = compose_config(
        "strain",
        *[
            "experiment=strain_validation_demo",
            f"output={tmp_path / 'val'}",
            "validation.n_subjects=1",
            "validation.n_slices=1",
            "validation.n_frames=6",
            "validation.image_size=96",
            "validation.fov_mm=150",
            "validation.snr=[10.0]",
            "validation.tag_spacing_mm=[]",
            "validation.readout_flip_deg=[]",
        ],
    )
    assert [c.name for c in conditions(dict(cfg.validation))] == ["base", "snr=10"]
    summary = run_validation(cfg)
    assert [r["condition"] for r in summary["rows"]] == ["base", "snr=10"]
    for row in summary["rows"]:
        assert row["tracker"] == "harp" and row["mask"] == "true" and row["n_subjects"] == 1
        assert 0.0 < row["rmse_mm_to_es"]["mean"] < 2.0
        assert abs(row["ecc_error"]["mean"]) < 0.1
    files = {p.name for p in (tmp_path / "val").iterdir()}
    assert {
        "validation_slices.csv",
        "validation_segments.csv",
        "validation_summary.json",
        "validation_table.md",
    } <= files
    assert "| base | harp | true | 1 |" in markdown_table(summary)


def folded_grid(spacing_px: float, angle_deg: float, depth: float, offset: float = 0.0) -> np.ndarray:
    """|Mz| of a 1-1 SPAMM grid, ``Mz = prod(1 - depth (1 - cos))`` + ``offset`` (T1 recovery): depth > 0.5
    makes Mz cross zero, and the magnitude folds it."""
    a = np.radians(angle_deg)
    rows, cols = np.mgrid[:SIZE, :SIZE].astype(float)
    mz = np.ones((SIZE, SIZE))
    for p in (rows * np.sin(a) + cols * np.cos(a), rows * np.cos(a) - cols * np.sin(a)):
        mz = mz * (1.0 - depth * (1.0 - np.cos(2 * np.pi * p / spacing_px)))
    return np.abs(mz * (1.0 - offset) + offset)


def test_deep_tags_are_found_at_their_own_frequency_not_its_double(caplog):
    frame = folded_grid(8.0, 25.0, depth=0.95, offset=0.05)
    spectrum = np.abs(np.fft.fft2(frame - frame.mean()))
    k = np.array([np.sin(np.radians(25.0)), np.cos(np.radians(25.0))]) / 8.0
    at = lambda f: spectrum[int(round(f[0] * SIZE)) % SIZE, int(round(f[1] * SIZE)) % SIZE]  # noqa: E731
    assert at(2 * k) > 2 * at(k)  # the fold puts more energy at twice the tag frequency
    peaks = find_tag_peaks(frame)
    np.testing.assert_allclose(peaks.spacing_px, 8.0, rtol=0.02)
    assert peaks.doubled > 2.0
    assert find_tag_peaks(folded_grid(8.0, 25.0, depth=0.4)).doubled == 0.0  # no fold: the first peak was the tag's
    frames = np.stack([frame, frame, frame])
    with caplog.at_level("WARNING", logger="tagseg.strain.harp"):
        HarpTracker().track(frames, CENTRE[None], (1.0, 1.0), where="deep.nii.gz")
    assert "deep.nii.gz: twice the tag frequency is" in caplog.text and "tagging flip above 90 degrees" in caplog.text


def test_one_d_tags_beside_anatomy_are_refused_naming_the_one_direction():
    rows, cols = np.mgrid[:SIZE, :SIZE].astype(float)
    anatomy = 1.0 + 0.8 * np.exp(-((rows - 40) ** 2 + (cols - 55) ** 2) / (2 * 14.0**2)) + 0.5 * (rows > 70)
    lines = 1.0 - 0.6 * (1.0 - np.cos(2 * np.pi * (rows * np.sin(0.5) + cols * np.cos(0.5)) / 7.0))
    frames = np.stack([anatomy * lines] * 3) + 0.02 * np.random.default_rng(0).normal(size=(3, SIZE, SIZE))
    with pytest.raises(DataError, match=r"one.nii.gz: only one tag direction .*tags of period 7.0 px.*1-D tags"):
        HarpTracker().track(frames, CENTRE[None], (1.0, 1.0), where="one.nii.gz")
