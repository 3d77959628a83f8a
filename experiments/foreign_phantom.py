"""A second tagged phantom, written apart from tagseg's own (no code of tagseg/physics or
tagseg/data): another body, anatomy, tag pattern, motion model, relaxation, noise and file layout,
to try a model the way a new user would try it on their own tagged cohort.

What differs from tagseg's phantom: a wide elliptic torso with a fat layer, lungs, liver, spine and
aorta drawn as plain ellipses; an elliptic LV with papillary muscles and a crescent RV with a thin
free wall; pericardial fat; motion by an area-preserving radial contraction with a transmural
twist, a hypokinetic sector and a translation of the heart (Lagrangian, exact); 1-1 SPAMM with a
total tagging flip of 70-120 degrees, grid or single direction, any angle, 6-10 mm; tags fading by T1 and
the readouts; blood untagged after the first frames (flow); acquisition at a lower matrix, zero
filled (ringing); a coil's shading; complex Gaussian noise (Rician magnitude); int16 scaling.

Each slice is written in the plain layout of ``tagseg prepare data=tagged``:
``<name>.nii.gz`` (x, y, t), ``<name>_mask.nii.gz`` (myocardium 1) and ``<name>_disp.nii.gz``
(x, y, t, 2): the true Lagrangian displacement (u_row, u_col) in pixels at each ED pixel.
Names ``F<subject>_C_x_<base|mid|apex>``. Run from the project root:

    .venv/bin/python experiments/foreign_phantom.py data/foreign --subjects 8 --seed 0
    tagseg prepare data=tagged data.root=data/foreign output=$PWD/data/foreign.h5
    tagseg evaluate ckpt=<run> data=tagged data.store=$PWD/data/foreign.h5 split=all

``--flip-deg 150 --grid`` renders the same hearts with one tagging flip and grid tags everywhere.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

LOCATIONS = ("base", "mid", "apex")


@dataclass
class Heart:
    """The LV in its own frame: centre (mm), radii (mm), ellipse axis ratio and angle (rad)."""

    cx: float
    cy: float
    r_endo: float
    r_epi: float
    ratio: float
    angle: float
    contraction: float
    twist: float
    sector: float
    severity: float
    shift: tuple[float, float]


def ellipse(x: np.ndarray, y: np.ndarray, cx: float, cy: float, ax: float, ay: float, angle: float = 0.0) -> np.ndarray:
    """Normalised radius of (x, y) in an ellipse: < 1 inside."""
    c, s = math.cos(angle), math.sin(angle)
    u = (x - cx) * c + (y - cy) * s
    v = -(x - cx) * s + (y - cy) * c
    return np.sqrt((u / ax) ** 2 + (v / ay) ** 2)


def to_heart(heart: Heart, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Body mm -> the LV's circular frame (the elliptic LV is an affine image of a circle)."""
    c, s = math.cos(heart.angle), math.sin(heart.angle)
    u = (x - heart.cx) * c + (y - heart.cy) * s
    v = (-(x - heart.cx) * s + (y - heart.cy) * c) / heart.ratio
    return u, v


