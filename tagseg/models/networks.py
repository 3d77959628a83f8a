"""The segmentation networks of the paper (MONAI), built by name with the paper's defaults.

``build_network("resnetvae")`` and ``build_network("nnunet")`` make exactly the constructor calls of
METHOD section 4 (3,555,891 and 34,164,258 trainable parameters at 256x256); keyword overrides
change any constructor argument (MONAI names) for small CPU runs, e.g.::

    build_network("resnetvae", image_size=64, init_filters=8)
    build_network("nnunet", image_size=64, strides=[1, 2, 2, 2], filters=[8, 16, 32, 64])

Outputs (see :func:`split_output`):

* SegResNetVAE returns ``(logits, vae_loss)``; ``vae_loss`` is ``None`` in eval mode.
* DynUNet returns logits (B, C, H, W); with ``deep_supervision=True`` and in training mode it
  returns the stacked heads (B, 1 + deep_supr_num, C, H, W), head 0 the full-resolution output
  and every head already upsampled to (H, W).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from monai.networks.nets import DynUNet, SegResNetVAE
from torch import nn

from tagseg.errors import ConfigError

SPATIAL_DIMS = 2


def _as_size(image_size: int | Sequence[int]) -> tuple[int, int]:
    """``64`` or ``(64, 64)`` -> ``(64, 64)``; ConfigError for anything else."""
    if isinstance(image_size, (int,)) and not isinstance(image_size, bool):
        return int(image_size), int(image_size)
    try:
        size = tuple(int(s) for s in image_size)  # type: ignore[union-attr]
    except TypeError:
        raise ConfigError(f"image_size: expected an int or (height, width), got {image_size!r}") from None
    if len(size) != 2:
        raise ConfigError(f"image_size: expected an int or (height, width), got {image_size!r}")
    return size  # type: ignore[return-value]


def _stride_product(strides: Sequence[Any]) -> tuple[int, int]:
    """Total downsampling of a DynUNet along (rows, cols); a stride is an int or a per-axis pair."""
    rows, cols = 1, 1
    for s in strides:
        sr, sc = (s, s) if isinstance(s, int) else tuple(s)
        rows, cols = rows * int(sr), cols * int(sc)
    return rows, cols


def _resnetvae_kwargs(size: tuple[int, int], overrides: dict[str, Any]) -> dict[str, Any]:
    return {"spatial_dims": SPATIAL_DIMS, "in_channels": 1, "out_channels": 2, "input_image_size": size, **overrides}


def _resnetvae_multiple(kwargs: dict[str, Any]) -> tuple[tuple[int, int], str]:
    n_down = len(kwargs.get("blocks_down", (1, 2, 2, 4)))
    m = 2**n_down
    why = f"2^{n_down}: {n_down - 1} encoder downsamplings plus the VAE branch's stride-2 convolution"
    return (m, m), why


def _nnunet_kwargs(size: tuple[int, int], overrides: dict[str, Any]) -> dict[str, Any]:
    kwargs = dict(overrides)
    strides = kwargs.setdefault("strides", [[1, 1]] + [[2, 2]] * 6)
    kwargs.setdefault("kernel_size", [[3, 3]] * len(strides))
    kwargs.setdefault("upsample_kernel_size", list(strides[1:]))
    base = {
        "spatial_dims": SPATIAL_DIMS,
        "in_channels": 1,
        "out_channels": 2,
        "res_block": True,
        "trans_bias": True,
        "dropout": 0.1,
    }
    return {**base, **kwargs}


def _nnunet_multiple(kwargs: dict[str, Any]) -> tuple[tuple[int, int], str]:
    m = _stride_product(kwargs["strides"])
    return m, f"the product of the strides {list(kwargs['strides'])}"


@dataclass(frozen=True)
class NetworkSpec:
    """How to build one named network.

    Attributes:
        cls: the MONAI class.
        kwargs: ``(image_size, overrides) -> constructor kwargs`` (the paper's call plus overrides).
        multiple: ``kwargs -> ((row, col) multiple the image size must have, why)``.
        fixed: constructor arguments that overrides may not change.
        description: one line for error messages and docs.
    """

    cls: type[nn.Module]
    kwargs: Callable[[tuple[int, int], dict[str, Any]], dict[str, Any]]
    multiple: Callable[[dict[str, Any]], tuple[tuple[int, int], str]]
    fixed: tuple[str, ...] = field(default=("spatial_dims",))
    description: str = ""


#: the network registry: name -> how to build it (``model.network.name``); add to it with :func:`register_network`
NETWORKS: dict[str, NetworkSpec] = {}


def _plain_kwargs(defaults: Mapping[str, Any]) -> Callable[[tuple[int, int], dict[str, Any]], dict[str, Any]]:
    def kwargs(size: tuple[int, int], overrides: dict[str, Any]) -> dict[str, Any]:
        return {"in_channels": 1, "out_channels": 2, **defaults, **overrides}

    return kwargs


def register_network(
    name: str,
    cls: type[nn.Module] | None = None,
    *,
    multiple: int | tuple[int, int] = 1,
    defaults: Mapping[str, Any] | None = None,
    description: str = "",
    kwargs: Callable[[tuple[int, int], dict[str, Any]], dict[str, Any]] | None = None,
    multiple_rule: Callable[[dict[str, Any]], tuple[tuple[int, int], str]] | None = None,
    fixed: tuple[str, ...] = (),
) -> Any:
    """Register a network class under ``name`` (``model.network.name=<name>``); usable as a decorator.

    The class is called with ``in_channels=1``, ``out_channels=1 + K`` (background + the target
    classes), then ``defaults``, then the config's other ``model.network`` keys (any constructor
    argument), and must return logits (B, 1 + K, H, W) (or ``(logits, extra_loss)`` as SegResNetVAE).

    Args:
        name: the registry name.
        cls: the ``nn.Module`` class (omit to use as ``@register_network("name")``).
        multiple: each image side must be a multiple of this (the network's total downsampling).
        defaults: constructor arguments the registry passes before the config's.
        description: one line for errors and docs.
        kwargs: advanced: ``(image_size, overrides) -> constructor kwargs`` instead of the rule above.
        multiple_rule: advanced: ``kwargs -> ((rows, cols) multiple, why)`` instead of ``multiple``.
        fixed: constructor arguments the config may not set.

    Raises:
        ConfigError: ``name`` is already registered to another class.
    """

    def add(klass: type[nn.Module]) -> type[nn.Module]:
        known = NETWORKS.get(name)
        if known is not None and known.cls is not klass:
            raise ConfigError(f"register_network: '{name}' is already registered ({known.cls.__name__})")
        m = (multiple, multiple) if isinstance(multiple, int) else tuple(int(v) for v in multiple)
        rule = multiple_rule or (lambda kw: (m, f"the total downsampling of '{name}'"))
        NETWORKS[name] = NetworkSpec(
            klass,
            kwargs or _plain_kwargs(dict(defaults or {})),
            rule,  # type: ignore[arg-type]
            fixed=fixed,
            description=description or klass.__name__,
        )
        return klass

    return add if cls is None else add(cls)


register_network(
    "resnetvae",
    SegResNetVAE,
    kwargs=_resnetvae_kwargs,
    multiple_rule=_resnetvae_multiple,
    fixed=("spatial_dims", "input_image_size"),
    description="MONAI SegResNetVAE (the paper's ResNetVAE)",
)
register_network(
    "nnunet",
    DynUNet,
    kwargs=_nnunet_kwargs,
    multiple_rule=_nnunet_multiple,
    fixed=("spatial_dims",),
    description="MONAI DynUNet (the paper's nnUnet)",
)


def _spec(name: str) -> NetworkSpec:
    if name not in NETWORKS and ":" in name:  # "package.module:name": import the module that registers it
        importlib.import_module(name.split(":", 1)[0])
        name = name.split(":", 1)[1]
    if name not in NETWORKS:
        raise ConfigError(
            f"model network name: unknown network '{name}'; known: {sorted(NETWORKS)} "
            "(register one with tagseg.models.networks.register_network, docs/extending.md)"
        )
    return NETWORKS[name]


def _resolve(
    name: str, image_size: int | Sequence[int], overrides: dict[str, Any]
) -> tuple[NetworkSpec, tuple[int, int], dict[str, Any]]:
    spec = _spec(name)
    size = _as_size(image_size)
    accepted = set(inspect.signature(spec.cls.__init__).parameters) - {"self", *spec.fixed}
    unknown = sorted(set(overrides) - accepted)
    if unknown:
        raise ConfigError(
            f"network '{name}': unknown override(s) {unknown}; {spec.cls.__name__} accepts {sorted(accepted)} (and image_size)"
        )
    return spec, size, spec.kwargs(size, dict(overrides))


def check_image_size(name: str, image_size: int | Sequence[int], **overrides: Any) -> tuple[int, int]:
    """Check that network ``name`` (with ``overrides``) accepts images of ``image_size``.

    Rule: each side must be a positive multiple of the network's total downsampling, 16 for the
    default SegResNetVAE (``2 ** len(blocks_down)``) and 64 for the default DynUNet (the product of
    its strides); otherwise skip connections (or the VAE's flattened latent) do not line up.

    Args:
        name: ``"resnetvae"`` or ``"nnunet"``.
        image_size: int (square) or (height, width), in pixels.
        **overrides: the same overrides as :func:`build_network` (e.g. ``strides``, ``blocks_down``).

    Returns:
        The size as (height, width).

    Raises:
        ConfigError: unknown name or override, or a size the network does not accept.
    """
    spec, size, kwargs = _resolve(name, image_size, overrides)
    multiple, why = spec.multiple(kwargs)
    if any(s <= 0 or s % m for s, m in zip(size, multiple)):
        raise ConfigError(
            f"image_size {size[0]}x{size[1]} is not accepted by network '{name}': each side must be a positive "
            f"multiple of {multiple[0]}x{multiple[1]} ({why}); e.g. {_nearest(size, multiple)}"
        )
    return size


def _nearest(size: tuple[int, int], multiple: tuple[int, int]) -> str:
    fixed = [max(m, int(round(s / m)) * m) for s, m in zip(size, multiple)]
    return f"{fixed[0]}x{fixed[1]}" if fixed[0] != fixed[1] else str(fixed[0])


def build_network(name: str, image_size: int | Sequence[int] = 256, **overrides: Any) -> nn.Module:
    """Build a segmentation network by name with the paper's defaults (METHOD section 4).

    Args:
        name: ``"resnetvae"`` (SegResNetVAE) or ``"nnunet"`` (DynUNet).
        image_size: int or (height, width); SegResNetVAE's ``input_image_size``, checked for both.
        **overrides: any constructor argument of the MONAI class except ``spatial_dims`` (always 2)
            and ``input_image_size`` (from ``image_size``): e.g. ``out_channels``, ``init_filters``,
            ``dropout_prob``, ``blocks_down`` (SegResNetVAE); ``filters``, ``strides``, ``dropout``,
            ``deep_supervision``, ``deep_supr_num`` (DynUNet). For DynUNet, overriding ``strides``
            alone derives ``kernel_size`` (3 per level) and ``upsample_kernel_size`` (``strides[1:]``).

    Returns:
        The network (``nn.Module``), MONAI's default initialisation; see :func:`init_xavier_normal_`.

    Raises:
        ConfigError: unknown name or override, an image size the network does not accept, or
            arguments MONAI rejects (message names the network and the reason).

    Example::

        >>> net = build_network("resnetvae", image_size=32, init_filters=8)
        >>> logits, vae_loss = split_output(net(torch.zeros(2, 1, 32, 32)))
    """
    spec, _, kwargs = _resolve(name, image_size, overrides)
    check_image_size(name, image_size, **overrides)
    try:
        return spec.cls(**kwargs)
    except (ValueError, TypeError, AssertionError) as exc:
        raise ConfigError(f"network '{name}' ({spec.description}) rejected overrides {overrides}: {exc}") from None


def count_parameters(module: nn.Module, trainable: bool = True) -> int:
    """Number of (trainable, by default) parameters."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad or not trainable)


def init_xavier_normal_(module: nn.Module) -> nn.Module:
    """Xavier-normal weights and zero biases for every convolution (incl. transposed) and linear layer.

    Normalisation layers keep their (1, 0) affine defaults. Used for runs from scratch (METHOD 4).

    Args:
        module: the network, changed in place.

    Returns:
        ``module``.
    """
    for m in module.modules():
        if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear)):
            nn.init.xavier_normal_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


