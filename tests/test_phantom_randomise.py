"""Domain randomisation of the phantom (data.randomise) and the shifted test sets (conf/shift)."""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path

import numpy as np
import pytest

from tagseg.data.phantom import PhantomSource
from tagseg.data.phantom.randomise import PRESETS, parse_randomise
from tagseg.errors import ConfigError

#: images (float16) + masks of the fixed phantom below, as rendered before randomisation existed. Kept as
#: arrays compared with a tolerance, not a hash: float rounding differs between CPUs and BLAS kernels.
FIXED_PHANTOM = Path(__file__).parent / "data" / "fixed_phantom_small.npz"


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


def rendered(src: PhantomSource, seed: int = 5) -> tuple[np.ndarray, np.ndarray]:
    records = [r for item in range(src.n_subjects) for r in src.load(item, seed)]
    return np.stack([r.image for r in records]), np.stack([r.mask for r in records])


def assert_fixed_phantom(images: np.ndarray, masks: np.ndarray, modality: str) -> None:
    with np.load(FIXED_PHANTOM) as ref:
        ref_images, ref_masks = ref[f"{modality}_images"].astype(np.float32), ref[f"{modality}_masks"]
    assert images.shape == ref_images.shape and masks.shape == ref_masks.shape
    np.testing.assert_allclose(images, ref_images, atol=2e-3, rtol=0)  # float16 storage: ~5e-4 near 1
    assert np.mean(masks != ref_masks) < 1e-3  # a boundary pixel may flip with the platform's rounding


@pytest.mark.parametrize("modality", ["tagged", "cine"])
def test_default_phantom_is_unchanged(modality):
    assert_fixed_phantom(*rendered(small(modality=modality)), modality)
    assert_fixed_phantom(*rendered(small(modality=modality, randomise=None)), modality)


def test_wide_preset_is_seeded_and_varies_the_factors():
    a, b = small(randomise="wide"), small(randomise="wide")
    assert digest(a) == digest(b)
    with np.load(FIXED_PHANTOM) as ref:
        assert np.abs(rendered(a)[0] - ref["tagged_images"].astype(np.float32)).max() > 0.1
    doms = [small(randomise="wide", n_subjects=12).domain(i, 0) for i in range(12)]
    angles = [d.tag_angle_deg for d in doms]
    assert min(angles) >= 0 and max(angles) <= 90 and np.std(angles) > 15
    scales = [d.pixel_scale for d in doms]
    assert min(scales) >= 0.8 and max(scales) <= 1.25 and len(set(scales)) == 12


def test_mixed_preset_randomises_a_share_and_keeps_the_rest_fixed():
    n = 40
    mixed, wide, fixed = (small(randomise=r, n_subjects=n) for r in ("mixed", "wide", None))
    chosen = [i for i in range(n) if mixed.domain(i, 0) is not None]
    assert 12 <= len(chosen) <= 28  # about half of 40 (binomial, p = 0.5)
    for i in range(n):
        if i in chosen:  # a randomised subject draws exactly what `wide` draws for it
            assert mixed.domain(i, 0) == wide.domain(i, 0)
    kept = next(i for i in range(n) if i not in chosen)
    img_mixed, img_fixed = mixed.load(kept, 0)[0], fixed.load(kept, 0)[0]
    assert np.array_equal(img_mixed.image, img_fixed.image) and np.array_equal(img_mixed.mask, img_fixed.mask)
    assert [small(randomise={"preset": "wide", "fraction": 0.0}, n_subjects=n).domain(i, 0) for i in range(n)] == [
        None
    ] * n
    assert parse_randomise({"fraction": 0.3}) == {} and "fraction" not in parse_randomise(
        {"preset": "wide", "fraction": 1}
    )


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


def pixel_grid(src: PhantomSource, spacing_mm: float) -> tuple[np.ndarray, np.ndarray]:
    """(row_mm, col_mm) of every pixel centre of ``src``'s images."""
    centres = (np.arange(src.image_size) + 0.5) * spacing_mm
    return np.meshgrid(centres, centres, indexing="ij")


