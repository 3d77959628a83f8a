"""`tagseg evaluate` on an external test set: a store holding only the chosen split, or a whole new cohort."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import TINY as TINY_OVERRIDES
from conftest import TINY_MODEL
from hydra import compose, initialize_config_dir

from tagseg.errors import DataError
from tagseg.io.store import read_store, write_store
from tagseg.runtime.config import CONF_DIR
from tagseg.stages.evaluate import evaluate
from tagseg.stages.train import train

TINY = [*TINY_OVERRIDES["train"], *TINY_MODEL]
KEYS = ["subject", "slice", "frame", "group"]


def _cfg(name: str, run_dir: Path, store: Path, *overrides: str):
    base = [f"paths.output_dir={run_dir}", f"data.store={store}"]
    extra = (
        TINY if name == "train" else ["datamodule.num_workers=0", "trainer=cpu", "trainer.enable_model_summary=false"]
    )
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose(name, overrides=base + extra + list(overrides))


def _subset(src: Path, dst: Path, rows: np.ndarray, split: str | None, labelled: bool = True) -> Path:
    store = read_store(src, extras=False)
    meta = {k: np.asarray(v)[rows] for k, v in store.meta.items() if k != "split"}
    if split is not None:
        meta["split"] = [split] * len(rows)
    masks = store.masks[rows] if labelled else np.zeros_like(store.masks[rows])
    return write_store(dst, store.images[rows], masks, meta, attrs={"labelled": labelled}, name="external")


def _rows(path: Path) -> pd.DataFrame:
    return pd.read_csv(path).sort_values(KEYS).reset_index(drop=True)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    from conftest import write_ring_store

    tmp = tmp_path_factory.mktemp("external")
    full = write_ring_store(tmp / "full.h5")
    train(_cfg("train", tmp / "run", full, "test=false"))
    return tmp, full


def test_test_only_store_gives_the_rows_of_the_same_images_in_the_full_store(trained):
    tmp, full = trained
    split = np.asarray(read_store(full, extras=False).meta["split"])
    test_only = _subset(full, tmp / "test_only.h5", np.flatnonzero(split == "test"), "test")
    a = evaluate(_cfg("evaluate", tmp / "ev_full", full, f"ckpt={tmp / 'run'}", "split=test"))
    b = evaluate(_cfg("evaluate", tmp / "ev_ext", test_only, f"ckpt={tmp / 'run'}", "split=test"))
    full_rows, ext_rows = _rows(a["metrics_path"]), _rows(b["metrics_path"])
    assert len(ext_rows) == int((split == "test").sum()) > 0
    pd.testing.assert_frame_equal(full_rows[KEYS], ext_rows[KEYS])
    np.testing.assert_allclose(full_rows["dice"], ext_rows["dice"], atol=1e-6)
    np.testing.assert_allclose(full_rows["hd95_mm"], ext_rows["hd95_mm"], atol=1e-5)
    assert b["summary"]["dice_mean"] == pytest.approx(a["summary"]["dice_mean"], abs=1e-6)
    assert Path(b["summary_path"]).is_file()


def test_a_new_cohort_without_splits_is_evaluated_whole_with_split_all(trained):
    tmp, full = trained
    n = len(read_store(full, extras=False))
    cohort = _subset(full, tmp / "cohort.h5", np.arange(n), None)
    result = evaluate(_cfg("evaluate", tmp / "ev_all", cohort, f"ckpt={tmp / 'run'}", "split=all"))
    assert len(pd.read_csv(result["metrics_path"])) == n and result["summary"]["split"] == "all"


def test_a_store_without_labels_is_refused_in_one_line(trained):
    tmp, full = trained
    unlabelled = _subset(full, tmp / "unlabelled.h5", np.arange(4), "test", labelled=False)
    with pytest.raises(DataError, match=r"unlabelled\.h5: the store has no labels \(labelled: false"):
        evaluate(_cfg("evaluate", tmp / "ev_none", unlabelled, f"ckpt={tmp / 'run'}"))
    test_only = _subset(full, tmp / "val_missing.h5", np.arange(4), "test")
    with pytest.raises(DataError, match=r"no 'val' slices to evaluate .*split=all"):
        evaluate(_cfg("evaluate", tmp / "ev_val", test_only, f"ckpt={tmp / 'run'}", "split=val"))


def test_a_raw_dataset_is_prepared_on_demand_and_evaluated_whole(trained, tmp_path):
    import raw_fixtures as rf

    tmp, _ = trained
    rf.make_acdc(tmp_path / "acdc", n_train=2, n_test=1)
    cfg = _cfg(
        "evaluate",
        tmp_path / "ev",
        tmp_path / "unused.h5",
        f"ckpt={tmp / 'run'}",
        "split=all",
        "data=acdc",
        f"data.root={tmp_path / 'acdc'}",
        f"paths.data_dir={tmp_path / 'data'}",
        "prepare.image_size=32",
        "data.store=${paths.data_dir}/acdc.h5",
    )
    result = evaluate(cfg)
    rows = pd.read_csv(result["metrics_path"])
    assert len(rows) == 3 * 2 * 3 and set(rows["subject"]) == {"patient001", "patient002", "patient101"}
    assert (tmp_path / "data" / "acdc.h5").is_file()
