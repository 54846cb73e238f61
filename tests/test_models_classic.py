"""AlexNet, ZFNet, VGG, NiN, GoogLeNet and Inception v3 against their papers' tables."""

import pytest
import torch

import cnnlab
from cnnlab.train.losses import auxiliary_loss
from cnnlab.layers.lrn import PaperLRN
from cnnlab.specs.googlenet import INCEPTION_ROWS, TABLE_OPS_M, TABLE_OUTPUT, TABLE_PARAMS_K
from cnnlab.specs.vgg import VGG_PARAMS_MILLIONS


def count(name: str, **kw) -> int:
    with torch.device("meta"):
        model = cnnlab.create_model(name, **kw)
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name, expected", [
    ("alexnet", 61_100_840), ("vgg16", 138_357_544), ("vgg16_bn", 138_365_992), ("inception_v3", 27_161_264),
])
def test_published_parameter_counts(name, expected):
    assert count(name) == expected


def test_alexnet_original_layer_arithmetic():
    # (F*F*C_in_per_group + 1) * K for each layer; C2, C4, C5 see only their own tower's half.
    per_layer = {
        "conv1": (11 * 11 * 3 + 1) * 96, "conv2": (5 * 5 * 48 + 1) * 256, "conv3": (3 * 3 * 256 + 1) * 384,
        "conv4": (3 * 3 * 192 + 1) * 384, "conv5": (3 * 3 * 192 + 1) * 256,
        "fc6": (6 * 6 * 256 + 1) * 4096, "fc7": (4096 + 1) * 4096, "fc8": (4096 + 1) * 1000,
    }
    model = cnnlab.create_model("alexnet_original")
    convs = {n: sum(p.numel() for p in m.parameters()) for n, m in model.features.named_children() if n.startswith("conv")}
    fcs = [sum(p.numel() for p in m.parameters()) for m in model.classifier if isinstance(m, torch.nn.Linear)]
    assert convs == {k: v for k, v in per_layer.items() if k.startswith("conv")}
    assert fcs == [per_layer["fc6"], per_layer["fc7"], per_layer["fc8"]]
    assert sum(per_layer.values()) == count("alexnet_original") == 60_965_224


def test_alexnet_original_output_sizes():
    model = cnnlab.create_model("alexnet_original").eval()
    x, sizes = torch.zeros(1, 3, 227, 227), {}
    for name, layer in model.features.named_children():
        x = layer(x)
        sizes[name] = tuple(x.shape[1:])
    # The decks' table: 55x55x96 -> 27 -> 27x27x256 -> 13 -> 13x13x384, 13x13x384, 13x13x256 -> 6x6x256
    assert [sizes[k] for k in ("conv1", "pool1", "conv2", "pool2", "conv3", "conv4", "conv5", "pool5")] == [
        (96, 55, 55), (96, 27, 27), (256, 27, 27), (256, 13, 13), (384, 13, 13), (384, 13, 13), (256, 13, 13), (256, 6, 6)]
    grouped = {n: m.groups for n, m in model.features.named_children() if isinstance(m, torch.nn.Conv2d)}
    assert grouped == {"conv1": 1, "conv2": 2, "conv3": 1, "conv4": 2, "conv5": 2}


def test_zfnet_sizes():
    model = cnnlab.create_model("zfnet").eval()
    x, sizes = torch.zeros(1, 3, 224, 224), []
    for name, layer in model.features.named_children():
        x = layer(x)
        if name.startswith(("conv", "pool")):
            sizes.append(x.shape[-1])
    # Zeiler & Fergus Fig. 3: 110 -> 55 -> 26 -> 13 -> 13 -> 13 -> 13 -> 6
    assert sizes == [110, 55, 26, 13, 13, 13, 13, 6]


def test_paper_lrn_formula():
    a = torch.randn(1, 7, 2, 2)
    out = PaperLRN()(a)
    # b_i = a_i / (k + alpha * sum_{j=i-2..i+2} a_j^2) ^ beta, with k=2, alpha=1e-4, beta=0.75, by hand
    for i in range(7):
        window = (a[0, max(0, i - 2):min(7, i + 3)] ** 2).sum(0)
        assert torch.allclose(out[0, i], a[0, i] / (2 + 1e-4 * window) ** 0.75, atol=1e-6)


@pytest.mark.parametrize("column, name", [("A", "vgg11"), ("A-LRN", "vgg11_lrn"), ("B", "vgg13"), ("C", "vgg16_c"),
                                          ("D", "vgg16"), ("E", "vgg19")])
def test_vgg_table2_parameters(column, name):
    assert round(count(name) / 1e6) == VGG_PARAMS_MILLIONS[column]


def test_vgg16_features_hold_few_parameters():
    model = cnnlab.create_model("vgg16")
    conv = sum(p.numel() for p in model.features.parameters())
    assert conv == 14_714_688  # 13 conv layers; the three FC layers hold the other ~124M


