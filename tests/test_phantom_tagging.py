"""Tagged phantom: tag spacing (FFT), fading of the tag modulation, tags moving with the exported displacement."""

from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage

from tagseg.data.phantom import PhantomSource

SPACING_MM = 8.0


def tagged(**kw) -> PhantomSource:
    """128 px over 200 mm (1.5625 mm/px): 8 mm tags are 5.12 px apart."""
    args = dict(
        modality="tagged",
        image_size=128,
        fov_mm=200.0,
        n_subjects=2,
        n_slices=1,
        n_frames=25,
        tagging={"spacing_mm": [SPACING_MM, SPACING_MM]},
    )
    args.update(kw)
    return PhantomSource(**args)


@pytest.fixture(scope="module")
def noisy():
    return tagged().load(0, 0)


@pytest.fixture(scope="module")
def clean():
    return tagged(noise=False).load(1, 0)


def test_ed_tag_spacing_from_the_fft_is_within_5_percent(noisy):
    src = tagged()
    image = noisy[0].image - noisy[0].image.mean()
    pad = 4 * image.shape[0]
    spectrum = np.abs(np.fft.fft2(image * np.outer(np.hanning(128), np.hanning(128)), s=(pad, pad)))
    freq = np.fft.fftfreq(pad)
    fr, fc = np.meshgrid(freq, freq, indexing="ij")
    radius = np.hypot(fr, fc)
    spectrum[radius < 0.08] = 0  # anatomy (low frequencies)
    i = np.unravel_index(np.argmax(spectrum), spectrum.shape)
    measured_px = 1.0 / radius[i]
    expected_px = SPACING_MM / src.spacing_mm
    assert measured_px == pytest.approx(expected_px, rel=0.05)
    angle = np.degrees(np.arctan2(abs(fc[i]), abs(fr[i])))
    assert angle == pytest.approx(45.0, abs=5.0)  # grid at +/-45 degrees


def modulation_depth(rec) -> float:
    """(p95 - p5) / (p95 + p5) of the image inside the eroded myocardium."""
    myo = ndimage.binary_erosion(rec.mask == 2)
    lo, hi = np.percentile(rec.image[myo], [5, 95])
    return float((hi - lo) / (hi + lo))


def test_tag_modulation_in_the_myocardium_fades_monotonically(clean, noisy):
    depth = np.array([modulation_depth(r) for r in clean])
    assert depth[0] > 0.5
    assert np.all(np.diff(depth) < 0), np.round(depth, 3)
    assert depth[-1] < 0.6 * depth[0]
    noisy_depth = np.array([modulation_depth(r) for r in noisy])
    assert noisy_depth[:5].mean() > noisy_depth[-5:].mean()


def test_blood_loses_its_tags_faster_than_myocardium(clean):
    def depth(rec, label):
        region = ndimage.binary_erosion(rec.mask == label, iterations=2)
        lo, hi = np.percentile(rec.image[region], [5, 95])
        return (hi - lo) / (hi + lo)

    assert depth(clean[0], 3) > 0.5
    assert depth(clean[5], 3) / depth(clean[0], 3) < 0.5 * depth(clean[5], 2) / depth(clean[0], 2)


def warped_correlation(records, frame: int, use_motion: bool = True) -> float:
    """Correlation in the ED myocardium of I_0(X) with I_t(X + u_t(X)) (u: the exported displacement)."""
    ed, now = records[0], records[frame]
    myo = ndimage.binary_erosion(ed.mask == 2)
    rows, cols = np.nonzero(myo)
    u = now.extras["displacement"][:, rows, cols] if use_motion else 0.0
    moved = ndimage.map_coordinates(
        now.image, [rows + u[0] if use_motion else rows, cols + u[1] if use_motion else cols], order=1
    )
    return float(np.corrcoef(ed.image[rows, cols], moved)[0, 1])


def test_tags_move_with_the_exported_displacement(noisy):
    es = [r.phase for r in noisy].index("ES")
    for frame in range(1, es + 1):
        assert warped_correlation(noisy, frame) > 0.8, frame
    moving = float(np.abs(noisy[es].extras["displacement"]).max())
    assert moving > 2.0  # the heart moved by more than the tags' half period ...
    assert warped_correlation(noisy, es, use_motion=False) < 0.5  # ... so static tags would not match
