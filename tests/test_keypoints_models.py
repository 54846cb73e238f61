"""Keypoint networks against their papers: SimpleBaseline's parameter count and heatmap stride, the
stacked hourglass's resolutions, stacks and size."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from cnnlab.registry import create_model


def _params(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def test_simple_baseline_resnet50_matches_the_published_size_and_layers():
    model = create_model("simple_baseline_resnet50", num_classes=17)
    # 34.0 M parameters for ResNet-50 at 256 x 192 (Xiao et al. 2018, as tabulated by Sun et al. 2019, Table 1)
    assert _params(model) / 1e6 == pytest.approx(34.0, abs=0.05)
    deconvs = [m for m in model.deconv if isinstance(m, nn.ConvTranspose2d)]
    assert [(m.in_channels, m.out_channels, m.kernel_size, m.stride) for m in deconvs] == [
        (2048, 256, (4, 4), (2, 2)), (256, 256, (4, 4), (2, 2)), (256, 256, (4, 4), (2, 2))]
    model.eval()
    with torch.no_grad():
        out = model(torch.zeros(1, 3, 256, 192))
    assert out.shape == (1, 17, 64, 48) and model.heatmap_stride == 4  # the paper's 64 x 48 heatmaps


def test_simple_baseline_on_resnet18_adds_the_deconvolutions_to_the_trunk():
    trunk = _params(create_model("resnet18")) - (512 * 1000 + 1000)  # without the classifier
    head = 512 * 256 * 16 + 2 * 256 * 256 * 16 + 3 * 2 * 256 + 256 * 17 + 17  # 3 deconvs + BNs + 1x1 conv
    assert _params(create_model("simple_baseline", num_classes=17)) == trunk + head


def test_hourglass_pools_to_4x4_and_supervises_every_stack():
    model = create_model("hourglass8", num_classes=16)
    # 8 stacks of depth 4 with 256 features (Newell et al. 2016 Section 3.4): 25.1 M parameters as
    # tabulated by Sun et al. 2019, Table 1 (their 17 keypoints); within 2 %
    assert _params(model) / 1e6 == pytest.approx(25.1, rel=0.02)
    assert len(model.hourglasses) == 8
    sizes = []
    for hg in model.hourglasses[:1]:
        inner = hg
        while hasattr(inner, "inner"):
            inner = inner.inner
        inner.register_forward_hook(lambda m, i, o: sizes.append(tuple(o.shape[-2:])))
    model.train()
    outs = model(torch.zeros(1, 3, 256, 256))
    assert isinstance(outs, list) and len(outs) == 8 and all(o.shape == (1, 16, 64, 64) for o in outs)
    assert sizes == [(4, 4)]  # the lowest resolution: 64 / 2^4
    model.eval()
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 256, 256)).shape == (1, 16, 64, 64)  # evaluation: the last stack only


def test_small_hourglass_gives_16x16_maps_on_64_pixel_crops():
    model = create_model("hourglass_small", num_classes=17).train()
    outs = model(torch.zeros(2, 3, 64, 64))
    assert len(outs) == 2 and outs[0].shape == (2, 17, 16, 16)
