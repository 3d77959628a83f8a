"""Subject geometry of the digital phantom: a short-axis slice as analytic, soft tissue layers.

Every structure is a closed-form region in millimetres, so it can be evaluated at any (possibly
moved) position: the imaging code evaluates it at each pixel's end-diastolic position to draw a
deforming heart (:mod:`tagseg.data.phantom.motion`). Positions are ``(row_mm, col_mm)`` arrays with
row 0 at the top of the image, as everywhere in tagseg.

The left ventricle is a star-shaped cavity ``R < R_endo(theta)`` inside a myocardial ring
``R_endo <= R < R_endo + wall(theta)``; both radii carry a smooth low-order Fourier perturbation
(not a perfect annulus). The right ventricle is the part of an ellipse outside the LV epicardium (a
crescent attached at two insertion points) with a free wall (3 mm unless randomised), labelled
background like everything outside the two ventricles and the LV myocardium. Around the heart: epicardial fat,
lungs, liver, spine, descending aorta, chest wall muscle and subcutaneous fat inside a body ellipse.

Layers are painted in order (:data:`TISSUES`); each soft mask is a sigmoid of an approximate
signed distance, which gives partial-volume edges about one pixel wide.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

#: tissue layers in painting order (later layers cover earlier ones); index 0 is air
TISSUES: tuple[str, ...] = (
    "air",
    "subcutaneous_fat",
    "muscle",
    "mediastinum",
    "lung",
    "liver",
    "spine",
    "aorta",
    "epicardial_fat",
    "rv_wall",
    "rv_blood",
    "myocardium",
    "lv_blood",
)
TISSUE_INDEX = {name: i for i, name in enumerate(TISSUES)}
#: ACDC label of each tissue (1 RV cavity, 2 MYO, 3 LV cavity; everything else 0)
TISSUE_LABEL = np.array([{"rv_blood": 1, "myocardium": 2, "lv_blood": 3}.get(t, 0) for t in TISSUES], dtype=np.uint8)
#: relative slice position of base (0) to apex (1): scale of LV cavity, wall and RV
_BASE_APEX_SCALE = {"endo": (1.05, 0.68), "wall": (1.0, 0.85), "rv": (1.05, 0.55)}


@dataclass(frozen=True)
class Ellipse:
    """A rotated ellipse: centre (row, col) mm, semi-axes along / across ``angle_rad`` (mm)."""

    centre_mm: tuple[float, float]
    semi_along_mm: float
    semi_across_mm: float
    angle_rad: float = 0.0

    def signed_distance(self, row_mm: np.ndarray, col_mm: np.ndarray, grow_mm: float = 0.0) -> np.ndarray:
        """Approximate signed distance to the boundary, positive inside (first-order, exact on the axes)."""
        a, b = self.semi_along_mm + grow_mm, self.semi_across_mm + grow_mm
        dy, dx = row_mm - self.centre_mm[0], col_mm - self.centre_mm[1]
        ca, sa = np.cos(self.angle_rad), np.sin(self.angle_rad)
        u, v = dx * ca + dy * sa, -dx * sa + dy * ca
        rho = np.sqrt((u / a) ** 2 + (v / b) ** 2)
        grad = np.sqrt((u / a**2) ** 2 + (v / b**2) ** 2)
        # rho / |grad rho| is scale-free along each ray; at the centre it tends to the semi-axis
        ratio = np.where(grad > 0, rho / np.maximum(grad, 1e-12), min(a, b))
        return (1.0 - rho) * ratio


def fourier_radius(mean_mm: float, coeffs: np.ndarray, cos_t: np.ndarray, sin_t: np.ndarray) -> np.ndarray:
    """``mean * (1 + sum_k a_k cos(k t) + b_k sin(k t))`` for k = 2.. (rows of ``coeffs`` = (a_k, b_k)).

    Harmonics come from (cos t, sin t) by the angle-addition recurrence (no trigonometric calls).
    """
    out = np.ones_like(cos_t)
    ck, sk = cos_t, sin_t
    for k in range(2, coeffs.shape[0] + 2):
        ck, sk = ck * cos_t - sk * sin_t, sk * cos_t + ck * sin_t
        out = out + coeffs[k - 2, 0] * ck + coeffs[k - 2, 1] * sk
    return mean_mm * out


@dataclass(frozen=True)
class Surroundings:
    """The static body around the heart, drawn once per subject (mm).

    Attributes:
        body, lungs, liver, spine, aorta: the organs as ellipses.
        skin_fat_mm, muscle_mm: subcutaneous fat and chest-wall muscle thickness.
    """

    body: Ellipse
    lungs: tuple[Ellipse, Ellipse]
    liver: Ellipse
    spine: Ellipse
    aorta: Ellipse
    skin_fat_mm: float
    muscle_mm: float

    def reshaped(
        self,
        body_scale: float = 1.0,
        body_aspect: float = 1.0,
        lung_scale: float = 1.0,
        lung_shift_mm: float = 0.0,
    ) -> Surroundings:
        """Another body and other lungs around the same heart (domain randomisation).

        Args:
            body_scale: multiplies both body axes, every organ's axes and its offset from the body
                centre (a smaller or larger person; the heart stays as drawn).
            body_aspect: multiplies the ratio of the body's axes at constant area (organ offsets follow).
            lung_scale: multiplies both lungs' axes about their centres.
            lung_shift_mm: moves each lung away from (> 0) or towards (< 0) the body centre.
        """
        body = self.body
        along = body_scale * np.sqrt(body_aspect)
        across = body_scale / np.sqrt(body_aspect)
        ca, sa = np.cos(body.angle_rad), np.sin(body.angle_rad)
        by, bx = body.centre_mm

        def moved(organ: Ellipse) -> Ellipse:
            if along == across == 1.0:
                return organ  # exactly: the default is the body as drawn
            # the organ's offset in the body's frame, stretched like the body's axes; its size as the body's
            dy, dx = organ.centre_mm[0] - by, organ.centre_mm[1] - bx
            u, v = along * (dx * ca + dy * sa), across * (-dx * sa + dy * ca)
            return replace(
                organ,
                centre_mm=(float(by + u * sa + v * ca), float(bx + u * ca - v * sa)),
                semi_along_mm=body_scale * organ.semi_along_mm,
                semi_across_mm=body_scale * organ.semi_across_mm,
            )

        def lung(organ: Ellipse) -> Ellipse:
            organ = moved(organ)
            if lung_shift_mm:
                dy, dx = organ.centre_mm[0] - by, organ.centre_mm[1] - bx
                step = lung_shift_mm / max(float(np.hypot(dy, dx)), 1e-6)
                organ = replace(organ, centre_mm=(organ.centre_mm[0] + step * dy, organ.centre_mm[1] + step * dx))
            return replace(
                organ,
                semi_along_mm=lung_scale * organ.semi_along_mm,
                semi_across_mm=lung_scale * organ.semi_across_mm,
            )

        return replace(
            self,
            body=replace(body, semi_along_mm=along * body.semi_along_mm, semi_across_mm=across * body.semi_across_mm),
            lungs=(lung(self.lungs[0]), lung(self.lungs[1])),
            liver=moved(self.liver),
            spine=moved(self.spine),
            aorta=moved(self.aorta),
        )

    def distances(self, row_mm: np.ndarray, col_mm: np.ndarray) -> list[np.ndarray]:
        """Signed distances (positive inside) of body, subcutaneous fat, muscle, lungs, liver, spine, aorta."""
        shrink = self.skin_fat_mm
        return [
            self.body.signed_distance(row_mm, col_mm),
            self.body.signed_distance(row_mm, col_mm, -shrink),
            self.body.signed_distance(row_mm, col_mm, -shrink - self.muscle_mm),
            np.maximum(self.lungs[0].signed_distance(row_mm, col_mm), self.lungs[1].signed_distance(row_mm, col_mm)),
            self.liver.signed_distance(row_mm, col_mm),
            self.spine.signed_distance(row_mm, col_mm),
            self.aorta.signed_distance(row_mm, col_mm),
        ]


@dataclass(frozen=True)
class SliceAnatomy:
    """One short-axis slice of one subject at end-diastole (all lengths in mm).

    Attributes:
        lv_centre_mm: LV centre (row, col).
        endo_mm, wall_mm: mean endocardial radius and wall thickness.
        endo_shape, wall_shape: (K, 2) relative Fourier coefficients for harmonics 2..K+1.
        rv: the RV cavity ellipse (its part outside the LV epicardium).
        rv_angle_rad: direction from the LV centre to the RV centre (row = sin, col = cos).
        rv_wall_mm: RV free-wall thickness.
        fat_mm, fat_angle_rad: epicardial fat band width and the direction where it is thickest.
        surroundings: the static body around the heart.
        septal_gain: relative extra wall thickness towards the RV (0: none; domain randomisation).
        muscles: papillary muscles (myocardial signal inside the cavity, labelled LV cavity).
        trabeculae_mm, trabeculae_phase: depth of the trabecular layer at the endocardium (0: none)
            and the angular phase of its strands.
    """

    lv_centre_mm: tuple[float, float]
    endo_mm: float
    wall_mm: float
    endo_shape: np.ndarray
    wall_shape: np.ndarray
    rv: Ellipse
    rv_angle_rad: float
    rv_wall_mm: float
    fat_mm: float
    fat_angle_rad: float
    surroundings: Surroundings
    septal_gain: float = 0.0
    muscles: tuple[Ellipse, ...] = ()
    trabeculae_mm: float = 0.0
    trabeculae_phase: float = 0.0

    def polar(self, row_mm: np.ndarray, col_mm: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(R, cos theta, sin theta) about the LV centre."""
        dy, dx = row_mm - self.lv_centre_mm[0], col_mm - self.lv_centre_mm[1]
        r = np.hypot(dy, dx)
        safe = np.maximum(r, 1e-6)
        return r, np.where(r > 0, dx / safe, 1.0), dy / safe

    def radii(self, cos_t: np.ndarray, sin_t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Endocardial and epicardial radius (mm) in direction theta."""
        endo = fourier_radius(self.endo_mm, self.endo_shape, cos_t, sin_t)
        wall = fourier_radius(self.wall_mm, self.wall_shape, cos_t, sin_t)
        if self.septal_gain:
            toward_rv = np.maximum(cos_t * np.cos(self.rv_angle_rad) + sin_t * np.sin(self.rv_angle_rad), 0.0)
            wall = wall * (1.0 + self.septal_gain * toward_rv**2)
        return endo, endo + wall

    @property
    def max_epi_mm(self) -> float:
        """An upper bound of the epicardial radius (for the moving region)."""
        wall = self.wall_mm * (1 + np.abs(self.wall_shape).sum())
        if self.septal_gain:
            wall = wall * (1.0 + self.septal_gain)
        return float(self.endo_mm * (1 + np.abs(self.endo_shape).sum()) + wall)

    @property
    def has_inclusions(self) -> bool:
        """Whether the cavity holds papillary muscles or trabeculae (image and labels then differ)."""
        return bool(self.muscles) or self.trabeculae_mm > 0

    def signed_distances(self, row_mm: np.ndarray, col_mm: np.ndarray, inclusions: bool = True) -> np.ndarray:
        """Approximate signed distance (mm, positive inside) of every tissue layer but air: (K-1, ...).

        Args:
            inclusions: carve papillary muscles and trabeculae out of the LV blood (they then show
                the myocardium underneath); ``False`` for the labels, where they count as cavity.
        """
        r, c, s = self.polar(row_mm, col_mm)
        endo, epi = self.radii(c, s)
        d_lv = endo - r
        if inclusions and self.has_inclusions:
            d_lv = np.minimum(d_lv, -self._inclusion_distance(row_mm, col_mm, r, c, s, endo))
        d_epi = epi - r
        # epicardial fat: a band around LV and RV, thickest towards ``fat_angle`` (AV groove side)
        patch = np.clip(0.5 + 1.5 * (c * np.cos(self.fat_angle_rad) + s * np.sin(self.fat_angle_rad)), 0.0, 1.0)
        heart = np.maximum(d_epi, self.rv.signed_distance(row_mm, col_mm, self.rv_wall_mm))
        d_fat = heart + self.fat_mm * patch - 0.5
        return np.stack(
            [
                *self.surroundings.distances(row_mm, col_mm),
                d_fat,
                self.rv.signed_distance(row_mm, col_mm, self.rv_wall_mm),
                self.rv.signed_distance(row_mm, col_mm),
                d_epi,
                d_lv,
            ]
        )

    def _inclusion_distance(
        self, row_mm: np.ndarray, col_mm: np.ndarray, r: np.ndarray, c: np.ndarray, s: np.ndarray, endo: np.ndarray
    ) -> np.ndarray:
        """Signed distance (mm, positive inside) to the union of papillary muscles and trabeculae."""
        d = np.full(np.shape(r), -1e3)
        for muscle in self.muscles:
            d = np.maximum(d, muscle.signed_distance(row_mm, col_mm))
        if self.trabeculae_mm > 0:
            # strands: 14 around the cavity, each ~2 mm wide, reaching trabeculae_mm into it
            theta = np.arctan2(s, c)
            stripe = (np.cos(14 * theta + self.trabeculae_phase) - 0.55) * np.maximum(r, 1.0) / 14
            d = np.maximum(d, np.minimum(r - (endo - self.trabeculae_mm), stripe))
        return d


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 0.5 * (1.0 + np.tanh(0.5 * x))


def tissue_fractions(distances: np.ndarray, edge_mm: float) -> np.ndarray:
    """Partial-volume fractions of every tissue from the layers' signed distances.

    Args:
        distances: (K-1, ...) signed distances (mm) of the layers after air, in painting order.
        edge_mm: sigmoid scale of the edges (about a third of a pixel gives ~1 px wide edges).

    Returns:
        (K, ...) float32 fractions summing to 1 (index 0 = air).
    """
    masks = _sigmoid(distances / edge_mm).astype(np.float32)
    fractions = np.empty((masks.shape[0] + 1, *masks.shape[1:]), np.float32)
    uncovered = np.ones(masks.shape[1:], np.float32)
    for k in range(masks.shape[0] - 1, -1, -1):  # top layer first
        fractions[k + 1] = masks[k] * uncovered
        uncovered = uncovered * (1.0 - masks[k])
    fractions[0] = uncovered
    return fractions


def label_map(distances: np.ndarray) -> np.ndarray:
    """ACDC labels at the evaluated positions: the topmost layer whose region contains the point."""
    inside = distances > 0
    top = np.zeros(distances.shape[1:], np.uint8)
    for k in range(distances.shape[0]):
        top[inside[k]] = k + 1
    return TISSUE_LABEL[top]


@dataclass(frozen=True)
class SubjectAnatomy:
    """Per-subject draws shared by all slices (mm, rad).

    The last fields are set only by domain randomisation (:mod:`tagseg.data.phantom.randomise`);
    their defaults are the fixed phantom.
    """

    fov_mm: tuple[float, float]
    lv_centre_mm: tuple[float, float]
    endo_mm: float
    wall_mm: float
    endo_shape: np.ndarray
    wall_shape: np.ndarray
    rv_angle_rad: float
    rv_scale: float
    fat_mm: float
    fat_angle_rad: float
    surroundings: Surroundings
    septal_gain: float = 0.0
    rv_attachment: float = 0.2
    papillary: bool = False
    trabeculae_frac: float = 0.0
    trabeculae_phase: float = 0.0
    rv_wall_mm: float = 3.0


def sample_subject(
    rng: np.random.Generator,
    fov_mm: tuple[float, float],
    endo_radius_mm: tuple[float, float],
    wall_mm: tuple[float, float],
    shape_amplitude: float,
    centre_jitter_mm: float,
    rotation_jitter_deg: float,
) -> SubjectAnatomy:
    """Draw one subject's anatomy.

    Args:
        rng: the subject's random stream.
        fov_mm: field of view (rows, cols) in mm; the heart sits near its centre.
        endo_radius_mm: range of the mid-ventricular end-diastolic LV cavity radius.
        wall_mm: range of the mid-ventricular wall thickness.
        shape_amplitude: relative amplitude of each Fourier harmonic of the LV contours.
        centre_jitter_mm: random shift of the heart and body from the image centre.
        rotation_jitter_deg: random rotation of the RV direction and the surroundings.
    """
    cy, cx = fov_mm[0] / 2, fov_mm[1] / 2
    jit = rng.uniform(-centre_jitter_mm, centre_jitter_mm, 2)
    rot = np.deg2rad(rng.uniform(-rotation_jitter_deg, rotation_jitter_deg))
    body_centre = (cy + 0.4 * jit[0] + 12.0, cx + 0.4 * jit[1] - 8.0)
    scale = rng.uniform(0.9, 1.02)
    by, bx = body_centre

    def organ(dy: float, dx: float, a: float, b: float, angle: float = 0.0) -> Ellipse:
        # offsets are rotated with the subject so the layout is not always the same
        ry, rx = dy * np.cos(rot) + dx * np.sin(rot), dx * np.cos(rot) - dy * np.sin(rot)
        return Ellipse((by + scale * ry, bx + scale * rx), scale * a, scale * b, angle + rot)

    harmonics = 3
    return SubjectAnatomy(
        fov_mm=(float(fov_mm[0]), float(fov_mm[1])),
        lv_centre_mm=(cy + jit[0], cx + jit[1] + 6.0),
        endo_mm=float(rng.uniform(*endo_radius_mm)),
        wall_mm=float(rng.uniform(*wall_mm)),
        endo_shape=rng.normal(0.0, shape_amplitude, (harmonics, 2)) / np.arange(1, harmonics + 1)[:, None],
        wall_shape=rng.normal(0.0, shape_amplitude, (harmonics, 2)) / np.arange(1, harmonics + 1)[:, None],
        # RV to the image left and slightly up (anterior), as in standard short-axis views
        rv_angle_rad=float(np.pi + np.deg2rad(25.0) + rot + rng.normal(0, 0.1)),
        rv_scale=float(rng.uniform(0.9, 1.1)),
        fat_mm=float(rng.uniform(2.0, 6.0)),
        fat_angle_rad=float(np.pi + rot + rng.uniform(-0.8, 0.8)),
        surroundings=Surroundings(
            body=Ellipse(body_centre, scale * rng.uniform(150, 162), scale * rng.uniform(108, 122), rot * 0.3),
            lungs=(organ(-25, 78, 62, 48, 0.3), organ(-30, -82, 66, 46, -0.3)),
            liver=organ(62, -55, 70, 48, 0.5),
            spine=organ(88, 12, 16, 16),
            aorta=organ(62, 40, 11, 11),
            skin_fat_mm=float(rng.uniform(7, 14)),
            muscle_mm=float(rng.uniform(8, 14)),
        ),
    )


def slice_anatomy(subject: SubjectAnatomy, position: float) -> SliceAnatomy:
    """The slice at relative long-axis ``position`` (0 = base, 1 = apex) of ``subject``."""

    def lerp(key: str) -> float:
        base, apex = _BASE_APEX_SCALE[key]
        return base + (apex - base) * position

    endo, wall = subject.endo_mm * lerp("endo"), subject.wall_mm * lerp("wall")
    epi = endo + wall
    ang = subject.rv_angle_rad
    rv_scale = subject.rv_scale * lerp("rv")
    # RV ellipse centred beyond the septum; its near part lies inside the LV and is cut off
    along, across = (0.5 * epi + 6.0) * rv_scale, (1.15 * epi + 8.0) * rv_scale
    dist = epi + subject.rv_attachment * along
    c = subject.lv_centre_mm
    rv = Ellipse((c[0] + dist * np.sin(ang), c[1] + dist * np.cos(ang)), along, across, ang)
    muscles: tuple[Ellipse, ...] = ()
    if subject.papillary and position < 0.8:
        # anterolateral and posteromedial muscles, opposite the septum, near the free wall
        muscles = tuple(
            Ellipse((c[0] + 0.6 * endo * np.sin(a), c[1] + 0.6 * endo * np.cos(a)), 0.26 * endo, 0.18 * endo, a)
            for a in (ang + np.pi - 0.95, ang + np.pi + 0.95)
        )
    extra: dict = {}
    if subject.septal_gain or muscles or subject.trabeculae_frac:
        extra = {
            "septal_gain": subject.septal_gain,
            "muscles": muscles,
            "trabeculae_mm": subject.trabeculae_frac * endo,
            "trabeculae_phase": subject.trabeculae_phase,
        }
    return SliceAnatomy(
        lv_centre_mm=c,
        endo_mm=endo,
        wall_mm=wall,
        endo_shape=subject.endo_shape,
        wall_shape=subject.wall_shape,
        rv=rv,
        rv_angle_rad=ang,
        rv_wall_mm=subject.rv_wall_mm,
        fat_mm=subject.fat_mm,
        fat_angle_rad=subject.fat_angle_rad,
        surroundings=subject.surroundings,
        **extra,
    )
