"""``tagseg translate method=cyclegan`` and ``tagseg cyclegan``: carry-over, errors, the app end to end."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import run_tagseg
from cyclegan_fixtures import make_store, one_thread, train_tiny_cyclegan
from store_checks import assert_carried_over

from tagseg.data.intensity import from_gan, to_gan
from tagseg.errors import ConfigError
from tagseg.io.store import read_store
from tagseg.translate.cyclegan import CycleGANTranslator, load_generator

_one_thread = pytest.fixture(autouse=True)(one_thread)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A CycleGAN checkpoint after one step on tiny stores, and the module."""
    return train_tiny_cyclegan(tmp_path_factory.mktemp("cg"))


def test_translate_preserves_shapes_masks_meta_and_extras(tmp_path, trained):
    ckpt, model = trained
    src_path = make_store(
        tmp_path / "in.h5", n=5, size=(24, 40), seed=7, splits=["train", "val", "test", "train", "val"]
    )
    report = CycleGANTranslator(ckpt, batch_size=2, progress=False, n_figure=2).run(src_path, tmp_path / "out.h5")
    src, out = read_store(src_path), read_store(tmp_path / "out.h5")
    assert out.images.shape == src.images.shape == (5, 24, 40)
    assert "displacement" in src.extras
    assert_carried_over(src, out, "cyclegan(toy)")
    assert float(out.images.min()) >= 0.0 and float(out.images.max()) <= 1.0
    # exactly G_AB between the two conversions, whatever the batch size
    with torch.no_grad():
        expected = from_gan(model.g_ab.eval()(to_gan(torch.from_numpy(src.images)).unsqueeze(1))).squeeze(1).numpy()
    np.testing.assert_allclose(out.images, expected, atol=1e-5)
    assert json.loads(out.attrs["translate"])["method"] == "cyclegan"
    assert report.figure is not None and report.figure.exists()


def test_load_generator_bad_checkpoints(tmp_path):
    with pytest.raises(ConfigError, match="ckpt: no CycleGAN checkpoint given"):
        load_generator(None)
    with pytest.raises(ConfigError, match=r"ckpt: checkpoint .*missing\.ckpt not found"):
        load_generator(tmp_path / "missing.ckpt")
    (tmp_path / "junk.ckpt").write_text("not a checkpoint")
    with pytest.raises(ConfigError, match="not a readable PyTorch checkpoint"):
        load_generator(tmp_path / "junk.ckpt")
    # a segmentation run's checkpoint: Lightning layout, another network
    from tagseg.models.networks import build_network

    net = build_network("nnunet", image_size=16, strides=[1, 2, 2], filters=[4, 8, 8])
    torch.save(
        {
            "state_dict": {f"net.{k}": v for k, v in net.state_dict().items()},
            "hyper_parameters": {"lr": 1e-3},
            "epoch": 3,
        },
        tmp_path / "seg.ckpt",
    )
    with pytest.raises(
        ConfigError, match=r"seg\.ckpt: a checkpoint of another model type .*expected a cyclegan checkpoint"
    ):
        CycleGANTranslator(tmp_path / "seg.ckpt")


def test_translate_rejects_a_store_size_the_generator_cannot_take_before_writing(tmp_path, trained):
    ckpt, _ = trained
    src = make_store(tmp_path / "odd.h5", n=2, size=30, seed=1)
    with pytest.raises(ConfigError, match=r"input store .*odd\.h5: size 30x30 .* multiple of 4"):
        CycleGANTranslator(ckpt, progress=False).run(src, tmp_path / "out.h5")
    assert not (tmp_path / "out.h5").exists()


def stores(store_a: Path, store_b: Path) -> list[str]:
    return [f"data_a.store={store_a}", f"data_b.store={store_b}"]


def test_cyclegan_app_trains_checkpoints_grids_and_checks_tagness(compose_config, tmp_path):
    from tagseg.stages.cyclegan import format_tagness, train_cyclegan

    a = make_store(tmp_path / "cine.h5", n=4, seed=0)
    b = make_store(tmp_path / "tagged.h5", n=4, tagged=True, seed=3)
    cfg = compose_config(
        "cyclegan", *stores(a, b), "tagness_check.enabled=true", f"tagness_check.output={tmp_path / 'tr.h5'}"
    )
    result = train_cyclegan(cfg)
    run = tmp_path / "run"
    assert result["last_ckpt"] == run / "checkpoints" / "last.ckpt" and result["last_ckpt"].exists()
    assert result["epochs"] == 2 and result["global_step"] == 2 * 2 * 2  # epochs x batches x optimisers
    assert sorted(p.name for p in (run / "grids").glob("*.png")) == ["epoch_001.png", "epoch_002.png"]
    assert (run / "config.yaml").exists() and list(run.glob("csv/*/metrics.csv"))
    tg = json.loads((run / "tagness.json").read_text())
    assert set(tg) >= {"cine", "translated", "tagged", "translated_over_cine"} and tg["tagged"] > tg["cine"]
    assert read_store(tmp_path / "tr.h5").images.shape == (4, 32, 32)
    assert "translated / cine" in format_tagness(tg)
    # the checkpoint drives `tagseg translate method=cyclegan ... ckpt=...`
    from tagseg.stages.translate import build_translator

    tcfg = compose_config(
        "translate",
        "method=cyclegan",
        f"ckpt={result['last_ckpt']}",
        f"input={a}",
        f"output={tmp_path / 'out.h5'}",
        tiny=False,
    )
    translator = build_translator(tcfg)
    assert isinstance(translator, CycleGANTranslator) and translator.ckpt == result["last_ckpt"]