def test_rv_wall_is_thicker_and_brighter_but_never_labelled_myocardium():
    def ed_frame(**factors):  # cine: no tag modulation, so a signal ratio is the tissue's contrast; 1 mm pixels
        src = small(modality="cine", image_size=128, randomise=factors, noise=False, n_slices=1, n_frames=2)
        return src, src.load(0, 0)[0]

    thin_src, thin = ed_frame(rv_wall_mm=3.0, rv_wall_contrast=1.0)
    _, thin_bright = ed_frame(rv_wall_mm=3.0, rv_wall_contrast=1.5)
    thick_src, thick = ed_frame(rv_wall_mm=8.0, rv_wall_contrast=1.0)
    _, thick_bright = ed_frame(rv_wall_mm=8.0, rv_wall_contrast=1.5)
    assert thin.frame == 0 and thick.frame == 0
    # the wall is background in the labels whatever its thickness and signal
    for record in (thin_bright, thick, thick_bright):
        np.testing.assert_array_equal(record.mask, thin.mask)
    rv = thick_src.subject(0, 0)["slices"][0].rv
    outside_rv = -rv.signed_distance(*pixel_grid(thick_src, thick.spacing_mm[0]))  # mm beyond the RV cavity
    for dim, bright, wall_mm in ((thin, thin_bright, 3.0), (thick, thick_bright, 8.0)):
        ratio = bright.image / np.maximum(dim.image, 1e-6)
        wall = ratio > 1.45  # pixels that are (almost) all RV wall: they take its contrast
        assert not (dim.mask[wall] == 2).any()  # never myocardium
        # the LV myocardium keeps its signal (but for partial-volume pixels at its edge)
        assert np.percentile(np.abs(ratio[dim.mask == 2] - 1.0), 90) < 0.01
        # the band reaches the wall thickness beyond the RV cavity (within about a 1 mm pixel)
        assert outside_rv[wall].max() == pytest.approx(wall_mm, abs=1.0)
        assert np.median(bright.image[wall]) > 1.3 * np.median(bright.image[dim.mask == 2])  # brighter than LV
    assert (thick_bright.image / np.maximum(thick.image, 1e-6) > 1.45).sum() > 2 * (
        thin_bright.image / np.maximum(thin.image, 1e-6) > 1.45
    ).sum()


def test_thick_rv_wall_moves_with_the_heart_and_leaves_the_myocardium_labels_alone():
    def frames(**factors):  # frames 1 and 2 are systolic (activation ~0.75), 0 and 3 end-diastolic
        src = small(modality="cine", image_size=128, randomise=factors, noise=False, n_slices=1)
        return src.load(0, 0)

    thin = frames(rv_wall_mm=3.0)
    dim, bright = frames(rv_wall_mm=8.0), frames(rv_wall_mm=8.0, rv_wall_contrast=1.5)
    for t, (a, b, c) in enumerate(zip(thin, dim, bright)):
        np.testing.assert_array_equal(a.mask == 2, b.mask == 2)  # the LV myocardium, every frame
        wall = c.image / np.maximum(b.image, 1e-6) > 1.45
        assert wall.sum() > 500 and not (b.mask[wall] == 2).any()
        moved = np.hypot(*b.extras["displacement"])[wall]  # px
        if t in (1, 2):
            assert moved.min() > 1.0  # the whole wall moves with the RV
        else:
            assert moved.max() == 0.0


def test_body_scale_and_aspect_change_the_body_outline():
    def body_mask(**factors):  # the whole body in view (3.1 mm pixels); cine: air is 0, every tissue > 0
        src = small(modality="cine", image_size=128, fov_mm=400.0, randomise=factors, noise=False, n_slices=1)
        return src.load(0, 0)[0].image > 1e-3

    def axes_ratio(mask):  # long / short axis of the mask from its second moments
        rows, cols = np.nonzero(mask)
        eig = np.linalg.eigvalsh(np.cov(np.stack([rows, cols]).astype(float)))
        return float(np.sqrt(eig[1] / eig[0]))

    base, small_body, round_body = body_mask(body_scale=1.0), body_mask(body_scale=0.8), body_mask(body_aspect=0.7)
    assert small_body.sum() / base.sum() == pytest.approx(0.8**2, abs=0.03)  # area ~ scale^2 (organs scale too)
    assert round_body.sum() / base.sum() == pytest.approx(1.0, abs=0.05)  # aspect keeps the area
    # the fixed body is ~1.35x longer than wide; x0.7 makes it ~0.95 (its long axis turns)
    assert axes_ratio(base) == pytest.approx(1.35, abs=0.1)
    assert axes_ratio(round_body) < 1.1