def split_output(output: torch.Tensor | tuple | list) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A network's forward output as ``(logits, aux_loss_or_None)``.

    * ``(logits, vae_loss)`` (SegResNetVAE) -> as is (``vae_loss`` is None in eval mode);
    * a tensor (B, C, H, W) -> ``(tensor, None)``;
    * stacked deep-supervision heads (B, n_heads, C, H, W) (DynUNet in training) -> the stacked
      tensor and None: :class:`tagseg.losses.SegmentationLoss` weighs the heads, and
      :func:`main_head` picks the full-resolution one for metrics.

    Raises:
        TypeError: anything else.
    """
    if isinstance(output, torch.Tensor):
        return output, None
    if isinstance(output, (tuple, list)) and len(output) == 2 and isinstance(output[0], torch.Tensor):
        return output[0], output[1]
    raise TypeError(f"split_output: expected a tensor or (logits, aux_loss), got {type(output).__name__}")


def main_head(logits: torch.Tensor) -> torch.Tensor:
    """The full-resolution logits (B, C, H, W) of a plain or deep-supervised (B, n_heads, C, H, W) output."""
    return logits[:, 0] if logits.ndim == SPATIAL_DIMS + 3 else logits


def total_downsampling(name: str, **overrides: Any) -> tuple[int, int]:
    """The (row, col) multiple every image side must have for network ``name`` (see :func:`check_image_size`)."""
    spec, _, kwargs = _resolve(name, 256, overrides)
    return spec.multiple(kwargs)[0]


__all__ = [
    "NETWORKS",
    "NetworkSpec",
    "build_network",
    "register_network",
    "check_image_size",
    "count_parameters",
    "init_xavier_normal_",
    "main_head",
    "split_output",
    "total_downsampling",
]
