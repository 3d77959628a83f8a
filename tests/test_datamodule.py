"""SliceDataModule: the batch contract, SI once per slice, splits, augmentation, errors."""

from __future__ import annotations

import h5py
import numpy as np
import pytest
import torch

from tagseg.data.datamodule import SliceDataModule, compute_si, load_slices, to_classes
from tagseg.errors import ConfigError, StoreError
from tagseg.io.store import read_store
from tagseg.losses import shape_information

pytestmark = pytest.mark.usefixtures("single_thread")

NO_AUG = {"enabled": False}


def make_dm(stores, **kwargs) -> SliceDataModule:
    kwargs.setdefault("image_size", 32)
    kwargs.setdefault("batch_size", 4)
    kwargs.setdefault("augment", NO_AUG)
    dm = SliceDataModule([str(s) for s in stores], **kwargs)
    dm.setup("fit")
    return dm


def test_batch_contract_values(ring_store):
    dm = make_dm([ring_store])
    store = read_store(ring_store)
    batch = next(iter(dm.val_dataloader()))
    assert batch["image"].dtype == torch.float32 and batch["image"].shape == (4, 1, 32, 32)
    assert batch["label"].dtype == torch.int64 and batch["label"].shape == (4, 1, 32, 32)
    assert batch["si"].dtype == torch.float32 and batch["si"].shape == (4, 1, 32, 32)
    assert batch["spacing_mm"].shape == (4, 2)
    for i, row in enumerate(batch["index"].tolist()):
        # same size: the stored [0, 1] image, normalised with the paper's mean / std
        expected = (store.images[row] - 0.456) / 0.224
        np.testing.assert_allclose(batch["image"][i, 0].numpy(), expected, atol=1e-6)
        np.testing.assert_array_equal(batch["label"][i, 0].numpy(), (store.masks[row] == 2).astype(np.int64))
        np.testing.assert_allclose(
            batch["si"][i, 0].numpy(), shape_information(store.masks[row] == 2, k=0.2), atol=1e-6
        )
        assert batch["subject"][i] == store.meta["subject"][row]
        assert int(batch["frame"][i]) == store.meta["frame"][row]
        assert batch["group"][i] == store.meta["group"][row]
    np.testing.assert_allclose(batch["spacing_mm"].numpy(), np.tile([1.5, 1.25], (4, 1)))


def test_resize_scales_spacing_and_keeps_labels(ring_store):
    dm = make_dm([ring_store], image_size=64)
    batch = next(iter(dm.val_dataloader()))
    assert batch["image"].shape == (4, 1, 64, 64)
    np.testing.assert_allclose(batch["spacing_mm"].numpy(), np.tile([0.75, 0.625], (4, 1)))
    assert set(batch["label"].unique().tolist()) == {0, 1}


def test_class_list_maps_store_labels_in_order():
    masks = np.array([[[0, 1, 2, 3]]], np.uint8)
    np.testing.assert_array_equal(to_classes(masks, [3, 2]), [[[0, 0, 2, 1]]])
    si = compute_si(to_classes(masks, [3, 2]), 2, 0.2)
    assert si.shape == (1, 2, 1, 4) and si[0, 0, 0, 3] > 0 and si[0, 1, 0, 2] > 0 and si[0, :, 0, :2].sum() == 0


def test_two_classes_give_two_si_channels(ring_store):
    dm = make_dm([ring_store], classes=[2, 3])
    batch = next(iter(dm.val_dataloader()))
    assert batch["si"].shape[1] == 2 and set(batch["label"].unique().tolist()) == {0, 1, 2}


def test_store_split_column_is_used(ring_store):
    dm = make_dm([ring_store])
    meta = read_store(ring_store).meta
    for split in ("train", "val", "test"):
        rows = dm.datasets[split].rows
        assert set(meta["split"][rows]) == {split}
    assert dm.split_counts() == {"train": 16, "val": 4, "test": 4}


def test_seeded_subject_split_without_column(make_ring_store):
    path = make_ring_store("nosplit.h5", n_subjects=10, with_split=False)
    a = load_slices([path], 32, [2], seed=3)
    b = load_slices([path], 32, [2], seed=3)
    np.testing.assert_array_equal(a.split, b.split)
    for subject in set(a.subject):
        assert len(set(a.split[a.subject == subject])) == 1, "a subject must never be in two splits"
    assert set(a.split) == {"train", "val", "test"}
    c = load_slices([path], 32, [2], seed=4)
    assert not np.array_equal(a.split, c.split)


def test_several_stores_combine(make_ring_store):
    a = make_ring_store("a.h5")
    b = make_ring_store("b.h5", n_subjects=3, with_split=False, seed=1)
    dm = make_dm([a, b])
    assert sum(dm.split_counts().values()) == 24 + 12
    stores = set(dm.data.store[dm.datasets["train"].rows])
    assert stores == {str(a), str(b)}


