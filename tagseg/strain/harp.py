"""HARP: harmonic phase tracking of tissue points through a tagged cine series (Osman, McVeigh, Prince).

A tag grid is a periodic modulation of the tissue, so its spectrum has peaks at the grid's
spatial frequencies ``k1`` and ``k2`` (and their mirror images). Band-passing one peak gives a
complex *harmonic image* whose phase is a linear function of the tissue's end-diastolic (ED)
position along ``k``: the **harmonic phase** is a material property and moves with the tissue,
whatever the intensity does (tags fade, the contrast changes). Two independent directions fix a
point in the plane.

* **Peaks from the spectrum** (:func:`find_tag_peaks`): the two strongest peaks of the ED frame's
  spectrum (windowed, low frequencies left out) that are not parallel: any grid angle and tag
  spacing. Too weak a peak (``min_peak_ratio`` times the median of the spectrum in the same
  frequency band) means no tags: a cine series is refused.
* **Band-pass** (:func:`harmonic_images`): a Gaussian window around each peak, its width a
  fraction of ``|k|``, so the DC term and the cross harmonics ``k1 +/- k2`` stay outside. The
  phase gradient comes from the spectrum too (``i 2 pi f`` times the band), so it is never
  differentiated across a phase wrap.
* **Tracking** (:class:`HarpTracker`): a point of frame ``t`` is found where the harmonic phases
  equal its ED phases. Newton iterations ``y <- y - J^-1 W(phi(y) - phi_ED)`` (``W``: wrap to
  (-pi, pi], the harmonic-phase difference; ``J``: the phase gradient) from the point's position
  in the previous frame, frame after frame: each search starts within a fraction of a tag period
  of the answer, which keeps it on the right tag as the tags fade and the phase gets noisy. A
  point whose phase residual stays large after the iterations is searched again from its
  neighbours' displacement (``refine``), the classical fix for a point that jumped a tag.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np

from tagseg.errors import DataError

log = logging.getLogger(__name__)

#: frames a strain analysis needs: ED plus at least two more
MIN_FRAMES = 3
#: largest ratio of the two tag periods of one grid (anisotropic pixels); beyond it the second peak is anatomy
MAX_PERIOD_RATIO = 1.8
#: least strength of a grid's second line set against the first's (weaker: not the same grid)
SECOND_SHARE = 0.2
#: least strength of a fundamental against its doubled harmonic to be taken for the tag frequency
FUNDAMENTAL_SHARE = 0.1


@dataclass(frozen=True)
class TagPeaks:
    """The two first-harmonic peaks of a tag grid, in cycles per pixel (row, col).

    Attributes:
        k: (2, 2) frequencies, one peak per row.
        strength: peak magnitude over the median spectrum magnitude in its band, per peak.
        doubled: the strength of twice the tag frequency over the tag frequency's (largest of the two
            directions; 0 when the peak found first was the fundamental). Above 1: the magnitude
            image folds Mz at zero (a tagging flip above 90 degrees), which biases HARP.
    """

    k: np.ndarray
    strength: np.ndarray
    doubled: float = 0.0

    @property
    def spacing_px(self) -> np.ndarray:
        """Tag period of each direction in pixels."""
        return 1.0 / np.linalg.norm(self.k, axis=1)

    @property
    def angle_deg(self) -> np.ndarray:
        """Direction of each ``k`` on the (row, col) grid, degrees in [0, 180)."""
        return np.degrees(np.arctan2(self.k[:, 0], self.k[:, 1])) % 180.0


def wrap(phase: np.ndarray) -> np.ndarray:
    """Phase wrapped to (-pi, pi]."""
    return np.angle(np.exp(1j * phase))


def find_tag_peaks(
    image: np.ndarray,
    min_period_px: float = 2.5,
    max_period_px: float = 30.0,
    min_angle_deg: float = 30.0,
    min_peak_ratio: float = 12.0,
    where: str = "frames",
) -> TagPeaks:
    """The two first-harmonic peaks of a tag grid in one frame (the ED frame: its tags are the strongest).

    Args:
        image: (H, W) tagged frame.
        min_period_px, max_period_px: tag periods searched (frequencies outside are ignored).
        min_angle_deg: least angle between the two tag directions.
        min_peak_ratio: least peak magnitude over the median magnitude in the searched band.
        where: the input named in error messages.

    Returns:
        The two peaks (each in the upper half-plane, the first the stronger).

    Raises:
        DataError: no peak stands out of the spectrum (not a tagged series), or only one direction.
    """
    img = np.asarray(image, np.float64)
    h, w = img.shape
    window = np.hanning(h)[:, None] * np.hanning(w)[None, :]
    spec = np.abs(np.fft.fft2((img - img.mean()) * window))
    fr = np.fft.fftfreq(h)[:, None] * np.ones((1, w))
    fc = np.ones((h, 1)) * np.fft.fftfreq(w)[None, :]
    radius = np.hypot(fr, fc)
    band = (radius >= 1.0 / max_period_px) & (radius <= 1.0 / min_period_px)
    # one half-plane: a real image's spectrum is symmetric
    half = band & ((fr > 0) | ((fr == 0) & (fc > 0)))
    if not half.any():
        raise DataError(f"{where}: frames of {h}x{w} pixels are too small to find tags in the spectrum")
    floor = float(np.median(spec[band])) or 1e-12
    in_band = np.where(band, spec, 0.0)
    values = np.where(half, spec, 0.0)
    order = np.argsort(values.ravel())[::-1]
    first = order[0]
    k1, ratio1 = _fundamental(
        np.array([fr.flat[first], fc.flat[first]]), values.flat[first] / floor, in_band, floor, min_peak_ratio
    )
    doubled = values.flat[first] / floor / ratio1 if not np.allclose(k1, [fr.flat[first], fc.flat[first]]) else 0.0
    if values.flat[first] / floor < min_peak_ratio:
        raise DataError(
            f"{where}: no tags detectable in the spectrum (strongest peak {values.flat[first] / floor:.1f} x the median, "
            f"expected >= {min_peak_ratio:g}); expected a tagged cine series, not a cine"
        )
    cos_min = np.cos(np.radians(min_angle_deg))
    for idx in order[1:]:
        if values.flat[idx] / floor < min_peak_ratio:
            break
        found = np.array([fr.flat[idx], fc.flat[idx]])
        k, ratio2 = _fundamental(found, values.flat[idx] / floor, in_band, floor, min_peak_ratio)
        parallel = abs(k @ k1) / (np.linalg.norm(k) * np.linalg.norm(k1)) >= cos_min
        # a grid's two line sets share a spacing; a peak at another scale is anatomy beside 1-D tags
        other_scale = (
            max(np.linalg.norm(k), np.linalg.norm(k1)) / min(np.linalg.norm(k), np.linalg.norm(k1)) > MAX_PERIOD_RATIO
        )
        if not parallel and not other_scale and ratio2 >= SECOND_SHARE * ratio1:
            peaks = np.stack([k1, k])
            if not np.allclose(k, found):
                doubled = max(doubled, values.flat[idx] / floor / ratio2)
            return TagPeaks(k=_refine_peaks(spec, peaks, h, w), strength=np.array([ratio1, ratio2]), doubled=doubled)
    k1 = _refine_peaks(spec, k1[None], h, w)[0]
    raise DataError(
        f"{where}: only one tag direction found in the spectrum (tags of period {1 / np.linalg.norm(k1):.1f} px "
        f"at {np.degrees(np.arctan2(k1[0], k1[1])) % 180:.0f} degrees); expected a grid (two line sets of one "
        "spacing) to track points in the plane: 1-D tags give one displacement component only"
    )


def _fundamental(
    k: np.ndarray, ratio: float, spec: np.ndarray, floor: float, min_peak_ratio: float
) -> tuple[np.ndarray, float]:
    """``k/2`` when a peak stands out of the spectrum there, else ``k``: the tag frequency, not its double.

    A deep SPAMM modulation read as a magnitude image (Mz crossing zero: total tagging flip above
    90 degrees) puts more energy at twice the tag frequency than at it, but the doubled harmonic
    fades as T1 recovery lifts Mz above zero, while the fundamental keeps its amplitude: tracking
    must use the fundamental. One halving only: below it lies the anatomy's own spectrum.
    """
    h, w = spec.shape
    r, c = k[0] * h / 2, k[1] * w / 2
    best, at = 0.0, None
    for dr in {np.floor(r), np.ceil(r)}:
        for dc in {np.floor(c), np.ceil(c)}:
            value = spec[int(dr) % h, int(dc) % w]
            if value > best:
                best, at = value, np.array([dr / h, dc / w])
    if at is None or not at.any() or best / floor < max(min_peak_ratio, FUNDAMENTAL_SHARE * ratio):
        return k, ratio
    return at, best / floor


def _refine_peaks(spec: np.ndarray, peaks: np.ndarray, h: int, w: int) -> np.ndarray:
    """Sub-bin peak positions by a parabola through each peak and its two neighbours along each axis."""
    out = peaks.copy()
    for i, (r, c) in enumerate(peaks):
        ir, ic = int(round(r * h)) % h, int(round(c * w)) % w
        for axis, n in ((0, h), (1, w)):
            prev = spec[(ir - 1) % h, ic] if axis == 0 else spec[ir, (ic - 1) % w]
            nxt = spec[(ir + 1) % h, ic] if axis == 0 else spec[ir, (ic + 1) % w]
            mid = spec[ir, ic]
            denom = prev - 2 * mid + nxt
            if denom < 0:
                out[i, axis] += 0.5 * (prev - nxt) / denom / n
    return out


def harmonic_images(frames: np.ndarray, peaks: TagPeaks, bandwidth: float = 0.5) -> np.ndarray:
    """Band-passed harmonic images and their gradients, per peak and frame.

    Args:
        frames: (T, H, W) tagged frames.
        peaks: the grid's two peaks.
        bandwidth: Gaussian window sigma as a fraction of ``|k|/2`` (0.5: the DC term and the
            cross harmonics, ``|k|`` away, lie four sigmas out).

    Returns:
        complex64 (T, 2, 3, H, W): for each peak the harmonic image, then its row and column
        derivatives (per pixel).
    """
    f = np.asarray(frames, np.float64)
    t, h, w = f.shape
    spec = np.fft.fft2(f - f.mean(axis=(1, 2), keepdims=True))
    fr = np.fft.fftfreq(h)[:, None]
    fc = np.fft.fftfreq(w)[None, :]
    out = np.empty((t, 2, 3, h, w), np.complex64)
    for i, (kr, kc) in enumerate(peaks.k):
        sigma = bandwidth * 0.5 * float(np.hypot(kr, kc))
        window = np.exp(-((fr - kr) ** 2 + (fc - kc) ** 2) / (2 * sigma**2))
        # the anatomy's low frequencies are far stronger than the tags: a notch at DC keeps their tail out
        window = window * (1.0 - np.exp(-(fr**2 + fc**2) / (2 * sigma**2)))
        banded = spec * window
        out[:, i, 0] = np.fft.ifft2(banded)
        out[:, i, 1] = np.fft.ifft2(banded * (2j * np.pi * fr))
        out[:, i, 2] = np.fft.ifft2(banded * (2j * np.pi * fc))
    return out


def sample_bilinear(images: np.ndarray, points_rc: np.ndarray) -> np.ndarray:
    """Bilinear samples of (C, H, W) ``images`` at (P, 2) pixel positions (clamped to the image): (C, P)."""
    c, h, w = images.shape
    r = np.clip(points_rc[:, 0], 0.0, h - 1.000001)
    q = np.clip(points_rc[:, 1], 0.0, w - 1.000001)
    r0, q0 = np.floor(r).astype(np.intp), np.floor(q).astype(np.intp)
    fr, fq = r - r0, q - q0
    flat = images.reshape(c, h * w)
    i00 = r0 * w + q0
    return (
        flat[:, i00] * ((1 - fr) * (1 - fq))
        + flat[:, i00 + 1] * ((1 - fr) * fq)
        + flat[:, i00 + w] * (fr * (1 - fq))
        + flat[:, i00 + w + 1] * (fr * fq)
    )


def phases_and_jacobian(harmonics: np.ndarray, points_rc: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Harmonic phases (P, 2), their Jacobian (P, 2, 2) (d phase_i / d (row, col)) and magnitudes (P, 2).

    Args:
        harmonics: (2, 3, H, W) one frame of :func:`harmonic_images`.
        points_rc: (P, 2) positions.
    """
    s = sample_bilinear(harmonics.reshape(6, *harmonics.shape[-2:]), points_rc).reshape(2, 3, -1)
    value, grad = s[:, 0], s[:, 1:]
    power = np.maximum(np.abs(value) ** 2, 1e-20)
    # d angle(z) = Im(conj(z) dz) / |z|^2: no finite difference across a wrap
    jac = np.imag(np.conj(value)[:, None] * grad) / power[:, None]
    return np.angle(value).T, jac.transpose(2, 0, 1), np.abs(value).T


