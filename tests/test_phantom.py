"""The digital phantom: determinism, cohorts, labels, motion ground truth, config errors, store + montage."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import run_tagseg
from scipy import ndimage

from tagseg.data.phantom import PhantomSource
from tagseg.data.prepare import prepare_store
from tagseg.errors import ConfigError
from tagseg.io.store import read_store, write_store
from tagseg.report.figures import paired_montage, store_montage

ROOT = Path(__file__).resolve().parents[1]


def small(**kw) -> PhantomSource:
    """A small phantom: 128 px over a 200 mm field of view (1.56 mm/px, the heart keeps its mm size)."""
    args = dict(modality="cine", image_size=128, fov_mm=200.0, n_subjects=2, n_slices=1, n_frames=10)
    args.update(kw)
    return PhantomSource(**args)


def stack(records, key):
    return np.stack([getattr(r, key) for r in records])


# -- determinism and cohorts -----------------------------------------------------------------------


def test_same_seed_gives_byte_identical_store_and_other_seed_other_subjects(tmp_path):
    src = small(image_size=64, fov_mm=358.4, n_frames=3)
    a, b, c = tmp_path / "a.h5", tmp_path / "b.h5", tmp_path / "c.h5"
    for path, seed in ((a, 3), (b, 3), (c, 4)):
        prepare_store(src, path, seed=seed, image_size=64)
    assert a.read_bytes() == b.read_bytes()
    sa, sc = read_store(a), read_store(c)
    assert sa.images.shape == (2 * 3, 64, 64) and sa.extras["displacement"].shape == (6, 2, 64, 64)
    assert list(sa.meta["subject"]) == list(sc.meta["subject"])  # same ids, different people
    assert not np.array_equal(sa.masks, sc.masks)
    assert not np.allclose(sa.images, sc.images)


def test_cine_and_tagged_cohorts_differ_unless_paired():
    cine, tagged = small(), small(modality="tagged")
    rc, rt = cine.load(0, 0), tagged.load(0, 0)
    assert (rc[0].subject, rt[0].subject) == ("cine-000", "tag-000")
    assert (rc[0].source, rt[0].source) == ("phantom-cine", "phantom-tagged")
    assert not np.array_equal(rc[0].mask, rt[0].mask)
    pc, pt = small(paired=True).load(0, 0), small(modality="tagged", paired=True).load(0, 0)
    assert pc[0].subject == pt[0].subject == "phantom-000"
    np.testing.assert_array_equal(stack(pc, "mask"), stack(pt, "mask"))
    np.testing.assert_array_equal(
        np.stack([r.extras["displacement"] for r in pc]), np.stack([r.extras["displacement"] for r in pt])
    )
    assert not np.allclose(pc[0].image, pt[0].image)  # same anatomy, other contrast


def test_group_ratio_is_exact_and_seeded():
    src = small(n_subjects=10, dmd_fraction=0.3)
    groups = [src.group(i, 5) for i in src.items()]
    assert groups.count("dmd") == 3 and groups.count("control") == 7
    assert [src.group(i, 5) for i in src.items()] == groups
    assert {small(dmd_fraction=0.0).group(i, 0) for i in range(2)} == {"control"}
    assert {small(dmd_fraction=1.0).group(i, 0) for i in range(2)} == {"dmd"}


# -- records, phases, labels -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def cohort():
    """8 subjects (4 control, 4 dmd), mid slice, 10 frames, cine, noise-free."""
    src = small(n_subjects=8, dmd_fraction=0.5, noise=False)
    return src, [src.load(i, 0) for i in src.items()]


def test_records_phases_and_displacement_at_ed(cohort):
    src, subjects = cohort
    recs = subjects[0]
    assert len(recs) == src.n_frames and [r.frame for r in recs] == list(range(src.n_frames))
    assert recs[0].phase == "ED" and [r.phase for r in recs].count("ES") == 1
    es = [r.phase for r in recs].index("ES")
    assert 0.3 <= es / src.n_frames <= 0.45  # peak near 35-40 % of the cycle
    disp = np.stack([r.extras["displacement"] for r in recs])
    assert disp.dtype == np.float32 and disp.shape == (src.n_frames, 2, 128, 128)
    assert np.abs(disp[0]).max() == 0.0
    norms = np.abs(disp).reshape(src.n_frames, -1).max(1)
    assert int(np.argmax(norms)) == es  # largest motion at ES
    assert recs[0].spacing_mm == pytest.approx((200 / 128, 200 / 128))


def test_labels_are_acdc_and_myocardium_is_one_ring_around_the_lv():
    for modality in ("cine", "tagged"):
        src = small(modality=modality, n_slices=3, n_frames=6)
        for rec in src.load(1, 2):
            mask = rec.mask
            assert set(np.unique(mask)) == {0, 1, 2, 3}, (modality, rec.slice, rec.frame)
            myo, lv = mask == 2, mask == 3
            _, n_myo = ndimage.label(myo, structure=np.ones((3, 3)))
            assert n_myo == 1
            holes = ndimage.binary_fill_holes(myo) & ~myo
            np.testing.assert_array_equal(holes, lv)  # LV cavity = the hole of the ring, nothing else
            _, n_lv = ndimage.label(lv)
            assert n_lv == 1


def test_myocardial_area_stays_within_12_percent_while_the_cavity_contracts(cohort):
    _, subjects = cohort
    for recs in subjects:
        masks = stack(recs, "mask")
        myo = (masks == 2).sum((1, 2)).astype(float)
        lv = (masks == 3).sum((1, 2)).astype(float)
        es = [r.phase for r in recs].index("ES")
        assert np.abs(myo / myo[0] - 1).max() <= 0.12
        assert lv[es] < 0.75 * lv[0]


# -- strain from the exported displacement ---------------------------------------------------------


def _bilinear(field: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
    return np.stack([ndimage.map_coordinates(c, [rows, cols], order=1) for c in field])


def wall_contours(mask: np.ndarray, n_rays: int = 90, harmonics: int = 5) -> tuple[np.ndarray, np.ndarray]:
    """Endocardial and epicardial points (2, n_rays): rays marched from the LV centroid through the
    label map, radii smoothed by a low-order Fourier series (removes the pixel staircase)."""
    centre = np.array(ndimage.center_of_mass(mask == 3))
    radii = np.arange(0.0, mask.shape[0] / 2, 0.05)
    angles = np.linspace(0, 2 * np.pi, n_rays, endpoint=False)
    r_endo, r_epi = [], []
    for t in angles:
        pts = centre[:, None] + np.array([np.sin(t), np.cos(t)])[:, None] * radii
        idx = np.clip(np.rint(pts).astype(int), 0, mask.shape[0] - 1)
        lab = mask[idx[0], idx[1]]
        i_endo = np.argmax(lab != 3)
        r_endo.append(radii[i_endo])
        r_epi.append(radii[i_endo + np.argmax(lab[i_endo:] != 2)])

    def smooth(r):
        spec = np.fft.rfft(r)
        spec[harmonics + 1 :] = 0
        return np.fft.irfft(spec, n_rays)

    ray = np.stack([np.sin(angles), np.cos(angles)])
    return centre[:, None] + ray * smooth(np.array(r_endo)), centre[:, None] + ray * smooth(np.array(r_epi))


def peak_strains(recs) -> tuple[float, float]:
    """(circumferential, radial) Lagrangian strain at the ES frame from the exported displacement."""
    es = [r.phase for r in recs].index("ES")
    endo, epi = wall_contours(recs[0].mask)
    mid = 0.5 * (endo + epi)
    disp = recs[es].extras["displacement"]

    def perimeter(p):
        return np.linalg.norm(np.diff(np.concatenate([p, p[:, :1]], 1), axis=1), axis=0).sum()

    ecc = perimeter(mid + _bilinear(disp, *mid)) / perimeter(mid) - 1
    thick0 = np.linalg.norm(epi - endo, axis=0)
    thick = np.linalg.norm(epi + _bilinear(disp, *epi) - endo - _bilinear(disp, *endo), axis=0)
    return float(ecc), float(thick.mean() / thick0.mean() - 1)


def test_peak_strains_from_displacement_match_control_and_dmd_ranges(cohort):
    _, subjects = cohort
    strains = {"control": [], "dmd": []}
    for recs in subjects:
        ecc, err = peak_strains(recs)
        strains[recs[0].group].append(ecc)
        assert 0.20 <= err <= 0.50, (recs[0].subject, err)
        if recs[0].group == "control":
            assert -0.25 <= ecc <= -0.13, (recs[0].subject, ecc)
    assert len(strains["control"]) == len(strains["dmd"]) == 4
    assert np.mean(strains["dmd"]) - np.mean(strains["control"]) >= 0.04


# -- config errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ({"n_frames": 1}, "data.n_frames"),
        ({"spacing_mm": 0.0}, "data.spacing_mm"),
        ({"spacing_mm": -1.4}, "data.spacing_mm"),
        ({"fov_mm": 0}, "data.fov_mm"),
        ({"image_size": 16}, "data.image_size"),
        ({"snr": [-5, 20]}, "data.snr"),
        ({"snr": -3}, "data.snr"),
        ({"dmd_fraction": 1.5}, "data.dmd_fraction"),
        ({"dmd_fraction": -0.1}, "data.dmd_fraction"),
        ({"modality": "ct"}, "data.modality"),
        ({"tagging": {"spacing_mm": 0.0}}, "data.tagging.spacing_mm"),
        ({"modality": "tagged", "image_size": 64, "fov_mm": 358.4}, "data.tagging.spacing_mm"),
        ({"motion": {"peak_fraction": 0.9}}, "data.motion.peak_fraction"),
        ({"anatomy": {"wall": 3}}, "data.anatomy"),
    ],
)
def test_bad_config_is_one_clear_error_naming_the_key(override, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        small(**override)


def test_cli_prepare_writes_store_and_montage_and_rejects_bad_config(tmp_path):
    cmd = [
        "prepare",
        "data=phantom_cine",
        f"output={tmp_path}/c.h5",
        "seed=2",
        "data.n_subjects=2",
        "data.n_slices=1",
        "data.n_frames=3",
        "data.image_size=64",
        f"hydra.run.dir={tmp_path}/run",
    ]
    done = run_tagseg(cmd, tmp_path, root=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    store = read_store(tmp_path / "c.h5")
    assert store.images.shape == (6, 64, 64) and set(store.meta["source"]) == {"phantom-cine"}
    assert store.meta["spacing_mm"][0] == pytest.approx([5.6, 5.6])
    assert (tmp_path / "c.h5.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = cmd[:2] + [f"output={tmp_path}/c2.h5", "data.n_frames=1", f"hydra.run.dir={tmp_path}/run2"]
    done = run_tagseg(bad, tmp_path, root=tmp_path, timeout=300)
    assert done.returncode == 2
    assert "tagseg: error: data.n_frames must be an integer >= 2" in done.stderr
    assert not (tmp_path / "c2.h5").exists()


# -- montage ---------------------------------------------------------------------------------------


def test_store_montage_works_on_any_store(tmp_path):
    # an ACDC-like store: only ED and ES frames, no displacement
    n = 4
    masks = np.zeros((n, 32, 32), np.uint8)
    masks[:, 8:24, 8:24] = 2
    masks[:, 12:20, 12:20] = 3
    meta = {
        "subject": ["p1", "p1", "p2", "p2"],
        "slice": [0] * n,
        "frame": [0, 9, 0, 11],
        "n_frames": [20] * n,
        "phase": ["ED", "ES"] * 2,
        "group": ["NOR"] * n,
        "spacing_mm": [(1.5, 1.5)] * n,
        "source": ["acdc"] * n,
    }
    path = write_store(
        tmp_path / "acdc.h5", np.random.default_rng(0).random((n, 32, 32), dtype=np.float32), masks, meta, name="acdc"
    )
    png = store_montage(path, n_subjects=5)
    assert png == tmp_path / "acdc.h5.png" and png.read_bytes()[:4] == b"\x89PNG"
    assert store_montage(path, frames=[0], output=tmp_path / "ed.png").exists()


def test_paired_montage_needs_the_same_subject(tmp_path):
    paths = []
    for modality in ("cine", "tagged"):
        path = tmp_path / f"{modality}.h5"
        prepare_store(small(modality=modality, paired=True, n_subjects=1, n_frames=4), path)
        paths.append(path)
    assert paired_montage(paths, tmp_path / "pair.png", crop=0.5).read_bytes()[:4] == b"\x89PNG"
    prepare_store(small(n_subjects=1, n_frames=2), tmp_path / "other.h5")
    with pytest.raises(Exception, match="paired"):
        paired_montage([paths[0], tmp_path / "other.h5"], tmp_path / "x.png")
