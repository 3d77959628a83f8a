"""One store specification: `tagseg prepare`, on-demand preparation and a strategy's prepare stage agree."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import raw_fixtures as rf
from omegaconf import open_dict

from tagseg.data.prepare import ensure_store
from tagseg.data.store_spec import StoreSpec
from tagseg.errors import ConfigError
from tagseg.io.store import read_store, store_attrs
from tagseg.pipeline.strategy import plan_strategy
from tagseg.runtime.config import compose as _compose
from tagseg.stages.prepare import prepare

#: (x, y) in-plane matrices of the 4 patients: stored slices (rows, cols) 40x48, 48x40, 44x52, 40x48
SHAPES = [(48, 40), (40, 48), (52, 44), (48, 40)]


def compose(name: str, overrides: list[str]):
    cfg = _compose(name, overrides)
    with open_dict(cfg):
        cfg.paths.output_dir = "unused"
    return cfg


def heterogeneous_acdc(root: Path) -> Path:
    """4 ACDC patients whose in-plane matrices differ (as real ACDC / M&Ms / SCD do)."""
    for pid, (nx, ny) in enumerate(SHAPES, start=1):
        pdir = root / "training" / f"patient{pid:03d}"
        pdir.mkdir(parents=True)
        (pdir / "Info.cfg").write_text("ED: 1\nES: 3\nGroup: NOR\nHeight: 170\nNbFrame: 4\nWeight: 70\n")
        rng = np.random.default_rng(pid)
        for frame in (1, 3):
            image = rng.integers(0, 900, (nx, ny, 2)).astype(np.int16)
            labels = np.stack([rf.ring_labels(nx, ny) for _ in range(2)], axis=-1)
            rf.write_nifti(pdir / f"patient{pid:03d}_frame{frame:02d}.nii.gz", image, (1.4, 1.3, 8.0))
            rf.write_nifti(pdir / f"patient{pid:03d}_frame{frame:02d}_gt.nii.gz", labels, (1.4, 1.3, 8.0))
    return root


def test_spec_defaults_come_from_one_yaml_and_auto_follows_the_dataset():
    raw = StoreSpec.from_config(None, {"root": "x"})
    assert raw == StoreSpec(image_size=256, spacing_mm=None, seed=0, split_ratios=(0.7, 0.15, 0.15))
    assert StoreSpec.from_config({"image_size": "auto"}, {"image_size": 64}).image_size == 64  # the phantom's size
    assert StoreSpec.from_config({"image_size": None}).image_size is None
    with pytest.raises(ConfigError, match="prepare.image_size"):
        StoreSpec.from_config({"image_size": 4})
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['size'\]"):
        StoreSpec.from_config({"size": 64})
    with pytest.raises(ConfigError, match="prepare.split_ratios"):
        StoreSpec.from_config({"split_ratios": [1, 1]})


def test_strategy_prepare_stage_keeps_every_patient_and_equals_tagseg_prepare(tmp_path):
    root = heterogeneous_acdc(tmp_path / "acdc")
    # the strategy's prepare stage of the cine source (tagseg train strategy=cine data@strategy.source=acdc)
    cfg = compose(
        "train",
        [
            "strategy=cine",
            "data@strategy.source=acdc",
            f"strategy.source.root={root}",
            f"paths.data_dir={tmp_path / 'data'}",
            f"paths.cache_dir={tmp_path / 'cache'}",
        ],
    )
    stage = next(s for s in plan_strategy(cfg) if s.label == "prepare[acdc]")
    out = tmp_path / "stage"
    out.mkdir()
    result = stage.compute(out, {})
    assert result["n_skipped"] == 0
    via_strategy = read_store(result["store"])
    assert sorted(set(via_strategy.meta["subject"])) == ["patient001", "patient002", "patient003", "patient004"]
    assert via_strategy.images.shape == (4 * 2 * 2, 256, 256)
    # spacing scaled with the resize: (row, col) = (1.3 * ny / 256, 1.4 * nx / 256) per patient
    for (nx, ny), sub in zip(SHAPES, ["patient001", "patient002", "patient003", "patient004"]):
        rows = via_strategy.meta["subject"] == sub
        np.testing.assert_allclose(
            via_strategy.meta["spacing_mm"][rows][0], [1.3 * ny / 256, 1.4 * nx / 256], rtol=1e-5
        )
    # `tagseg prepare data=acdc` with the same seed writes the same arrays and splits
    pcfg = compose(
        "prepare",
        [
            "data=acdc",
            f"data.root={root}",
            f"output={tmp_path / 'prepared.h5'}",
            "seed=0",
            "prepare.figure=false",
            f"paths.data_dir={tmp_path / 'data'}",
        ],
    )
    report, _ = prepare(pcfg)
    assert report.skipped == []
    via_prepare = read_store(tmp_path / "prepared.h5")
    np.testing.assert_array_equal(via_prepare.images, via_strategy.images)
    np.testing.assert_array_equal(via_prepare.masks, via_strategy.masks)
    for key in ("subject", "split", "spacing_mm", "phase"):
        np.testing.assert_array_equal(via_prepare.meta[key], via_strategy.meta[key])
    assert json.loads(store_attrs(tmp_path / "prepared.h5")["store_spec"])["image_size"] == 256
    # ... and on-demand preparation (train / evaluate on a missing store) too
    ocfg = compose("train", ["data=acdc", f"data.root={root}", f"paths.data_dir={tmp_path / 'data'}"])
    on_demand = read_store(ensure_store(ocfg.data, StoreSpec.from_config(ocfg.prepare, ocfg.data)))
    np.testing.assert_array_equal(on_demand.images, via_strategy.images)
    np.testing.assert_array_equal(on_demand.meta["split"], via_strategy.meta["split"])


def test_table1_counts_are_stored_and_printed(tmp_path):
    root = heterogeneous_acdc(tmp_path / "acdc")
    cfg = compose(
        "prepare",
        [
            "data=acdc",
            f"data.root={root}",
            f"output={tmp_path / 's.h5'}",
            "prepare.figure=false",
            "prepare.image_size=32",
        ],
    )
    report, _ = prepare(cfg)
    assert json.loads(store_attrs(tmp_path / "s.h5")["slice_counts"]) == {
        "acdc": {"ED": 8, "ES": 8, "other": 0, "total": 16}
    }
    assert report.table1().splitlines()[1].split() == ["acdc", "8", "8", "0", "16"]
