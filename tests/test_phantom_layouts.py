"""tagseg phantom: the four raw layouts read back by their readers, nothing lost, geometry kept."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from conftest import run_tagseg
from phantom_raw import TINY_COHORT, write_raw_trees

from tagseg.data.phantom.cohort import CohortSpec, display_to_stored, draw_subject
from tagseg.data.prepare import build_store
from tagseg.data.readers.acdc import AcdcSource
from tagseg.data.store_spec import StoreSpec
from tagseg.errors import ConfigError
from tagseg.io.store import read_store, store_attrs
from tagseg.runtime.config import compose

ROOT = Path(__file__).resolve().parents[1]
SIZE = 32


@pytest.fixture(scope="module")
def raw(tmp_path_factory):
    root = tmp_path_factory.mktemp("raw")
    return root, write_raw_trees(root)


def _prepare(root: Path, data: str, out: Path, *overrides: str):
    cfg = compose("prepare", [f"data={data}", f"paths.data_dir={root}", *overrides])
    return build_store(cfg.data, out, StoreSpec.from_config({"image_size": SIZE}, cfg.data))


@pytest.mark.parametrize("fmt", ["acdc", "mnms", "scd", "tagged"])
def test_each_layout_prepares_back_with_nothing_skipped(raw, fmt, tmp_path):
    root, manifests = raw
    manifest = manifests[fmt]
    report = _prepare(root, fmt, tmp_path / "s.h5", f"data.root={root / fmt}")
    assert report.skipped == []
    assert report.slice_counts()[fmt] == manifest["counts"]
    store = read_store(tmp_path / "s.h5", extras=False)
    assert store.images.shape[1:] == (SIZE, SIZE)
    written = {s["id"]: s for s in manifest["subjects"]}
    assert set(store.meta["subject"]) == set(written)
    for sub in written.values():  # spacing scaled with the resize, per subject, per axis
        rows = store.meta["subject"] == sub["id"]
        matrix = sub["matrix"][::-1] if sub["orientation"] == "transpose" and fmt != "tagged" else sub["matrix"]
        if fmt == "tagged" and sub["layout"] != "h5" and sub["orientation"] == "transpose":
            matrix = sub["matrix"][::-1]
        expect = [sub["spacing_mm"] * matrix[0] / SIZE, sub["spacing_mm"] * matrix[1] / SIZE]
        np.testing.assert_allclose(store.meta["spacing_mm"][rows][0], expect, rtol=1e-3)
        if fmt in ("acdc", "mnms"):  # the dataset's own test / validation folders keep their split
            own = {"test": {"test"}, "val": {"val"}}.get(sub["split"])
            if own:
                assert set(store.meta["split"][rows]) == own
    if fmt in ("acdc", "mnms", "scd"):
        assert {"vendor", "centre"} <= set(store.meta)
    if fmt == "mnms":
        vendors = {s["id"]: s["vendor"] for s in written.values()}
        assert all(vendors[s] == v for s, v in zip(store.meta["subject"], store.meta["vendor"]))
    by_subject = {}
    for s, sp in zip(store.meta["subject"], store.meta["split"]):
        by_subject.setdefault(s, set()).add(sp)
    assert all(len(v) == 1 for v in by_subject.values())  # no subject in two splits


def test_a_subject_stored_flipped_or_transposed_reads_back_as_such(raw):
    root, manifests = raw
    src = AcdcSource(root / "acdc")
    orientations = set()
    for item, sub in zip(src.items(), sorted(manifests["acdc"]["subjects"], key=lambda s: s["id"])):
        drawn = draw_subject("cine", int(sub["id"][-3:]) - 1, 4, 0, TINY_COHORT)
        recs = [r for r in src.load(item, 0) if r.phase == "ED"]
        orientations.add(sub["orientation"])
        for z, rec in enumerate(recs):
            np.testing.assert_array_equal(rec.mask, display_to_stored(drawn.labels[z, drawn.ed], sub["orientation"]))
            assert rec.image.shape == display_to_stored(drawn.images[z, 0], sub["orientation"]).shape
        assert not recs[0].mask.any() and not recs[-1].mask.any()  # basal / apical slices without labels
    assert len(orientations) >= 2


def test_cohort_ranges_are_checked():
    with pytest.raises(ConfigError, match=r"cohort.matrix"):
        CohortSpec.from_mapping({"matrix": [8, 600000]})
    with pytest.raises(ConfigError, match=r"cohort.orientations"):
        CohortSpec.from_mapping({"orientations": ["sideways"]})
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['size'\]"):
        CohortSpec.from_mapping({"size": 3})


def test_cli_writes_a_layout_and_prints_what_it_wrote(tmp_path):
    cmd = [
        "phantom",
        "format=acdc",
        "n_subjects=2",
        "cohort.matrix=[36,40]",
        "cohort.frames=[12,12]",
        "cohort.slices=[2,2]",
        f"hydra.run.dir={tmp_path}/run",
    ]
    res = run_tagseg(cmd, ROOT, root=tmp_path, timeout=300)
    assert res.returncode == 0, res.stderr
    out = tmp_path / "data" / "raw" / "acdc"
    assert sorted(p.name for p in (out / "training").iterdir()) == ["patient001", "patient002"]
    assert json.loads((out / "tagseg_phantom.json").read_text())["counts"]["total"] == 2 * 4 * 2
    assert f"tagseg prepare data=acdc data.root={out}" in res.stdout
    bad = run_tagseg([cmd[0], "format=dicomdir", f"hydra.run.dir={tmp_path}/run2"], ROOT, root=tmp_path, timeout=120)
    assert bad.returncode == 2 and "tagseg: error: format: expected one of" in bad.stderr


PAPER_SHRUNK = [
    "trainer=cpu",
    "trainer.accelerator=cpu",
    "trainer.devices=1",
    "trainer.precision=32",
    "trainer.max_epochs=1",
    "strategy.pretrain.trainer.max_epochs=1",
    "datamodule.image_size=32",
    "datamodule.num_workers=0",
    "datamodule.pin_memory=false",
    f"prepare.image_size={SIZE}",
]


def paper_roots(root: Path) -> list[str]:
    return [
        f"data.root={root / 'tagged'}",
        f"strategy.source.acdc_root={root / 'acdc'}",
        f"strategy.source.mnms_root={root / 'mnms'}",
        f"strategy.source.scd_root={root / 'scd'}",
    ]


def test_paper_experiment_prepares_the_raw_roots_with_nothing_lost(raw, tmp_path):
    """experiment=paper from raw folders: the prepare stages of the tagged set and of data=cine (ACDC + M&Ms + SCD)."""
    from omegaconf import open_dict

    from tagseg.pipeline.strategy import plan_strategy

    root, manifests = raw
    cfg = compose(
        "train",
        [
            "experiment=paper",
            "strategy=cine",
            *paper_roots(root),
            *PAPER_SHRUNK,
            f"paths.cache_dir={tmp_path / 'cache'}",
            f"paths.data_dir={tmp_path / 'data'}",
        ],
    )
    with open_dict(cfg):
        cfg.paths.output_dir = str(tmp_path / "run")
    stages = {s.label: s for s in plan_strategy(cfg)}
    for label, datasets in (("prepare[tagged]", ["tagged"]), ("prepare[cine]", ["acdc", "mnms", "scd"])):
        out = tmp_path / label
        out.mkdir()
        result = stages[label].compute(out, {})
        assert result["n_skipped"] == 0
        store = read_store(result["store"], extras=False)
        counts = json.loads(store_attrs(result["store"])["slice_counts"])
        assert counts == {d: manifests[d]["counts"] for d in datasets}  # Table 1 = what was written
        assert store.images.shape[1:] == (SIZE, SIZE)
        assert (store.meta["spacing_mm"] > 1.6 * 40 / SIZE - 1e-6).all()  # scaled with the resize (matrix >= 40)
        splits: dict[str, set] = {}
        for sub, sp in zip(store.meta["subject"], store.meta["split"]):
            splits.setdefault(sub, set()).add(sp)
        assert all(len(v) == 1 for v in splits.values())
        for d in datasets:
            for s in manifests[d]["subjects"]:
                if d in ("acdc", "mnms") and s["split"] == "test":
                    assert splits[s["id"]] == {"test"}
    assert {"vendor", "centre"} <= set(store.meta) and set(store.meta["vendor"]) >= {"GE", "Siemens"}