def from_heart(heart: Heart, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c, s = math.cos(heart.angle), math.sin(heart.angle)
    v = v * heart.ratio
    return heart.cx + u * c - v * s, heart.cy + u * s + v * c


def forward(heart: Heart, x: np.ndarray, y: np.ndarray, phase: float) -> tuple[np.ndarray, np.ndarray]:
    """Where the tissue at ED position (x, y) mm is at cardiac phase ``phase`` in [0, 1]."""
    u, v = to_heart(heart, x, y)
    r = np.hypot(u, v)
    theta = np.arctan2(v, u)
    # contraction weakened in a sector (a hypokinetic segment)
    gap = np.angle(np.exp(1j * (theta - heart.sector)))
    local = heart.contraction * (1.0 - heart.severity * np.exp(-((gap / 0.5) ** 2)))
    r_endo_t = heart.r_endo * (1.0 - local * phase)
    inside = r < heart.r_endo
    r_new = np.where(
        inside,
        r * r_endo_t / heart.r_endo,
        np.sqrt(np.maximum(r**2 - heart.r_endo**2 + r_endo_t**2, 0.0)),
    )
    # the motion outside the epicardium dies away over ~25 mm (chest wall, liver stay put)
    taper = np.where(r > heart.r_epi, np.exp(-(((r - heart.r_epi) / 25.0) ** 2)), 1.0)
    r_new = r + (r_new - r) * taper
    depth = np.clip((r - heart.r_endo) / (heart.r_epi - heart.r_endo), 0.0, 1.0)
    turn = heart.twist * phase * (1.0 - 0.6 * depth) * taper
    u2, v2 = r_new * np.cos(theta + turn), r_new * np.sin(theta + turn)
    x2, y2 = from_heart(heart, u2, v2)
    return x2 + heart.shift[0] * phase * taper, y2 + heart.shift[1] * phase * taper


def inverse(
    heart: Heart, x: np.ndarray, y: np.ndarray, phase: float, iterations: int = 20
) -> tuple[np.ndarray, np.ndarray]:
    """ED position of the tissue found at (x, y) mm at ``phase`` (fixed-point iteration)."""
    x0, y0 = x.copy(), y.copy()
    for _ in range(iterations):
        fx, fy = forward(heart, x0, y0, phase)
        x0, y0 = x0 - (fx - x), y0 - (fy - y)
    return x0, y0


def tissues(rng: np.random.Generator, heart: Heart) -> dict:
    """Body geometry in mm (image centre at 0, y down) and each tissue's signal and T1 (ms)."""
    torso = dict(
        cx=rng.uniform(-8, 8),
        cy=rng.uniform(-5, 15),
        ax=rng.uniform(135, 170),
        ay=rng.uniform(95, 125),
        angle=rng.uniform(-0.15, 0.15),
    )
    fat_mm = rng.uniform(6, 15)
    lung_y = rng.uniform(-25, 0)
    lungs = [
        dict(
            cx=side * rng.uniform(70, 95),
            cy=lung_y + rng.uniform(-8, 8),
            ax=rng.uniform(40, 60),
            ay=rng.uniform(55, 80),
            angle=side * rng.uniform(0.0, 0.4),
        )
        for side in (-1, 1)
    ]
    liver = dict(
        cx=rng.uniform(-70, -40),
        cy=rng.uniform(50, 75),
        ax=rng.uniform(60, 85),
        ay=rng.uniform(35, 50),
        angle=rng.uniform(-0.4, 0.1),
    )
    spine = dict(cx=rng.uniform(-5, 10), cy=torso["cy"] + torso["ay"] - rng.uniform(30, 40), r=rng.uniform(14, 18))
    aorta = dict(cx=spine["cx"] + rng.uniform(20, 30), cy=spine["cy"] - rng.uniform(18, 26), r=rng.uniform(9, 13))
    # RV: an ellipse on the LV's septal side, minus the LV
    # (its centre inside the LV's reach, so what is left is a crescent around the septum)
    dist = heart.r_epi * rng.uniform(0.55, 0.9)
    rv_angle = math.pi + rng.uniform(-0.5, 0.3)  # image left of the LV, as short-axis views show it
    rv = dict(
        cx=heart.cx + dist * math.cos(rv_angle),
        cy=heart.cy + dist * math.sin(rv_angle),
        ax=heart.r_epi * rng.uniform(0.75, 1.05),
        ay=heart.r_epi * rng.uniform(1.1, 1.5),
        angle=rv_angle + rng.uniform(-0.3, 0.3),
    )
    jitter = lambda v: v * rng.uniform(0.8, 1.2)  # noqa: E731
    signal = dict(
        air=0.0,
        body=jitter(0.32),
        fat=jitter(0.9),
        lung=jitter(0.04),
        liver=jitter(0.42),
        spine=jitter(0.25),
        blood=jitter(0.6),
        myo=jitter(0.4),
        pericardium=jitter(0.85),
    )
    t1 = dict(
        air=1000.0,
        body=900.0,
        fat=280.0,
        lung=1200.0,
        liver=650.0,
        spine=600.0,
        blood=1600.0,
        myo=jitter(880.0),
        pericardium=280.0,
    )
    papillary = [(rng.uniform(0, 2 * math.pi), rng.uniform(0.18, 0.3) * heart.r_endo) for _ in range(2)]
    return dict(
        torso=torso,
        fat_mm=fat_mm,
        lungs=lungs,
        liver=liver,
        spine=spine,
        aorta=aorta,
        rv=rv,
        rv_wall=rng.uniform(2.5, 4.5),
        pericardium_mm=rng.uniform(0, 4),
        signal=signal,
        t1=t1,
        papillary=papillary,
    )


def label_tissue(body: dict, heart: Heart, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Tissue name index of each ED position, and the myocardium mask."""
    names = ["air", "body", "fat", "lung", "liver", "spine", "blood", "myo", "pericardium"]
    out = np.zeros(x.shape, np.int8)
    t = body["torso"]
    rt = ellipse(x, y, t["cx"], t["cy"], t["ax"], t["ay"], t["angle"])
    inner = ellipse(x, y, t["cx"], t["cy"], t["ax"] - body["fat_mm"], t["ay"] - body["fat_mm"], t["angle"])
    out[rt < 1] = names.index("fat")
    out[inner < 1] = names.index("body")
    liver = body["liver"]
    out[(ellipse(x, y, liver["cx"], liver["cy"], liver["ax"], liver["ay"], liver["angle"]) < 1) & (inner < 1)] = (
        names.index("liver")
    )
    for lung in body["lungs"]:
        out[(ellipse(x, y, lung["cx"], lung["cy"], lung["ax"], lung["ay"], lung["angle"]) < 1) & (inner < 1)] = (
            names.index("lung")
        )
    sp, ao = body["spine"], body["aorta"]
    out[np.hypot(x - sp["cx"], y - sp["cy"]) < sp["r"]] = names.index("spine")
    out[np.hypot(x - ao["cx"], y - ao["cy"]) < ao["r"]] = names.index("blood")
    u, v = to_heart(heart, x, y)
    r = np.hypot(u, v)
    rv = body["rv"]
    r_rv = ellipse(x, y, rv["cx"], rv["cy"], rv["ax"], rv["ay"], rv["angle"])
    wall_scale = body["rv_wall"] / min(rv["ax"], rv["ay"])
    peri = body["pericardium_mm"]
    heart_outer = (r < heart.r_epi + peri) | (r_rv < 1 + wall_scale + peri / min(rv["ax"], rv["ay"]))
    out[heart_outer] = names.index("pericardium")
    out[r_rv < 1 + wall_scale] = names.index("myo")  # the RV free wall: myocardial signal, not LV myocardium
    out[r_rv < 1] = names.index("blood")
    myo = (r >= heart.r_endo) & (r < heart.r_epi)
    out[r < heart.r_epi] = names.index("myo")
    out[r < heart.r_endo] = names.index("blood")
    theta = np.arctan2(v, u)
    for angle, radius in body["papillary"]:
        px, py = (heart.r_endo - radius * 1.1) * math.cos(angle), (heart.r_endo - radius * 1.1) * math.sin(angle)
        out[np.hypot(u - px, v - py) < radius] = names.index("myo")
    del theta
    return out, myo


def spamm(rng: np.random.Generator, flip_deg: float | None = None, grid: bool | None = None) -> dict:
    """Tag pattern of one slice: spacing (mm), angle, grid or lines, depth of modulation.

    The depth follows the total tagging flip (70-120 degrees): Mz after 1-1 SPAMM is
    ``cos^2(a/2) + sin^2(a/2) cos(k x)`` = ``1 - depth (1 - cos(k x))`` with ``depth = (1 - cos a) / 2``;
    above 90 degrees Mz crosses zero and the magnitude image folds it. ``flip_deg`` / ``grid`` fix
    the flip / the pattern after every draw is made, so the rest of the slice stays the same.
    """
    drawn_flip, spacing, angle = rng.uniform(70.0, 120.0), rng.uniform(6.0, 10.0), rng.uniform(0, math.pi / 2)
    drawn_grid, phase = rng.random() < 0.75, rng.uniform(0, 2 * math.pi)
    flip = math.radians(drawn_flip if flip_deg is None else flip_deg)
    return dict(
        spacing=spacing,
        angle=angle,
        grid=drawn_grid if grid is None else grid,
        depth=(1.0 - math.cos(flip)) / 2.0,
        phase=phase,
    )


def modulation(tag: dict, x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """1-1 SPAMM longitudinal magnetisation at ED positions: 1 - depth (1 - cos), per direction."""
    k = 2 * math.pi / tag["spacing"]
    c, s = math.cos(tag["angle"]), math.sin(tag["angle"])
    m = 1.0 - tag["depth"] * (1.0 - np.cos(k * (x * c + y * s) + tag["phase"]))
    if tag["grid"]:
        m = m * (1.0 - tag["depth"] * (1.0 - np.cos(k * (-x * s + y * c) + tag["phase"])))
    return m


def render_slice(
    rng: np.random.Generator,
    location: str,
    n_frames: int,
    size: int,
    pixel: float,
    flip_deg: float | None = None,
    grid: bool | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One tagged slice over time on a ``size``-square matrix of ``pixel`` mm: image (T, H, W), mask
    (T, H, W), disp (T, 2, H, W); ``flip_deg`` / ``grid`` fix the tagging (:func:`spamm`)."""
    scale = {"base": 1.1, "mid": 1.0, "apex": 0.75}[location]
    r_endo = rng.uniform(17, 25) * scale
    heart = Heart(
        cx=rng.uniform(5, 30),
        cy=rng.uniform(-15, 5),
        r_endo=r_endo,
        r_epi=r_endo + rng.uniform(7, 11) * (0.9 if location == "apex" else 1.0),
        ratio=rng.uniform(0.8, 1.0),
        angle=rng.uniform(0, math.pi),
        contraction=rng.uniform(0.22, 0.4),
        twist=rng.uniform(-0.15, 0.15),
        sector=rng.uniform(-math.pi, math.pi),
        severity=rng.uniform(0.0, 0.9),
        shift=(rng.uniform(-3, 3), rng.uniform(-3, 3)),
    )
    body = tissues(rng, heart)
    tag = spamm(rng, flip_deg, grid)
    sub = 2  # supersampling per axis
    fine = (np.arange(size * sub) + 0.5) / sub - size / 2
    ys, xs = np.meshgrid(fine * pixel, fine * pixel, indexing="ij")
    centres = (np.arange(size) - size / 2 + 0.5) * pixel
    yc, xc = np.meshgrid(centres, centres, indexing="ij")
    frame_ms = rng.uniform(25, 40)
    t0 = rng.uniform(12, 25)
    cover = rng.uniform(0.75, 1.0)  # share of the cycle the frames span
    readout = math.radians(rng.uniform(6, 12))
    lines_per_frame = int(rng.integers(2, 6))
    names = ["air", "body", "fat", "lung", "liver", "spine", "blood", "myo", "pericardium"]
    pd = np.array([body["signal"][n] for n in names])
    t1 = np.array([body["t1"][n] for n in names])
    images, masks, disps = [], [], []
    for k in range(n_frames):
        phase = math.sin(math.pi * cover * k / max(n_frames - 1, 1)) ** 1.5 if k else 0.0
        t = t0 + k * frame_ms
        x0, y0 = inverse(heart, xs, ys, phase)
        kind, myo = label_tissue(body, heart, x0, y0)
        m0 = modulation(tag, x0, y0)
        # blood leaves the slice: its tags are gone after ~60 ms
        flow = math.exp(-t / 60.0)
        m0 = np.where(kind == names.index("blood"), 1.0 - flow * (1.0 - m0), m0)
        # T1 recovery and readout saturation (each frame's readouts tip the magnetisation)
        e1 = np.exp(-t / t1[kind])
        sat = math.cos(readout) ** (lines_per_frame * k)
        mz = m0 * e1 * sat + (1.0 - e1)
        fine_img = pd[kind] * np.abs(mz) * math.sin(readout) * 10
        img = fine_img.reshape(size, sub, size, sub).mean(axis=(1, 3))
        mask = myo.reshape(size, sub, size, sub).mean(axis=(1, 3)) >= 0.5
        fx, fy = forward(heart, xc, yc, phase)
        images.append(img)
        masks.append(mask)
        disps.append(
            np.stack([(fy - yc) / pixel, (fx - xc) / pixel]) if phase else np.zeros((2, size, size))
        )  # exact 0 at ED
    image = np.stack(images)
    # acquisition: a smaller matrix zero filled (ringing), shading, complex noise
    keep = (rng.uniform(0.45, 1.0), rng.uniform(0.6, 1.0))
    kspace = np.fft.fftshift(np.fft.fft2(image), axes=(1, 2))
    for axis, share in zip((1, 2), keep):
        n = image.shape[axis]
        cut = np.abs(np.arange(n) - n // 2) > share * n / 2
        index = [slice(None)] * 3
        index[axis] = cut
        kspace[tuple(index)] = 0
    image = np.fft.ifft2(np.fft.ifftshift(kspace, axes=(1, 2)))
    coil = (rng.uniform(-1, 1) * 200, rng.uniform(-1, 1) * 200)
    shading = np.exp(-(((xc - coil[0]) ** 2 + (yc - coil[1]) ** 2) / (2 * rng.uniform(120, 250) ** 2)))
    image = image * (0.35 + shading / shading.max())
    myo_level = float(np.abs(image[0])[masks[0]].mean())
    snr = rng.uniform(10, 30)
    noise = rng.normal(0, myo_level / snr, image.shape) + 1j * rng.normal(0, myo_level / snr, image.shape)
    magnitude = np.abs(image + noise)
    magnitude = np.round(magnitude / magnitude.max() * rng.uniform(1500, 4000)).astype(np.int16)
    return magnitude, np.stack(masks), np.stack(disps).astype(np.float32)


def write_slice(root: Path, name: str, image: np.ndarray, mask: np.ndarray, disp: np.ndarray, pixel: float) -> None:
    """The plain layout: arrays (T, H, W) -> NIfTI (x, y, t); the reader takes a slice as volume.T."""
    affine = np.diag([pixel, pixel, 1.0, 1.0])
    arrays = {
        "": image.transpose(2, 1, 0),
        "_mask": mask.transpose(2, 1, 0).astype(np.uint8),
        "_disp": disp.transpose(3, 2, 0, 1),
    }
    for suffix, array in arrays.items():
        volume = nib.Nifti1Image(array, affine)  # the array's own dtype (int16 image, uint8 mask, float32 motion)
        volume.header.set_xyzt_units("mm", "msec")
        nib.save(volume, root / f"{name}{suffix}.nii.gz")


def generate(
    output: Path,
    subjects: int = 8,
    frames: int = 20,
    seed: int = 0,
    matrix: int | None = None,
    flip_deg: float | None = None,
    grid: bool | None = None,
) -> list[dict]:
    """Write ``subjects`` x 3 slices into ``output``; ``matrix`` fixes the matrix (else drawn per subject),
    ``flip_deg`` the total tagging flip and ``grid=True`` grid tags on every slice (else drawn per slice)."""
    output.mkdir(parents=True, exist_ok=True)
    record = []
    for s in range(subjects):
        scan = np.random.default_rng([seed, s])  # one protocol per subject
        size, pixel = int(scan.choice([160, 192, 208, 224, 256])), float(scan.uniform(1.15, 1.7))
        size = matrix or size
        for location in LOCATIONS:
            rng = np.random.default_rng([seed, s, 1 + LOCATIONS.index(location)])
            image, mask, disp = render_slice(rng, location, frames, size, pixel, flip_deg, grid)
            name = f"F{s:03d}_C_x_{location}"
            write_slice(output, name, image, mask, disp, pixel)
            record.append(dict(name=name, matrix=image.shape[1], pixel_mm=round(pixel, 3)))
            print(name, image.shape, f"{pixel:.2f} mm", flush=True)
    (output / "foreign_phantom.json").write_text(json.dumps(dict(seed=seed, slices=record), indent=1))
    return record


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", type=Path)
    parser.add_argument("--subjects", type=int, default=8)
    parser.add_argument("--frames", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--matrix", type=int, default=None, help="one matrix for every slice (default: drawn per subject)"
    )
    parser.add_argument(
        "--flip-deg",
        type=float,
        default=None,
        help="one total tagging flip for every slice (default: 70-120 drawn per slice)",
    )
    parser.add_argument(
        "--grid", action="store_true", help="grid tags on every slice (default: a quarter of the slices get 1-D tags)"
    )
    args = parser.parse_args()
    generate(args.output, args.subjects, args.frames, args.seed, args.matrix, args.flip_deg, args.grid or None)


if __name__ == "__main__":
    main()