def test_lung_scale_and_shift_change_the_lungs():
    from scipy.ndimage import binary_dilation

    def lungs(**factors):  # cine: lung signal 0.03 (x coil shading), every other tissue >= 0.38
        src = small(modality="cine", image_size=128, fov_mm=400.0, randomise=factors, noise=False, n_slices=1)
        image = src.load(0, 0)[0].image
        skin_edge = binary_dilation(image < 1e-3, iterations=2)  # partial-volume pixels between body and air
        return (image > 0.01) & (image < 0.1) & ~skin_edge

    ratio = lungs(lung_scale=1.3).sum() / lungs(lung_scale=1.0).sum()
    assert 1.5 < ratio < 1.3**2 + 0.05  # area ~ scale^2, less what liver, spine and heart cover

    from tagseg.data.phantom.anatomy import Ellipse, Surroundings

    organ = Ellipse((0.0, 0.0), 10.0, 5.0)
    body = Surroundings(
        body=Ellipse((100.0, 100.0), 150.0, 110.0, 0.2),
        lungs=(Ellipse((100.0, 180.0), 60.0, 45.0, 0.3), Ellipse((70.0, 100.0), 60.0, 45.0)),
        liver=organ,
        spine=organ,
        aorta=organ,
        skin_fat_mm=10.0,
        muscle_mm=10.0,
    )
    assert body.reshaped() == body
    moved = body.reshaped(lung_scale=1.5, lung_shift_mm=-20.0)
    assert moved.lungs[0].centre_mm == pytest.approx((100.0, 160.0))  # 20 mm towards the body centre
    assert moved.lungs[1].centre_mm == pytest.approx((90.0, 100.0))
    assert moved.lungs[0].semi_along_mm == pytest.approx(90.0) and moved.lungs[0].semi_across_mm == 67.5
    assert moved.body == body.body and moved.liver == organ
    stretched = body.reshaped(body_scale=0.8, body_aspect=0.5)
    a, b = stretched.body.semi_along_mm, stretched.body.semi_across_mm
    assert a * b == pytest.approx(0.8**2 * 150 * 110) and a / b == pytest.approx(0.5 * 150 / 110)
    assert stretched.body.centre_mm == body.body.centre_mm and stretched.lungs[0].semi_along_mm == 0.8 * 60.0

    def within(outer, centre):  # a point in the outer ellipse's normalised frame (u / a, v / b)
        dy, dx = centre[0] - outer.centre_mm[0], centre[1] - outer.centre_mm[1]
        ca, sa = np.cos(outer.angle_rad), np.sin(outer.angle_rad)
        return (dx * ca + dy * sa) / outer.semi_along_mm, (-dx * sa + dy * ca) / outer.semi_across_mm

    for before, after in zip(body.lungs, stretched.lungs):  # organs keep their place in the stretched body
        assert within(stretched.body, after.centre_mm) == pytest.approx(within(body.body, before.centre_mm))


def test_new_factors_are_drawn_after_the_others_so_presets_draw_as_before():
    from tagseg.data.phantom.randomise import draw_domain

    wide = parse_randomise("wide")
    new = parse_randomise(
        {"preset": "wide", "rv_wall_mm": [6, 9], "rv_wall_contrast": [1.3, 1.6], "body_scale": [0.8, 0.9]}
    )
    before = draw_domain(wide, np.random.default_rng(3))
    after = draw_domain(new, np.random.default_rng(3))
    assert before.rv_wall_mm is None and before.body_scale is None  # presets name none of them
    assert 6 <= after.rv_wall_mm <= 9 and 1.3 <= after.rv_wall_contrast <= 1.6 and 0.8 <= after.body_scale <= 0.9
    for name in wide:
        assert getattr(after, name) == getattr(before, name), name


@pytest.mark.parametrize(
    "value,match",
    [
        ({"rv_wall_mm": [6, 20]}, r"data\.randomise\.rv_wall_mm must be .* within \[1\.0, 12\.0\]"),
        ({"rv_wall_contrast": 3.0}, r"data\.randomise\.rv_wall_contrast"),
        ({"body_scale": [0.5, 1.0]}, r"data\.randomise\.body_scale"),
        ({"body_aspect": 0.0}, r"data\.randomise\.body_aspect"),
        ({"lung_scale": 2.0}, r"data\.randomise\.lung_scale"),
        ({"lung_shift_mm": [-40, 0]}, r"data\.randomise\.lung_shift_mm"),
        ({"tag_angel_deg": [0, 90]}, r"data\.randomise: unknown key"),
        ("narrow", r"data\.randomise: unknown preset"),
        ({"snr": [40, 10]}, r"data\.randomise\.snr"),
        ({"papillary": 2.0}, r"data\.randomise\.papillary"),
        ({"pixel_scale": 2.4, "tag_spacing_mm": 6.0}, r"data\.randomise: tag spacing"),
        (3, r"data\.randomise must be"),
        ({"preset": "wide", "fraction": [0.2, 0.8]}, r"data\.randomise\.fraction must be one number"),
        ({"preset": "wide", "fraction": 1.5}, r"data\.randomise\.fraction"),
    ],
)
def test_bad_randomise_is_one_clear_error(value, match):
    with pytest.raises(ConfigError, match=match):
        small(randomise=value)


