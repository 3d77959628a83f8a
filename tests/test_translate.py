"""method=physics: output equals contrast * pattern, carry-over, jitter, config and CLI errors."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from conftest import run_tagseg
from store_checks import assert_carried_over

from tagseg.errors import ConfigError
from tagseg.io.store import read_store, write_store
from tagseg.physics.tagging import simulate_tagging_direct
from tagseg.stages.translate import build_translator
from tagseg.translate.physics import PhysicsTranslator

SIZE = 24


def make_cine_store(path, n=5, size=SIZE, spacing_mm=1.4):
    rng = np.random.default_rng(3)
    images = rng.random((n, size, size)).astype(np.float32)
    masks = np.zeros((n, size, size), np.uint8)
    masks[:, 6:18, 6:18] = 2
    masks[:, 9:15, 9:15] = 3
    meta = {
        "subject": [f"p{i // 2}" for i in range(n)],
        "slice": [0] * n,
        "frame": [i % 2 for i in range(n)],
        "n_frames": [2] * n,
        "phase": ["ED", "ES"] * (n // 2) + ["ED"] * (n % 2),
        "group": ["NOR"] * n,
        "spacing_mm": [[spacing_mm, spacing_mm]] * n,
        "source": ["acdc"] * n,
        "split": ["train"] * n,
    }
    write_store(path, images, masks, meta, name="acdc")
    return images


def test_physics_output_is_sqrt_then_direct_bloch(tmp_path):
    images = make_cine_store(tmp_path / "in.h5")
    PhysicsTranslator({"spacing_px": 6.0, "flip_deg": 80.0}, batch_size=2, progress=False, n_figure=0).run(
        tmp_path / "in.h5", tmp_path / "out.h5"
    )
    out = read_store(tmp_path / "out.h5")
    for k in range(len(images)):
        ref = simulate_tagging_direct(torch.from_numpy(np.sqrt(images[k])), spacing_px=6.0, flip_deg=80.0)
        np.testing.assert_allclose(out.images[k], ref.numpy(), atol=1e-5)
    src = read_store(tmp_path / "in.h5")
    assert_carried_over(src, out, "physics(acdc)")
    params = json.loads(out.attrs["translate"])
    assert params["physics"]["spacing_px"] == 6.0 and params["physics"]["contrast"] == "sqrt"


def test_spacing_mm_uses_each_image_pixel_spacing(tmp_path):
    images = make_cine_store(tmp_path / "in.h5", spacing_mm=2.0)
    PhysicsTranslator({"spacing_mm": 10.0, "contrast": "none"}, progress=False, n_figure=0).run(
        tmp_path / "in.h5", tmp_path / "out.h5"
    )
    ref = simulate_tagging_direct(torch.from_numpy(images[0]), spacing_px=5.0)
    np.testing.assert_allclose(read_store(tmp_path / "out.h5").images[0], ref.numpy(), atol=1e-5)


def test_jitter_is_per_image_seeded_and_batch_independent(tmp_path):
    make_cine_store(tmp_path / "in.h5", n=4)
    params = {"random_offset": True, "spacing_jitter": 0.2, "flip_jitter": 0.2, "contrast": "power"}
    runs = []
    for batch_size in (1, 4):
        out = tmp_path / f"out{batch_size}.h5"
        PhysicsTranslator(params, batch_size=batch_size, seed=7, progress=False, n_figure=0).run(
            tmp_path / "in.h5", out
        )
        runs.append(read_store(out).images)
    np.testing.assert_allclose(runs[0], runs[1], atol=1e-6)
    plain = PhysicsTranslator({"contrast": "power"}, seed=7, progress=False, n_figure=0)
    plain.run(tmp_path / "in.h5", tmp_path / "plain.h5")
    assert np.abs(read_store(tmp_path / "plain.h5").images - runs[0]).max() > 0.05


@pytest.mark.parametrize(
    "override, match",
    [
        ("physics.spacing_px=1.5", "physics.spacing_px must be >= 2 pixels.*got 1.5"),
        ("physics.flip_deg=0", r"physics.flip_deg must be in \(0, 180\] degrees, got 0"),
        ("physics.flip_deg=200", r"physics.flip_deg must be in \(0, 180\] degrees, got 200"),
        ("physics.contrast=log", "physics.contrast must be one of .*'log'"),
        ("+physics.spacing=3", r"physics: unknown key\(s\) \['spacing'\]"),
    ],
)
def test_config_errors_name_the_value(compose_config, override, match):
    cfg = compose_config("translate", "input=x.h5", override, tiny=False)
    with pytest.raises(ConfigError, match=match):
        build_translator(cfg)


def test_config_defaults_are_the_paper(compose_config):
    cfg = compose_config("translate", "input=x.h5", tiny=False)
    t = build_translator(cfg)
    assert type(t) is PhysicsTranslator
    p = t.physics
    assert (p.spacing_px, p.flip_deg, p.pattern, p.angle_deg, p.contrast) == (5.0, 70.0, (1, 3, 3, 1), 45.0, "sqrt")


def _cli(tmp_path, *args):
    return run_tagseg(["translate", *args, "method.progress=false"], tmp_path, root=tmp_path, timeout=120)


def test_cli_translates_and_writes_figure(tmp_path):
    make_cine_store(tmp_path / "in.h5")
    res = _cli(tmp_path, "method=physics", "input=in.h5", "output=out.h5", "physics.spacing_px=6")
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "out.h5").exists() and (tmp_path / "out.png").stat().st_size > 1000
    out = read_store(tmp_path / "out.h5")
    assert "spacing_px: 6" in out.attrs["config"]


def test_cli_refuses_store_without_masks_and_writes_nothing(tmp_path):
    import h5py

    make_cine_store(tmp_path / "in.h5")
    with h5py.File(tmp_path / "in.h5", "a") as f:
        del f["masks"]
    res = _cli(tmp_path, "input=in.h5", "output=out.h5")
    assert res.returncode == 2
    assert "in.h5: no /masks" in res.stderr and "Traceback" not in res.stderr
    assert not (tmp_path / "out.h5").exists() and not (tmp_path / ".out.h5.partial").exists()
