"""The shared translate machinery: carry-over, source naming, attrs, order, atomic output, errors."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from store_checks import assert_carried_over

from tagseg.errors import DataError, StoreError
from tagseg.io.store import read_store, write_store
from tagseg.translate.base import BatchRows, Translator, iter_slices


class Invert(Translator):
    method = "invert"

    def translate_batch(self, images: torch.Tensor, rows: BatchRows) -> torch.Tensor:
        return 1.0 - images


class InvertBySlice(Invert):
    method = "invert_slices"

    def batch_rows(self, meta, n_rows):
        return list(iter_slices(meta))


class Broken(Invert):
    """Fails on the second batch: the output must not appear."""

    def translate_batch(self, images, rows):
        if rows.index[0] > 0:
            raise RuntimeError("boom")
        return images


def make_store(path, n=6, size=16, masks=True, extras=True, nan_row=None):
    rng = np.random.default_rng(0)
    images = rng.random((n, size, size)).astype(np.float32)
    if nan_row is not None:
        images[nan_row, 3, 4] = np.nan
    msk = rng.integers(0, 4, (n, size, size)).astype(np.uint8)
    # two slices of one subject, frames interleaved so grouping by slice reorders rows
    meta = {
        "subject": ["s1"] * n,
        "slice": [i % 2 for i in range(n)],
        "frame": [i // 2 for i in range(n)],
        "n_frames": [n // 2] * n,
        "phase": ["ED" if i < 2 else "" for i in range(n)],
        "group": ["g"] * n,
        "spacing_mm": [[1.4, 1.4]] * n,
        "source": ["toy"] * n,
        "split": ["train"] * n,
        "scanner": ["x"] * n,
    }
    ext = {"displacement": rng.random((n, 2, size, size)).astype(np.float32)} if extras else None
    write_store(path, images, msk, meta, extras=ext, name="toy", verify=False)
    if not masks:
        with h5py.File(path, "a") as f:
            del f["masks"]
    return images


@pytest.mark.parametrize("cls", [Invert, InvertBySlice])
def test_carries_masks_meta_extras_and_sets_source(tmp_path, cls):
    images = make_store(tmp_path / "in.h5")
    report = cls(batch_size=4, progress=False, n_figure=2).run(
        tmp_path / "in.h5", tmp_path / "out.h5", attrs={"config": "x: 1"}
    )
    src, out = read_store(tmp_path / "in.h5"), read_store(tmp_path / "out.h5")
    np.testing.assert_allclose(out.images, 1.0 - images, atol=1e-6)  # rows in input order
    assert "displacement" in src.extras
    assert_carried_over(src, out, f"{cls.method}(toy)")
    assert out.attrs["name"] == f"{cls.method}(toy)" and out.attrs["config"] == "x: 1"
    assert json.loads(out.attrs["translate"])["method"] == cls.method
    assert report.n_slices == 6 and report.figure is not None and report.figure.exists()
    assert report.figure == tmp_path / "out.png"


def test_iter_slices_groups_frames_in_time_order():
    meta = {
        "subject": np.array(["a", "a", "b", "a"], dtype=object),
        "slice": np.array([0, 1, 0, 0]),
        "frame": np.array([2, 0, 0, 1]),
    }
    assert [g.tolist() for g in iter_slices(meta)] == [[3, 0], [1], [2]]


def test_failure_halfway_leaves_no_output(tmp_path):
    make_store(tmp_path / "in.h5")
    with pytest.raises(RuntimeError, match="boom"):
        Broken(batch_size=2, progress=False).run(tmp_path / "in.h5", tmp_path / "out.h5")
    assert list(tmp_path.iterdir()) == [tmp_path / "in.h5"]


def test_input_without_masks_is_refused(tmp_path):
    make_store(tmp_path / "in.h5", masks=False)
    with pytest.raises(StoreError, match="in.h5: no /masks"):
        Invert(progress=False).run(tmp_path / "in.h5", tmp_path / "out.h5")
    assert not (tmp_path / "out.h5").exists()


def test_nan_image_is_refused_naming_the_row(tmp_path):
    make_store(tmp_path / "in.h5", nan_row=5)
    with pytest.raises(DataError, match=r"image 5 \(subject s1, slice 1, frame 2\) holds NaN"):
        Invert(batch_size=2, progress=False).run(tmp_path / "in.h5", tmp_path / "out.h5")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.h5"]


def test_non_2d_images_are_refused(tmp_path):
    with h5py.File(tmp_path / "in.h5", "w") as f:
        f["images"] = np.zeros((2, 4, 4, 3), np.float32)
        f["masks"] = np.zeros((2, 4, 4, 3), np.uint8)
    with pytest.raises(DataError, match=r"2D images \(N, H, W\), got shape \(2, 4, 4, 3\)"):
        Invert(progress=False).run(tmp_path / "in.h5", tmp_path / "out.h5")


def test_missing_input_and_same_output(tmp_path):
    with pytest.raises(StoreError, match="nope.h5: input store not found"):
        Invert().run(tmp_path / "nope.h5", tmp_path / "out.h5")
    make_store(tmp_path / "in.h5")
    with pytest.raises(StoreError, match="must differ"):
        Invert().run(tmp_path / "in.h5", tmp_path / "in.h5")


@pytest.mark.parametrize("compression", ["gzip", "lzf", "none"])
def test_output_compression_round_trips(tmp_path, compression):
    images = make_store(tmp_path / "in.h5")
    Invert(progress=False, n_figure=0).run(tmp_path / "in.h5", tmp_path / "out.h5", compression=compression)
    np.testing.assert_allclose(read_store(tmp_path / "out.h5").images, 1.0 - images, atol=1e-6)
    with h5py.File(tmp_path / "out.h5") as f:
        assert f["images"].compression == (None if compression == "none" else compression)
    with pytest.raises(StoreError, match="compression must be one of .*'zstd'"):
        Invert(progress=False).run(tmp_path / "in.h5", tmp_path / "o2.h5", compression="zstd")
    assert not (tmp_path / "o2.h5").exists()


def test_translator_without_translate_batch_cannot_be_built():
    with pytest.raises(TypeError, match="translate_batch"):
        Translator()