def track_frame(
    harmonics: np.ndarray,
    target_phase: np.ndarray,
    start_rc: np.ndarray,
    n_iter: int = 12,
    max_step_px: float = 1.5,
) -> tuple[np.ndarray, np.ndarray]:
    """Positions in one frame whose harmonic phases equal ``target_phase``, searched from ``start_rc``.

    Returns:
        (P, 2) positions and (P,) final phase residual (radians, the larger of the two directions).
    """
    pos = np.array(start_rc, np.float64)
    for _ in range(n_iter):
        phase, jac, _ = phases_and_jacobian(harmonics, pos)
        diff = wrap(phase - target_phase)
        det = jac[:, 0, 0] * jac[:, 1, 1] - jac[:, 0, 1] * jac[:, 1, 0]
        ok = np.abs(det) > 1e-9
        safe = np.where(ok, det, 1.0)
        step_r = (jac[:, 1, 1] * diff[:, 0] - jac[:, 0, 1] * diff[:, 1]) / safe
        step_c = (-jac[:, 1, 0] * diff[:, 0] + jac[:, 0, 0] * diff[:, 1]) / safe
        step = np.where(ok[:, None], -np.stack([step_r, step_c], axis=1), 0.0)
        norm = np.linalg.norm(step, axis=1, keepdims=True)
        step *= np.minimum(1.0, max_step_px / np.maximum(norm, 1e-12))
        pos += step
    phase, _, _ = phases_and_jacobian(harmonics, pos)
    return pos, np.abs(wrap(phase - target_phase)).max(axis=1)


