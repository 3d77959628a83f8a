"""The combined cine source: items from each dataset, clear errors for a missing root or unknown name."""

from __future__ import annotations

import pytest
import raw_fixtures as rf

from tagseg.data.readers.acdc import AcdcSource
from tagseg.data.readers.cine import CineSource
from tagseg.data.readers.scd import ScdSource
from tagseg.errors import ConfigError, DataError


def test_items_per_dataset_and_describe(tmp_path):
    rf.make_acdc(tmp_path / "acdc", n_train=2, n_test=0)
    rf.make_scd(tmp_path / "scd")
    src = CineSource({"acdc": AcdcSource(tmp_path / "acdc"), "scd": ScdSource(tmp_path / "scd")})
    items = src.items()
    assert [name for name, _ in items] == ["acdc"] * 2 + ["scd"] * 3
    assert src.describe(items[0]) == "acdc:training/patient001"
    assert src.describe(items[2]) == "scd:SC-HF-I-1"
    recs = src.load(items[2], 0)
    assert {r.source for r in recs} == {"scd"} and all(r.extra_meta.keys() == {"vendor", "centre"} for r in recs)
    assert src.store_attrs == {"labelled": True, "datasets": ["acdc", "scd"]}


def test_missing_sub_root_names_dataset_and_folder(tmp_path):
    rf.make_acdc(tmp_path / "acdc", n_train=1, n_test=0)
    src = CineSource({"acdc": AcdcSource(tmp_path / "acdc"), "scd": ScdSource(tmp_path / "gone")})
    with pytest.raises(
        DataError, match=r"(?s)dataset 'scd' \(set data.scd_root=.*gone: SCD \(Sunnybrook\) root folder not found"
    ):
        src.items()
    assert len(CineSource(src.sources, datasets=["acdc"]).items()) == 1


def test_unknown_dataset_name(tmp_path):
    with pytest.raises(ConfigError, match=r"data.datasets names \['mms'\]"):
        CineSource({"acdc": AcdcSource(tmp_path)}, datasets=["mms"])
