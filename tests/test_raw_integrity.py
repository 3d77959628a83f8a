"""Raw readers: the in-plane orientation rule, .nii == .nii.gz, and the integrity of a series."""

from __future__ import annotations

from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import raw_fixtures as rf
from conftest import run_tagseg

from tagseg.data.prepare import prepare_store
from tagseg.data.readers.acdc import AcdcSource
from tagseg.data.readers.mnms import MnmsSource
from tagseg.data.readers.scd import ScdSource
from tagseg.data.readers.tagged import TaggedSource
from tagseg.errors import DataError

ROOT = Path(__file__).resolve().parents[1]


def acdc_patient(
    root: Path, volume: np.ndarray, labels: np.ndarray, affine: np.ndarray, suffix: str = ".nii.gz"
) -> Path:
    pdir = root / "training" / "patient001"
    pdir.mkdir(parents=True)
    (pdir / "Info.cfg").write_text("ED: 1\nES: 2\nGroup: NOR\nNbFrame: 2\n")
    for frame in (1, 2):
        for name, data in ((f"patient001_frame{frame:02d}", volume), (f"patient001_frame{frame:02d}_gt", labels)):
            img = nib.Nifti1Image(data, affine)
            img.header.set_xyzt_units("mm", "sec")
            nib.save(img, str(pdir / f"{name}{suffix}"))
    return pdir


def _records(root: Path):
    src = AcdcSource(root)
    return src.load(src.items()[0], 0)


@pytest.fixture
def subject():
    """An asymmetric (x, y, z) = (12, 9, 2) volume, its labels, and spacings x 1.5 mm, y 0.8 mm, z 8 mm."""
    rng = np.random.default_rng(0)
    volume = rng.integers(0, 1000, (12, 9, 2)).astype(np.int16)
    labels = np.stack([rf.ring_labels(12, 9, (4.0, 5.0))] * 2, axis=-1)
    return volume, labels, np.diag([1.5, 0.8, 8.0, 1.0])


def test_voxel_order_rule_flipped_and_permuted_affines(tmp_path, subject):
    volume, labels, affine = subject
    ref = _records(acdc_patient(tmp_path / "ref", volume, labels, affine).parents[1])
    assert ref[0].image.shape == (9, 12) and np.allclose(ref[0].spacing_mm, (0.8, 1.5))  # rows = voxel axis 1 (y)
    np.testing.assert_array_equal(ref[0].image, volume[:, :, 0].T)
    # stored flipped along x (the affine says so): the slices are flipped left-right, spacing unchanged
    flip = affine @ np.diag([-1.0, 1.0, 1.0, 1.0])
    flipped = _records(acdc_patient(tmp_path / "flip", volume[::-1], labels[::-1], flip).parents[1])
    for a, b in zip(ref, flipped):
        np.testing.assert_array_equal(b.image, a.image[:, ::-1])
        np.testing.assert_array_equal(b.mask, a.mask[:, ::-1])
        assert b.spacing_mm == a.spacing_mm
    # in-plane axes permuted (x <-> y in the voxel order): transposed slices, row / column spacing swapped
    perm = np.array([[0, 1.5, 0, 0], [0.8, 0, 0, 0], [0, 0, 8.0, 0], [0, 0, 0, 1]])
    permuted = _records(
        acdc_patient(tmp_path / "perm", volume.transpose(1, 0, 2), labels.transpose(1, 0, 2), perm).parents[1]
    )
    for a, b in zip(ref, permuted):
        np.testing.assert_array_equal(b.image, a.image.T)
        np.testing.assert_array_equal(b.mask, a.mask.T)
        np.testing.assert_allclose(b.spacing_mm, (1.5, 0.8), rtol=1e-6)


def test_nii_and_nii_gz_read_alike(tmp_path, subject):
    volume, labels, affine = subject
    gz = _records(acdc_patient(tmp_path / "gz", volume, labels, affine).parents[1])
    plain = _records(acdc_patient(tmp_path / "plain", volume, labels, affine, suffix=".nii").parents[1])
    assert len(gz) == len(plain) == 4
    for a, b in zip(gz, plain):
        np.testing.assert_array_equal(a.image, b.image)
        assert a.spacing_mm == b.spacing_mm
    # tagged: an uncompressed .nii image + .nii mask is an item like any other (no skip)
    frames = np.random.default_rng(1).uniform(0, 1, (8, 10, 3)).astype(np.float32)  # (x, y, t)
    mask = np.zeros((8, 10, 3), np.uint8)
    mask[2:6, 3:7] = 2
    mask[3:5, 4:6] = 0
    rf.write_nifti(tmp_path / "tag" / "1_C_C_1_mid.nii", frames, (1.4, 1.4, 1.0))
    rf.write_nifti(tmp_path / "tag" / "1_C_C_1_mid_mask.nii", mask, (1.4, 1.4, 1.0))
    report = prepare_store(TaggedSource(tmp_path / "tag"), tmp_path / "t.h5", image_size=None)
    assert report.skipped == [] and report.n_slices == 3


