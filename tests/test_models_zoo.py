"""MobileNet v1/v3, GhostNet, EfficientNet B0-B7, Darknet-19/53, CSPDarknet-53 and Wide ResNet against their papers."""

import math

import pytest
import torch

import cnnlab
from cnnlab.layers.mbconv import make_divisible
from cnnlab.models.efficientnet import compound_coefficients
from cnnlab.models.ghostnet import GhostModule
from cnnlab.specs.zoo import EFFICIENTNET_SCALING, EFFICIENTNET_TABLE2


def count(name: str, **kw) -> int:
    with torch.device("meta"):
        model = cnnlab.create_model(name, **kw)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name, expected", [
    # torchvision's model documentation (same architecture, same layout)
    ("mobilenet_v3_large", 5_483_032), ("mobilenet_v3_small", 2_542_856), ("efficientnet_b0", 5_288_548),
    ("efficientnet_b1", 7_794_184), ("efficientnet_b2", 9_109_994), ("efficientnet_b3", 12_233_232),
    ("efficientnet_b4", 19_341_616), ("efficientnet_b5", 30_389_784), ("efficientnet_b6", 43_040_704),
    ("efficientnet_b7", 66_347_960), ("wide_resnet50_2", 68_883_240),
])
def test_torchvision_parameter_counts(name, expected):
    assert count(name) == expected


@pytest.mark.parametrize("name, millions, digits", [
    ("mobilenet_v1", 4.2, 1),      # MobileNet Table 8 (1.0 MobileNet-224)
    ("mobilenet_v3_large", 5.4, 1),  # MobileNetV3 Table 3: 5.4M
    ("mobilenet_v3_small", 2.5, 1),  # Table 4: 2.5M
    ("ghostnet", 5.18, 2),         # GhostNet Table 7: 5.2M; timm's ghostnet_100: 5.18M
    ("darknet53", 41.61, 2),       # timm's darknet53: 41.61M
    ("cspdarknet53", 27.64, 2),    # timm's cspdarknet53: 27.64M
    ("wrn28_10", 36.5, 1),         # WRN Table 4: WRN-28-10, 36.5M
])
def test_paper_parameter_counts(name, millions, digits):
    # the papers print one decimal (MobileNetV3 truncates: 5.48M reads 5.4M); timm's tables print two
    assert count(name) / 1e6 == pytest.approx(millions, abs=0.1 if digits == 1 else 0.005)


def test_darknet19_counts_by_hand():
    # Table 6: conv (k, in, out) + BN (2 per filter) for the 18 BN convs, then the 1x1 classifier conv with bias.
    convs = [(3, 3, 32), (3, 32, 64), (3, 64, 128), (1, 128, 64), (3, 64, 128), (3, 128, 256), (1, 256, 128),
             (3, 128, 256), (3, 256, 512), (1, 512, 256), (3, 256, 512), (1, 512, 256), (3, 256, 512),
             (3, 512, 1024), (1, 1024, 512), (3, 512, 1024), (1, 1024, 512), (3, 512, 1024)]
    by_hand = sum(k * k * i * o + 2 * o for k, i, o in convs) + 1024 * 1000 + 1000
    assert count("darknet19") == by_hand


def test_mobilenet_v1_counts_by_hand_and_width_multiplier():
    widths = [32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024]
    by_hand = 27 * 32 + 64  # stem conv + BN
    for c_in, c_out in zip(widths, widths[1:]):
        by_hand += 9 * c_in + 2 * c_in + c_in * c_out + 2 * c_out  # depthwise + BN, pointwise + BN
    assert count("mobilenet_v1") == by_hand + 1024 * 1000 + 1000
    # §3.3: the width multiplier cuts parameters roughly by alpha^2 (Table 6: 4.2M -> 2.6M at 0.75)
    assert round(count("mobilenet_v1", width=0.75) / 1e6, 1) == 2.6


def test_efficientnet_table2_parameters_and_compound_rule():
    for variant, (millions, _) in EFFICIENTNET_TABLE2.items():
        got = count(f"efficientnet_{variant}") / 1e6
        assert got == pytest.approx(millions, rel=0.04), variant
    alpha, beta, gamma = compound_coefficients(1.0)
    assert alpha * beta ** 2 * gamma ** 2 == pytest.approx(2.0, abs=0.1)  # §3.3: FLOPs double per unit of phi
    assert compound_coefficients(2.0)[0] == pytest.approx(1.44)
    sides = [EFFICIENTNET_SCALING[v][2] for v in EFFICIENTNET_SCALING]
    assert sides == sorted(sides) and cnnlab.registry.model_info("efficientnet_b3").input_size == (3, 300, 300)


