"""SPAMM grid tagging by a pseudo-Bloch simulation (the paper's section 2.1.2).

Model. Magnetisation starts along z with magnitude ``|image|``. One *line set* is a binomial RF
train (weights ``pattern``, e.g. 1-3-3-1, summing to ``flip_deg``): pulse ``i`` rotates M about x
by ``flip_deg * w_i / sum(w)``; between pulses a tagging gradient rotates M about z by a phase
that grows linearly along the set's normal direction::

    theta(x, y) = 2*pi / spacing_px * (x*cos(a) + y*sin(a) - offset)

(x, y = row, column index). With ``angle_deg = 45`` this is the paper's
``2*pi / (spacing*sqrt(2)) * (x + y)``; the second set uses ``a - 90`` degrees, i.e. ``(x - y)``.
After each set a crusher spoils the transverse magnetisation (as SPAMM sequences do), so the
second set starts from the first set's Mz. The output is ``|Mz|``.

Because the pulse train is fixed, the output is ``|image| * P(x, y)`` with a modulation pattern
``P`` that depends only on geometry and flips: :func:`tag_pattern` computes it once per (shape,
parameters, device) and caches it; :func:`simulate_tagging_direct` is the rotation-by-rotation
reference used by the tests.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache

import torch

from tagseg.errors import ConfigError

DEFAULT_PATTERN = (1.0, 3.0, 3.0, 1.0)


def check_tag_params(spacing_px: float, flip_deg: float, pattern: Sequence[float]) -> tuple[float, ...]:
    """Validate tagging parameters; return the pattern as a tuple of floats.

    Raises:
        ConfigError: spacing < 2 px, flip outside [0, 180] degrees, or an empty/negative pattern.
    """
    if not spacing_px >= 2:
        raise ConfigError(f"physics.spacing_px must be >= 2 pixels (Nyquist), got {spacing_px}")
    if not 0 <= flip_deg <= 180:
        raise ConfigError(f"physics.flip_deg must be in [0, 180] degrees, got {flip_deg}")
    pat = tuple(float(w) for w in pattern)
    if not pat or min(pat) < 0 or sum(pat) <= 0:
        raise ConfigError(f"physics.pattern must be non-negative RF weights with a positive sum, got {list(pattern)}")
    return pat


def _phase(
    rows: torch.Tensor, cols: torch.Tensor, spacing_px: float, angle_deg: float, offset_px: float
) -> torch.Tensor:
    a = math.radians(angle_deg)
    return (2 * math.pi / spacing_px) * (rows * math.cos(a) + cols * math.sin(a) - offset_px)


def line_set_mz(theta: torch.Tensor, flips_rad: Sequence[float]) -> torch.Tensor:
    """Signed Mz after one line set, for unit initial Mz, as a function of the gradient phase.

    Runs the pulse/gradient recurrence on all phases at once (the result is then cached).
    """
    mx = torch.zeros_like(theta)
    my = torch.zeros_like(theta)
    mz = torch.ones_like(theta)
    c, s = torch.cos(theta), torch.sin(theta)
    for i, alpha in enumerate(flips_rad):
        ca, sa = math.cos(alpha), math.sin(alpha)
        my, mz = my * ca - mz * sa, my * sa + mz * ca
        if i < len(flips_rad) - 1:
            mx, my = mx * c - my * s, mx * s + my * c
    return mz


def tag_mz(
    rows: torch.Tensor,
    cols: torch.Tensor,
    spacing_px: float = 5.0,
    flip_deg: float = 70.0,
    pattern: Sequence[float] = DEFAULT_PATTERN,
    angle_deg: float = 45.0,
    offset_px: Sequence[float] = (0.0, 0.0),
) -> torch.Tensor:
    """Signed longitudinal magnetisation (fraction of M0) right after grid tagging.

    Evaluated at arbitrary (possibly non-integer) positions, e.g. a tissue point's ED position,
    so that moving tissue carries its tags (:mod:`tagseg.data.phantom`).

    Args:
        rows, cols: positions in pixels (row, column), any matching shape.
        spacing_px: distance between parallel tag lines, in pixels.
        flip_deg: total flip angle of one line set's RF train.
        pattern: relative RF pulse weights (binomial, e.g. (1, 3, 3, 1)).
        angle_deg: normal direction of the first line set (the second is at ``angle_deg - 90``).
        offset_px: phase offset of each line set along its normal, in pixels.

    Returns:
        Mz in [-1, 1], same shape as ``rows``.
    """
    pat = check_tag_params(spacing_px, flip_deg, pattern)
    flips = [math.radians(flip_deg) * w / sum(pat) for w in pat]
    o1, o2 = (float(o) for o in offset_px)
    t1 = _phase(rows, cols, spacing_px, angle_deg, o1)
    t2 = _phase(rows, cols, spacing_px, angle_deg - 90.0, o2)
    return line_set_mz(t1, flips) * line_set_mz(t2, flips)


@lru_cache(maxsize=64)
def _cached_pattern(
    shape: tuple[int, int],
    spacing_px: float,
    flip_deg: float,
    pattern: tuple[float, ...],
    angle_deg: float,
    offset_px: tuple[float, float],
    device: str,
    dtype: torch.dtype,
) -> torch.Tensor:
    h, w = shape
    rows = torch.arange(h, dtype=torch.float64).view(h, 1).expand(h, w)
    cols = torch.arange(w, dtype=torch.float64).view(1, w).expand(h, w)
    p = tag_mz(rows, cols, spacing_px, flip_deg, pattern, angle_deg, offset_px).abs()
    return p.to(device=device, dtype=dtype)


def tag_pattern(
    shape: tuple[int, int],
    spacing_px: float = 5.0,
    flip_deg: float = 70.0,
    pattern: Sequence[float] = DEFAULT_PATTERN,
    angle_deg: float = 45.0,
    offset_px: Sequence[float] = (0.0, 0.0),
    device: torch.device | str = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor:
    """The modulation pattern ``P = |Mz| / M0`` on an (H, W) pixel grid.

    Computed once per (shape, parameters, device, dtype) and cached: treat it as read-only.

    Args:
        shape: (H, W).
        spacing_px, flip_deg, pattern, angle_deg, offset_px: as in :func:`tag_mz`.
        device, dtype: of the returned tensor.

    Returns:
        (H, W) tensor in [0, 1].

    Raises:
        ConfigError: invalid parameters (see :func:`check_tag_params`).
    """
    pat = check_tag_params(spacing_px, flip_deg, pattern)
    return _cached_pattern(
        (int(shape[0]), int(shape[1])),
        float(spacing_px),
        float(flip_deg),
        pat,
        float(angle_deg),
        (float(offset_px[0]), float(offset_px[1])),
        str(torch.device(device)),
        dtype,
    )


def apply_tagging(
    images: torch.Tensor,
    spacing_px: float = 5.0,
    flip_deg: float = 70.0,
    pattern: Sequence[float] = DEFAULT_PATTERN,
    angle_deg: float = 45.0,
    offset_px: Sequence[float] = (0.0, 0.0),
) -> torch.Tensor:
    """Tag images: ``|images| * P`` with the cached pattern (equal to the Bloch simulation).

    Args:
        images: magnitude images (..., H, W), any batch shape, device and float dtype.
        spacing_px, flip_deg, pattern, angle_deg, offset_px: as in :func:`tag_mz`.

    Returns:
        Tagged images, same shape, device and dtype.

    Raises:
        ConfigError: ``images`` has fewer than 2 dimensions, or invalid parameters.
    """
    if images.ndim < 2:
        raise ConfigError(f"images must have at least 2 dimensions (..., H, W), got shape {tuple(images.shape)}")
    p = tag_pattern(images.shape[-2:], spacing_px, flip_deg, pattern, angle_deg, offset_px, images.device, images.dtype)
    return images.abs() * p


def _rot_x(alpha: float) -> torch.Tensor:
    c, s = math.cos(alpha), math.sin(alpha)
    return torch.tensor([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]], dtype=torch.float64)


def simulate_tagging_direct(
    image: torch.Tensor,
    spacing_px: float = 5.0,
    flip_deg: float = 70.0,
    pattern: Sequence[float] = DEFAULT_PATTERN,
    angle_deg: float = 45.0,
    offset_px: Sequence[float] = (0.0, 0.0),
) -> torch.Tensor:
    """Reference: rotate each pixel's magnetisation vector pulse by pulse (slow, float64).

    Args:
        image: (H, W) magnitude image; M starts as (0, 0, |image|).

    Returns:
        ``|Mz|`` after both line sets, (H, W), in the input dtype.
    """
    pat = check_tag_params(spacing_px, flip_deg, pattern)
    h, w = image.shape[-2:]
    rows = torch.arange(h, dtype=torch.float64).view(h, 1).expand(h, w)
    cols = torch.arange(w, dtype=torch.float64).view(1, w).expand(h, w)
    m = torch.zeros(h, w, 3, dtype=torch.float64)
    m[..., 2] = image.detach().to(torch.float64).abs().cpu()
    for angle, offset in ((angle_deg, offset_px[0]), (angle_deg - 90.0, offset_px[1])):
        theta = _phase(rows, cols, spacing_px, angle, float(offset))
        c, s = torch.cos(theta), torch.sin(theta)
        rz = torch.zeros(h, w, 3, 3, dtype=torch.float64)
        rz[..., 0, 0], rz[..., 0, 1], rz[..., 1, 0], rz[..., 1, 1], rz[..., 2, 2] = c, -s, s, c, 1.0
        for i, wgt in enumerate(pat):
            m = m @ _rot_x(math.radians(flip_deg) * wgt / sum(pat)).T
            if i < len(pat) - 1:
                m = (rz @ m.unsqueeze(-1)).squeeze(-1)
        m[..., 0] = 0.0  # crusher: transverse magnetisation spoiled after each line set
        m[..., 1] = 0.0
    return m[..., 2].abs().to(image.dtype).to(image.device)
