"""build_network: the paper's parameter counts, overrides, image-size rules, outputs and init."""

from __future__ import annotations

import pytest
import torch
from monai.networks.nets import DynUNet, SegResNetVAE
from torch import nn

from tagseg.errors import ConfigError
from tagseg.models.networks import (
    build_network,
    check_image_size,
    count_parameters,
    init_xavier_normal_,
    main_head,
    split_output,
    total_downsampling,
)

SMALL_NNUNET = {"strides": [1, 2, 2, 2], "filters": [8, 16, 32, 64]}


def test_paper_parameter_counts_at_256():
    vae = build_network("resnetvae")
    assert isinstance(vae, SegResNetVAE)
    assert count_parameters(vae) == 3_555_891
    unet = build_network("nnunet")
    assert isinstance(unet, DynUNet)
    assert count_parameters(unet) == 34_164_258


def test_overrides_reach_the_constructor():
    vae = build_network("resnetvae", image_size=32, init_filters=8, out_channels=3)
    assert (
        vae.init_filters == 8 and vae.conv_final[-1].conv.out_channels == 3 and tuple(vae.input_image_size) == (32, 32)
    )
    unet = build_network("nnunet", image_size=32, deep_supervision=True, deep_supr_num=2, dropout=0.0, **SMALL_NNUNET)
    # strides alone derive kernel sizes (3 per level) and upsampling kernels (strides[1:])
    assert (
        unet.filters == [8, 16, 32, 64] and len(unet.kernel_size) == 4 and list(unet.upsample_kernel_size) == [2, 2, 2]
    )
    assert unet.deep_supervision and unet.deep_supr_num == 2
    assert count_parameters(unet) < count_parameters(build_network("nnunet"))


def test_resnetvae_outputs_logits_and_vae_loss_in_training():
    net = build_network("resnetvae", image_size=32).train()
    logits, vae_loss = split_output(net(torch.rand(2, 1, 32, 32)))
    assert logits.shape == (2, 2, 32, 32) and vae_loss.ndim == 0 and torch.isfinite(vae_loss)
    with torch.no_grad():
        logits, vae_loss = split_output(net.eval()(torch.rand(1, 1, 32, 32)))
    assert logits.shape == (1, 2, 32, 32) and vae_loss is None


def test_nnunet_deep_supervision_heads_and_main_head():
    net = build_network("nnunet", image_size=16, deep_supervision=True, deep_supr_num=2, **SMALL_NNUNET).train()
    logits, aux = split_output(net(torch.rand(2, 1, 16, 16)))
    assert logits.shape == (2, 3, 2, 16, 16) and aux is None
    assert main_head(logits).shape == (2, 2, 16, 16)
    torch.testing.assert_close(main_head(logits), logits[:, 0])
    with torch.no_grad():
        plain, _ = split_output(net.eval()(torch.rand(1, 1, 16, 16)))
    assert plain.shape == (1, 2, 16, 16) and main_head(plain) is plain


def test_image_size_rules():
    assert total_downsampling("resnetvae") == (16, 16)
    assert total_downsampling("nnunet") == (64, 64)
    assert total_downsampling("nnunet", **SMALL_NNUNET) == (8, 8)
    assert check_image_size("resnetvae", 48) == (48, 48)
    assert check_image_size("nnunet", (24, 40), **SMALL_NNUNET) == (24, 40)
    with pytest.raises(ConfigError, match=r"image_size 24x24 .* 'resnetvae'.*multiple of 16x16.*e\.g\. 32"):
        check_image_size("resnetvae", 24)
    with pytest.raises(ConfigError, match=r"image_size 96x96 .* 'nnunet'.*multiple of 64x64"):
        build_network("nnunet", image_size=96)
    with pytest.raises(ConfigError, match="multiple of 8x8"):
        check_image_size("nnunet", 20, **SMALL_NNUNET)
    with pytest.raises(ConfigError, match="image_size"):
        check_image_size("resnetvae", (32, 32, 32))


@pytest.mark.filterwarnings("ignore:Using a target size")
@pytest.mark.parametrize("size", [24, 40])
def test_sizes_the_rule_rejects_really_fail_in_monai(size):
    net = SegResNetVAE(spatial_dims=2, input_image_size=(size, size)).train()
    with pytest.raises(RuntimeError):
        net(torch.rand(1, 1, size, size))


def test_unknown_name_and_overrides():
    with pytest.raises(ConfigError, match=r"unknown network 'unet'; known: \['nnunet', 'resnetvae'\]"):
        build_network("unet")
    with pytest.raises(ConfigError, match=r"unknown override\(s\) \['filters'\].*init_filters"):
        build_network("resnetvae", filters=[8])
    with pytest.raises(ConfigError, match="spatial_dims"):
        build_network("nnunet", spatial_dims=3)
    with pytest.raises(ConfigError, match="rejected overrides.*divisible"):
        build_network("resnetvae", image_size=32, init_filters=4)


def test_init_xavier_normal():
    torch.manual_seed(0)
    net = init_xavier_normal_(build_network("nnunet", image_size=16, **SMALL_NNUNET))
    convs = [m for m in net.modules() if isinstance(m, (nn.modules.conv._ConvNd, nn.Linear))]
    assert convs
    for m in convs:
        if m.bias is not None:
            assert not m.bias.any()
    big = max(convs, key=lambda m: m.weight.numel())
    fan_in, fan_out = nn.init._calculate_fan_in_and_fan_out(big.weight)
    assert big.weight.std().item() == pytest.approx((2.0 / (fan_in + fan_out)) ** 0.5, rel=0.1)
    norms = [m for m in net.modules() if isinstance(m, nn.InstanceNorm2d) and m.affine]
    assert norms and all(bool((m.weight == 1).all()) for m in norms)


def test_split_output_rejects_other_types():
    with pytest.raises(TypeError, match="split_output"):
        split_output({"logits": torch.zeros(1)})
