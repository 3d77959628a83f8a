"""The phantom as a :class:`~tagseg.data.records.DatasetSource` (``conf/data/phantom_<modality>.yaml``).

One item = one subject; :meth:`PhantomSource.load` draws the subject from ``(seed, cohort, item)``
and renders every slice x frame at once, so a store is byte-identical for the same seed. By default
the cine and tagged cohorts are different people (ids ``cine-000`` / ``tag-000``, independent random
streams), as public cine sets and a private tagged set are; ``paired=True`` renders the same
subjects (ids ``phantom-000``) in both modalities.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from tagseg.data.phantom.anatomy import (
    TISSUE_INDEX,
    TISSUES,
    SliceAnatomy,
    SubjectAnatomy,
    label_map,
    sample_subject,
    slice_anatomy,
    tissue_fractions,
)
from tagseg.data.phantom.imaging import (
    CINE_SIGNAL,
    TAGGED_SIGNAL,
    TagParams,
    add_rician_noise,
    cine_signal,
    coil_shading,
    signal_table,
    tagged_signal,
)
from tagseg.data.phantom.motion import Dysfunction, SliceMotion, activation, displacement_mm, inverse_positions
from tagseg.data.phantom.randomise import ORGANS, Domain, checked_range, draw_domain, is_randomised, parse_randomise
from tagseg.data.records import SliceRecord
from tagseg.errors import ConfigError, reject_unknown_keys

MODALITIES = ("cine", "tagged")
_COHORT = {"paired": 0, "cine": 1, "tagged": 2}
_PREFIX = {"paired": "phantom", "cine": "cine", "tagged": "tag"}

DEFAULT_ANATOMY: dict[str, Any] = {
    "endo_radius_mm": [21.0, 27.0],
    "wall_mm": [7.0, 10.0],
    "shape_amplitude": 0.035,
    "centre_jitter_mm": 12.0,
    "rotation_jitter_deg": 20.0,
}
DEFAULT_MOTION: dict[str, Any] = {
    "control_ecc": -0.20,
    "dmd_ecc": -0.145,
    "ecc_sd": 0.012,
    "area_gain": 0.08,
    "twist_deg_per_cm": [3.0, 6.0],
    "dmd_twist_scale": 0.7,
    "slice_gap_mm": 10.0,
    "rv_pull_mm": [5.0, 9.0],
    "cycle_ms": [800.0, 1000.0],
    "peak_fraction": [0.35, 0.40],
    # regional dysfunction (off at fraction 0: no draw is made, stores stay byte-identical)
    "dysfunction_fraction": 0.0,
    "dysfunction_severity": [0.7, 1.0],
    "dysfunction_width_deg": 60.0,
    "dysfunction_offset_deg": [0.0, 360.0],
}
DEFAULT_TAGGING: dict[str, Any] = {
    "spacing_mm": [7.0, 8.5],
    "flip_deg": [70.0, 100.0],
    "pattern": [1.0, 3.0, 3.0, 1.0],
    "angle_deg": 45.0,
    "readout_flip_deg": [10.0, 15.0],
    "t1_myocardium_ms": [950.0, 1050.0],
    "t1_blood_ms": 150.0,
}


def _merge(defaults: Mapping[str, Any], given: Mapping[str, Any] | None, where: str) -> dict[str, Any]:
    given = dict(given or {})
    reject_unknown_keys(given, defaults, f"data.{where}")
    return {**defaults, **given}


class PhantomSource:
    """Seeded digital phantom of short-axis cardiac MRI (cine or tagged) with ground truth.

    Every record carries ACDC labels (1 RV, 2 MYO, 3 LV), ``phase`` ED (frame 0) / ES (peak
    contraction), ``group`` control / dmd, and ``extras["displacement"]``: (2, H, W) float32, the
    Lagrangian displacement in pixels (row, col) of the tissue at each ED pixel, zero at ED.

    Args:
        name: store name.
        modality: ``cine`` (bSSFP) or ``tagged`` (SPAMM grid on a GRE-like contrast).
        store: where the store is written by default (used by ``tagseg prepare``; not read here).
        image_size: square matrix size.
        fov_mm: field of view; the pixel spacing is ``fov_mm / image_size`` so the anatomy keeps its
            size in mm at any matrix size.
        spacing_mm: explicit pixel spacing instead (null: from ``fov_mm``).
        n_subjects, n_slices, n_frames: cohort size, short-axis slices (base to apex), frames per cycle.
        paired: render the same subjects as the other modality (same ids, anatomy and motion).
        dmd_fraction: fraction of subjects in the ``dmd`` group (exact, rounded; rest ``control``).
        snr: range of the signal-to-noise ratio (myocardium signal / noise sigma), drawn per subject.
        noise: add Rician noise (false: noise-free images, for checks).
        anatomy, motion, tagging: parameter groups (see ``conf/data/phantom_tagged.yaml``).
        randomise: domain randomisation (:mod:`tagseg.data.phantom.randomise`): ``None`` (the
            fixed phantom, byte-identical), a preset name (``wide``) or a mapping of factor ranges.

    Raises:
        ConfigError: naming the ``data.<key>`` that is out of range, before any work.
    """

    def __init__(
        self,
        name: str = "phantom_tagged",
        modality: str = "tagged",
        store: str | None = None,
        image_size: int = 256,
        fov_mm: float = 358.4,
        spacing_mm: float | None = None,
        n_subjects: int = 50,
        n_slices: int = 3,
        n_frames: int = 25,
        paired: bool = False,
        dmd_fraction: float = 0.6,
        snr: Sequence[float] = (10.0, 30.0),
        noise: bool = True,
        anatomy: Mapping[str, Any] | None = None,
        motion: Mapping[str, Any] | None = None,
        tagging: Mapping[str, Any] | None = None,
        randomise: str | Mapping[str, Any] | None = None,
    ) -> None:
        if modality not in MODALITIES:
            raise ConfigError(f"data.modality must be one of {list(MODALITIES)}, got {modality!r}")
        for key, value, least in (
            ("image_size", image_size, 32),
            ("n_frames", n_frames, 2),
            ("n_subjects", n_subjects, 1),
            ("n_slices", n_slices, 1),
        ):
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < least:
                raise ConfigError(f"data.{key} must be an integer >= {least}, got {value!r}")
        if not (isinstance(fov_mm, (int, float)) and fov_mm > 0):
            raise ConfigError(f"data.fov_mm must be > 0 (mm), got {fov_mm!r}")
        if spacing_mm is not None and not (isinstance(spacing_mm, (int, float)) and spacing_mm > 0):
            raise ConfigError(f"data.spacing_mm must be > 0 (mm) or null, got {spacing_mm!r}")
        if not (isinstance(dmd_fraction, (int, float)) and 0.0 <= dmd_fraction <= 1.0):
            raise ConfigError(f"data.dmd_fraction (group ratio) must be in [0, 1], got {dmd_fraction!r}")
        self.snr = checked_range(snr, "data.snr", 0.0)
        if self.snr[0] <= 0 and noise:
            raise ConfigError(f"data.snr must be > 0 when data.noise is true, got {snr}")
        self.name, self.modality, self.store = name, modality, store
        self.image_size, self.n_subjects, self.n_slices, self.n_frames = (
            int(image_size),
            int(n_subjects),
            int(n_slices),
            int(n_frames),
        )
        self.spacing_mm = float(spacing_mm) if spacing_mm is not None else float(fov_mm) / self.image_size
        self.fov_mm = self.spacing_mm * self.image_size
        self.paired, self.dmd_fraction, self.noise = bool(paired), float(dmd_fraction), bool(noise)
        self.anatomy = _merge(DEFAULT_ANATOMY, anatomy, "anatomy")
        self.motion = _merge(DEFAULT_MOTION, motion, "motion")
        self.tagging = _merge(DEFAULT_TAGGING, tagging, "tagging")
        self.randomise = parse_randomise(randomise)
        self._check_groups()

    def _check_groups(self) -> None:
        a, m, t = self.anatomy, self.motion, self.tagging
        checked_range(a["endo_radius_mm"], "data.anatomy.endo_radius_mm", 5.0, 60.0)
        checked_range(a["wall_mm"], "data.anatomy.wall_mm", 2.0, 25.0)
        checked_range(a["shape_amplitude"], "data.anatomy.shape_amplitude", 0.0, 0.1)
        checked_range(a["centre_jitter_mm"], "data.anatomy.centre_jitter_mm", 0.0, 40.0)
        checked_range(a["rotation_jitter_deg"], "data.anatomy.rotation_jitter_deg", 0.0, 180.0)
        for key in ("control_ecc", "dmd_ecc"):
            checked_range(m[key], f"data.motion.{key}", -0.5, 0.0)
        checked_range(m["ecc_sd"], "data.motion.ecc_sd", 0.0, 0.1)
        checked_range(m["area_gain"], "data.motion.area_gain", -0.2, 0.2)
        checked_range(m["twist_deg_per_cm"], "data.motion.twist_deg_per_cm", 0.0, 20.0)
        checked_range(m["dmd_twist_scale"], "data.motion.dmd_twist_scale", 0.0, 2.0)
        if not float(m["slice_gap_mm"]) > 0:
            raise ConfigError(f"data.motion.slice_gap_mm must be > 0 (mm), got {m['slice_gap_mm']}")
        checked_range(m["rv_pull_mm"], "data.motion.rv_pull_mm", 0.0, 15.0)
        self.cycle_ms = checked_range(m["cycle_ms"], "data.motion.cycle_ms", 1e-3)
        if self.cycle_ms[0] <= 0:
            raise ConfigError(f"data.motion.cycle_ms must be > 0 (ms), got {m['cycle_ms']}")
        checked_range(m["peak_fraction"], "data.motion.peak_fraction", 0.05, 0.7)
        lo, _ = checked_range(t["spacing_mm"], "data.tagging.spacing_mm", 0.0)
        checked_range(m["dysfunction_fraction"], "data.motion.dysfunction_fraction", 0.0, 1.0)
        checked_range(m["dysfunction_severity"], "data.motion.dysfunction_severity", 0.0, 1.0)
        checked_range(m["dysfunction_width_deg"], "data.motion.dysfunction_width_deg", 10.0, 180.0)
        checked_range(m["dysfunction_offset_deg"], "data.motion.dysfunction_offset_deg", -360.0, 360.0)
        if not lo > 0:
            raise ConfigError(f"data.tagging.spacing_mm must be > 0 (mm), got {t['spacing_mm']}")
        if self.modality == "tagged" and lo / self.spacing_mm < 2.0:
            raise ConfigError(
                f"data.tagging.spacing_mm={t['spacing_mm']} is below 2 pixels at {self.spacing_mm:.2f} mm/pixel; "
                "raise data.image_size or lower data.fov_mm"
            )
        rnd = self.randomise
        if self.modality == "tagged" and rnd:
            tag_lo = rnd.get("tag_spacing_mm", (lo,))[0]
            pixel_hi = self.spacing_mm * rnd.get("pixel_scale", (1.0, 1.0))[1]
            if tag_lo / pixel_hi < 2.0:
                raise ConfigError(
                    f"data.randomise: tag spacing {tag_lo} mm is below 2 pixels at {pixel_hi:.2f} mm/pixel "
                    "(tag_spacing_mm / pixel_scale); narrow the ranges or raise data.image_size"
                )
        checked_range(t["flip_deg"], "data.tagging.flip_deg", 0.0, 180.0)
        pattern = list(t["pattern"])
        if not pattern or min(pattern) < 0 or sum(pattern) <= 0:
            raise ConfigError(
                f"data.tagging.pattern must be non-negative RF weights with a positive sum, got {pattern}"
            )
        checked_range(t["readout_flip_deg"], "data.tagging.readout_flip_deg", 0.0, 89.9)
        for key in ("t1_myocardium_ms", "t1_blood_ms"):
            if checked_range(t[key], f"data.tagging.{key}", 0.0)[0] <= 0:
                raise ConfigError(f"data.tagging.{key} must be > 0 (ms), got {t[key]}")

    # -- DatasetSource -------------------------------------------------------------------------
    def items(self) -> list[int]:
        """Subject indices 0 .. n_subjects-1."""
        return list(range(self.n_subjects))

    def describe(self, item: int) -> str:
        """The subject id, e.g. ``tag-007``."""
        return f"{_PREFIX[self.cohort]}-{item:03d}"

    @property
    def cohort(self) -> str:
        """``paired`` or the modality: selects the subject ids and random streams."""
        return "paired" if self.paired else self.modality

    @property
    def source_name(self) -> str:
        """The ``source`` meta value (``phantom-cine`` / ``phantom-tagged``)."""
        return f"phantom-{self.modality}"

    def group(self, item: int, seed: int) -> str:
        """``dmd`` or ``control``: exactly ``round(dmd_fraction * n_subjects)`` dmd subjects, seeded."""
        order = np.random.default_rng([_seed(seed), _COHORT[self.cohort], 1 << 20]).permutation(self.n_subjects)
        return (
            "dmd" if int(np.flatnonzero(order == item)[0]) < round(self.dmd_fraction * self.n_subjects) else "control"
        )

    def load(self, item: int, seed: int) -> list[SliceRecord]:
        """Every slice x frame of subject ``item``, deterministic in (seed, item)."""
        subject = self.subject(item, seed)
        noise_rng = np.random.default_rng(
            [_seed(seed), _COHORT[self.cohort], int(item), 10 + MODALITIES.index(self.modality)]
        )
        records: list[SliceRecord] = []
        for index, (anatomy, motion) in enumerate(zip(subject["slices"], subject["motions"])):
            images, labels, disp_px = self.render_slice(anatomy, motion, subject, noise_rng)
            es = int(np.argmax(subject["activation"]))
            for frame in range(self.n_frames):
                records.append(
                    SliceRecord(
                        image=images[frame],
                        mask=labels[frame],
                        subject=self.describe(item),
                        slice=index,
                        frame=frame,
                        n_frames=self.n_frames,
                        phase="ED" if frame == 0 else "ES" if frame == es else "",
                        group=subject["group"],
                        spacing_mm=(subject["spacing_mm"],) * 2,
                        source=self.source_name,
                        extras={"displacement": disp_px[frame]},
                    )
                )
        return records

    # -- generation ----------------------------------------------------------------------------
    def subject(self, item: int, seed: int) -> dict[str, Any]:
        """Draw subject ``item``: group, slices (:class:`SliceAnatomy`), motions, activation, tagging.

        Anatomy and motion come from the cohort's stream only, so a paired cine and tagged subject
        share them.
        """
        rng = np.random.default_rng([_seed(seed), _COHORT[self.cohort], int(item)])
        a, m, t = self.anatomy, self.motion, self.tagging
        group = self.group(item, seed)
        domain = self.domain(item, seed)
        spacing = self.spacing_mm * domain.pixel_scale if domain and domain.pixel_scale else self.spacing_mm
        fov = spacing * self.image_size
        base = sample_subject(
            rng,
            (fov, fov),
            checked_range(a["endo_radius_mm"], ""),
            checked_range(a["wall_mm"], ""),
            float(a["shape_amplitude"]),
            float(a["centre_jitter_mm"]),
            float(a["rotation_jitter_deg"]),
        )
        if domain is not None:
            base = _randomised_anatomy(base, domain)
        ecc_mean = float(m["dmd_ecc"] if group == "dmd" else m["control_ecc"])
        ecc = ecc_mean + float(np.clip(rng.normal(0.0, float(m["ecc_sd"])), -2.5 * m["ecc_sd"], 2.5 * m["ecc_sd"]))
        twist_per_mm = np.deg2rad(rng.uniform(*checked_range(m["twist_deg_per_cm"], ""))) / 10.0
        if group == "dmd":
            twist_per_mm *= float(m["dmd_twist_scale"])
        rv_pull = rng.uniform(*checked_range(m["rv_pull_mm"], ""))
        peak = rng.uniform(*checked_range(m["peak_fraction"], ""))
        cycle_ms = rng.uniform(*self.cycle_ms)
        positions = [0.5] if self.n_slices == 1 else list(np.linspace(0.0, 1.0, self.n_slices))
        gap = float(m["slice_gap_mm"]) * 2.0 / max(self.n_slices - 1, 1)  # base to apex spans ~2 gaps
        dysfunction = self.dysfunction(item, seed, base.rv_angle_rad)
        slices, motions = [], []
        for z, pos in enumerate(positions):
            anatomy = slice_anatomy(base, float(pos))
            # apical slices shorten a little more; base rotates clockwise, apex counter-clockwise
            slice_ecc = ecc * (0.95 + 0.1 * pos) + rng.normal(0.0, 0.003)
            twist = twist_per_mm * gap * (z - 0.35 * (len(positions) - 1)) if len(positions) > 1 else 0.0
            slices.append(anatomy)
            motion = SliceMotion.limited(anatomy, slice_ecc, float(m["area_gain"]), twist, rv_pull)
            if dysfunction is not None:
                motion = replace(motion, dysfunction=dysfunction)
            motions.append(motion)
        tags = TagParams(
            spacing_px=rng.uniform(*checked_range(t["spacing_mm"], "")) / spacing,
            flip_deg=rng.uniform(*checked_range(t["flip_deg"], "")),
            pattern=tuple(float(w) for w in t["pattern"]),
            angle_deg=float(t["angle_deg"]),
            offset_px=tuple(rng.uniform(0.0, 8.0, 2)),
            frame_ms=cycle_ms / self.n_frames,
            readout_flip_deg=rng.uniform(*checked_range(t["readout_flip_deg"], "")),
            t1_myocardium_ms=rng.uniform(*checked_range(t["t1_myocardium_ms"], "")),
            t1_blood_ms=rng.uniform(*checked_range(t["t1_blood_ms"], "")),
        )
        out = {
            "group": group,
            "slices": slices,
            "motions": motions,
            "tags": tags,
            "activation": activation(self.n_frames, peak),
            "snr": rng.uniform(*self.snr),
            "ecc": ecc,
            "spacing_mm": spacing,
            "signal": None,
            "coil_strength": None,
            "dysfunction": dysfunction,
        }
        if domain is not None:
            out.update(_randomised_imaging(domain, tags, spacing, self.modality))
            if domain.snr is not None:
                out["snr"] = domain.snr
        return out

    def dysfunction(self, item: int, seed: int, rv_angle_rad: float) -> Dysfunction | None:
        """Subject ``item``'s dysfunctional sector (same in every slice), or None; from its own stream.

        A fraction ``motion.dysfunction_fraction`` of subjects gets one, centred
        ``dysfunction_offset_deg`` (drawn) from the direction of the RV, of severity drawn from
        ``dysfunction_severity`` (1 = akinetic). Fraction 0 draws nothing.
        """
        m = self.motion
        fraction = float(m["dysfunction_fraction"])
        if fraction <= 0.0:
            return None
        rng = np.random.default_rng([_seed(seed), _COHORT[self.cohort], int(item), 1 << 23])
        if rng.uniform() >= fraction:
            return None
        offset = np.deg2rad(
            rng.uniform(*checked_range(m["dysfunction_offset_deg"], "data.motion.dysfunction_offset_deg"))
        )
        return Dysfunction(
            angle_rad=float(rv_angle_rad + offset),
            half_width_rad=float(np.deg2rad(float(m["dysfunction_width_deg"])) / 2),
            severity=float(rng.uniform(*checked_range(m["dysfunction_severity"], "data.motion.dysfunction_severity"))),
        )

    def domain(self, item: int, seed: int) -> Domain | None:
        """Subject ``item``'s randomised factors (``None`` without ``randomise``), from its own stream."""
        if not self.randomise:
            return None
        # its own stream again, so the choice leaves a randomised subject's draws as with fraction 1
        draw = np.random.default_rng([_seed(seed), _COHORT[self.cohort], int(item), 1 << 22]).uniform()
        if not is_randomised(self.randomise, draw):
            return None
        return draw_domain(
            self.randomise, np.random.default_rng([_seed(seed), _COHORT[self.cohort], int(item), 1 << 21])
        )

    def render_slice(
        self, anatomy: SliceAnatomy, motion: SliceMotion, subject: dict[str, Any], noise_rng: np.random.Generator
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Images (T, H, W) float32, labels (T, H, W) uint8 and displacement (T, 2, H, W) float32 px.

        Pixels far from the heart never move: they are evaluated once at ED; only the pixels within
        the motion's reach are evaluated per moving frame, at their ED positions.
        """
        n, sp, s = self.image_size, float(subject.get("spacing_mm", self.spacing_mm)), subject["activation"]
        centres = (np.arange(n) + 0.5) * sp
        row_mm, col_mm = (a.ravel() for a in np.meshgrid(centres, centres, indexing="ij"))
        cy, cx = anatomy.lv_centre_mm
        moving = np.flatnonzero(np.hypot(row_mm - cy, col_mm - cx) < motion.reach_mm(anatomy))
        frames = np.flatnonzero(s > 0)
        if moving.size == 0:
            frames = frames[:0]
        all_frames = np.arange(self.n_frames)

        # static part: every pixel at its own position, for every frame
        dist_static = anatomy.signed_distances(row_mm, col_mm)
        fractions = tissue_fractions(dist_static, edge_mm=0.3 * sp)
        # papillary muscles and trabeculae look like myocardium but are labelled cavity (as in ACDC)
        labelled = anatomy.signed_distances(row_mm, col_mm, inclusions=False) if anatomy.has_inclusions else dist_static
        labels = np.broadcast_to(label_map(labelled), (self.n_frames, n * n)).copy()
        disp = np.zeros((self.n_frames, 2, n * n), np.float32)
        # moving part: the tissue seen at each moving pixel came from its ED position
        ed_row, ed_col = inverse_positions(anatomy, motion, s[frames], row_mm[moving], col_mm[moving])
        dist_moving = anatomy.signed_distances(ed_row, ed_col)
        fractions_moving = tissue_fractions(dist_moving, edge_mm=0.3 * sp)
        labels[np.ix_(frames, moving)] = label_map(
            anatomy.signed_distances(ed_row, ed_col, inclusions=False) if anatomy.has_inclusions else dist_moving
        )
        u_row, u_col = displacement_mm(anatomy, motion, s[frames][:, None], row_mm[moving], col_mm[moving])
        disp[frames[:, None], 0, moving[None, :]] = u_row / sp
        disp[frames[:, None], 1, moving[None, :]] = u_col / sp

        table = subject.get("signal")
        if self.modality == "cine":
            clean = np.broadcast_to(cine_signal(fractions, table), (self.n_frames, n * n)).copy()
            clean[np.ix_(frames, moving)] = cine_signal(fractions_moving, table)
            reference = CINE_SIGNAL["myocardium"]
        else:
            tags: TagParams = subject["tags"]
            clean = tagged_signal(
                fractions[:, None],
                tags.mz0(row_mm / sp - 0.5, col_mm / sp - 0.5)[None],
                all_frames[:, None],
                tags,
                table,
            )
            mz0 = tags.mz0(ed_row / sp - 0.5, ed_col / sp - 0.5)
            clean[np.ix_(frames, moving)] = tagged_signal(fractions_moving, mz0, frames[:, None], tags, table)
            reference = TAGGED_SIGNAL["myocardium"]
        fov = sp * n
        clean *= coil_shading(noise_rng, row_mm, col_mm, (fov, fov), subject.get("coil_strength"))
        images = add_rician_noise(clean, reference / subject["snr"], noise_rng) if self.noise else clean
        shape = (self.n_frames, n, n)
        return images.reshape(shape), labels.reshape(shape), disp.reshape(self.n_frames, 2, n, n)


def _randomised_anatomy(base: SubjectAnatomy, domain: Domain) -> SubjectAnatomy:
    """The subject's anatomy with the randomised factors of ``domain`` applied."""
    changes: dict[str, Any] = {}
    if domain.lv_ellipticity is not None:
        shape = base.endo_shape.copy()
        shape[0] += domain.lv_ellipticity * np.array(
            [np.cos(2 * domain.ellipse_angle_rad), np.sin(2 * domain.ellipse_angle_rad)]
        )
        changes["endo_shape"] = shape
    if domain.septal_thickening is not None:
        changes["septal_gain"] = domain.septal_thickening
    if domain.papillary is not None:
        changes["papillary"] = domain.papillary_draw < domain.papillary
    if domain.trabeculae is not None:
        changes["trabeculae_frac"], changes["trabeculae_phase"] = domain.trabeculae, domain.trabeculae_phase
    if domain.rv_scale is not None:
        changes["rv_scale"] = domain.rv_scale
    if domain.rv_attachment is not None:
        changes["rv_attachment"] = domain.rv_attachment
    if domain.fat_mm is not None:
        changes["fat_mm"] = domain.fat_mm
    if domain.rv_wall_mm is not None:
        changes["rv_wall_mm"] = domain.rv_wall_mm
    body = {
        "body_scale": domain.body_scale,
        "body_aspect": domain.body_aspect,
        "lung_scale": domain.lung_scale,
        "lung_shift_mm": domain.lung_shift_mm,
    }
    body = {key: value for key, value in body.items() if value is not None}
    if body:
        changes["surroundings"] = base.surroundings.reshaped(**body)
    return replace(base, **changes)


def _randomised_imaging(domain: Domain, tags: TagParams, spacing_mm: float, modality: str) -> dict[str, Any]:
    """Tag grid, fading, signal table and coil strength of a randomised subject."""
    tag_changes: dict[str, Any] = {}
    if domain.tag_angle_deg is not None:
        tag_changes["angle_deg"] = domain.tag_angle_deg
    if domain.tag_spacing_mm is not None:
        tag_changes["spacing_px"] = domain.tag_spacing_mm / spacing_mm
    if domain.t1_scale is not None:
        tag_changes["t1_myocardium_ms"] = tags.t1_myocardium_ms * domain.t1_scale
    if domain.readout_flip_deg is not None:
        tag_changes["readout_flip_deg"] = domain.readout_flip_deg
    scale = np.ones(len(TISSUES), np.float32)
    if domain.organ_contrast is not None:
        for name, factor in zip(ORGANS, domain.organ_contrast):
            scale[TISSUE_INDEX[name]] = factor
    if domain.blood_contrast is not None:
        for name in ("rv_blood", "lv_blood"):
            scale[TISSUE_INDEX[name]] = domain.blood_contrast
    if domain.rv_wall_contrast is not None:
        scale[TISSUE_INDEX["rv_wall"]] = domain.rv_wall_contrast
    changed = any(v is not None for v in (domain.organ_contrast, domain.blood_contrast, domain.rv_wall_contrast))
    return {
        "tags": replace(tags, **tag_changes),
        "signal": signal_table(modality, scale) if changed else None,
        "coil_strength": domain.coil_strength,
    }


def _seed(seed: int) -> int:
    return int(seed) % (1 << 32)


__all__ = ["PhantomSource", "TISSUE_INDEX"]