def test_preset_with_explicit_overrides():
    spec = parse_randomise({"preset": "wide", "snr": [8, 9]})
    assert spec["snr"] == (8.0, 9.0)
    assert spec["tag_angle_deg"] == tuple(PRESETS["wide"]["tag_angle_deg"])
    assert parse_randomise(None) == {} and parse_randomise({}) == {}


# -- shifted test sets ------------------------------------------------------------------------------

from pathlib import Path  # noqa: E402

from omegaconf import OmegaConf  # noqa: E402

from tagseg.data.shifts import check_shifts, shift_data_config, shift_names  # noqa: E402

TAGGED = {
    "_target_": "tagseg.data.phantom.PhantomSource",
    "name": "phantom_tagged",
    "modality": "tagged",
    "store": "/x/phantom_tagged.h5",
    "image_size": 64,
    "fov_mm": 128.0,
    "n_subjects": 16,
    "n_frames": 8,
    "randomise": "wide",
}


def test_every_shipped_shift_builds_a_valid_phantom_outside_the_fixed_one():
    assert set(shift_names()) >= {
        "tag_angle",
        "pixel_size",
        "low_snr",
        "anatomy",
        "scanner",
        "rv_free_wall",
        "body_shape",
    }
    for name in shift_names():
        cfg = shift_data_config(OmegaConf.create(TAGGED), name, 2)
        assert cfg.n_subjects == 2 and cfg.store is None and cfg.name == f"shift_{name}"
        kwargs = {k: v for k, v in OmegaConf.to_container(cfg).items() if k != "_target_"}
        # a shift may name its own phantom class (tagseg.data.degraded: acquisition effects laid over it)
        cls = getattr(importlib.import_module(cfg._target_.rpartition(".")[0]), cfg._target_.rpartition(".")[2])
        assert issubclass(cls, PhantomSource)
        src = cls(**kwargs)
        assert src.image_size == 64  # the training geometry
        assert src.randomise != parse_randomise("wide")  # the training randomisation is not carried over
        fixed = small(n_subjects=1)  # the same geometry, subjects and seed, unshifted
        shifted = digest(
            cls(
                **{
                    **kwargs,
                    "n_subjects": 1,
                    "n_slices": 2,
                    "n_frames": 4,
                }
            ),
            5,
        )
        # `none` is the control: the fixed phantom itself (new subjects come from the seed offset)
        assert (shifted == digest(fixed)) == (name == "none"), name


@pytest.mark.parametrize(
    "name,fixed",
    [
        ("rv_free_wall", {"rv_wall_mm": 3.0, "rv_wall_contrast": 1.0}),
        ("body_shape", {"body_scale": 1.0, "body_aspect": 1.0, "lung_scale": 1.0, "lung_shift_mm": 0.0}),
    ],
)
def test_anatomy_shifts_lie_outside_the_fixed_phantom_and_the_wide_preset(name, fixed):
    from tagseg.data.shifts import load_shift

    ranges = parse_randomise(load_shift(name)["data"]["randomise"])
    assert set(ranges) == set(fixed)
    for key, (lo, hi) in ranges.items():
        assert key not in PRESETS["wide"] and not lo <= fixed[key] <= hi, key  # `wide` keeps the fixed value


def test_unknown_shift_and_non_phantom_data_are_clear_errors():
    with pytest.raises(ConfigError, match="shifts: unknown shifted test set 'tag_angel'"):
        check_shifts(["tag_angel"])
    assert check_shifts("all") == shift_names() and check_shifts(None) == []
    with pytest.raises(ConfigError, match="shifts: shifted test sets are phantom variants"):
        shift_data_config(OmegaConf.create({"_target_": "tagseg.data.readers.tagged.TaggedSource"}), "tag_angle", 2)


