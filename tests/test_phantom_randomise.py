"""Domain randomisation of the phantom (data.randomise) and the shifted test sets (conf/shift)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest

from tagseg.data.phantom import PhantomSource
from tagseg.data.phantom.randomise import PRESETS, parse_randomise
from tagseg.errors import ConfigError

#: sha256 (first 16 hex) of images + masks of the fixed phantom below, as rendered before randomisation existed
FIXED_PHANTOM = {"tagged": "04d2e6fbf2e56946", "cine": "a9ce49dccbe9f2eb"}


def small(**kw) -> PhantomSource:
    args = dict(modality="tagged", image_size=64, fov_mm=128.0, n_subjects=2, n_slices=2, n_frames=4)
    args.update(kw)
    return PhantomSource(**args)


def digest(src: PhantomSource, seed: int = 5) -> str:
    h = hashlib.sha256()
    for item in range(src.n_subjects):
        for r in src.load(item, seed):
            h.update(np.ascontiguousarray(r.image).tobytes())
            h.update(r.mask.tobytes())
    return h.hexdigest()[:16]


@pytest.mark.parametrize("modality", ["tagged", "cine"])
def test_default_phantom_is_unchanged_byte_for_byte(modality):
    assert digest(small(modality=modality)) == FIXED_PHANTOM[modality]
    assert digest(small(modality=modality, randomise=None)) == FIXED_PHANTOM[modality]


def test_wide_preset_is_seeded_and_varies_the_factors():
    a, b = small(randomise="wide"), small(randomise="wide")
    assert digest(a) == digest(b)
    assert digest(a) != FIXED_PHANTOM["tagged"]
    doms = [small(randomise="wide", n_subjects=12).domain(i, 0) for i in range(12)]
    angles = [d.tag_angle_deg for d in doms]
    assert min(angles) >= 0 and max(angles) <= 90 and np.std(angles) > 15
    scales = [d.pixel_scale for d in doms]
    assert min(scales) >= 0.8 and max(scales) <= 1.25 and len(set(scales)) == 12


def test_pixel_scale_changes_the_spacing_but_not_the_heart_size_in_mm():
    ref = small(randomise={"pixel_scale": 1.0}).load(0, 0)[0]
    big = small(randomise={"pixel_scale": 1.25}).load(0, 0)[0]
    assert big.spacing_mm[0] == pytest.approx(1.25 * ref.spacing_mm[0])
    area_ref = (ref.mask == 2).sum() * ref.spacing_mm[0] ** 2
    area_big = (big.mask == 2).sum() * big.spacing_mm[0] ** 2
    assert (big.mask == 2).sum() < (ref.mask == 2).sum()
    assert area_big == pytest.approx(area_ref, rel=0.15)


def test_papillary_muscles_and_trabeculae_look_like_myocardium_but_are_labelled_cavity():
    without = small(randomise={"papillary": 0.0, "trabeculae": 0.0}, noise=False, n_slices=1).load(0, 0)[0]
    with_ = small(randomise={"papillary": 1.0, "trabeculae": 0.2}, noise=False, n_slices=1).load(0, 0)[0]
    np.testing.assert_array_equal(with_.mask, without.mask)  # labels: still LV cavity
    cavity = without.mask == 3
    changed = np.abs(with_.image - without.image) > 0.02
    assert changed[cavity].mean() > 0.1  # muscle signal inside the cavity
    assert not changed[without.mask == 0].any()  # nothing outside the heart moves


def test_tag_angle_turns_the_grid():
    base = small(randomise={"tag_angle_deg": 45.0}, noise=False, n_slices=1).load(0, 0)[0].image
    turned = small(randomise={"tag_angle_deg": 0.0}, noise=False, n_slices=1).load(0, 0)[0].image
    # a 0-degree grid has horizontal and vertical lines: strong row-wise periodicity along columns
    def axis_power(img):
        spec = np.abs(np.fft.fft2(img - img.mean()))
        return spec[0, 3:20].max() + spec[3:20, 0].max()
    assert axis_power(turned) > 2 * axis_power(base)


def test_septal_thickening_thickens_the_wall_towards_the_rv():
    thin = small(randomise={"septal_thickening": 0.0}, noise=False, n_slices=1).load(0, 0)[0].mask
    thick = small(randomise={"septal_thickening": 0.6}, noise=False, n_slices=1).load(0, 0)[0].mask
    assert (thick == 2).sum() > 1.1 * (thin == 2).sum()


@pytest.mark.parametrize("value,match", [
    ({"tag_angel_deg": [0, 90]}, r"data\.randomise: unknown key"),
    ("narrow", r"data\.randomise: unknown preset"),
    ({"snr": [40, 10]}, r"data\.randomise\.snr"),
    ({"papillary": 2.0}, r"data\.randomise\.papillary"),
    ({"pixel_scale": 2.4, "tag_spacing_mm": 6.0}, r"data\.randomise: tag spacing"),
    (3, r"data\.randomise must be"),
])
def test_bad_randomise_is_one_clear_error(value, match):
    with pytest.raises(ConfigError, match=match):
        small(randomise=value)


def test_preset_with_explicit_overrides():
    spec = parse_randomise({"preset": "wide", "snr": [8, 9]})
    assert spec["snr"] == (8.0, 9.0)
    assert spec["tag_angle_deg"] == tuple(PRESETS["wide"]["tag_angle_deg"])
    assert parse_randomise(None) == {} and parse_randomise({}) == {}
