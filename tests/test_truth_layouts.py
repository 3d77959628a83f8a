"""The phantom's true displacement carried by the raw tagged layouts and read back into a store's /displacement."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest

from tagseg.data.phantom.cohort import CohortSpec, displacement_to_stored, draw_subject
from tagseg.data.phantom.layouts import write_cohort
from tagseg.data.prepare import prepare_store
from tagseg.data.readers.tagged import TaggedSource
from tagseg.errors import DataError
from tagseg.io.store import read_store

#: square, one voxel order, few frames: the prepared store is the rendered phantom, row for row
SPEC = CohortSpec(matrix=(40, 40), spacing_mm=(1.6, 1.6), frames=(5, 5), slices=(2, 2), orientations=("identity",))
LAYOUTS = ("h5", "nifti", "dicom")


@pytest.fixture(scope="module")
def tagged_root(tmp_path_factory) -> tuple[Path, dict]:
    root = tmp_path_factory.mktemp("tagged")
    return root, write_cohort("tagged", root, len(LAYOUTS), 0, SPEC, tagged_layouts=LAYOUTS)


def test_every_tagged_layout_round_trips_the_true_displacement_into_the_store(tagged_root, tmp_path):
    root, manifest = tagged_root
    assert [s["layout"] for s in manifest["subjects"]] == list(LAYOUTS)
    assert (root / f"{manifest['subjects'][1]['slices'][0]}_disp.nii.gz").is_file()
    report = prepare_store(TaggedSource(str(root)), tmp_path / "s.h5")
    assert report.skipped == []  # the _disp files are not taken for slices
    store = read_store(tmp_path / "s.h5")
    disp = store.extras["displacement"]
    assert disp.shape == (len(store), 2, 40, 40) and disp.dtype == np.float32
    for index, sub in enumerate(manifest["subjects"]):
        drawn = draw_subject("tagged", index, len(LAYOUTS), 0, SPEC, unlabelled_ends=False)
        for z in range(2):
            rows = np.flatnonzero((store.meta["subject"] == sub["id"]) & (store.meta["slice"] == z))
            frames = store.meta["frame"][rows]
            assert len(rows) == 5, sub["layout"]
            np.testing.assert_array_equal(disp[rows], drawn.displacement[z][frames], err_msg=sub["layout"])
    assert np.abs(disp).max() > 1.0  # the heart moves by pixels: the test compares real motion
    assert not disp[store.meta["frame"] == 0].any()  # Lagrangian, zero at ED


def test_a_resized_store_keeps_the_displacement_in_mm(tagged_root, tmp_path):
    root, _ = tagged_root
    prepare_store(TaggedSource(str(root)), tmp_path / "a.h5")
    prepare_store(TaggedSource(str(root)), tmp_path / "b.h5", image_size=32)
    a, b = read_store(tmp_path / "a.h5"), read_store(tmp_path / "b.h5")
    mm_a = a.extras["displacement"] * a.meta["spacing_mm"][:, :, None, None]
    mm_b = b.extras["displacement"] * b.meta["spacing_mm"][:, :, None, None]
    assert b.extras["displacement"].shape[2:] == (32, 32)
    np.testing.assert_allclose(np.abs(mm_b).max(axis=(2, 3)), np.abs(mm_a).max(axis=(2, 3)), rtol=0.1, atol=0.05)


def test_a_flipped_or_transposed_volume_turns_the_displacement_with_it():
    field = np.zeros((2, 3, 4), np.float32)
    field[0], field[1] = 0.5, 1.0  # down half a pixel, right one pixel on screen
    field[1, 0, 0] = 3.0  # marks the display's top-left pixel
    flip_x = displacement_to_stored(field, "flip_x")
    assert flip_x[1, 0, -1] == -3.0 and flip_x[1, 1, 1] == -1.0 and flip_x[0, 1, 1] == 0.5
    flip_y = displacement_to_stored(field, "flip_y")
    assert flip_y[1, -1, 0] == 3.0 and flip_y[0, 1, 1] == -0.5
    transposed = displacement_to_stored(field, "transpose")
    assert transposed.shape == (2, 4, 3) and transposed[0, 0, 0] == 3.0 and transposed[1, 1, 1] == 0.5


def test_a_flipped_nifti_slice_reads_back_its_turned_displacement(tmp_path):
    spec = CohortSpec(matrix=(36, 40), frames=(4, 4), slices=(1, 1), orientations=("flip_x",))
    manifest = write_cohort("tagged", tmp_path, 1, 3, spec, tagged_layouts=("nifti",))
    drawn = draw_subject("tagged", 0, 1, 3, spec, unlabelled_ends=False)
    src = TaggedSource(str(tmp_path))
    (item,) = src.items()
    recs = src.load(item, 0)
    assert manifest["subjects"][0]["orientation"] == "flip_x"
    expected = displacement_to_stored(drawn.displacement[0], "flip_x")
    np.testing.assert_array_equal(np.stack([r.extras["displacement"] for r in recs]), expected)


def _one_h5_slice(folder: Path) -> tuple[TaggedSource, object]:
    spec = CohortSpec(matrix=(36, 36), frames=(4, 4), slices=(1, 1), orientations=("identity",))
    write_cohort("tagged", folder, 1, 0, spec, tagged_layouts=("h5",))
    src = TaggedSource(str(folder))
    (item,) = src.items()
    return src, item


def test_real_data_without_a_displacement_reads_as_before(tmp_path):
    src, item = _one_h5_slice(tmp_path)
    with h5py.File(item.image, "a") as f:
        del f["disp"]
    assert all(r.extras == {} for r in src.load(item, 0))


@pytest.mark.parametrize("bad", ["shape", "nan"])
def test_a_malformed_displacement_is_refused_naming_the_file_and_the_expected_shape(tmp_path, bad):
    src, item = _one_h5_slice(tmp_path)
    with h5py.File(item.image, "a") as f:
        good = f["disp"][...]
        del f["disp"]
        f["disp"] = good[:, :, :2] if bad == "shape" else np.where(good == good.max(), np.nan, good)
    with pytest.raises(DataError) as err:
        src.load(item, 0)
    msg = str(err.value)
    assert msg.startswith(f"{item.image}: 'disp' holds ")
    assert ("shape (36, 36, 2, 2)" if bad == "shape" else "NaN or infinite values") in msg
    assert "expected (36, 36, 4, 2) = imt's axes (xyt) then 2 components" in msg


def test_a_malformed_displacement_file_beside_a_nifti_slice_is_refused(tmp_path):
    import nibabel as nib

    spec = CohortSpec(matrix=(36, 36), frames=(4, 4), slices=(1, 1), orientations=("identity",))
    write_cohort("tagged", tmp_path, 1, 0, spec, tagged_layouts=("nifti",))
    (disp_file,) = tmp_path.glob("*_disp.nii.gz")
    nib.save(nib.Nifti1Image(np.zeros((36, 36, 4), np.float32), np.eye(4)), str(disp_file))
    src = TaggedSource(str(tmp_path))
    (item,) = src.items()
    with pytest.raises(DataError, match=r"_disp\.nii\.gz: displacement holds shape \(36, 36, 4\), dtype float32; "):
        src.load(item, 0)


def test_a_dataset_mixing_slices_with_and_without_truth_skips_the_odd_one_clearly(tmp_path):
    spec = CohortSpec(matrix=(36, 36), frames=(4, 4), slices=(1, 1), orientations=("identity",))
    write_cohort("tagged", tmp_path, 2, 0, spec, tagged_layouts=("h5",))
    second = sorted(p for p in tmp_path.glob("*.h5") if not p.stem.endswith("_roi"))[1]
    with h5py.File(second, "a") as f:
        del f["disp"]
    report = prepare_store(TaggedSource(str(tmp_path)), tmp_path / "s.h5")
    ((where, reason),) = report.skipped
    assert second.name in where and "extra arrays [] differ from the store's ['displacement']" in reason


def test_predict_and_strain_inputs_do_not_take_a_displacement_file_for_a_scan(tagged_root):
    from tagseg.data.scans import find_inputs

    root, manifest = tagged_root
    names = sorted(i.name for i in find_inputs(root))
    assert not any(n.endswith("_disp") for n in names)
    assert len(names) == sum(len(s["slices"]) for s in manifest["subjects"])  # every slice, once
