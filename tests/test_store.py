"""The slice store: round trips, incremental and atomic writes, validation errors naming the file/key."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from tagseg.errors import StoreError
from tagseg.io.store import FORMAT_VERSION, StoreWriter, check_store, read_meta, read_store, store_attrs, write_store


def meta(n: int, subject: str = "s", **extra) -> dict:
    return {
        "subject": [f"{subject}{i // 2}" for i in range(n)],
        "slice": np.arange(n),
        "frame": np.zeros(n, int),
        "n_frames": np.full(n, 25),
        "phase": ["ED"] * n,
        "group": ["control"] * n,
        "spacing_mm": np.tile([1.25, 1.5], (n, 1)),
        "source": ["test"] * n,
        **extra,
    }


def arrays(n: int, h: int = 6, w: int = 5, seed: int = 0):
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 1, (n, h, w)).astype(np.float32), rng.integers(0, 4, (n, h, w)).astype(np.uint8)


def test_write_read_round_trip(tmp_path):
    images, masks = arrays(4)
    disp = np.random.default_rng(1).normal(size=(4, 2, 6, 5)).astype(np.float32)
    m = meta(4, vendor=["A", "B", "A", "C"], split=["train", "train", "test", "test"])
    path = write_store(
        tmp_path / "s.h5",
        images,
        masks,
        m,
        extras={"displacement": disp},
        attrs={"name": "demo", "config": {"a": 1}, "labelled": True},
    )
    store = read_store(path)
    np.testing.assert_array_equal(store.images, images)
    np.testing.assert_array_equal(store.masks, masks)
    np.testing.assert_array_equal(store.extras["displacement"], disp)
    assert list(store.meta["subject"]) == m["subject"]
    assert list(store.meta["vendor"]) == ["A", "B", "A", "C"]
    assert store.meta["slice"].dtype == np.int32 and store.meta["spacing_mm"].dtype == np.float32
    np.testing.assert_allclose(store.meta["spacing_mm"][2], [1.25, 1.5])
    assert store.attrs["format_version"] == FORMAT_VERSION and store.attrs["name"] == "demo"
    assert json.loads(store.attrs["config"]) == {"a": 1} and bool(store.attrs["labelled"])
    assert read_store(path, extras=False).extras == {}
    assert set(read_meta(path)) == set(m)
    assert store_attrs(path)["name"] == "demo"
    sub = store.subset([1, 3])
    assert len(sub) == 2 and list(sub.meta["split"]) == ["train", "test"]
    np.testing.assert_array_equal(sub.extras["displacement"], disp[[1, 3]])


def test_incremental_writer_and_split_column(tmp_path):
    path = tmp_path / "inc.h5"
    with StoreWriter(path, (6, 5), name="inc") as w:
        for k in range(3):
            images, masks = arrays(2, seed=k)
            w.append(images, masks, meta(2, subject=f"b{k}_"))
            assert not path.exists()  # nothing visible before close
        w.set_meta_column("split", ["train"] * 4 + ["val"] * 2)
        assert list(w.read_meta_columns(["split"])["split"]) == ["train"] * 4 + ["val"] * 2
    store = read_store(path)
    assert len(store) == 6
    np.testing.assert_array_equal(store.images[4:], arrays(2, seed=2)[0])
    assert list(store.meta["subject"][:2]) == ["b0_0", "b0_0"]


def test_failure_leaves_no_file(tmp_path):
    path = tmp_path / "half.h5"
    with pytest.raises(RuntimeError):
        with StoreWriter(path, (6, 5)) as w:
            w.append(*arrays(2), meta(2))
            raise RuntimeError("crash half-way")
    assert not path.exists() and list(tmp_path.iterdir()) == []


def test_empty_store_is_an_error(tmp_path):
    w = StoreWriter(tmp_path / "e.h5", (6, 5))
    with pytest.raises(StoreError, match=r"e.h5: no slices were written"):
        w.close()
    assert list(tmp_path.iterdir()) == []


def test_append_errors(tmp_path):
    w = StoreWriter(tmp_path / "a.h5", (6, 5))
    images, masks = arrays(2)
    with pytest.raises(StoreError, match=r"a.h5: images must be \(N, 6, 5\)"):
        w.append(images[:, :5], masks[:, :5], meta(2))
    bad = meta(2)
    del bad["phase"]
    with pytest.raises(StoreError, match=r"lacks required column\(s\) \['phase'\]"):
        w.append(images, masks, bad)
    w.append(images, masks, meta(2))
    with pytest.raises(StoreError, match="meta columns changed"):
        w.append(images, masks, meta(2, vendor=["A", "B"]))
    with pytest.raises(StoreError, match=r"meta/spacing_mm: expected shape \(2, 2\)"):
        w.append(images, masks, {**meta(2), "spacing_mm": [1.0, 1.0]})
    w.abort()
    assert not (tmp_path / "a.h5").exists()


def test_check_store_names_file_and_key(tmp_path):
    with pytest.raises(StoreError, match=r"missing.h5: slice store not found"):
        check_store(tmp_path / "missing.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(StoreError, match=r"text.h5: not a readable HDF5"):
        read_store(tmp_path / "text.h5")
    path = write_store(tmp_path / "ok.h5", *arrays(3), meta(3))
    with h5py.File(path, "a") as f:
        del f["meta/phase"]
    with pytest.raises(StoreError, match=r"ok.h5: missing required key\(s\) \['meta/phase'\]"):
        read_meta(path)
    path = write_store(tmp_path / "rows.h5", *arrays(3), meta(3))
    with h5py.File(path, "a") as f:
        del f["meta/group"]
        f["meta/group"] = np.array([b"a", b"b"])
    with pytest.raises(StoreError, match=r"rows.h5: meta/group has 2 rows, expected 3"):
        check_store(path)


# --------------------------------------------------------------------------- partial reads


def test_partial_reads_agree_with_the_whole_store(tmp_path):
    from tagseg.io.store import iter_images, read_images, read_slices, split_rows, store_shape

    images, masks = arrays(5)
    split = ["train", "test", "train", "val", "test"]
    path = write_store(tmp_path / "s.h5", images, masks, meta(5, split=split))
    assert store_shape(path) == (5, 6, 5)
    np.testing.assert_array_equal(split_rows(path, ["test"]), [1, 4])
    np.testing.assert_array_equal(split_rows(path, ["train", "val"]), [0, 2, 3])
    np.testing.assert_array_equal(split_rows(path, None), np.arange(5))
    assert split_rows(path, ["nope"]).size == 0
    np.testing.assert_array_equal(read_images(path), images)
    np.testing.assert_array_equal(read_images(path, [3, 0]), images[[3, 0]])
    batches = list(iter_images(path, [0, 2, 3, 4], batch_size=3))
    assert [len(b) for b in batches] == [3, 1]
    np.testing.assert_array_equal(np.concatenate(batches), images[[0, 2, 3, 4]])
    got_images, got_masks = read_slices(path, [4, 1])  # any order, as given
    np.testing.assert_array_equal(got_images, images[[4, 1]])
    np.testing.assert_array_equal(got_masks, masks[[4, 1]])


def test_split_rows_without_a_split_column_names_the_file_and_key(tmp_path):
    from tagseg.errors import DataError
    from tagseg.io.store import split_rows

    path = write_store(tmp_path / "s.h5", *arrays(2), meta(2))
    with pytest.raises(DataError, match=r"s\.h5 \(data_a\): no meta/split column to select splits \['train'\]"):
        split_rows(path, ["train"], where="data_a")


def test_has_labels_and_store_layout(tmp_path):
    from tagseg.io.store import has_labels, hdf5_keys, is_store_layout

    images, masks = arrays(3)
    labelled = write_store(tmp_path / "a.h5", images, masks, meta(3))
    empty = write_store(tmp_path / "b.h5", images, np.zeros_like(masks), meta(3))
    assert has_labels(labelled, block_rows=2) and not has_labels(empty, block_rows=2)
    assert is_store_layout(hdf5_keys(labelled))
    with h5py.File(tmp_path / "imt.h5", "w") as f:
        f["imt"] = np.zeros((4, 4, 2))
    assert hdf5_keys(tmp_path / "imt.h5") == {"imt"} and not is_store_layout({"imt"})


def test_store_reader_reads_rows_in_any_order(tmp_path):
    from tagseg.io.store import open_labelled_store

    images, masks = arrays(4)
    disp = np.arange(4 * 2 * 6 * 5, dtype=np.float32).reshape(4, 2, 6, 5)
    path = write_store(tmp_path / "s.h5", images, masks, meta(4), extras={"displacement": disp})
    with open_labelled_store(path, "input store", "check input=", "masks needed") as reader:
        assert reader.shape == (4, 6, 5) and reader.extra_names() == ["displacement"]
        assert reader.extra_spec() == {"displacement": ((2, 6, 5), np.dtype(np.float32))}
        np.testing.assert_array_equal(reader.rows("images", np.array([1, 2])), images[1:3])
        np.testing.assert_array_equal(reader.rows("masks", np.array([3, 0])), masks[[3, 0]])
        np.testing.assert_array_equal(reader.rows("displacement", slice(2, 4)), disp[2:])
        assert list(reader.meta()["subject"]) == ["s0", "s0", "s1", "s1"]
    with h5py.File(tmp_path / "nomask.h5", "w") as f:
        f["images"] = images
    with pytest.raises(StoreError, match="nomask.h5: no /masks: masks needed"):
        open_labelled_store(tmp_path / "nomask.h5", "input store", "check input=", "masks needed")


def test_store_labels_are_the_conventions():
    from tagseg.conventions import LABELS
    from tagseg.io.store import STORE_LABEL_VALUES

    assert STORE_LABEL_VALUES == LABELS


def test_only_io_opens_a_slice_store():
    """h5py is imported in tagseg/io/ and by the MATLAB-file readers/writers only (those files are
    not slice stores); no other module spells the store's ``meta/split`` key."""
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parents[1] / "tagseg"
    matlab = {"data/readers/tagged.py", "data/phantom/layouts.py"}
    offenders = []
    for path in package.rglob("*.py"):
        rel = path.relative_to(package).as_posix()
        if rel.startswith("io/"):
            continue
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
            names += [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n.split(".")[0] == "h5py" for n in names) and rel not in matlab:
                offenders.append(f"{rel}:{node.lineno}: imports h5py")
            if isinstance(node, ast.Constant) and node.value == "meta/split":
                offenders.append(f"{rel}:{node.lineno}: indexes 'meta/split'")
    assert not offenders, offenders