def test_make_divisible():
    assert [make_divisible(v) for v in (16, 18, 36, 10.0)] == [16, 24, 40, 16]  # 18 -> 16 loses over 10% (16 < 16.2): 24
    assert make_divisible(18, 4) == 20 and make_divisible(32 * 1.1) == 32


def test_ghost_module_is_half_ordinary_half_cheap():
    torch.manual_seed(0)
    ghost = GhostModule(8, 6, relu=False).eval()
    x = torch.randn(2, 8, 5, 5)
    out = ghost(x)
    intrinsic = ghost.primary_conv(x)  # ceil(6 / 2) = 3 maps from the 1x1 conv
    assert out.shape == (2, 6, 5, 5) and torch.equal(out[:, :3], intrinsic)
    # the ghosts: map i comes from intrinsic map i alone (depthwise), through 3x3 conv + BN
    conv, bn = ghost.cheap_operation[0], ghost.cheap_operation[1]
    for i in range(3):
        lone = torch.nn.functional.conv2d(intrinsic[:, i:i + 1], conv.weight[i:i + 1], padding=1)
        expected = (lone - bn.running_mean[i]) / torch.sqrt(bn.running_var[i] + bn.eps) * bn.weight[i] + bn.bias[i]
        assert torch.allclose(out[:, 3 + i:4 + i], expected, atol=1e-5)


def test_cspdarknet_processes_only_half_of_each_stage():
    model = cnnlab.create_model("cspdarknet53")
    stage3 = model.features.stage3
    assert stage3.split.conv.out_channels == 256 and stage3.blocks[0].conv1.conv.in_channels == 128
    assert model.features.stage1.blocks[0].conv1.conv.in_channels == 64  # first stage: full 64 per part
    # the passed half does not depend on the residual units: zeroing them leaves the untouched part intact
    x = torch.randn(1, 128, 8, 8)
    stage3.eval()
    passed, _ = stage3.split(stage3.down(x)).chunk(2, 1)
    assert passed.shape == (1, 128, 4, 4)


@pytest.mark.parametrize("name, side, grid", [
    ("mobilenet_v1", 224, 7), ("mobilenet_v3_large", 224, 7), ("mobilenet_v3_small", 224, 7), ("ghostnet", 224, 7),
    ("efficientnet_b0", 224, 7), ("darknet19", 224, 7), ("darknet53", 256, 8), ("cspdarknet53", 256, 8),
    ("wrn28_10", 32, 8), ("wide_resnet50_2", 224, 7),
])
def test_final_grids(name, side, grid):
    with torch.device("meta"):
        model = cnnlab.create_model(name).eval()
        out = model.forward_features(torch.zeros(1, 3, side, side))
    assert out.shape[-2:] == (grid, grid)
    assert out.shape[1] == model.feature_info[-1].channels


@pytest.mark.parametrize("name", ["mobilenet_v1", "mobilenet_v3_large", "mobilenet_v3_small", "ghostnet",
                                  "efficientnet_b0", "darknet19", "darknet53", "cspdarknet53", "wide_resnet50_2"])
def test_small_input_forms_end_on_4x4(name):
    with torch.device("meta"):
        model = cnnlab.create_model(name, input_size=(1, 28, 28), num_classes=10).eval()
        out = model.forward_features(torch.zeros(2, 1, 28, 28))
        logits = model(torch.zeros(2, 1, 28, 28))
    assert out.shape[-1] in (4, 2) and logits.shape == (2, 10)
    assert out.shape[-1] == math.ceil(28 / model.feature_info[-1].reduction)  # the nominal stride rounds up


def test_small_networks_learn():
    # one family with SE + h-swish, one with Ghost modules: a few steps on a fixed batch lower the loss
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny convolutions: one thread is faster than two contended ones
    try:
        _learn_a_batch()
    finally:
        torch.set_num_threads(threads)


def _learn_a_batch() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(8, 1, 16, 16), torch.arange(8) % 4
    for name, options in (("mobilenet_v3_small", {}), ("ghostnet", {"width": 0.5})):
        model = cnnlab.create_model(name, input_size=(1, 16, 16), num_classes=4, **options)
        opt = torch.optim.Adam(model.parameters(), 1e-3)
        losses = []
        for _ in range(6):
            loss = torch.nn.functional.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
            losses.append(loss.item())
        assert losses[-1] < losses[0] * 0.7, (name, losses)
