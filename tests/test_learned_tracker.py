"""The learned tag tracker: its network, training pairs, the cached training and the Tracker protocol."""

from __future__ import annotations

import inspect
from pathlib import Path

import numpy as np
import pytest
import torch
from omegaconf import OmegaConf

from tagseg.data.tracking import TrackingPairs, TrackingSequence, dihedral, phantom_sequences
from tagseg.errors import CheckpointError, ConfigError, DataError
from tagseg.io.checkpoints import MODEL_KEY, SEGMENTATION
from tagseg.models.tracking import TrackingModule, warp_to_reference
from tagseg.physics.tagging import tag_mz
from tagseg.runtime.config import CONF_DIR, instantiate
from tagseg.strain import tracker_training
from tagseg.strain.learned import LearnedTracker
from tagseg.strain.tracking import Tracker

TINY_FEATURES = [4, 4, 8, 8, 8, 4]


def tag_frames(shifts_rc: np.ndarray, size: int = 32, spacing_px: float = 6.0, angle_deg: float = 30.0) -> np.ndarray:
    """(T, size, size) tag grids moved by ``shifts_rc`` (T, 2) pixels (tissue at X is at X + shift)."""
    rows, cols = np.meshgrid(np.arange(size, dtype=np.float64), np.arange(size, dtype=np.float64), indexing="ij")
    frames = [
        tag_mz(torch.from_numpy(rows - dr), torch.from_numpy(cols - dc), spacing_px=spacing_px, angle_deg=angle_deg)
        .abs()
        .numpy()
        for dr, dc in shifts_rc
    ]
    return np.stack(frames).astype(np.float32)


def translation_sequence(shifts_rc: np.ndarray, size: int = 32, **tags: float) -> TrackingSequence:
    """A sequence of a rigidly translating tag grid; every pixel is 'myocardium'."""
    displacement = np.broadcast_to(shifts_rc[:, :, None, None], (len(shifts_rc), 2, size, size)).astype(np.float32)
    return TrackingSequence(
        frames=tag_frames(shifts_rc, size, **tags),
        displacement=displacement.copy(),
        myocardium=np.ones((size, size), bool),
        spacing_mm=(1.4, 1.4),
        name="translation/0",
    )


def tiny_training(tmp_path) -> dict:
    """The shipped tracker config, shrunk to a 48-pixel single-slice phantom and two steps."""
    cfg = OmegaConf.load(Path(CONF_DIR) / "tracker" / "learned.yaml")
    cfg.cache_dir = str(tmp_path / "cache")
    cfg.working_spacing_mm = 2.8
    cfg.iterations = 1
    t = cfg.training
    t.steps, t.batch_size, t.train_subjects, t.val_subjects, t.val_pairs = 2, 2, 1, 1, 2
    t.pairs.crop_px = 32
    t.model.features = TINY_FEATURES
    p = t.phantom
    p.image_size, p.spacing_mm, p.n_slices, p.n_frames, p.randomise = 48, 2.8, 1, 4, None
    return cfg


def test_forward_keeps_any_image_shape():
    module = TrackingModule(features=TINY_FEATURES)
    ref = torch.rand(3, 1, 30, 37)
    out = module(ref, torch.rand(3, 1, 30, 37), torch.zeros(3, 2, 30, 37))
    assert out.shape == (3, 2, 30, 37)
    # the residual is bounded: a prior far off stays within max_residual_px of itself
    prior = torch.full((3, 2, 30, 37), 10.0)
    assert (module(ref, ref, prior) - prior).abs().max() <= module.hparams.max_residual_px


def test_bad_model_settings_are_config_errors():
    with pytest.raises(ConfigError, match="features"):
        TrackingModule(features=[4, 4])
    with pytest.raises(ConfigError, match="lr"):
        TrackingModule(lr=0.0)


def test_warp_pulls_a_shifted_frame_back_onto_the_reference_grid():
    image = torch.rand(1, 1, 12, 14)
    shifted = torch.roll(image, shifts=(2, -3), dims=(-2, -1))  # tissue at X is at X + (2, -3)
    u = torch.tensor([2.0, -3.0]).view(1, 2, 1, 1).expand(1, 2, 12, 14)
    back = warp_to_reference(shifted, u)
    np.testing.assert_allclose(back[..., 2:9, 3:11].numpy(), image[..., 2:9, 3:11].numpy(), atol=1e-6)


@pytest.mark.parametrize("code, expected", [(0, (1, 2)), (1, (-1, 2)), (2, (1, -2)), (4, (2, 1)), (7, (-2, -1))])
def test_dihedral_turns_the_vectors_with_the_image(code, expected):
    """A grid translated by (1, 2) then flipped / transposed is the flipped grid translated by the turned vector."""
    seq = translation_sequence(np.array([[0.0, 0.0], [1.0, 2.0]]), size=24)
    images, vectors = dihedral(seq.frames, seq.displacement[1], code)
    np.testing.assert_array_equal(vectors[:, 0, 0], expected)
    # the turned frame 1 is the turned frame 0 moved by the turned vector
    moved = warp_to_reference(torch.from_numpy(images[1:2, None]), torch.from_numpy(vectors[None]))
    np.testing.assert_allclose(moved[0, 0, 4:-4, 4:-4].numpy(), images[0, 4:-4, 4:-4], atol=1e-5)


