"""``tagseg export``: a trained checkpoint as a deployable model (ONNX or ``torch.export``) plus a JSON sidecar.

The exported graph maps a normalised batch (B, 1, S, S) float32 to the full-resolution logits
(B, 1 + K, S, S) (the batch size is dynamic). Everything around it is in the sidecar
``model.json`` (:data:`SIDECAR`), so the file runs without tagseg: scale each frame to [0, 1],
resize it to ``image_size`` (bilinear) or, where ``spacing_mm`` is set (a model trained at one pixel
size, ``prepare.fit=crop``), resample it to ``spacing_mm`` and centre it on ``image_size`` (cropped
or zero-padded), normalise with ``mean`` / ``std``, run, argmax over channels, map channel c to
``labels[c]`` and undo the placement. ``tagseg predict model=<folder>`` does exactly that and gives
the same masks as ``ckpt=``.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from tagseg.errors import ConfigError
from tagseg.io.atomic import publish
from tagseg.models.segmenter import Segmenter

SIDECAR = "model.json"
FILES = {"onnx": "model.onnx", "torch_export": "model.pt2"}
SPACING_POLICY = (
    "each frame is resized from its own size to image_size x image_size pixels whatever its pixel "
    "spacing (no resampling to a fixed mm grid), as in training; masks are resized back (nearest)"
)
GRID_POLICY = (
    "each frame is resampled (bilinear) from its own pixel spacing to spacing_mm and centred on "
    "image_size x image_size pixels (cropped or zero-padded), as in training; the softmax is placed "
    "back (background where the crop cut the frame) and resized to the frame (bilinear) before argmax"
)
ONNX_OPSET = 18


def sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _logits_module(network: Any) -> Any:
    import torch

    class Logits(torch.nn.Module):
        """The network's full-resolution logits only (no VAE branch, no deep-supervision heads)."""

        def __init__(self, net: torch.nn.Module) -> None:
            super().__init__()
            self.net = net

        def forward(self, image: torch.Tensor) -> torch.Tensor:
            out = self.net(image)
            if isinstance(out, (tuple, list)):
                out = out[0]
            return out[:, 0] if out.ndim == 5 else out

    return Logits(network).eval()


def export_model(ckpt: Any, fmt: str, output: str | Path, onnx_dynamo: bool = False) -> dict[str, Any]:
    """Export the segmenter of ``ckpt`` to ``output`` (created): the model file and ``model.json``.

    Args:
        ckpt: a checkpoint file or run folder (see :func:`tagseg.models.segmenter.find_checkpoint`).
        fmt: ``onnx`` or ``torch_export``.
        output: the folder written.
        onnx_dynamo: ONNX through ``torch.export`` (onnxscript; ~20x slower to export here) instead of
            the TorchScript-based exporter; both give the same graph outputs within 1e-5.

    Returns:
        The sidecar's content.

    Raises:
        ConfigError: an unknown format or a bad checkpoint.
    """
    import torch

    from tagseg import __version__
    from tagseg.models.segmenter import find_checkpoint, load_segmenter
    from tagseg.qc.model import QC_MODEL_FILE, find_qc_model

    if fmt not in FILES:
        raise ConfigError(f"format: expected one of {sorted(FILES)}, got {fmt!r}")
    path = find_checkpoint(ckpt)
    seg = load_segmenter(path)
    module = _logits_module(seg.network)
    size = seg.image_size
    example = torch.zeros(2, 1, size, size)
    out = Path(str(output))
    out.mkdir(parents=True, exist_ok=True)
    final = out / FILES[fmt]
    tmp = final.with_name(f".tmp-{os.getpid()}-{final.name}")
    batch = torch.export.Dim("batch", min=1, max=4096)
    with torch.no_grad():
        if fmt == "onnx":
            common = {"input_names": ["image"], "output_names": ["logits"], "opset_version": ONNX_OPSET}
            if onnx_dynamo:
                dynamic = {"dynamic_shapes": {"image": {0: batch}}, "dynamo": True, "external_data": False}
            else:
                dynamic = {"dynamic_axes": {"image": {0: "batch"}, "logits": {0: "batch"}}, "dynamo": False}
            with warnings.catch_warnings():
                if not onnx_dynamo:
                    warnings.simplefilter("ignore")  # the TorchScript exporter's deprecation notice
                torch.onnx.export(module, (example,), str(tmp), **common, **dynamic)
        else:
            program = torch.export.export(module, (example,), dynamic_shapes={"image": {0: batch}})
            torch.export.save(program, str(tmp))
    publish(tmp, final)
    sidecar = {
        "format": fmt,
        "file": final.name,
        "model_sha256": sha256(final),
        "input": {"name": "image", "shape": ["batch", 1, size, size], "dtype": "float32"},
        "output": {"name": "logits", "shape": ["batch", len(seg.labels), size, size], "dtype": "float32"},
        "image_size": size,
        "spacing_mm": seg.spacing_mm,
        "flips": seg.flips,
        "mean": seg.mean,
        "std": seg.std,
        "labels": list(seg.labels),
        "classes": list(seg.labels[1:]),
        "scaling": "each frame min-max scaled to [0, 1] before resizing (slice-store images already are)",
        "spacing_policy": GRID_POLICY if seg.spacing_mm else SPACING_POLICY,
        "tagseg_version": __version__,
        "torch_version": torch.__version__,
        "checkpoint": str(path),
        "checkpoint_sha256": sha256(path),
    }
    if fmt == "onnx":
        sidecar["onnx_opset"] = ONNX_OPSET
        sidecar["onnx_exporter"] = "dynamo" if onnx_dynamo else "torchscript"
    qc = find_qc_model(path)
    if qc is not None:  # the run's QC model travels with the exported model (validated, rewritten)
        qc.save(out / QC_MODEL_FILE)
        sidecar["qc_model"] = QC_MODEL_FILE
    else:
        (out / QC_MODEL_FILE).unlink(missing_ok=True)
    tmp_json = out / f".tmp-{os.getpid()}-{SIDECAR}"
    tmp_json.write_text(json.dumps(sidecar, indent=1))
    publish(tmp_json, out / SIDECAR)
    return sidecar


