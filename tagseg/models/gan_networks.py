"""CycleGAN networks (Zhu et al. 2017, reference defaults of METHOD section 3).

* :class:`ResnetGenerator`: reflection-padded 7x7 stem, ``n_downsampling`` stride-2 convolutions,
  ``n_blocks`` residual blocks, as many transposed convolutions back, 7x7 head and ``tanh``
  (outputs in [-1, 1]); instance normalisation throughout. Fully convolutional: any image whose
  sides are multiples of ``2 ** n_downsampling`` (4 by default) and at least twice that works
  (:meth:`ResnetGenerator.check_size`).
* :class:`PatchDiscriminator`: the 70x70 PatchGAN (``n_layers=3``): a map of real/fake scores,
  one per overlapping 70x70 receptive field.
* :class:`ImagePool`: the history of generated images each discriminator is trained on.

All sizes are (B, C, H, W); images are in the GAN convention [-1, 1] (:mod:`tagseg.data.intensity`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence

import torch
from torch import nn

from tagseg.errors import ConfigError


def _instance_norm(channels: int) -> nn.Module:
    # the reference uses affine-free instance norm without running statistics: train == eval
    return nn.InstanceNorm2d(channels, affine=False, track_running_stats=False)


class ResnetBlock(nn.Module):
    """Two reflection-padded 3x3 convolutions with instance norm, plus the identity."""

    def __init__(self, channels: int, dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            _instance_norm(channels),
            nn.ReLU(True),
        ]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(channels, channels, 3), _instance_norm(channels)]
        self.block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class ResnetGenerator(nn.Module):
    """The CycleGAN ResNet generator (images in [-1, 1] -> images in [-1, 1]).

    Args:
        in_channels: input channels (1: MR magnitude).
        out_channels: output channels.
        ngf: filters of the first layer (doubled at each downsampling).
        n_blocks: residual blocks at the bottleneck (9 in the reference at 256x256).
        n_downsampling: stride-2 convolutions (and transposed convolutions back).
        dropout: dropout inside the residual blocks (0: none, as in the reference CycleGAN).

    Raises:
        ConfigError: a non-positive width or a negative number of blocks.

    Example::

        >>> g = ResnetGenerator(ngf=8, n_blocks=2)
        >>> g(torch.zeros(1, 1, 32, 32)).shape
        torch.Size([1, 1, 32, 32])
    """

    def __init__(
        self,
        in_channels: int = 1,
        out_channels: int = 1,
        ngf: int = 64,
        n_blocks: int = 9,
        n_downsampling: int = 2,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if int(ngf) < 1 or int(n_blocks) < 0 or int(n_downsampling) < 0:
            raise ConfigError(
                f"generator: ngf must be >= 1, n_blocks and n_downsampling >= 0; got ngf={ngf}, "
                f"n_blocks={n_blocks}, n_downsampling={n_downsampling}"
            )
        self.n_downsampling = int(n_downsampling)
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels, ngf, 7),
            _instance_norm(ngf),
            nn.ReLU(True),
        ]
        ch = ngf
        for _ in range(self.n_downsampling):
            layers += [nn.Conv2d(ch, ch * 2, 3, stride=2, padding=1), _instance_norm(ch * 2), nn.ReLU(True)]
            ch *= 2
        layers += [ResnetBlock(ch, dropout) for _ in range(int(n_blocks))]
        for _ in range(self.n_downsampling):
            layers += [
                nn.ConvTranspose2d(ch, ch // 2, 3, stride=2, padding=1, output_padding=1),
                _instance_norm(ch // 2),
                nn.ReLU(True),
            ]
            ch //= 2
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(ch, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)

    @property
    def size_multiple(self) -> int:
        """Every image side must be a multiple of this (``2 ** n_downsampling``)."""
        return 2**self.n_downsampling

    def check_size(self, height: int, width: int, where: str = "images") -> None:
        """Raise a clear error if (height, width) cannot pass through the generator unchanged.

        Each side must be a multiple of ``2 ** n_downsampling`` (so the transposed convolutions
        restore it exactly) and at least ``2 * 2 ** n_downsampling`` (reflection padding at the
        bottleneck needs 2 pixels), e.g. 8, 12, 16 ... for the default generator.

        Raises:
            ConfigError: naming ``where``, the size and the rule.
        """
        m = self.size_multiple
        bad = [s for s in (int(height), int(width)) if s % m or s < 2 * m]
        if bad:
            fix = "x".join(str(max(2 * m, round(s / m) * m)) for s in (int(height), int(width)))
            raise ConfigError(
                f"{where}: size {height}x{width} is not accepted by the CycleGAN generator: each side must be a "
                f"multiple of {m} (2^{self.n_downsampling} downsamplings) and at least {2 * m}; e.g. {fix}"
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, in_channels, H, W) in [-1, 1] -> (B, out_channels, H, W) in [-1, 1]."""
        return self.model(x)