def evaluate_config(tmp_path, ckpt, store, shifts: str, data: list[str] = ()):
    """`tagseg evaluate`'s config for a small shifted-set test: one subject per shift, CPU, CSV logger."""
    from hydra import compose, initialize_config_dir

    from tagseg.runtime.config import CONF_DIR

    overrides = [
        f"ckpt={ckpt}",
        f"paths.output_dir={tmp_path / 'eval'}",
        f"data.store={store}",
        *data,
        f"shifts={shifts}",
        "shift_subjects=1",
        f"shift_dir={tmp_path / 'shift'}",
        "datamodule.num_workers=0",
        "trainer=cpu",
        "trainer.enable_model_summary=false",
        "logger=csv",
    ]
    with initialize_config_dir(config_dir=CONF_DIR, version_base="1.3"):
        return compose("evaluate", overrides=overrides)


def test_evaluate_tests_each_shifted_set_next_to_the_split(tmp_path, trained_ckpt):
    import pandas as pd

    from tagseg.data.prepare import prepare_store
    from tagseg.stages.evaluate import evaluate

    store = tmp_path / "tagged.h5"
    prepare_store(small(n_subjects=3, n_slices=1, n_frames=2), store, seed=0)
    data = ["data.image_size=64", "data.fov_mm=128", "data.n_frames=2", "data.n_slices=1"]
    cfg = evaluate_config(tmp_path, trained_ckpt, store, "[tag_angle,low_snr]", data)
    result = evaluate(cfg)
    table = pd.read_csv(result["shifts"])
    assert list(table["test_set"]) == ["test", "tag_angle", "low_snr"]
    assert list(table["n_images"]) == [2, 2, 2]
    for name in ("tag_angle", "low_snr"):
        assert (tmp_path / "eval" / "shift" / name / "test_metrics.csv").exists()
    stores = sorted(Path(tmp_path / "shift").glob("*.h5"))
    assert len(stores) == 2
    before = [p.stat().st_mtime_ns for p in stores]
    evaluate(cfg)  # prepared once, reused
    assert [p.stat().st_mtime_ns for p in stores] == before


def test_a_randomised_phantom_gets_its_own_default_store():
    """`tagseg train experiment=demo data.randomise=mixed` after `make demo` must not train on the fixed store."""
    from tagseg.runtime.config import compose, randomise_suffix

    assert randomise_suffix(None) == "" and randomise_suffix({}) == "" and randomise_suffix("mixed") == "_mixed"
    ranges = randomise_suffix({"snr": [6, 9], "tag_angle_deg": [0, 90]})
    assert ranges.startswith("_r") and len(ranges) == 10
    assert ranges == randomise_suffix({"tag_angle_deg": [0, 90], "snr": [6, 9]})  # key order does not matter
    assert ranges != randomise_suffix({"snr": [6, 10], "tag_angle_deg": [0, 90]})
    stores = {
        r: compose("train", ["experiment=demo", f"data.randomise={r}"]).data.store
        for r in ("null", "mixed", "wide", "{snr: [6, 9]}")
    }
    assert stores["null"].endswith("/demo/phantom_tagged_128.h5")  # the fixed phantom keeps its file
    assert len(set(stores.values())) == 4
    cine = compose("train", ["strategy=cine", "strategy.source.randomise=mixed"])
    assert cine.data.store.endswith("/phantom_tagged.h5") and cine.strategy.source.store.endswith(
        "/phantom_cine_mixed.h5"
    )


def test_evaluate_builds_shifted_sets_from_the_runs_saved_data_config(tmp_path, trained_ckpt):
    """A run trained at 64 px gets 64 px shifted sets, though evaluate's own data config says 256 px."""
    import shutil

    import h5py
    import yaml

    from tagseg.data.prepare import prepare_store
    from tagseg.runtime.config import compose as compose_stage
    from tagseg.stages.evaluate import evaluate

    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    shutil.copy(trained_ckpt, run / "checkpoints" / "best.ckpt")
    trained = compose_stage(
        "train", ["data.image_size=64", "data.fov_mm=128", "data.n_frames=2", "data.n_slices=1", "seed=3"]
    )
    saved = {"data": OmegaConf.to_container(trained.data, resolve=True), "seed": 3}
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    store = tmp_path / "tagged.h5"
    prepare_store(small(n_subjects=3, n_slices=1, n_frames=2), store, seed=0)
    cfg = evaluate_config(tmp_path, run, store, "[low_snr]")
    assert cfg.data.image_size == 256  # evaluate's own data config: not what the shifted set is built on
    evaluate(cfg)
    (shifted,) = (tmp_path / "shift").glob("shift_low_snr-*.h5")
    with h5py.File(shifted, "r") as f:
        assert f["images"].shape[1:] == (64, 64) and f["images"].shape[0] == 2  # 1 subject x 1 slice x 2 frames