def test_training_pairs_are_seeded_and_centred_on_the_myocardium():
    seq = translation_sequence(np.array([[0.0, 0.0], [0.5, 0.0], [1.0, 0.5], [1.5, 1.0]]), size=40)
    pairs = TrackingPairs([seq], length=10, crop_px=24, seed=3)
    a, b = pairs[4], pairs[4]
    for key in ("reference", "frame", "prior", "target", "weight"):
        assert torch.equal(a[key], b[key])
    assert a["reference"].shape == (1, 24, 24) and a["prior"].shape == (2, 24, 24)
    assert a["weight"].min() == 1.0  # every pixel of this sequence is myocardium


def test_a_few_training_steps_lower_the_loss():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    shifts = np.cumsum(rng.uniform(-0.6, 0.6, (6, 2)), axis=0)
    shifts[0] = 0.0
    pairs = TrackingPairs([translation_sequence(shifts, size=32)], length=8, crop_px=None, seed=0)
    batch = {k: torch.stack([pairs[i][k] for i in range(8)]) for k in pairs[0]}
    module = TrackingModule(features=TINY_FEATURES, lr=3e-3)
    optimizer = torch.optim.Adam(module.parameters(), lr=3e-3)
    first = module.loss(batch)[0].item()
    for _ in range(20):
        loss, _ = module.loss(batch)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert module.loss(batch)[0].item() < 0.8 * first


def test_phantom_sequences_carry_frames_truth_and_the_ed_myocardium():
    source = instantiate(tiny_training_cfg_phantom(), "phantom", n_subjects=1)
    (seq,) = phantom_sequences(source, [0], seed=1)
    assert seq.frames.shape == (4, 48, 48) and seq.displacement.shape == (4, 2, 48, 48)
    assert seq.myocardium.any() and not np.abs(seq.displacement[0]).any()  # zero displacement at ED
    assert np.abs(seq.displacement[1:, :, seq.myocardium]).max() > 0.1  # the myocardium moves


def tiny_training_cfg_phantom():
    cfg = OmegaConf.load(Path(CONF_DIR) / "tracker" / "learned.yaml").training.phantom
    cfg.image_size, cfg.spacing_mm, cfg.n_slices, cfg.n_frames, cfg.randomise = 48, 2.8, 1, 4, None
    return cfg


def test_learned_tracker_obeys_the_protocol_and_trains_once(tmp_path, monkeypatch):
    cfg = tiny_training(tmp_path)
    tracker = instantiate(cfg, "tracker")
    assert isinstance(tracker, LearnedTracker)
    assert inspect.signature(LearnedTracker.track) == inspect.signature(Tracker.track)
    frames = tag_frames(np.zeros((5, 2)), size=40)
    points = np.array([[10.0, 12.5], [20.0, 20.0], [30.25, 5.0]])
    out = tracker.track(frames, points, (2.8, 2.8))
    assert out.shape == (5, 3, 2) and out.dtype == np.float64
    np.testing.assert_array_equal(out[0], points)
    folder = tracker.checkpoint_path.parent
    assert {p.name for p in folder.iterdir()} >= {"tracker.ckpt", "config.yaml", "metrics.json"}

    def no_training(*args, **kwargs):
        raise AssertionError("a cached tracker was trained again")

    monkeypatch.setattr(tracker_training, "train_tracker", no_training)
    again = instantiate(cfg, "tracker")
    assert again.checkpoint_path == tracker.checkpoint_path
    np.testing.assert_array_equal(again.track(frames, points, (2.8, 2.8)), out)
    cfg.training.seed = 1  # another training config is another cache entry
    with pytest.raises(AssertionError, match="trained again"):
        _ = instantiate(cfg, "tracker").checkpoint_path


class ConstantStep(torch.nn.Module):
    """Stands in for the network: adds a fixed displacement (working pixels) per call."""

    def forward(self, reference, frame, prior):
        return prior + torch.tensor([1.0, -0.5]).view(1, 2, 1, 1)


def test_displacements_come_back_in_the_scan_pixels():
    """Tracked at 1.4 mm working pixels, a 2.8 mm scan moves by half the working-pixel displacement."""
    tracker = LearnedTracker(checkpoint="unused.ckpt", working_spacing_mm=1.4, iterations=2)
    tracker._module = ConstantStep()
    frames = np.random.default_rng(0).random((4, 21, 31)).astype(np.float32)
    out = tracker.track(frames, np.array([[5.0, 5.0], [10.0, 20.0]]), (2.8, 2.8))
    # 2 iterations x (1, -0.5) working pixels per frame = (1, -0.5) scan pixels per frame
    np.testing.assert_allclose(out[3] - out[0], [[3.0, -1.5], [3.0, -1.5]], atol=1e-5)
    same = LearnedTracker(checkpoint="unused.ckpt", working_spacing_mm=1.4, iterations=1)
    same._module = ConstantStep()
    np.testing.assert_allclose(same.displacement(frames, (1.4, 1.4))[2, :, 3, 4], [2.0, -1.0], atol=1e-6)


