"""docs/extending.md: every documented extension (reader, network, translator, pretraining source, metric, predict
input format) works as shown, and every stage has the files the page lists.

The files of the page's code blocks (```python file=... / ```yaml file=...) are written into a temporary
folder, which goes on ``sys.path`` (the ``mytags`` package) and is given to the stages with ``--config-dir``.
"""

from __future__ import annotations

import csv
import importlib
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

from tagseg.data.scan_formats import unregister_scan_format
from tagseg.io.store import read_store
from tagseg.metric_registry import metric_names, unregister_metric
from tagseg.models.networks import NETWORKS
from tests.conftest import compose_stage

DOC = Path(__file__).resolve().parents[1] / "docs" / "extending.md"
BLOCK = re.compile(r"```(?:python|yaml) file=(\S+)\n(.*?)```", re.S)

pytestmark = pytest.mark.usefixtures("single_thread")


def doc_text() -> str:
    return DOC.read_text()


@pytest.fixture
def project(tmp_path, monkeypatch):
    """The page's files under ``tmp_path`` (``mytags/``, ``my_conf/``), importable; cleaned up after."""
    files = BLOCK.findall(doc_text())
    assert {name for name, _ in files} >= {
        "mytags/reader.py",
        "mytags/net.py",
        "mytags/invert.py",
        "mytags/metric.py",
        "mytags/npzscan.py",
        "my_conf/data/rings.yaml",
        "my_conf/method/invert.yaml",
        "my_conf/strategy/dynamic.yaml",
    }
    for name, body in files:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
    (tmp_path / "mytags" / "__init__.py").write_text("")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("TAGSEG_ROOT", str(tmp_path))
    yield tmp_path
    for name in [m for m in sys.modules if m == "mytags" or m.startswith("mytags.")]:
        del sys.modules[name]
    NETWORKS.pop("tiny_fcn", None)
    unregister_metric("sensitivity")
    unregister_scan_format("npz")


def run_app(stage: str, *args: str) -> None:
    module = importlib.import_module(f"tagseg.apps.{stage}")
    old = sys.argv
    sys.argv = [f"tagseg-{stage}", *args]
    try:
        module.main()
    finally:
        sys.argv = old


def test_a_custom_reader_prepares_a_store(project):
    assert "tagseg prepare --config-dir my_conf data=rings prepare.image_size=32" in doc_text()
    out = project / "rings.h5"
    run_app(
        "prepare",
        "--config-dir",
        str(project / "my_conf"),
        "data=rings",
        "prepare.image_size=32",
        f"output={out}",
        "prepare.figure=false",
        f"hydra.run.dir={project / 'h'}",
    )
    store = read_store(out)
    assert store.images.shape == (8, 32, 32) and set(np.unique(store.masks)) == {0, 2, 3}
    assert sorted(set(store.meta["subject"])) == ["r0", "r1", "r2", "r3"] and set(store.meta["source"]) == {"rings"}


def test_a_registered_network_trains_and_its_checkpoint_rebuilds(project, ring_store):
    assert "tagseg train model.network.name=mytags.net:tiny_fcn +model.network.width=8" in doc_text()
    from tagseg.models.segmenter import load_segmenter
    from tagseg.stages.train import train

    cfg = compose_stage(
        "train",
        [
            "model=resnetvae",
            f"paths.output_dir={project / 'run'}",
            f"data.store={ring_store}",
            "model.network.name=mytags.net:tiny_fcn",
            "+model.network.width=8",
            "datamodule.image_size=30",
            "trainer.max_steps=1",
            "test=false",
        ],
    )
    result = train(cfg)
    assert result.global_step == 1 and result.last_ckpt is not None
    assert type(NETWORKS["tiny_fcn"].cls).__name__ == "type" and NETWORKS["tiny_fcn"].cls.__name__ == "TinyFCN"
    segmenter = load_segmenter(result.last_ckpt)  # the checkpoint names the network; loading rebuilds it
    assert (
        type(segmenter.network).__name__ == "TinyFCN" and segmenter.image_size == 30
    )  # the bare network, no Lightning
    labels = segmenter.segment(np.random.default_rng(0).random((2, 40, 36)).astype(np.float32))
    assert labels.shape == (2, 40, 36) and set(np.unique(labels)) <= {0, 2}


def test_a_custom_translator_runs_through_tagseg_translate(project, ring_store):
    assert "tagseg translate --config-dir my_conf method=invert" in doc_text()
    out = project / "invert.h5"
    run_app(
        "translate",
        "--config-dir",
        str(project / "my_conf"),
        "method=invert",
        f"input={ring_store}",
        f"output={out}",
        f"hydra.run.dir={project / 'h'}",
    )
    src, got = read_store(ring_store), read_store(out)
    np.testing.assert_allclose(got.images, 1.0 - src.images, atol=1e-6)
    np.testing.assert_array_equal(got.masks, src.masks)
    assert set(got.meta["source"]) == {"invert(rings)"}


