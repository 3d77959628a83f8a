"""The predicted-quality model: Dice predicted from the QC signals, and the flag derived from it.

A ridge regression (closed form, NumPy) on standardised signals predicts the logit of an
image's myocardial Dice; the logistic function maps it back, so ``predicted_dice`` is in [0, 1].
Fitting targets are clipped to [:data:`DICE_CLIP`, 1 - :data:`DICE_CLIP`] (the logit of 0 or 1 is
infinite). A missing signal (NaN: no myocardium, no RV, one view) is replaced by its fitting mean,
i.e. contributes nothing after standardisation; a signal constant in the fitting data gets no weight.

The model holds **variants**, each over its own signals, fitted on the same images: one with the
agreement between views (needs test-time flips or an ensemble) and one without. An image is scored
by the first variant whose signals it has (the agreement is NaN without views, so ``tagseg
predict`` without ``tta=flip`` uses the variant without it).

``qc_flag`` is 1 when ``predicted_dice < threshold`` (default :data:`DEFAULT_THRESHOLD` = 0.80,
the Dice below which an image counts as failed in the measurements).

The file (:data:`QC_MODEL_FILE`, plain JSON, schema :data:`SCHEMA`) sits next to the checkpoint
it belongs to (``<run>/qc_model.json``) and is copied into exported model folders; it is
untrusted input, validated field by field on load (:func:`load_qc_model`).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tagseg.errors import ConfigError
from tagseg.io.atomic import atomic_write_text
from tagseg.qc.signals import SIGNALS

SCHEMA = "tagseg.qc_model/1"
QC_MODEL_FILE = "qc_model.json"
DEFAULT_THRESHOLD = 0.80
DEFAULT_RIDGE = 1.0
DICE_CLIP = 0.02
#: signals of the variant without views (everything but the agreement)
NO_VIEWS = tuple(s for s in SIGNALS if s != "agreement_dice")


def _logit(y: np.ndarray) -> np.ndarray:
    y = np.clip(y, DICE_CLIP, 1 - DICE_CLIP)
    return np.log(y / (1 - y))


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.clip(z, -50, 50)))


def signal_matrix(rows: Sequence[Mapping[str, Any]], features: Sequence[str]) -> np.ndarray:
    """(N, F) float matrix of ``features`` from signal rows (missing or empty values: NaN)."""

    def value(v: Any) -> float:
        try:
            return float(v)
        except (TypeError, ValueError):
            return float("nan")

    return np.array([[value(r.get(f)) for f in features] for r in rows], np.float64).reshape(len(rows), len(features))


@dataclass
class RidgeVariant:
    """One fitted regression: ``logit(dice) = bias + sum(weights * (x - mean) / scale)``.

    Attributes:
        features: the signal names it reads.
        mean: fitting mean of each signal (also what a NaN is replaced by).
        scale: fitting standard deviation of each signal (1 where constant).
        weights: one per signal (0 where constant).
        bias: the intercept (mean fitting logit).
    """

    features: list[str]
    mean: list[float]
    scale: list[float]
    weights: list[float]
    bias: float

    def logits(self, x: np.ndarray) -> np.ndarray:
        mean, scale = np.asarray(self.mean), np.asarray(self.scale)
        z = np.where(np.isfinite(x), (x - mean) / scale, 0.0)
        return self.bias + z @ np.asarray(self.weights)


def fit_ridge(x: np.ndarray, y: np.ndarray, features: Sequence[str], ridge: float = DEFAULT_RIDGE) -> RidgeVariant:
    """Ridge regression of ``logit(y)`` on standardised ``x`` (N, F); NaN imputed with the column mean."""
    target = _logit(np.asarray(y, np.float64))
    mean = np.array([np.nanmean(c) if np.isfinite(c).any() else 0.0 for c in x.T])
    filled = np.where(np.isfinite(x), x, mean)
    scale = filled.std(axis=0)
    used = scale > 1e-12
    scale = np.where(used, scale, 1.0)
    z = ((filled - mean) / scale)[:, used]
    bias = float(target.mean())
    weights = np.zeros(x.shape[1])
    if used.any():
        gram = z.T @ z + ridge * np.eye(z.shape[1])
        weights[used] = np.linalg.lstsq(gram, z.T @ (target - bias), rcond=None)[0]
    return RidgeVariant(list(features), mean.tolist(), scale.tolist(), weights.tolist(), bias)


@dataclass
class QCModel:
    """Predicted Dice and the QC flag from signal rows (see the module docstring).

    Attributes:
        variants: regressions tried in order; the first whose signals an image has scores it.
        threshold: ``qc_flag = predicted_dice < threshold``.
        ridge: the ridge penalty it was fitted with.
        fitted_on: what it was fitted on (sets, images, checkpoint): provenance only.
    """

    variants: list[RidgeVariant]
    threshold: float = DEFAULT_THRESHOLD
    ridge: float = DEFAULT_RIDGE
    fitted_on: dict[str, Any] = field(default_factory=dict)

    def predict(self, rows: Sequence[Mapping[str, Any]]) -> np.ndarray:
        """Predicted Dice in [0, 1], one per row."""
        out = np.full(len(rows), np.nan)
        for variant in self.variants:
            x = signal_matrix(rows, variant.features)
            todo = np.isnan(out)
            if "agreement_dice" in variant.features:
                todo &= np.isfinite(x[:, variant.features.index("agreement_dice")])
            out[todo] = _sigmoid(variant.logits(x[todo]))
        return out

    def flag(self, predicted_dice: np.ndarray) -> np.ndarray:
        """1 where the predicted Dice is below the threshold."""
        return (np.asarray(predicted_dice) < self.threshold).astype(int)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "threshold": self.threshold,
            "ridge": self.ridge,
            "target": "logit(clip(dice, DICE_CLIP, 1 - DICE_CLIP)); predicted_dice = sigmoid(...)",
            "dice_clip": DICE_CLIP,
            "variants": [v.__dict__ for v in self.variants],
            "fitted_on": self.fitted_on,
        }

    def save(self, path: str | Path) -> Path:
        """Write the model as JSON, atomically."""
        return atomic_write_text(path, json.dumps(self.to_json(), indent=1))


def fit_qc_model(
    rows: Sequence[Mapping[str, Any]],
    dice: Sequence[float],
    view_rows: Sequence[Mapping[str, Any]] = (),
    view_dice: Sequence[float] = (),
    threshold: float = DEFAULT_THRESHOLD,
    ridge: float = DEFAULT_RIDGE,
    fitted_on: dict[str, Any] | None = None,
) -> QCModel:
    """Fit the variants: one on ``view_rows`` with every signal (when given), one on ``rows`` without the agreement.

    Args:
        rows: signal rows (:data:`~tagseg.qc.signals.SIGNALS`), one per image, of masks predicted
            as ``tagseg predict`` does without flips.
        dice: the true myocardial Dice of each of ``rows``.
        view_rows: signal rows of masks predicted with views (flips or an ensemble): their agreement is set.
        view_dice: the true Dice of each of ``view_rows``.
        threshold: the flag threshold stored with the model.
        ridge: ridge penalty on the standardised weights.
        fitted_on: provenance stored with the model.

    Raises:
        ConfigError: fewer than 10 images, or lengths that differ.
    """
    y, yv = np.asarray(dice, np.float64), np.asarray(view_dice, np.float64)
    if len(rows) != len(y) or len(y) < 10 or len(view_rows) != len(yv) or 0 < len(yv) < 10:
        raise ConfigError(
            f"qc: fitting needs one Dice per signal row and >= 10 images, got {len(rows)} / {len(y)} "
            f"(with views {len(view_rows)} / {len(yv)})"
        )
    variants = []
    if len(yv):
        variants.append(fit_ridge(signal_matrix(view_rows, SIGNALS), yv, SIGNALS, ridge))
    variants.append(fit_ridge(signal_matrix(rows, NO_VIEWS), y, NO_VIEWS, ridge))
    info = dict(fitted_on or {})
    info.setdefault("n_images", int(len(y)))
    return QCModel(variants=variants, threshold=float(threshold), ridge=float(ridge), fitted_on=info)


def _number_list(value: Any, n: int, where: str) -> list[float]:
    if not isinstance(value, list) or len(value) != n:
        raise ConfigError(f"{where}: expected a list of {n} numbers")
    out = []
    for v in value:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
            raise ConfigError(f"{where}: expected finite numbers, got {v!r}")
        out.append(float(v))
    return out


def load_qc_model(path: str | Path) -> QCModel:
    """Read and validate a QC model file.

    Raises:
        ConfigError: not JSON, another schema, unknown signals, lists of the wrong length,
            non-finite numbers or a threshold outside (0, 1); the message names the file and field.
    """
    path = Path(path)
    try:
        doc = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a readable QC model (expected JSON written by tagseg qc): {exc}") from None
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise ConfigError(f"{path}: schema: expected {SCHEMA!r}")
    threshold = doc.get("threshold")
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not 0 < threshold < 1:
        raise ConfigError(f"{path}: threshold: expected a number in (0, 1), got {threshold!r}")
    raw = doc.get("variants")
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{path}: variants: expected a non-empty list")
    variants = []
    for i, v in enumerate(raw):
        where = f"{path}: variants[{i}]"
        if not isinstance(v, dict):
            raise ConfigError(f"{where}: expected a mapping")
        features = v.get("features")
        if not isinstance(features, list) or not features or any(f not in SIGNALS for f in features):
            raise ConfigError(f"{where}.features: expected signal names among {list(SIGNALS)}")
        n = len(features)
        scale = _number_list(v.get("scale"), n, f"{where}.scale")
        if min(scale) <= 0:
            raise ConfigError(f"{where}.scale: expected positive numbers")
        variants.append(
            RidgeVariant(
                features=[str(f) for f in features],
                mean=_number_list(v.get("mean"), n, f"{where}.mean"),
                scale=scale,
                weights=_number_list(v.get("weights"), n, f"{where}.weights"),
                bias=_number_list([v.get("bias")], 1, f"{where}.bias")[0],
            )
        )
    fitted_on = doc.get("fitted_on") if isinstance(doc.get("fitted_on"), dict) else {}
    ridge = doc.get("ridge") if isinstance(doc.get("ridge"), (int, float)) else DEFAULT_RIDGE
    return QCModel(variants=variants, threshold=float(threshold), ridge=float(ridge), fitted_on=fitted_on)


def qc_model_path(source: str | Path) -> Path:
    """Where the QC model of a checkpoint or model folder lives: ``<run>/qc_model.json`` for
    ``<run>/checkpoints/<name>.ckpt``, ``<folder>/qc_model.json`` for any other file's folder or a folder."""
    p = Path(source)
    if p.is_dir():
        return p / QC_MODEL_FILE
    folder = p.parent
    if folder.name == "checkpoints":
        folder = folder.parent
    return folder / QC_MODEL_FILE


def find_qc_model(source: str | Path) -> QCModel | None:
    """The QC model stored with a checkpoint / model folder, or None when there is none."""
    path = qc_model_path(source)
    return load_qc_model(path) if path.is_file() else None


__all__ = [
    "DEFAULT_THRESHOLD",
    "QCModel",
    "QC_MODEL_FILE",
    "RidgeVariant",
    "SCHEMA",
    "find_qc_model",
    "fit_qc_model",
    "fit_ridge",
    "load_qc_model",
    "qc_model_path",
    "signal_matrix",
]