def test_bad_inputs_are_one_line_errors(tmp_path):
    tracker = LearnedTracker(checkpoint="unused.ckpt")
    tracker._module = ConstantStep()
    with pytest.raises(DataError, match="T >= 2"):
        tracker.track(np.zeros((1, 16, 16)), np.zeros((2, 2)), (1.4, 1.4))
    with pytest.raises(DataError, match=r"\(P, 2\)"):
        tracker.track(np.zeros((3, 16, 16)), np.zeros((2, 3)), (1.4, 1.4))
    with pytest.raises(ConfigError, match="checkpoint or a tracker.training"):
        LearnedTracker()
    other = tmp_path / "segmenter.ckpt"
    torch.save({MODEL_KEY: SEGMENTATION, "state_dict": {}}, other)
    with pytest.raises(CheckpointError, match="expected a tracker checkpoint"):
        _ = LearnedTracker(checkpoint=other).module
    with pytest.raises(CheckpointError, match="not found"):
        _ = LearnedTracker(checkpoint=tmp_path / "missing.ckpt").module


class ShapeRecorder(ConstantStep):
    """:class:`ConstantStep` that records the image shapes it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, reference, frame, prior):
        self.shapes.append(tuple(frame.shape[-2:]))
        return super().forward(reference, frame, prior)


def test_tracking_works_on_the_points_bounding_box_plus_the_margin():
    tracker = LearnedTracker(checkpoint="unused.ckpt", working_spacing_mm=None, margin_mm=2.8, iterations=1)
    tracker._module = recorder = ShapeRecorder()
    frames = np.zeros((3, 40, 50), np.float32)
    points = np.array([[10.0, 12.5], [20.0, 20.0]])
    out = tracker.track(frames, points, (1.4, 1.4))
    assert set(recorder.shapes) == {(15, 13)}  # rows 8..22, cols 10..22: 2 px of margin around the points
    np.testing.assert_allclose(out[2] - points, [[2.0, -1.0], [2.0, -1.0]], atol=1e-6)
    np.testing.assert_array_equal(out[0], points)


def test_priors_come_from_frames_before_and_after_t():
    """Priors only from earlier frames teach the network the expected motion, which then drifts the tracking."""
    seq = translation_sequence(np.array([[float(t), 0.0] for t in range(8)]), size=24)
    pairs = TrackingPairs([seq], length=200, crop_px=None, max_lag=2, prior_noise_px=0.0, augment=False, seed=0)
    offsets = [float((pairs[i]["prior"] - pairs[i]["target"])[0, 0, 0]) for i in range(200)]
    assert set(offsets) <= {-2.0, -1.0, 0.0, 1.0, 2.0}
    assert abs(np.mean(offsets)) < 0.25 and min(offsets) == -2.0 and max(offsets) == 2.0


def test_gaussian_smoothing_keeps_constants_and_spreads_an_impulse_by_sigma():
    from tagseg.strain.learned import gaussian_smooth

    constant = torch.full((1, 2, 9, 11), 0.7, dtype=torch.float64)
    torch.testing.assert_close(gaussian_smooth(constant, 1.5), constant)
    impulse = torch.zeros(1, 1, 41, 41, dtype=torch.float64)
    impulse[0, 0, 20, 20] = 1.0
    out = gaussian_smooth(impulse, 2.0)[0, 0]
    rows = torch.arange(41, dtype=torch.float64) - 20
    assert out.sum().item() == pytest.approx(1.0, abs=1e-9)
    assert (out.sum(dim=1) * rows**2).sum().item() == pytest.approx(4.0, rel=0.02)  # variance = sigma^2
    assert gaussian_smooth(impulse, 0.0) is impulse


def test_the_validation_builds_each_tracker_with_the_runs_paths(tmp_path):
    """`validation.trackers=[harp,learned]`: the learned tracker's `${paths.cache_dir}` is the run's (no training yet)."""
    from tagseg.stages.strain_validation import load_tracker
    from tagseg.strain.harp import HarpTracker

    learned = load_tracker("learned", {"cache_dir": str(tmp_path / "cache")})
    assert isinstance(learned, LearnedTracker) and learned.cache_dir == tmp_path / "cache" / "tracker"
    assert learned._module is None and not (tmp_path / "cache").exists()
    assert isinstance(load_tracker("harp"), HarpTracker)
    with pytest.raises(
        ConfigError, match=r"validation.trackers: no tracker 'harpp'; expected some of \['harp', 'learned'\]"
    ):
        load_tracker("harpp")