class PatchDiscriminator(nn.Module):
    """PatchGAN discriminator: (B, C, H, W) -> (B, 1, H', W') raw scores (LSGAN: real 1, fake 0).

    With ``n_layers=3`` each score sees a 70x70 patch; a 4x4 kernel walks down by stride 2
    ``n_layers`` times, then two stride-1 layers. Images need at least ~``2 ** n_layers * 4``
    pixels a side for a non-empty map (32 for the default).

    Args:
        in_channels: image channels.
        ndf: filters of the first layer (doubled per layer, capped at 8 x ndf).
        n_layers: stride-2 layers (3: the 70x70 PatchGAN).
    """

    def __init__(self, in_channels: int = 1, ndf: int = 64, n_layers: int = 3) -> None:
        super().__init__()
        if int(ndf) < 1 or int(n_layers) < 1:
            raise ConfigError(f"discriminator: ndf and n_layers must be >= 1, got ndf={ndf}, n_layers={n_layers}")
        layers: list[nn.Module] = [nn.Conv2d(in_channels, ndf, 4, stride=2, padding=1), nn.LeakyReLU(0.2, True)]
        mult = 1
        for n in range(1, int(n_layers) + 1):
            prev, mult = mult, min(2**n, 8)
            stride = 2 if n < n_layers else 1
            layers += [
                nn.Conv2d(ndf * prev, ndf * mult, 4, stride=stride, padding=1),
                _instance_norm(ndf * mult),
                nn.LeakyReLU(0.2, True),
            ]
        layers.append(nn.Conv2d(ndf * mult, 1, 4, stride=1, padding=1))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) -> (B, 1, H', W') scores."""
        return self.model(x)


def init_normal_(module: nn.Module, std: float = 0.02) -> nn.Module:
    """The reference initialisation: convolution weights ~ N(0, std), biases 0.

    Args:
        module: the network, changed in place.
        std: standard deviation of the weights.

    Returns:
        ``module``.
    """
    for m in module.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            nn.init.normal_(m.weight, 0.0, std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return module


class ImagePool:
    """A buffer of previously generated images (Shrivastava et al. 2017), per discriminator.

    Until ``size`` images are stored, every query image is stored and returned as is. Once full,
    each query image is, with probability 0.5, swapped with a random stored one (the stored one
    is returned and the new one takes its place); otherwise it is returned as is. ``size=0``
    disables the pool.

    Args:
        size: images kept (50 in the reference).
        seed: seeds the pool's own generator (pools on different DDP ranks may use different seeds).
    """

    def __init__(self, size: int = 50, seed: int | None = None) -> None:
        if int(size) < 0:
            raise ConfigError(f"pool_size must be >= 0, got {size}")
        self.size = int(size)
        self.images: list[torch.Tensor] = []
        self.rng = random.Random(seed)

    def __len__(self) -> int:
        return len(self.images)

    def query(self, images: torch.Tensor) -> torch.Tensor:
        """Images (B, C, H, W) (detached) -> the batch the discriminator sees (B, C, H, W).

        Args:
            images: freshly generated images.

        Returns:
            A batch of the same shape mixing fresh and stored images.
        """
        if self.size == 0:
            return images
        out: list[torch.Tensor] = []
        for img in images.detach():
            img = img.unsqueeze(0)
            if len(self.images) < self.size:
                self.images.append(img.clone())
                out.append(img)
            elif self.rng.random() < 0.5:
                k = self.rng.randrange(self.size)
                out.append(self.images[k].clone())
                self.images[k] = img.clone()
            else:
                out.append(img)
        return torch.cat(out, 0)


def build_generator(config: dict | None = None) -> ResnetGenerator:
    """A :class:`ResnetGenerator` from a config mapping (keys of its constructor), initialised."""
    return init_normal_(ResnetGenerator(**dict(config or {})))  # type: ignore[return-value]


def build_discriminator(config: dict | None = None) -> PatchDiscriminator:
    """A :class:`PatchDiscriminator` from a config mapping (keys of its constructor), initialised."""
    return init_normal_(PatchDiscriminator(**dict(config or {})))  # type: ignore[return-value]


def receptive_field(n_layers: int = 3) -> int:
    """Receptive field (pixels) of one PatchGAN score: 70 for ``n_layers=3``."""
    kernels: Sequence[tuple[int, int]] = [(4, 2)] * n_layers + [(4, 1), (4, 1)]
    rf, jump = 1, 1
    for k, s in kernels:
        rf += (k - 1) * jump
        jump *= s
    return rf


__all__ = [
    "ImagePool",
    "PatchDiscriminator",
    "ResnetBlock",
    "ResnetGenerator",
    "build_discriminator",
    "build_generator",
    "init_normal_",
    "receptive_field",
]