# Rows where Table 1's "params" column disagrees with its own channel columns (weights / 1024 by hand):
# the paper's slips, documented in docs/models.md.
TABLE1_PARAM_SLIPS = {"4a": 367, "4c": 498, "4d": 591, "4e": 847, "5a": 1018, "5b": 1409}
TABLE1_OPS_SLIPS = {"5a": 51}


@pytest.mark.parametrize("row", list(INCEPTION_ROWS))
def test_googlenet_table1_rows(row):
    model = cnnlab.create_model("googlenet").eval()
    module = getattr(model.features, f"inception{row}")
    weights = sum(p.numel() for n, p in module.named_parameters() if n.endswith("weight"))
    c, n1, r3, n3, r5, n5, pp = INCEPTION_ROWS[row]
    assert weights == c * n1 + c * r3 + r3 * n3 * 9 + c * r5 + r5 * n5 * 25 + c * pp
    # The table rounds loosely (3a: 159.5 -> 159, 3b: 379.0 -> 380), hence 1K of tolerance.
    assert weights / 1024 == pytest.approx(TABLE1_PARAM_SLIPS.get(row, TABLE_PARAMS_K[row]), abs=1.0)
    side, depth = TABLE_OUTPUT[row]
    macs = weights * side * side  # every weight of a stride-1 module is used once per output position
    assert round(macs / 1e6) == pytest.approx(TABLE1_OPS_SLIPS.get(row, TABLE_OPS_M[row]), abs=1)


def test_googlenet_stage_shapes_and_aux_heads():
    model = cnnlab.create_model("googlenet")
    model.eval()
    x, shapes = torch.zeros(1, 3, 224, 224), {}
    for name, layer in model.features.named_children():
        x = layer(x)
        shapes[name] = tuple(x.shape[1:])
    for row, (side, depth) in TABLE_OUTPUT.items():
        assert shapes[f"inception{row}"] == (depth, side, side)
    assert model(torch.zeros(1, 3, 224, 224)).shape == (1, 1000)  # eval: no auxiliary outputs
    model.train()
    out = model(torch.randn(2, 3, 224, 224))
    assert [t.shape for t in (out.logits, *out.aux)] == [(2, 1000)] * 3
    ce = torch.nn.CrossEntropyLoss()
    target = torch.tensor([1, 2])
    expected = ce(out.logits, target) + 0.3 * ce(out.aux[0], target) + 0.3 * ce(out.aux[1], target)
    assert torch.allclose(auxiliary_loss(out, target, ce), expected)
    five = model.features.inception3a.branch3[1].conv
    assert five.kernel_size == (5, 5)  # the paper's 5x5 branch


def test_inception_v3_grids():
    model = cnnlab.create_model("inception_v3").eval()
    x, sides = torch.zeros(1, 3, 299, 299), {}
    for name, layer in model.trunk():
        x = layer(x)
        sides[name] = (x.shape[1], x.shape[-1])
    # Table 1 of the paper: 35x35x288 -> 17x17x768 -> 8x8x2048
    assert sides["Mixed_5d"] == (288, 35) and sides["Mixed_6e"] == (768, 17) and sides["Mixed_7c"] == (2048, 8)
    assert not any(k.startswith("features.") for k in model.state_dict())  # torchvision's flat names


def test_nin_has_no_fully_connected_layer():
    model = cnnlab.create_model("nin", num_classes=10)
    assert not any(isinstance(m, torch.nn.Linear) for m in model.modules())
    assert model(torch.zeros(2, 3, 224, 224)).shape == (2, 10)
    # The paper's form has no batch norm; the small form has one after each of its 12 convolutions.
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    small = cnnlab.create_model("nin", num_classes=10, in_channels=1, small_input=True)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in small.modules()) == 12


def test_auxiliary_loss_weighs_googlenet_and_inception_heads_as_the_papers_do():
    from cnnlab.backbone import AuxiliaryOutputs
    from cnnlab.train.losses import auxiliary_loss

    torch.manual_seed(0)
    model = cnnlab.create_model("googlenet", num_classes=5, in_channels=1, small_input=True).train()
    out = model(torch.randn(2, 1, 28, 28))
    assert isinstance(out, AuxiliaryOutputs) and out.weights == (0.3, 0.3) and len(out.aux) == 2
    target, ce = torch.tensor([0, 4]), torch.nn.CrossEntropyLoss()
    by_hand = ce(out.logits, target) + 0.3 * ce(out.aux[0], target) + 0.3 * ce(out.aux[1], target)
    assert torch.allclose(auxiliary_loss(out, target, ce), by_hand)
    assert torch.allclose(auxiliary_loss(out.logits, target, ce), ce(out.logits, target))  # evaluation: plain loss
    assert isinstance(model.eval()(torch.randn(2, 1, 28, 28)), torch.Tensor)  # no auxiliary heads in evaluation
    inception = cnnlab.create_model("inception_v3", num_classes=5, in_channels=1, small_input=True).train()
    out = inception(torch.randn(2, 1, 28, 28))
    assert isinstance(out, AuxiliaryOutputs) and out.weights == (0.3,) and out.aux[0].shape == (2, 5)