def test_cyclegan_app_bad_input_fails_before_training(compose_config, tmp_path):
    from tagseg.stages.cyclegan import train_cyclegan

    a = make_store(tmp_path / "cine.h5", n=2, seed=0)
    odd = make_store(tmp_path / "odd.h5", n=2, size=30, tagged=True, seed=3)
    with pytest.raises(ConfigError, match=r"data_b store .*odd\.h5: size 30x30 .* multiple of 4"):
        train_cyclegan(compose_config("cyclegan", *stores(a, odd)))
    with pytest.raises(ConfigError, match=r"ckpt_path: checkpoint .*nope\.ckpt not found"):
        train_cyclegan(compose_config("cyclegan", *stores(a, a), f"ckpt_path={tmp_path / 'nope.ckpt'}"))
    assert not (tmp_path / "run" / "checkpoints").exists()


def test_gan_strategy_turns_on_unused_parameters_for_ddp():
    from tagseg.stages.cyclegan import gan_strategy

    assert gan_strategy("ddp") == "ddp_find_unused_parameters_true"
    assert gan_strategy("ddp_spawn") == "ddp_spawn_find_unused_parameters_true"
    assert gan_strategy("auto") == "auto"


def test_cli_missing_checkpoint_is_one_clear_line(tmp_path):
    a = make_store(tmp_path / "cine.h5", n=2, seed=0)
    proc = run_tagseg(
        [
            "translate",
            "method=cyclegan",
            f"input={a}",
            f"ckpt={tmp_path / 'none.ckpt'}",
            f"hydra.run.dir={tmp_path / 'h'}",
        ],
        None,
        root=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    lines = [line for line in proc.stderr.splitlines() if line.startswith("tagseg: error:")]
    assert len(lines) == 1 and "none.ckpt not found" in lines[0]
    assert "Traceback" not in proc.stderr


@pytest.mark.slow
def test_cyclegan_trains_under_ddp_on_two_cpu_processes(compose_config, tmp_path):
    """Two ranks (gloo, spawned): find_unused_parameters is switched on, both steps run, last.ckpt written."""
    from tagseg.stages.cyclegan import train_cyclegan

    a = make_store(tmp_path / "cine.h5", n=8, seed=0)
    b = make_store(tmp_path / "tagged.h5", n=8, tagged=True, seed=3)
    cfg = compose_config(
        "cyclegan", *stores(a, b), "+trainer.strategy=ddp_spawn", "trainer.devices=2", "model.n_epochs_decay=0"
    )
    result = train_cyclegan(cfg)
    assert result["last_ckpt"] is not None and result["last_ckpt"].exists()
    state = torch.load(result["last_ckpt"], map_location="cpu", weights_only=True)
    assert state["tagseg_model"] == "cyclegan"
    # 2 batches per rank (limit_train_batches) x 2 optimisers
    assert state["global_step"] == 4


def test_resume_from_last_ckpt_continues_the_epoch_and_lr_schedule(compose_config, tmp_path):
    import pandas as pd

    from tagseg.stages.cyclegan import train_cyclegan

    a = make_store(tmp_path / "cine.h5", n=4, seed=0)
    b = make_store(tmp_path / "tagged.h5", n=4, tagged=True, seed=3)
    first = train_cyclegan(compose_config("cyclegan", *stores(a, b), "trainer.max_epochs=1"))
    assert first["epochs"] == 1
    resumed_run = tmp_path / "resumed"
    cfg = compose_config("cyclegan", *stores(a, b), f"ckpt_path={first['last_ckpt']}", output_dir=resumed_run)
    second = train_cyclegan(cfg)
    assert second["epochs"] == 2 and second["global_step"] == 2 * first["global_step"]
    metrics = pd.read_csv(next(resumed_run.glob("csv/*/metrics.csv")))
    lrs = metrics.dropna(subset=["lr"])
    # only epoch 1 ran here, at the decayed lr: 2e-4 * (1 - 1 / (1 + 1))
    assert lrs["epoch"].tolist() == [1] and lrs["lr"].tolist() == pytest.approx([1e-4])


def test_translate_app_end_to_end_with_a_cyclegan_checkpoint(tmp_path, trained):
    """The same call `tagseg translate method=cyclegan input=... output=... ckpt=...` makes."""
    from tagseg.apps.translate import main

    ckpt, _ = trained
    src = make_store(tmp_path / "in.h5", n=3, seed=2)
    argv = [
        "tagseg-translate",
        "method=cyclegan",
        f"input={src}",
        f"output={tmp_path / 'out.h5'}",
        f"ckpt={ckpt}",
        "method.progress=false",
        f"hydra.run.dir={tmp_path / 'h'}",
    ]
    old = sys.argv
    sys.argv = argv
    try:
        main()
    finally:
        sys.argv = old
    out, inp = read_store(tmp_path / "out.h5"), read_store(src)
    np.testing.assert_array_equal(out.masks, inp.masks)
    assert list(out.meta["source"]) == ["cyclegan(toy)"] * 3