class OnnxNetwork:
    """An ONNX Runtime session behind :class:`Segmenter`'s ``run`` interface."""

    def __init__(self, path: Path, device: str = "cpu") -> None:
        import onnxruntime as ort

        providers = ["CPUExecutionProvider"]
        if device.startswith("cuda") and "CUDAExecutionProvider" in ort.get_available_providers():
            providers.insert(0, "CUDAExecutionProvider")
        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.input = self.session.get_inputs()[0].name

    def run(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input: np.ascontiguousarray(x, np.float32)})[0]


def load_exported(folder: str | Path, device: str = "cpu") -> Segmenter:
    """The :class:`Segmenter` of a folder written by :func:`export_model` (checks the model file's hash).

    Raises:
        ConfigError: no sidecar, an unknown format, or a model file that does not match its sidecar.
    """
    folder = Path(str(folder)).expanduser()
    meta_path = folder / SIDECAR
    if not meta_path.is_file():
        raise ConfigError(f"model: {meta_path} not found; expected a folder written by `tagseg export`")
    try:
        meta = json.loads(meta_path.read_text())
        fmt, file = meta["format"], folder / meta["file"]
        size, labels = int(meta["image_size"]), tuple(int(v) for v in meta["labels"])
        spacing = None if meta.get("spacing_mm") is None else float(meta["spacing_mm"])
        if spacing is not None and not spacing > 0:
            raise ValueError(f"spacing_mm must be > 0 or null, got {spacing}")
    except (ValueError, KeyError, TypeError) as exc:
        raise ConfigError(f"model: {meta_path}: malformed sidecar ({type(exc).__name__}: {exc})") from None
    if fmt not in FILES:
        raise ConfigError(f"model: {meta_path}: unknown format {fmt!r}; expected one of {sorted(FILES)}")
    if not file.is_file() or sha256(file) != meta.get("model_sha256"):
        raise ConfigError(f"model: {file} is missing or does not match the sha256 in {meta_path}")
    if fmt == "onnx":
        dev = "cpu" if device == "auto" else device
        network: Any = OnnxNetwork(file, dev)
    else:
        import torch

        dev = ("cuda" if torch.cuda.is_available() else "cpu") if device == "auto" else device
        network = torch.export.load(str(file)).module().to(dev)
    return Segmenter(
        network=network,
        image_size=size,
        mean=float(meta["mean"]),
        std=float(meta["std"]),
        labels=labels,
        device=dev,
        source=str(folder),
        spacing_mm=spacing,
        flips=bool(meta.get("flips", True)),
    )


def export_stage(cfg: Any) -> dict[str, Any]:
    """``tagseg export``: ``cfg.ckpt``, ``cfg.format``, ``cfg.output``."""
    return export_model(cfg.ckpt, str(cfg.format), cfg.output, onnx_dynamo=bool(cfg.onnx_dynamo))


__all__ = ["FILES", "OnnxNetwork", "SIDECAR", "export_model", "export_stage", "load_exported", "sha256"]
