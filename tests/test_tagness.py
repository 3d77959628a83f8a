"""Tagness: spectral share at a tag grid's frequency (tagseg/tagness.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from cyclegan_fixtures import one_thread

from tagseg.errors import ConfigError, DataError
from tagseg.io.store import write_store
from tagseg.physics.tagging import apply_tagging
from tagseg.tagness import store_tagness, tagness

_one_thread = pytest.fixture(autouse=True)(one_thread)


def heart_like(size: int = 64, seed: int = 0) -> torch.Tensor:
    """A smooth 'anatomy': bright disc (blood), darker ring (myocardium), soft background, noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size] / size
    r = np.hypot(yy - 0.5 - rng.normal(0, 0.03), xx - 0.45)
    img = 0.3 * np.exp(-((yy - 0.7) ** 2) / 0.1) + np.where(r < 0.18, 1.0, np.where(r < 0.26, 0.6, 0.0))
    img = img + rng.normal(0, 0.03, img.shape)
    return torch.tensor(np.clip(img, 0, None) / img.max(), dtype=torch.float32)


@pytest.mark.parametrize(("spacing_px", "angle_deg"), [(5.0, 45.0), (4.0, 30.0), (6.5, 0.0), (3.5, 45.0)])
def test_tagged_image_scores_far_above_the_same_image_untagged(spacing_px, angle_deg):
    img = heart_like()
    plain = float(tagness(img))
    tagged = float(tagness(apply_tagging(img, spacing_px=spacing_px, angle_deg=angle_deg)))
    assert plain < 0.05
    assert tagged > 8 * plain
    assert tagged > 0.15


def test_pure_grating_in_band_is_nearly_all_tag_energy_and_out_of_band_is_none():
    n = 60
    x = np.arange(n)
    in_band = np.cos(2 * np.pi * x / 5.0)[None, :].repeat(n, 0)  # 12 cycles: on a bin, period 5 px
    out_band = np.cos(2 * np.pi * x / 30.0)[None, :].repeat(n, 0)  # period 30 px: outside 3-8 px
    assert tagness(in_band) > 0.9
    assert tagness(out_band) < 1e-3
    # the band decides: widen it and the long period counts
    assert tagness(out_band, min_period_px=3, max_period_px=40) > 0.9


def test_scale_free_batched_and_constant_images():
    img = heart_like(48)
    tagged = apply_tagging(img)
    batch = torch.stack([img, tagged])
    np.testing.assert_allclose(tagness(batch), [tagness(img), tagness(tagged)], rtol=1e-12)
    assert tagness(3.0 * tagged) == pytest.approx(float(tagness(tagged)), rel=1e-9)
    assert tagness(np.ones((32, 32))) == 0.0
    assert tagness(img).ndim == 0 and tagness(batch).shape == (2,)


def test_bad_input():
    with pytest.raises(DataError, match="NaN"):
        tagness(np.full((16, 16), np.nan))
    with pytest.raises(DataError, match=r"\(H, W\) or \(N, H, W\)"):
        tagness(np.zeros((2, 2, 16, 16)))
    with pytest.raises(ConfigError, match="min_period_px < max_period_px"):
        tagness(np.zeros((16, 16)), min_period_px=8, max_period_px=4)
    with pytest.raises(ConfigError, match="n_peaks"):
        tagness(np.zeros((16, 16)), n_peaks=0)


def test_store_tagness_selects_splits_and_rows(tmp_path):
    plain = heart_like(32).numpy()
    tagged = apply_tagging(torch.from_numpy(plain)).numpy()
    images = np.stack([plain, tagged, plain, tagged])
    meta = {
        "subject": list("abcd"),
        "slice": [0] * 4,
        "frame": [0] * 4,
        "n_frames": [1] * 4,
        "phase": [""] * 4,
        "group": ["g"] * 4,
        "spacing_mm": [[1.0, 1.0]] * 4,
        "source": ["toy"] * 4,
        "split": ["train", "test", "train", "test"],
    }
    write_store(tmp_path / "s.h5", images, np.zeros(images.shape, np.uint8), meta, name="toy")
    all_rows = store_tagness(tmp_path / "s.h5", batch_size=3)
    np.testing.assert_allclose(all_rows, tagness(images))
    np.testing.assert_allclose(store_tagness(tmp_path / "s.h5", splits=["test"]), tagness(images[[1, 3]]))
    assert store_tagness(tmp_path / "s.h5", max_images=2).shape == (2,)
    with pytest.raises(DataError, match="no rows in splits"):
        store_tagness(tmp_path / "s.h5", splits=["val"])
