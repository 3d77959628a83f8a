"""Radial strain from wall thickening (tagseg.strain.thickening): known ring walls, lost walls, the radial option."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_strain import CENTRE, affine_series, ring_labels

from tagseg.errors import ConfigError, DataError
from tagseg.strain.aha import LEVEL_SEGMENTS
from tagseg.strain.analysis import analyse_slice
from tagseg.strain.harp import HarpTracker
from tagseg.strain.mesh import seed_mesh
from tagseg.strain.schema import read_strain, write_strain
from tagseg.strain.thickening import radial_strain_from_masks, wall_thickness


def ring_positions(mesh, radii_by_frame: list[tuple[float, float]]) -> np.ndarray:
    """(T, P, 2) mesh points moved so each layer sits at its fraction of the frame's wall (r_in, r_out)."""
    ed = mesh.points_rc - CENTRE
    angle = np.arctan2(ed[:, 0], ed[:, 1])
    layer = np.repeat(mesh.layer_fractions, mesh.n_sectors)
    out = []
    for r_in, r_out in radii_by_frame:
        radius = r_in + layer * (r_out - r_in)
        out.append(CENTRE + np.stack([radius * np.sin(angle), radius * np.cos(angle)], axis=1))
    return np.stack(out)


def test_the_thickness_of_a_ring_wall_is_measured_within_the_rasterisation():
    """Rings of known radii drawn on pixel centres: every sector within 0.6 px of r_out - r_in (the jagged
    edges of a binary ring), their mean within 0.2 px (2 % of these walls)."""
    radii = [(16.0, 26.0), (14.0, 26.5), (12.5, 27.0)]
    labels = np.stack([ring_labels(r_in=a, r_out=b) for a, b in radii])
    mesh = seed_mesh(labels[0])
    thickness = wall_thickness(labels, ring_positions(mesh, radii), mesh, (1.4, 1.4))
    expected = np.array([b - a for a, b in radii]) * 1.4
    assert thickness.shape == (3, mesh.n_sectors)
    np.testing.assert_allclose(thickness, np.repeat(expected[:, None], mesh.n_sectors, axis=1), atol=0.6 * 1.4)
    np.testing.assert_allclose(thickness.mean(axis=1), expected, atol=0.2 * 1.4)


def test_err_from_masks_is_the_thickening_of_every_segment():
    radii = [(16.0, 26.0), (14.0, 26.5), (12.0, 27.0)]  # walls of 10, 12.5 and 15 px: Err 0, 0.25, 0.5
    labels = np.stack([ring_labels(r_in=a, r_out=b) for a, b in radii])
    mesh = seed_mesh(labels[0])
    segments = LEVEL_SEGMENTS["mid"]
    err = radial_strain_from_masks(labels, ring_positions(mesh, radii), mesh, (1.0, 1.0), "mid")
    assert sorted(err) == sorted(["global", *map(str, segments)])
    # binary rings on pixel centres: edges jagged by up to half a pixel, 2-4 % of a 10-15 px wall
    np.testing.assert_allclose(err["global"], [0.0, 0.25, 0.5], atol=0.03)
    for curve in err.values():
        np.testing.assert_allclose(curve, [0.0, 0.25, 0.5], atol=0.04)


def test_a_segment_whose_wall_is_lost_is_nan_and_written_as_null(tmp_path):
    radii = [(16.0, 26.0), (14.0, 26.5)]
    labels = np.stack([ring_labels(r_in=a, r_out=b) for a, b in radii])
    labels[1, :, : int(CENTRE[1]) - 8] = 0  # the left part of the ES wall is gone (the RV side: segments 2-3)
    mesh = seed_mesh(labels[0])
    positions = ring_positions(mesh, radii)
    thickness = wall_thickness(labels, positions, mesh, (1.0, 1.0))
    lost = ~np.isfinite(thickness[1])
    assert 0 < lost.sum() < mesh.n_sectors // 2 and np.isfinite(thickness[0]).all()
    err = radial_strain_from_masks(labels, positions, mesh, (1.0, 1.0), "mid")
    nan_segments = [k for k, v in err.items() if np.isnan(v).all()]
    assert 0 < len(nan_segments) < 6 and "global" not in nan_segments
    np.testing.assert_allclose(err["global"], [0.0, 0.25], atol=0.03)  # from the sectors kept in every frame

    frames, _, _ = affine_series(6.0, 30.0, n_frames=6)
    every = np.stack([labels[0]] * 3 + [labels[1]] * 3)
    result, _ = analyse_slice(frames, every[0], (1.0, 1.0), HarpTracker(), frame_labels=every, radial="masks")
    assert result.radial == "masks"
    write_strain(tmp_path, [result])
    doc = json.loads((tmp_path / "strain.json").read_text())  # strict JSON: no NaN token
    lost_segment = next(k for k, v in result.err.items() if np.isnan(v).all())
    assert doc["slices"][0]["err"][lost_segment] == [None] * 6
    assert doc["slices"][0]["peaks"]["err"][lost_segment] == {"peak": None, "frame": -1}
    back = read_strain(tmp_path)[0]
    assert back.radial == "masks" and np.isnan(back.err[lost_segment]).all()
    np.testing.assert_allclose(back.err["global"], result.err["global"])


def test_the_radial_option_and_its_errors():
    frames, _, _ = affine_series(6.0, 30.0, n_frames=6)
    labels = ring_labels()
    tags, _ = analyse_slice(
        frames, labels, (1.0, 1.0), HarpTracker(), frame_labels=np.stack([labels] * 6), radial="tags"
    )
    auto, _ = analyse_slice(frames, labels, (1.0, 1.0), HarpTracker())
    assert tags.radial == "tags" and auto.radial == "tags"  # auto without every frame's mask: the tags
    np.testing.assert_allclose(tags.err["global"], auto.err["global"])
    with pytest.raises(ConfigError, match="radial=masks needs the myocardium of every frame"):
        analyse_slice(frames, labels, (1.0, 1.0), HarpTracker(), radial="masks")
    with pytest.raises(ConfigError, match=r"radial: expected one of \['auto', 'tags', 'masks'\], got 'mask'"):
        analyse_slice(frames, labels, (1.0, 1.0), HarpTracker(), radial="mask")
    with pytest.raises(DataError, match=r"scan.h5: frame masks of \(5, 96, 96\) for frames of \(6, 96, 96\)"):
        analyse_slice(frames, labels, (1.0, 1.0), HarpTracker(), frame_labels=np.stack([labels] * 5), where="scan.h5")
