"""Post-processing of predicted label maps (postprocess=largest_component) in evaluate and predict."""

from __future__ import annotations

import lightning as L
import numpy as np
import pandas as pd
import pytest
import torch
from conftest import ring_slices, write_ring_store

from tagseg.conventions import NORM_MEAN, NORM_STD
from tagseg.errors import ConfigError
from tagseg.io.store import write_store
from tagseg.models.segmentation import SegmentationModule
from tagseg.postprocess import apply_postprocess, check_postprocess, largest_component


def ring(size: int = 24, r_in: float = 4.0, r_out: float = 7.0) -> np.ndarray:
    yy, xx = np.mgrid[:size, :size]
    d = np.hypot(yy - size / 2, xx - size / 2)
    return ((d >= r_in) & (d <= r_out)).astype(np.uint8)


def test_only_the_largest_component_of_each_label_survives():
    labels = ring() * 2  # myocardium ring
    labels[12, 12] = 3  # one-pixel LV pool (its only component: kept)
    labels[0:2, 0:2] = 2  # a stray myocardium blob at the corner
    labels[20:22, 0:3] = 1  # RV: two components, the larger one kept
    labels[23, 23] = 1
    out = largest_component(labels)
    expected = labels.copy()
    expected[0:2, 0:2] = 0
    expected[23, 23] = 0
    assert np.array_equal(out, expected)
    assert labels[0, 0] == 2  # the input is not modified


def test_diagonal_neighbours_are_one_component_and_images_are_independent():
    stack = np.zeros((2, 6, 6), np.uint8)
    stack[0, [0, 1, 2], [0, 1, 2]] = 2  # a diagonal line: one 8-connected component of 3
    stack[0, 5, 5] = 2
    stack[1, 5, 5] = 2  # alone in its image: kept
    out = largest_component(stack)
    assert out[0].sum() == 3 * 2 and out[0, 5, 5] == 0 and out[1, 5, 5] == 2


def test_none_is_the_identity_and_an_unknown_name_is_one_clear_error():
    labels = np.array([[2, 0, 2]], np.uint8)
    assert apply_postprocess("none", labels) is labels
    assert check_postprocess(None) == "none"
    with pytest.raises(ConfigError, match=r"postprocess: expected one of \['none', 'largest_component'\], got 'lcc'"):
        check_postprocess("lcc")


class FixedPrediction(SegmentationModule):
    """Predicts one given class map whatever the image (logits: one-hot)."""

    def __init__(self, classes_map: np.ndarray) -> None:
        super().__init__(
            network={"_target_": "tagseg.models.networks.build_network", "name": "resnetvae", "init_filters": 8},
            loss={"_target_": "tagseg.losses.SegmentationLoss"},
            optimizer={"_target_": "torch.optim.Adam", "_partial_": True},
            image_size=classes_map.shape[-1],
        )
        self.fixed = torch.nn.functional.one_hot(torch.as_tensor(classes_map, dtype=torch.long), 2).permute(2, 0, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fixed[None].float().expand(x.shape[0], -1, -1, -1)


@pytest.mark.parametrize("postprocess", ["none", "largest_component"])
def test_the_test_step_scores_the_post_processed_prediction(postprocess):
    truth = ring(32)
    pred = truth.copy()
    pred[0:2, 0:2] = 1  # a stray blob 15 px from the ring
    module = FixedPrediction(pred)
    module.postprocess = postprocess
    item = {
        "image": torch.zeros(1, 32, 32),
        "label": torch.as_tensor(truth[None].astype(np.int64)),
        "spacing_mm": torch.tensor([1.0, 1.0]),
        "index": 0,
        "slice": 0,
        "frame": 0,
    }
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.test(module, dataloaders=torch.utils.data.DataLoader([item], batch_size=1), verbose=False)
    (row,) = module.test_rows
    if postprocess == "none":
        a = int(truth.sum())
        assert row["dice"] == pytest.approx(2 * a / (2 * a + 4))
        assert row["hd95_mm"] > 0
    else:
        assert row["dice"] == pytest.approx(1.0) and row["hd95_mm"] == pytest.approx(0.0)


def myocardium_by_intensity(images01: np.ndarray) -> np.ndarray:
    """Class map (0 / 1) of a stand-in network: myocardium where the [0, 1] intensity is 0.29-0.40 (rings: 0.4)."""
    x = (images01 - NORM_MEAN) / NORM_STD
    return (np.abs(x + 0.25) < 0.5).astype(np.uint8)


@pytest.mark.parametrize("postprocess", ["none", "largest_component"])
def test_evaluate_scores_the_post_processed_prediction(
    compose_config, tmp_path, trained_ckpt, monkeypatch, postprocess
):
    """Rows of `tagseg evaluate postprocess=...` equal Dice of the (post-processed) prediction, computed by hand."""
    from tagseg.io.store import read_store
    from tagseg.metrics import dice
    from tagseg.stages.evaluate import evaluate

    images, masks = ring_slices(16, 32)
    images[:, 0:4, 0:4] = 0.4  # a myocardium-bright blob in the corner
    store = write_ring_store(tmp_path / "blobs.h5", n_subjects=4)
    base = read_store(store)
    write_store(store, images, masks, base.meta, name="blobs")

    def forward(self, x):  # the stand-in network, on the normalised image
        myo = 10.0 * (0.5 - (x + 0.25).abs())
        return torch.cat([torch.zeros_like(myo), myo], dim=1)

    monkeypatch.setattr(SegmentationModule, "forward", forward)
    cfg = compose_config(
        "evaluate",
        f"ckpt={trained_ckpt}",
        "split=all",
        "trainer=cpu",
        f"postprocess={postprocess}",
        output_dir=tmp_path / "eval",
        store=store,
    )
    assert evaluate(cfg)["summary"]["postprocess"] == postprocess
    rows = pd.read_csv(tmp_path / "eval" / "test_metrics.csv").sort_values("index")
    pred = apply_postprocess(postprocess, myocardium_by_intensity(images))
    expected = [dice(pred[i], masks[i] == 2) for i in range(len(images))]
    np.testing.assert_allclose(rows["dice"].to_numpy(), expected, atol=1e-6)
    assert (np.mean(expected) > 0.95) == (postprocess == "largest_component")


def test_evaluate_refuses_an_unknown_postprocess_before_loading(compose_config, tmp_path, ring_store):
    from tagseg.stages.evaluate import evaluate

    cfg = compose_config("evaluate", f"ckpt={tmp_path}", "postprocess=lcc", output_dir=tmp_path / "e", store=ring_store)
    with pytest.raises(ConfigError, match="postprocess: expected one of"):
        evaluate(cfg)
