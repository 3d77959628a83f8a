"""docs/extending.md: every documented extension (reader, network, translator, pretraining source, metric) works as
shown.

The files of the page's code blocks (```python file=... / ```yaml file=...) are written into a temporary
folder, which goes on ``sys.path`` (the ``mytags`` package) and is given to the stages with ``--config-dir``.
"""

from __future__ import annotations

import importlib
import re
import sys
from pathlib import Path

import numpy as np
import pytest
from hydra import compose, initialize_config_dir

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