def _dicom_series(folder: Path, shapes, numbers) -> list[Path]:
    rng = np.random.default_rng(0)
    return [
        rf.write_dicom(folder / f"f{i:02d}.dcm", rng.integers(0, 500, shape), instance=n)
        for i, (shape, n) in enumerate(zip(shapes, numbers))
    ]


def _tagged_dicom(root: Path, shapes, numbers) -> list[Path]:
    paths = _dicom_series(root / "1_C_C_1_mid", shapes, numbers)
    rf.write_nifti(root / "1_C_C_1_mid_mask.nii.gz", np.ones((14, 16, len(shapes)), np.uint8), (1.25, 1.3, 1.0))
    return paths


def test_a_frame_of_another_matrix_is_an_error_naming_it(tmp_path):
    paths = _tagged_dicom(tmp_path, [(16, 14), (16, 14), (64, 64), (16, 14)], [1, 2, 3, 4])
    src = TaggedSource(tmp_path)
    with pytest.raises(DataError, match=rf"{paths[2]}: matrix 64x64 differs from the 16x14 of the other 3 frame"):
        src.load(src.items()[0], 0)


def test_a_repeated_instance_number_is_an_error_naming_it(tmp_path):
    paths = _tagged_dicom(tmp_path, [(16, 14)] * 3, [1, 2, 2])
    src = TaggedSource(tmp_path)
    with pytest.raises(DataError, match=rf"{paths[2]}: InstanceNumber 2 repeats f01.dcm"):
        src.load(src.items()[0], 0)


def test_scd_case_with_an_odd_matrix_is_skipped_and_counted(tmp_path):
    rf.make_scd(tmp_path)
    odd = tmp_path / "challenge_training" / "SC-N-2" / "IM-0898-0021.dcm"
    rf.write_dicom(odd, np.zeros((64, 64)), instance=21, n_phases=20)
    report = prepare_store(ScdSource(tmp_path), tmp_path / "s.h5", image_size=None)
    assert [item for item, _ in report.skipped] == ["SC-N-2"]
    assert f"{odd}: matrix 64x64 differs" in report.skipped[0][1]


def test_acdc_frames_of_another_matrix_are_an_error_naming_the_file(tmp_path):
    pdir = rf.make_acdc_patient(tmp_path, "training", 1, ed=1, es=4)
    rf.write_nifti(pdir / "patient001_frame04.nii.gz", np.zeros((64, 64, 3), np.int16), rf.ACDC_ZOOMS)
    rf.write_nifti(pdir / "patient001_frame04_gt.nii.gz", np.ones((64, 64, 3), np.uint8), rf.ACDC_ZOOMS)
    src = AcdcSource(tmp_path)
    with pytest.raises(
        DataError, match=r"patient001_frame04.nii.gz: shape \(64, 64, 3\) differs from the \(12, 10, 3\)"
    ):
        src.load(src.items()[0], 0)


def test_ed_equal_to_es_is_an_error_naming_the_file(tmp_path):
    pdir = rf.make_acdc_patient(tmp_path / "acdc", "training", 1, ed=2, es=2)
    src = AcdcSource(tmp_path / "acdc")
    with pytest.raises(DataError, match=rf"{pdir / 'Info.cfg'}: ED and ES are the same frame \(2\)"):
        src.load(src.items()[0], 0)
    subjects = [("A0S9V9", "Training/Labeled", "Siemens", "A", 1, 3, 3, "NOR")]
    rf.make_mnms_subject(tmp_path / "mnms", "Training/Labeled", "A0S9V9", 3, 3)
    csv = rf.write_mnms_csv(tmp_path / "mnms" / rf.MNMS_CSV, subjects)
    src = MnmsSource(tmp_path / "mnms")
    with pytest.raises(DataError, match=rf"{csv}: subject 'A0S9V9': ED and ES are the same frame \(3\)"):
        src.load(src.items()[0], 0)


def test_verify_exits_non_zero_when_it_found_problems(tmp_path):
    rf.make_acdc(tmp_path / "acdc", n_train=2, n_test=0)
    cmd = [
        "prepare",
        "data=acdc",
        f"data.root={tmp_path / 'acdc'}",
        "verify=true",
        f"hydra.run.dir={tmp_path}/run",
    ]
    ok = run_tagseg(cmd, ROOT, root=tmp_path, timeout=120)
    assert ok.returncode == 0, ok.stderr
    (tmp_path / "acdc" / "training" / "patient002" / "Info.cfg").write_text("ED: 1\nES: 1\nGroup: NOR\nNbFrame: 6\n")
    bad = run_tagseg(cmd, ROOT, root=tmp_path, timeout=120)
    assert bad.returncode == 2
    assert "ED and ES are the same frame" in bad.stdout
    assert bad.stderr.strip().splitlines()[-1] == "tagseg: error: verify acdc: 1 problem(s) found (listed above)"