@dataclass
class HarpTracker:
    """HARP tracker (``tracker=harp``): see the module docstring.

    Attributes:
        bandwidth: band-pass width (fraction of ``|k|/2``, :func:`harmonic_images`).
        n_iter: Newton iterations per point and frame.
        max_step_px: largest step of one iteration (keeps a search on its tag).
        refine: re-search points whose residual exceeds ``refine_tol_rad`` from the median
            displacement of their ``refine_neighbours`` nearest points.
        refine_tol_rad: phase residual beyond which a point is re-searched.
        refine_neighbours: neighbours (nearest at ED) whose median step seeds a re-search.
        jump_fraction: a point whose step differs from its neighbours' median step by more than
            this fraction of the tag period is re-searched too (it may sit on the next tag, where
            the phase matches as well).
        min_peak_ratio: spectrum peak strength below which a series counts as untagged.
        min_period_px, max_period_px: tag periods searched in the spectrum.
    """

    bandwidth: float = 0.5
    n_iter: int = 12
    max_step_px: float = 1.5
    refine: bool = True
    refine_tol_rad: float = 0.3
    refine_neighbours: int = 6
    jump_fraction: float = 0.3
    min_peak_ratio: float = 12.0
    min_period_px: float = 2.5
    max_period_px: float = 30.0

    def peaks(self, frames: np.ndarray, where: str = "frames") -> TagPeaks:
        """The tag grid's peaks, from the ED frame."""
        return find_tag_peaks(
            frames[0],
            min_period_px=self.min_period_px,
            max_period_px=self.max_period_px,
            min_peak_ratio=self.min_peak_ratio,
            where=where,
        )

    def track(
        self, frames: np.ndarray, points_rc: np.ndarray, spacing_mm: tuple[float, float], where: str = "frames"
    ) -> np.ndarray:
        """Positions (T, P, 2) (row, col) pixels of ``points_rc`` (ED positions) in every frame.

        Raises:
            DataError: fewer than :data:`MIN_FRAMES` frames, or no tag grid in the spectrum.
        """
        frames = np.asarray(frames, np.float64)
        if frames.ndim != 3 or frames.shape[0] < MIN_FRAMES:
            raise DataError(
                f"{where}: {frames.shape[0] if frames.ndim == 3 else 'no'} frames; expected a cine series of "
                f">= {MIN_FRAMES} frames (T, H, W), ED first"
            )
        points = np.asarray(points_rc, np.float64).reshape(-1, 2)
        peaks = self.peaks(frames, where)
        if peaks.doubled > 1.0:
            log.warning(
                "%s: twice the tag frequency is %.1fx stronger than it (a magnitude image of Mz folded at zero: "
                "tagging flip above 90 degrees); HARP tracks the tag frequency, whose phase the folding biases "
                "(docs/stages.md#deep-tags)",
                where,
                peaks.doubled,
            )
        harmonics = harmonic_images(frames, peaks, self.bandwidth)
        target, _, _ = phases_and_jacobian(harmonics[0], points)
        k = min(self.refine_neighbours, len(points) - 1)
        dist = np.linalg.norm(points[:, None] - points[None], axis=2)
        neighbours = np.argsort(dist, axis=1)[:, 1 : k + 1] if k > 0 else np.zeros((len(points), 0), np.intp)
        jump_px = self.jump_fraction * float(peaks.spacing_px.min())
        out = np.empty((frames.shape[0], len(points), 2))
        out[0] = points
        for t in range(1, frames.shape[0]):
            pos, residual = track_frame(harmonics[t], target, out[t - 1], self.n_iter, self.max_step_px)
            if self.refine and k > 0:
                pos = self._refine(harmonics[t], target, neighbours, out[t - 1], pos, residual, jump_px)
            out[t] = pos
        out[0] = points
        return out

    def _refine(
        self,
        harmonics: np.ndarray,
        target: np.ndarray,
        neighbours: np.ndarray,
        previous: np.ndarray,
        pos: np.ndarray,
        residual: np.ndarray,
        jump_px: float,
    ) -> np.ndarray:
        """Re-search points that missed their phase or left their neighbours (a tag jump) from the neighbours' step."""
        step = pos - previous
        expected = np.median(step[neighbours], axis=1)
        deviation = np.linalg.norm(step - expected, axis=1)
        bad = (residual > self.refine_tol_rad) | (deviation > jump_px)
        if not bad.any() or bad.all():
            return pos
        idx = np.flatnonzero(bad)
        again, res2 = track_frame(harmonics, target[idx], previous[idx] + expected[idx], self.n_iter, self.max_step_px)
        dev2 = np.linalg.norm(again - previous[idx] - expected[idx], axis=1)
        better = (dev2 < deviation[idx]) & (res2 <= np.maximum(residual[idx], self.refine_tol_rad))
        pos = pos.copy()
        pos[idx[better]] = again[better]
        return pos


__all__ = [
    "MIN_FRAMES",
    "HarpTracker",
    "TagPeaks",
    "find_tag_peaks",
    "harmonic_images",
    "phases_and_jacobian",
    "sample_bilinear",
    "track_frame",
    "wrap",
]
