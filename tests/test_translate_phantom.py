"""Acceptance of method=physics_dynamic on the built-in phantom's cine store.

The phantom's ``/displacement`` is the ground truth: the tag pattern at frame t must correlate
> 0.8 with the ED pattern carried by the true motion inside the myocardium, both when the
motion comes from the store and when it is estimated from the cine by TV-L1, and the tag
contrast must fade monotonically.
"""

from __future__ import annotations

import hydra
import numpy as np
import pytest
import torch

from tagseg.data.prepare import prepare_store
from tagseg.io.store import read_store
from tagseg.physics.dynamic import ed_positions_from_displacement
from tagseg.physics.tagging import tag_mz
from tagseg.stages.translate import build_translator

TAG = {"spacing_px": 5.0, "flip_deg": 70.0}


def phantom_metrics(compose_config, tmp_path, image_size: int, n_frames: int, motion: str):
    """Translate one phantom cine slice (conf/data/phantom_cine.yaml); correlation and depth per frame."""
    overrides = [
        "data=phantom_cine",
        "data.n_subjects=1",
        "data.n_slices=1",
        f"data.n_frames={n_frames}",
        f"data.image_size={image_size}",
        "method=physics_dynamic",
        f"method.motion={motion}",
        "method.progress=false",
        "method.n_figure=0",
        f"physics.spacing_px={TAG['spacing_px']}",
        f"physics.flip_deg={TAG['flip_deg']}",
    ]
    cfg = compose_config("translate", *overrides, tiny=False)
    prepare_store(hydra.utils.instantiate(cfg.data), tmp_path / "cine.h5", seed=0)
    cine = read_store(tmp_path / "cine.h5")
    assert "displacement" in cine.extras and cine.meta["phase"][0] == "ED"
    build_translator(cfg).run(tmp_path / "cine.h5", tmp_path / "dyn.h5")
    out = read_store(tmp_path / "dyn.h5")
    truth = ed_positions_from_displacement(torch.from_numpy(cine.extras["displacement"]))
    corr, depth = [], []
    for k in np.argsort(cine.meta["frame"]):
        inside = (cine.masks[k] == 2) & (cine.images[k] > 0.05)
        m = out.images[k][inside] / np.sqrt(cine.images[k][inside])
        carried = tag_mz(truth[k, 0], truth[k, 1], **TAG).abs().numpy()[inside]
        corr.append(float(np.corrcoef(m, carried)[0, 1]))
        depth.append(float(m.std() / m.mean()))
    np.testing.assert_array_equal(out.masks, cine.masks)
    return corr, depth


@pytest.mark.parametrize("motion", ["displacement", pytest.param("tvl1", marks=pytest.mark.slow)])
def test_phantom_tags_follow_true_motion_and_fade(compose_config, tmp_path, motion):
    corr, depth = phantom_metrics(compose_config, tmp_path, image_size=128, n_frames=10, motion=motion)
    assert min(corr) > 0.8, corr
    assert all(b < a for a, b in zip(depth, depth[1:])), depth


@pytest.mark.slow
def test_phantom_full_size_optical_flow(compose_config, tmp_path):
    corr, depth = phantom_metrics(compose_config, tmp_path, image_size=256, n_frames=25, motion="tvl1")
    assert min(corr) > 0.8, corr
    assert all(b < a for a, b in zip(depth, depth[1:])), depth