def test_flip_moves_image_label_and_si_together(ring_store):
    aug = {"flip_prob": 1.0, "noise_prob": 0.0, "blur_prob": 0.0, "affine_prob": 0.0, "elastic_prob": 0.0}
    dm = make_dm([ring_store], augment=aug)
    ds = dm.datasets["train"]
    sample = ds[0]
    row = int(ds.rows[0])
    flip = lambda a: np.flip(a, axis=(-2, -1))  # noqa: E731
    np.testing.assert_allclose(sample["image"][0].numpy(), (flip(dm.data.images[row]) - 0.456) / 0.224, atol=1e-6)
    np.testing.assert_array_equal(sample["label"][0].numpy(), flip(dm.data.labels[row]))
    np.testing.assert_allclose(sample["si"][0].numpy(), flip(dm.data.si[row, 0]), atol=1e-6)


def test_affine_and_elastic_keep_labels_integral_and_si_aligned(ring_store):
    aug = {"flip_prob": 0.0, "noise_prob": 1.0, "blur_prob": 1.0, "affine_prob": 1.0, "elastic_prob": 1.0}
    dm = make_dm([ring_store], augment=aug)
    sample = dm.datasets["train"][1]
    assert sample["label"].dtype == torch.int64 and set(sample["label"].unique().tolist()) <= {0, 1}
    inside = sample["label"][0] == 1
    # SI moved with the label: high on the myocardium, ~0 far from it
    assert sample["si"][0][inside].mean() > 0.5 and sample["si"][0][~inside].mean() < 0.2
    # val / test never augmented
    val = dm.datasets["val"][0]
    np.testing.assert_allclose(
        val["image"][0].numpy(), (dm.data.images[dm.datasets["val"].rows[0]] - 0.456) / 0.224, atol=1e-6
    )


def test_missing_store_names_it(tmp_path):
    with pytest.raises(StoreError, match="nope.h5.*not found"):
        make_dm([tmp_path / "nope.h5"])


def test_store_without_required_key(ring_store):
    with h5py.File(ring_store, "a") as f:
        del f["meta/spacing_mm"]
    with pytest.raises(StoreError, match=r"missing required key.*meta/spacing_mm"):
        make_dm([ring_store])


def test_not_hdf5(tmp_path):
    bad = tmp_path / "bad.h5"
    bad.write_text("not a store")
    with pytest.raises(StoreError, match="bad.h5.*not a readable HDF5"):
        make_dm([bad])


@pytest.mark.parametrize("classes", [[], [4], [2, 2]])
def test_bad_classes(classes, ring_store):
    with pytest.raises(ConfigError, match="datamodule.classes"):
        SliceDataModule([str(ring_store)], classes=classes)


def test_bad_augment_settings(ring_store):
    with pytest.raises(ConfigError, match="unknown key.*'rotate'"):
        SliceDataModule([str(ring_store)], augment={"rotate": 3})
    with pytest.raises(ConfigError, match="flip_prob.*probability"):
        SliceDataModule([str(ring_store)], augment={"flip_prob": 1.5})


def _subjects(dm) -> set[str]:
    return set(dm.data.subject[dm.datasets["train"].rows])


def test_n_train_subjects_is_a_seeded_nested_choice(make_ring_store):
    path = make_ring_store("many.h5", n_subjects=12, with_split=False)
    full = make_dm([path], seed=0)
    all_train = _subjects(full)
    chosen = {n: _subjects(make_dm([path], seed=0, n_train_subjects=n)) for n in (1, 2, 4)}
    assert [len(chosen[n]) for n in (1, 2, 4)] == [1, 2, 4]
    assert chosen[1] <= chosen[2] <= chosen[4] <= all_train  # nested for one seed
    assert chosen[2] == _subjects(make_dm([path], seed=0, n_train_subjects=2))  # seeded
    others = {frozenset(_subjects(make_dm([path], seed=s, n_train_subjects=2))) for s in range(1, 6)}
    assert len(others | {frozenset(chosen[2])}) > 1  # another seed picks other subjects
    # val / test are untouched
    assert make_dm([path], seed=0, n_train_subjects=1).split_counts()["val"] == full.split_counts()["val"]


def test_n_train_subjects_beyond_the_split_and_bad_values(ring_store):
    from tagseg.errors import DataError

    with pytest.raises(DataError, match="n_train_subjects=9.*only 4 subjects"):
        make_dm([ring_store], n_train_subjects=9)
    for bad in (0, 1.5, True):
        with pytest.raises(ConfigError, match="datamodule.n_train_subjects"):
            make_dm([ring_store], n_train_subjects=bad)


def test_min_train_samples_repeats_small_training_sets(ring_store):
    dm = make_dm([ring_store], n_train_subjects=1, min_train_samples=10)
    rows = dm.datasets["train"].rows
    assert len(rows) == 10 and len(set(rows.tolist())) == 4  # one subject: 4 slices, repeated
    assert len(make_dm([ring_store], min_train_samples=3).datasets["train"]) == 16  # already enough


def test_test_only_store_sets_up_for_testing(make_ring_store, tmp_path):
    import h5py

    path = make_ring_store("testonly.h5", n_subjects=3)
    with h5py.File(path, "r+") as f:
        del f["meta/split"]
        f["meta/split"] = np.array([b"test"] * f["images"].shape[0])
    dm = SliceDataModule([str(path)], image_size=32, batch_size=4, augment=NO_AUG)
    dm.setup("test")
    assert dm.split_counts()["test"] == 12
    with pytest.raises(Exception, match="no 'train' slices"):
        SliceDataModule([str(path)], image_size=32, batch_size=4, augment=NO_AUG).setup("fit")
