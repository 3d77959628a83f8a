"""prepare_store: reproducibility, atomicity, skip/strict policy, verify mode, resizing, splits, CLI."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
import raw_fixtures as rf
from conftest import run_tagseg

from tagseg.data.prepare import normalise_record, prepare_store
from tagseg.data.readers.acdc import AcdcSource
from tagseg.data.records import SliceRecord
from tagseg.data.splits import split_column, split_subjects
from tagseg.errors import ConfigError, DataError, StoreError
from tagseg.io.store import read_store, store_attrs

ROOT = Path(__file__).resolve().parents[1]


class ListSource:
    """A tiny source: item i gives two 8x8 slices of subject ``p{i}``; items in ``bad`` are broken."""

    name = "toy"

    def __init__(self, n: int = 6, bad=(), crash_at: int | None = None, extra_keys=None):
        self.n, self.bad, self.crash_at = n, dict(bad), crash_at
        self.extra_keys = extra_keys or {}
        self.store_attrs = {"labelled": True}

    def items(self):
        return list(range(self.n))

    def describe(self, item):
        return f"item{item}"

    def load(self, item, seed):
        if item == self.crash_at:
            raise RuntimeError("reader bug")
        if item in self.bad:
            raise DataError(f"item{item}.nii.gz: {self.bad[item]}")
        rng = np.random.default_rng([seed, item])
        mask = np.zeros((8, 8), np.uint8)
        mask[2:6, 2:6] = 2
        extra = {k: f"v{item}" for k in self.extra_keys.get(item, ())}
        return [
            SliceRecord(
                image=rng.uniform(0, 9, (8, 8)).astype(np.float32),
                mask=mask,
                subject=f"p{item}",
                slice=z,
                frame=0,
                n_frames=1,
                phase="ED",
                group="g",
                spacing_mm=(1.0, 2.0),
                source="toy",
                extra_meta=extra,
            )
            for z in range(2)
        ]


def test_same_seed_gives_identical_store(tmp_path):
    a = prepare_store(ListSource(), tmp_path / "a.h5", seed=7, image_size=None)
    prepare_store(ListSource(), tmp_path / "b.h5", seed=7, image_size=None)
    sa, sb = read_store(tmp_path / "a.h5"), read_store(tmp_path / "b.h5")
    np.testing.assert_array_equal(sa.images, sb.images)
    np.testing.assert_array_equal(sa.masks, sb.masks)
    for key in sa.meta:
        np.testing.assert_array_equal(sa.meta[key], sb.meta[key])
    assert a.n_slices == 12
    assert sa.images.min() == 0.0 and sa.images.max() == 1.0


def test_acdc_prepared_twice_is_identical(tmp_path):
    root = rf.make_acdc(tmp_path / "raw", n_train=3, n_test=1)
    for name in ("a.h5", "b.h5"):
        prepare_store(AcdcSource(root), tmp_path / name, seed=1, image_size=16)
    sa, sb = read_store(tmp_path / "a.h5"), read_store(tmp_path / "b.h5")
    np.testing.assert_array_equal(sa.images, sb.images)
    np.testing.assert_array_equal(sa.meta["split"], sb.meta["split"])
    assert sa.images.shape[1:] == (16, 16)


def test_failure_half_way_keeps_old_store_and_leaves_no_partial(tmp_path):
    out = tmp_path / "s.h5"
    prepare_store(ListSource(n=3), out, image_size=None)
    before = out.read_bytes()
    with pytest.raises(RuntimeError, match="reader bug"):
        prepare_store(ListSource(n=6, crash_at=4), out, image_size=None)
    assert out.read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.h5"]
    with pytest.raises(DataError, match="item1.nii.gz: truncated"):
        prepare_store(ListSource(n=6, bad={1: "truncated"}), tmp_path / "new.h5", strict=True, image_size=None)
    assert not (tmp_path / "new.h5").exists() and not (tmp_path / ".new.h5.partial").exists()


def test_skip_policy_counts_and_records_skips(tmp_path):
    out = tmp_path / "s.h5"
    report = prepare_store(ListSource(bad={1: "empty mask", 4: "odd number of values"}), out, image_size=None)
    assert report.n_slices == 8
    assert report.skipped == [("item1", "item1.nii.gz: empty mask"), ("item4", "item4.nii.gz: odd number of values")]
    store = read_store(out)
    assert sorted(set(store.meta["subject"])) == ["p0", "p2", "p3", "p5"]
    attrs = store_attrs(out)
    assert attrs["n_skipped"] == 2 and "odd number of values" in attrs["skipped"] and bool(attrs["labelled"])
    table = report.table()
    assert "skipped 2 item(s):" in table and "item4: item4.nii.gz: odd number of values" in table
    assert [line.split() for line in table.splitlines() if line.startswith("total")] == [["total", "8"]]
    assert "toy                         train   ED" in table
    with pytest.raises(DataError, match="item1.nii.gz: empty mask"):
        prepare_store(ListSource(bad={1: "empty mask", 4: "odd"}), tmp_path / "t.h5", strict=True, image_size=None)


def test_verify_writes_nothing_and_lists_every_problem(tmp_path):
    out = tmp_path / "v.h5"
    report = prepare_store(ListSource(bad={0: "missing key 'ES'", 5: "label value"}), out, verify=True)
    assert not out.exists() and list(tmp_path.iterdir()) == []
    assert [i for i, _ in report.skipped] == ["item0", "item5"]
    assert report.n_slices == 8 and report.counts[("toy", "", "ED")] == 8


def test_extra_meta_columns_must_match(tmp_path):
    report = prepare_store(
        ListSource(n=3, extra_keys={0: ["vendor"], 1: ["vendor"], 2: ["centre"]}), tmp_path / "m.h5", image_size=None
    )
    assert report.skipped and "extra meta columns ['centre'] differ from the store's ['vendor']" in report.skipped[0][1]
    assert list(read_store(tmp_path / "m.h5").meta["vendor"]) == ["v0", "v0", "v1", "v1"]


def test_no_readable_item(tmp_path):
    with pytest.raises(DataError, match=r"toy: no slices could be read \(2 item\(s\) skipped\)"):
        prepare_store(ListSource(n=2, bad={0: "x", 1: "y"}), tmp_path / "n.h5")
    assert list(tmp_path.iterdir()) == []


def test_resize_and_resample_keep_millimetres():
    def rec():
        img = np.arange(20 * 10, dtype=np.float32).reshape(20, 10)
        return SliceRecord(
            image=img,
            mask=np.zeros((20, 10), np.uint8),
            subject="s",
            slice=0,
            frame=0,
            n_frames=1,
            phase="",
            group="",
            spacing_mm=(1.0, 2.0),
            source="t",
        )

    r = normalise_record(rec(), image_size=40, spacing_mm=None)
    assert r.image.shape == (40, 40) and r.spacing_mm == pytest.approx((0.5, 0.5))
    r = normalise_record(rec(), image_size=None, spacing_mm=0.5)
    assert r.image.shape == (40, 40) and r.spacing_mm == (0.5, 0.5)
    r = normalise_record(rec(), image_size=16, spacing_mm=1.0)  # 20 x 20 at 1 mm, then 16 x 16
    assert r.spacing_mm == pytest.approx((1.25, 1.25))
    with pytest.raises(ConfigError, match="prepare.image_size"):
        prepare_store(ListSource(), "unused.h5", image_size=4)


def test_splits_by_subject_and_seeded():
    subjects = [f"s{i}" for i in range(20) for _ in range(3)]
    col = split_column(subjects, (0.6, 0.2, 0.2), seed=3)
    for s in set(subjects):
        assert len(set(col[np.asarray(subjects) == s])) == 1
    mapping = split_subjects(subjects, (0.6, 0.2, 0.2), seed=3)
    assert sorted(list(mapping.values()).count(k) for k in ("train", "val", "test")) == [4, 4, 12]
    assert split_subjects(subjects, (0.6, 0.2, 0.2), seed=3) == mapping
    assert split_subjects(list(reversed(subjects)), (0.6, 0.2, 0.2), seed=3) == mapping  # order-free
    assert split_subjects(subjects, (0.6, 0.2, 0.2), seed=4) != mapping
    assert set(split_subjects(["a", "b", "c"], (0.8, 0.1, 0.1), 0).values()) == {"train", "val", "test"}
    with pytest.raises(ConfigError, match="split ratios"):
        split_subjects(subjects, (1.0, -0.1, 0.1))


def run_cli(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    cmd = ["prepare", *args, "prepare.figure=false", f"hydra.run.dir={cwd}/run"]
    return run_tagseg(cmd, ROOT, root=cwd, timeout=120)


def test_cli_cine_counts_table_and_verify(tmp_path):
    rf.make_acdc(tmp_path / "acdc", n_train=3, n_test=1)
    rf.make_mnms(tmp_path / "mnms")
    rf.make_scd(tmp_path / "scd")
    roots = [
        f"data.acdc_root={tmp_path / 'acdc'}",
        f"data.mnms_root={tmp_path / 'mnms'}",
        f"data.scd_root={tmp_path / 'scd'}",
    ]
    out = tmp_path / "cine.h5"
    res = run_cli("data=cine", *roots, f"output={out}", "prepare.image_size=16", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    counts_table = res.stdout.split("\ntotal")[0]  # the per-split table; the Table-1 counts follow it
    lines = {
        tuple(line.split()[:3]): int(line.split()[-1])
        for line in counts_table.splitlines()
        if line.startswith(("acdc", "mnms", "scd"))
    }
    table1 = {
        line.split()[0]: [int(v) for v in line.split()[1:]]
        for line in res.stdout.split("\ntotal")[1].splitlines()
        if line.startswith(("acdc", "mnms", "scd", "all"))
    }
    assert table1["scd"][-1] == 7 and table1["all"][-1] == sum(lines.values())
    assert lines[("acdc", "test", "ED")] >= 3 and lines[("mnms", "val", "ES")] == 2
    assert sum(v for (s, _, _), v in lines.items() if s == "scd") == 7
    store = read_store(out)
    assert len(store) == 4 * 2 * 3 + 20 + 7 == sum(lines.values())
    assert set(store.meta["source"]) == {"acdc", "mnms", "scd"}
    assert {"vendor", "centre"} <= set(store.meta)
    attrs = store_attrs(out)
    assert (
        attrs["name"] == "cine" and bool(attrs["labelled"]) and json.loads(attrs["datasets"]) == ["acdc", "mnms", "scd"]
    )
    assert "acdc_root: " + str(tmp_path / "acdc") in attrs["config"]
    res = run_cli(
        "data=cine", *roots, f"output={tmp_path / 'v.h5'}", "verify=true", "data.datasets=[scd]", cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr
    assert "verified cine: 7 slices readable, 0 problem(s)" in res.stdout and not (tmp_path / "v.h5").exists()


def test_cli_missing_root_is_one_clear_error(tmp_path):
    res = run_cli("data=acdc", f"data.root={tmp_path / 'nope'}", cwd=tmp_path)
    assert res.returncode == 2
    assert f"tagseg: error: {tmp_path / 'nope'}: ACDC root folder not found" in res.stderr
    assert "Traceback" not in res.stderr


def test_ensure_store_prepares_a_raw_dataset_once(tmp_path):
    from omegaconf import OmegaConf

    from tagseg.data.prepare import ensure_store

    rf.make_acdc_patient(tmp_path / "raw", "training", 1)
    cfg = OmegaConf.create(
        {
            "_target_": "tagseg.data.readers.acdc.AcdcSource",
            "name": "acdc",
            "store": str(tmp_path / "acdc.h5"),
            "root": str(tmp_path / "raw"),
        }
    )
    path = ensure_store(cfg, prepare_missing=True)
    store = read_store(path)
    assert store.images.shape == (6, 256, 256)  # the prepare.image_size default
    np.testing.assert_allclose(store.meta["spacing_mm"][0], [1.25 * 10 / 256, 1.5 * 12 / 256], rtol=1e-6)
    stamp = path.stat().st_mtime_ns
    assert ensure_store(cfg) == path and path.stat().st_mtime_ns == stamp
    cfg.store, cfg.root = str(tmp_path / "other.h5"), str(tmp_path / "missing")
    with pytest.raises(DataError, match="missing: ACDC root folder not found"):
        ensure_store(cfg, prepare_missing=True)


def test_ensure_store_prepares_only_stores_at_their_configured_location(tmp_path):
    from omegaconf import OmegaConf

    from tagseg.data.prepare import ensure_store

    rf.make_acdc_patient(tmp_path / "raw", "training", 1)
    cfg = OmegaConf.create(
        {
            "paths": {"data_dir": str(tmp_path / "data")},
            "data": {
                "_target_": "tagseg.data.readers.acdc.AcdcSource",
                "name": "acdc",
                "store": "${paths.data_dir}/acdc.h5",
                "root": str(tmp_path / "raw"),
            },
        }
    )
    assert ensure_store(cfg.data) == tmp_path / "data" / "acdc.h5" and (tmp_path / "data" / "acdc.h5").exists()
    # an explicit path (a typo, say) must exist: no dataset is built there
    cfg.data.store = str(tmp_path / "typo.h5")
    with pytest.raises(StoreError, match=r"typo\.h5: slice store not found \(data=acdc\).*tagseg prepare data=acdc"):
        ensure_store(cfg.data)
    assert not (tmp_path / "typo.h5").exists()