def test_a_new_pretraining_source_is_planned(project):
    assert "tagseg train --config-dir my_conf strategy=dynamic" in doc_text()
    from tagseg.errors import ConfigError
    from tagseg.pipeline.strategy import plan_strategy
    from tagseg.runtime.config import CONF_DIR

    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        # the user's folder on the search path, as --config-dir puts it
        cfg = compose("train", overrides=[f"hydra.searchpath=[file://{project / 'my_conf'}]", "strategy=dynamic"])
        labels = [s.label for s in plan_strategy(cfg)]
        gan = compose(
            "train",
            overrides=["strategy=physics", "+strategy.translate.gan2=['method=cyclegan']", "strategy.chain=[gan2]"],
        )
        gan_labels = [s.label for s in plan_strategy(gan)]
        typo = compose("train", overrides=["strategy=physics", "strategy.chain=[dynamc]"])
        with pytest.raises(
            ConfigError, match=r"unknown source\(s\) \['dynamc'\]; expected a list of \['cine', 'physics', 'cyclegan'\]"
        ):
            plan_strategy(typo)
    assert labels == [
        "prepare[phantom_tagged]",
        "prepare[phantom_cine]",
        "translate[dynamic]",
        "pretrain[dynamic]",
        "finetune",
        "test",
    ]
    assert gan_labels == [
        "prepare[phantom_tagged]",
        "prepare[phantom_cine]",
        "cyclegan",
        "translate[gan2]",
        "pretrain[gan2]",
        "finetune",
        "test",
    ]  # method=cyclegan: the GAN is trained first


def test_a_registered_metric_is_computed_per_image_and_per_class(project):
    import torch

    from tagseg.io.run_dir import metric_columns
    from tagseg.models.segmentation import image_metrics

    importlib.import_module("mytags.metric")
    assert metric_names()[-1] == "sensitivity" and metric_columns()[-1] == "sensitivity"
    label = torch.zeros(2, 8, 8, dtype=torch.long)
    label[:, 2:6, 2:6] = 1  # 16 target pixels of class 1
    pred = label.clone()
    pred[0, 2:4, 2:6] = 0  # image 0 finds 8 of them
    pred[1, 0, 0] = 2  # class 2 predicted where the target has none
    values = dict(zip(metric_names(), image_metrics(pred, label, torch.ones(2, 2), 2)))
    np.testing.assert_allclose(values["sensitivity"], [[0.5, 1.0], [1.0, 1.0]])


def test_a_registered_scan_format_is_predicted_and_a_bad_file_is_listed(project, trained_ckpt):
    import nibabel as nib

    assert "tagseg predict ckpt=<run> input=scans/ 'reader.formats=[mytags.npzscan]'" in doc_text()
    from tests.conftest import ring_slices

    scans, out = project / "scans", project / "pred"
    scans.mkdir()
    images, _ = ring_slices(3, 40)
    np.savez(scans / "good.npz", frames=images, spacing_mm=np.array([1.5, 1.25]))
    (scans / "broken.npz").write_bytes(b"PK not an archive")
    with pytest.raises(SystemExit) as stop:
        run_app(
            "predict",
            f"ckpt={trained_ckpt}",
            f"input={scans}",
            f"output={out}",
            "reader.formats=[mytags.npzscan]",
            "qc.enabled=false",
            f"hydra.run.dir={project / 'h'}",
        )
    assert stop.value.code == 1  # one scan failed, the other was predicted
    mask = nib.load(out / "good_mask.nii.gz")
    assert mask.shape == (40, 40, 3) and np.allclose(mask.header.get_zooms()[:2], (1.25, 1.5))
    failed = (out / "failed.csv").read_text()
    assert "broken.npz,unreadable scan archive" in failed and "expected .npz with 'frames'" in failed
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert [(r["scan"], r["frame"]) for r in rows] == [("good", "0"), ("good", "1"), ("good", "2")]


def test_a_scan_format_cannot_take_a_built_in_suffix_and_a_bad_reader_is_refused(tmp_path):
    from tagseg.data.scan_formats import ScanFormat, register_scan_format
    from tagseg.data.scans import find_inputs, read_scan
    from tagseg.errors import ConfigError, DataError

    with pytest.raises(ConfigError, match=r"\['.nii.gz'\] are read by tagseg's own readers"):
        register_scan_format(ScanFormat("mine", (".nii.gz",), lambda p, s: None, "mine"))
    with pytest.raises(ConfigError, match="cannot import 'no_such_module'"):
        find_inputs(tmp_path, formats=["no_such_module"])
    register_scan_format(ScanFormat("odd", (".odd",), lambda p, s: "not a scan", "an odd file (.odd)"))
    try:
        (tmp_path / "a.odd").write_text("x")
        (found,) = find_inputs(tmp_path)
        assert (found.kind, found.name) == ("odd", "a")
        with pytest.raises(DataError, match=r"a.odd: the odd reader returned str, expected a Scan"):
            read_scan(found)
        with pytest.raises(DataError, match=r"expected a slice store .*, an odd file \(.odd\), or a folder"):
            find_inputs(tmp_path / "missing")
    finally:
        unregister_scan_format("odd")


def test_every_stage_has_the_files_and_the_section_the_page_lists():
    from tagseg.cli import STAGES

    root = Path(__file__).resolve().parents[1]
    assert "four files and two doc lines" in doc_text()
    stages_doc = (root / "docs" / "stages.md").read_text()
    for stage, (app, _) in STAGES.items():
        assert app == f"tagseg.apps.{stage}"
        for path in (f"tagseg/conf/{stage}.yaml", f"tagseg/stages/{stage}.py", f"tagseg/apps/{stage}.py"):
            assert (root / path).is_file(), f"{stage}: {path} missing"
        headings = [line for line in stages_doc.splitlines() if line.startswith("## ")]
        assert any(f"`tagseg {stage}" in h for h in headings), f"{stage}: no section in docs/stages.md"
