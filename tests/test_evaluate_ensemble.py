"""`tagseg evaluate ckpt=[a,b]`: several checkpoints tested as one ensemble, as `tagseg predict` segments."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from conftest import train_tiny_checkpoint, write_ring_store
from torch import nn

from tagseg.errors import CheckpointError
from tagseg.io.store import read_store
from tagseg.models.ensemble import MeanSoftmax, load_ensemble_module
from tagseg.models.segmenter import load_segmenters
from tagseg.stages.evaluate import evaluate


class Constant(nn.Module):
    """Fixed logits (B, 2, H, W): ``bias`` on the foreground channel, optionally as SegResNetVAE's pair."""

    def __init__(self, bias: torch.Tensor, pair: bool = False) -> None:
        super().__init__()
        self.bias, self.pair = bias, pair

    def forward(self, x: torch.Tensor):
        logits = torch.stack([torch.zeros_like(x[:, 0]), x[:, 0] + self.bias], dim=1)
        return (logits, None) if self.pair else logits


def test_mean_softmax_gives_the_mean_of_the_members_probabilities():
    x = torch.linspace(-2, 2, 2 * 1 * 4 * 5).reshape(2, 1, 4, 5)
    a, b = Constant(torch.tensor(1.5)), Constant(torch.tensor(-3.0), pair=True)
    out = MeanSoftmax([a, b])(x)
    expected = (torch.softmax(a(x), 1) + torch.softmax(b(x)[0], 1)) / 2
    torch.testing.assert_close(torch.softmax(out, 1), expected, rtol=1e-5, atol=1e-6)
    # the vote is the mean's argmax, not either member's
    assert not torch.equal(out.argmax(1), a(x).argmax(1)) and not torch.equal(out.argmax(1), b(x)[0].argmax(1))
    torch.testing.assert_close(out.argmax(1), expected.argmax(1))


@pytest.fixture(scope="module")
def members(tmp_path_factory):
    torch.set_num_threads(1)
    tmp = tmp_path_factory.mktemp("ensemble")
    store = write_ring_store(tmp / "rings.h5")
    return store, [
        train_tiny_checkpoint(tmp, store, tmp / f"run{seed}" / "checkpoints" / "best.ckpt", steps=12, seed=seed)
        for seed in (0, 1)
    ]


def _evaluate(compose_config, out: Path, store: Path, ckpt: str):
    cfg = compose_config(
        "evaluate",
        f"ckpt={ckpt}",
        "split=test",
        "orientation.mode=none",
        "trainer=cpu",
        "trainer.enable_model_summary=false",
        output_dir=out,
        store=store,
    )
    return evaluate(cfg)


def _dice(pred: np.ndarray, truth: np.ndarray) -> float:
    p, t = pred == 2, truth == 2
    return float(2 * (p & t).sum() / (p.sum() + t.sum()))


def test_an_ensemble_is_tested_on_the_masks_predict_writes(members, compose_config, tmp_path):
    store, (a, b) = members
    result = _evaluate(compose_config, tmp_path / "ens", store, f"[{a},{b}]")
    rows = pd.read_csv(result["metrics_path"]).sort_values("index")
    data = read_store(store, extras=False)
    test = np.flatnonzero(np.asarray(data.meta["split"]) == "test")
    masks = load_segmenters([a, b]).segment(data.images[test], scaled=True)
    by_hand = [_dice(m, data.masks[i]) for m, i in zip(masks, test)]
    np.testing.assert_allclose(rows["dice"].to_numpy(), by_hand, atol=1e-6)
    singles = [_evaluate(compose_config, tmp_path / f"one{i}", store, str(p)) for i, p in enumerate((a, b))]
    assert {round(s["summary"]["dice_mean"], 6) for s in singles} != {round(result["summary"]["dice_mean"], 6)}
    assert result["summary"]["members"] == [str(a), str(b)]
    assert "members" not in singles[0]["summary"]
    qc = pd.read_csv(tmp_path / "ens" / "qc.csv")
    np.testing.assert_allclose(np.sort(qc["dice"].to_numpy()), np.sort(by_hand), atol=1e-4)
    assert qc["agreement_dice"].notna().all()  # the members are views: their agreement is a QC signal


def test_an_ensemble_of_one_model_twice_is_that_model(members, compose_config, tmp_path):
    store, (a, _) = members
    twice = _evaluate(compose_config, tmp_path / "twice", store, f"[{a},{a}]")
    once = _evaluate(compose_config, tmp_path / "once", store, str(a))
    np.testing.assert_allclose(
        pd.read_csv(twice["metrics_path"])["dice"], pd.read_csv(once["metrics_path"])["dice"], atol=1e-6
    )


def test_members_normalised_otherwise_are_refused_by_name(members, tmp_path):
    _, (a, _) = members
    state = torch.load(a, map_location="cpu", weights_only=False)
    mean = state["hyper_parameters"]["mean"]
    state["hyper_parameters"]["mean"] = mean + 0.25
    other = tmp_path / "other.ckpt"
    torch.save(state, other)
    with pytest.raises(CheckpointError, match=rf"{other} has mean={mean + 0.25} but .* has {mean}"):
        load_ensemble_module([a, other])
    module, files = load_ensemble_module([a])
    assert files == [a] and not isinstance(module.net, MeanSoftmax)
