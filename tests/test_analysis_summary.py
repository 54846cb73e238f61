"""The per-layer table against the decks' hand computations, PyTorch's own counts and ptflops.

The networks here are built in the test from the papers' tables, so the checks do not depend on
the model zoo; big ones live on the ``meta`` device (no memory, no arithmetic).
"""

from __future__ import annotations

import ptflops
import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

import cnnlab
from cnnlab.analysis import ShapeError, Summary, summarize


pytestmark = pytest.mark.usefixtures("one_thread")


def alexnet_paper() -> nn.Sequential:
    """Krizhevsky et al. 2012, Fig. 2: two towers (groups=2 in C2, C4, C5), 227x227 input."""
    return nn.Sequential(
        nn.Conv2d(3, 96, 11, stride=4), nn.ReLU(), nn.LocalResponseNorm(5, 1e-4, 0.75, 2), nn.MaxPool2d(3, 2),
        nn.Conv2d(96, 256, 5, padding=2, groups=2), nn.ReLU(), nn.LocalResponseNorm(5, 1e-4, 0.75, 2),
        nn.MaxPool2d(3, 2),
        nn.Conv2d(256, 384, 3, padding=1), nn.ReLU(),
        nn.Conv2d(384, 384, 3, padding=1, groups=2), nn.ReLU(),
        nn.Conv2d(384, 256, 3, padding=1, groups=2), nn.ReLU(), nn.MaxPool2d(3, 2),
        nn.Flatten(), nn.Dropout(), nn.Linear(6 * 6 * 256, 4096), nn.ReLU(), nn.Dropout(),
        nn.Linear(4096, 4096), nn.ReLU(), nn.Linear(4096, 1000),
    )


VGG16 = [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"]


def vgg16() -> nn.Sequential:
    """Simonyan & Zisserman 2015, Table 1 column D."""
    layers, channels = [], 3
    for item in VGG16:
        if item == "M":
            layers.append(nn.MaxPool2d(2, 2))
        else:
            layers += [nn.Conv2d(channels, item, 3, padding=1), nn.ReLU()]
            channels = item
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(7 * 7 * 512, 4096), nn.ReLU(), nn.Linear(4096, 4096),
                         nn.ReLU(), nn.Linear(4096, 1000))


class Inception(nn.Module):
    """GoogLeNet's inception module (Szegedy et al. 2015, Fig. 2b), weights only as Table 1 counts them."""

    def __init__(self, cin: int, c1: int, r3: int, c3: int, r5: int, c5: int, proj: int):
        super().__init__()

        def conv(a: int, b: int, k: int) -> nn.Conv2d:
            return nn.Conv2d(a, b, k, padding=k // 2, bias=False)

        self.b1 = conv(cin, c1, 1)
        self.b2 = nn.Sequential(conv(cin, r3, 1), nn.ReLU(), conv(r3, c3, 3))
        self.b3 = nn.Sequential(conv(cin, r5, 1), nn.ReLU(), conv(r5, c5, 5))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), conv(cin, proj, 1))

    def forward(self, x):
        return torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1)


def meta(build):
    with torch.device("meta"):
        return build()


# -------------------------------------------------------------------------------------- LeNet

def test_lenet_c1_is_6_at_28x28_with_156_parameters():
    summary = summarize("lenet5")
    c1 = summary.layers[0]
    assert c1.kind == "conv" and c1.output_shape == (6, 28, 28)
    assert c1.params == (5 * 5 * 1 + 1) * 6
    assert c1.kernel == (5, 5) and c1.padding == (2, 2) and c1.stride == (1, 1)
    model = cnnlab.create_model("lenet5")
    assert summary.total_params == sum(p.numel() for p in model.parameters())
    assert summary.depth == 5  # LeNet-5: two convolutions and three fully connected layers


def test_summary_of_a_module_matches_a_summary_by_name_and_restores_training_mode():
    model = cnnlab.create_model("lenet5_modern")
    model.train()
    by_module = summarize(model, (1, 28, 28))
    assert model.training
    by_name = summarize("lenet5_modern")
    assert [r.output_shape for r in by_module.layers] == [r.output_shape for r in by_name.layers]
    assert by_module.total_macs == by_name.total_macs
    frozen = sum(b.numel() for b in model.buffers())
    assert by_module.total_buffers == frozen


# -------------------------------------------------------------------------------------- AlexNet

def test_alexnet_layer_tables():
    summary = summarize(meta(alexnet_paper), (3, 227, 227))
    rows = {r.kind: [] for r in summary.layers}
    for row in summary.layers:
        rows[row.kind].append(row)
    # output sizes 55-27-13-13-13-6 (the pools after C1, C2, C5 included)
    sizes = [r.output_shape[-1] for r in summary.layers if r.kind in ("conv", "pool")]
    assert sizes == [55, 27, 27, 13, 13, 13, 13, 6]
    # parameters per layer, the deck's table; its output layer's 1000*4096 forgets the 1000 biases
    assert [r.params for r in rows["conv"] + rows["linear"]] == [
        34944, 307456, 885120, 663936, 442624, 37752832, 16781312, 4096 * 1000 + 1000]
    assert summary.total_params == 60965224
    # neurons: 55*55*48*2 + 27*27*128*2 + ... = 659,272 ("about 650,000" in the paper)
    assert [r.neurons for r in rows["conv"] + rows["linear"]] == [
        290400, 186624, 64896, 64896, 43264, 4096, 4096, 1000]
    assert summary.total_neurons == 659272
    assert summary.depth == 8
    # receptive field of a pool5 unit: 195 pixels (Araujo et al., Distill 2019, Table 1)
    assert summary.feature_rf_size == (195, 195) and summary.feature_shape == (256, 6, 6)
    # parameters sit in the fully connected layers, computation in the convolutions
    assert summary.share("params")["linear"] > 0.9 and summary.share("macs")["conv"] > 0.9


# -------------------------------------------------------------------------------------- VGG-16

def test_vgg16_has_138m_parameters_mostly_fully_connected():
    summary = summarize(meta(vgg16), (3, 224, 224))
    assert summary.total_params == 138_357_544  # "TOTAL params: 138M"
    fc = (25088 + 1) * 4096 + (4096 + 1) * 4096 + (4096 + 1) * 1000
    assert summary.params_by_kind["linear"] == fc
    assert summary.share("params")["linear"] == pytest.approx(fc / 138_357_544)
    assert summary.share("params")["linear"] > 0.89
    assert summary.depth == 16
    assert summary.feature_rf_size == (212, 212)  # Araujo et al., Distill 2019, Table 1
    # MACs by hand: sum over convolutions of H*W*Cout*Cin*9, plus the FC weights
    macs, size, channels = 0, 224, 3
    for item in VGG16:
        if item == "M":
            size //= 2
        else:
            macs += size * size * item * channels * 9
            channels = item
    assert summary.total_macs == macs + 25088 * 4096 + 4096 * 4096 + 4096 * 1000  # about 15.5 G
    first = summary.layers[0]
    assert first.memory_bytes == 224 * 224 * 64 * 4  # 3.2M float32 values


# -------------------------------------------------------------------------------------- GoogLeNet

# Table 1 of Szegedy et al. 2015: input channels, size, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool
# proj, params (K = 1024), ops (M = 10^6).
TABLE_1 = {
    "3a": (192, 28, 64, 96, 128, 16, 32, 32, 159, 128), "3b": (256, 28, 128, 128, 192, 32, 96, 64, 380, 304),
    "4a": (480, 14, 192, 96, 208, 16, 48, 64, 364, 73), "4b": (512, 14, 160, 112, 224, 24, 64, 64, 437, 88),
    "4c": (512, 14, 128, 128, 256, 24, 64, 64, 463, 100), "4d": (512, 14, 112, 144, 288, 32, 64, 64, 580, 119),
    "4e": (528, 14, 256, 160, 320, 32, 128, 128, 840, 170), "5a": (832, 7, 256, 160, 320, 32, 128, 128, 1072, 54),
    "5b": (832, 7, 384, 192, 384, 48, 128, 128, 1388, 71),
}
# Rows whose printed figures do not follow from their own columns (see docs/analysis.md).
TABLE_1_SLIPS = {"4c": "params", "5a": "both"}


@pytest.mark.parametrize("row", list(TABLE_1))
def test_googlenet_table_1_params_and_ops(row):
    cin, size, *columns, params_k, ops_m = TABLE_1[row]
    summary = summarize(Inception(cin, *columns), (cin, size, size))
    assert summary.output_shape == (columns[0] + columns[2] + columns[4] + columns[5], size, size)
    assert summary.depth == 2  # Table 1's depth column
    params, ops = summary.total_params / 1024, summary.total_macs / 1e6
    slip = TABLE_1_SLIPS.get(row)
    if slip in ("params", "both"):
        assert abs(params - params_k) / params_k > 0.04
    else:
        assert params == pytest.approx(params_k, rel=0.02)
    if slip == "both":
        assert abs(ops - ops_m) / ops_m > 0.04
    else:
        assert ops == pytest.approx(ops_m, rel=0.01)
    if row == "3a":  # the deck's hand count: 12288 + 129024 + 15872 + 6144
        assert summary.total_params == 163328


def test_inception_concatenation_takes_the_largest_receptive_field():
    summary = summarize(Inception(8, 4, 4, 4, 4, 4, 4), (8, 16, 16))
    cat = [r for r in summary.layers if r.type == "cat"]
    assert len(cat) == 1 and cat[0].rf_size == (5, 5)  # the 1x1 -> 5x5 branch
    assert cat[0].rf_start == (-2, -2)


# -------------------------------------------------------------------------------------- MAC counters

def small_net(bias: bool) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1, bias=bias), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, stride=2, groups=4, bias=bias), nn.ReLU(),
        nn.Conv2d(32, 32, 3, dilation=2, padding=2, bias=bias), nn.AdaptiveAvgPool2d(3), nn.Flatten(),
        nn.Linear(32 * 9, 64, bias=bias), nn.ReLU(), nn.Linear(64, 10, bias=bias))


@pytest.mark.parametrize("bias", [False, True])
def test_macs_agree_with_pytorch_flop_counter_exactly(bias):
    model = small_net(bias)
    summary = summarize(model, (3, 40, 40))
    with FlopCounterMode(display=False) as counter:
        model(torch.zeros(1, 3, 40, 40))
    assert summary.total_flops == counter.get_total_flops()
    assert summary.total_params == sum(p.numel() for p in model.parameters())


def test_macs_agree_with_ptflops():
    # ptflops' aten backend counts the same multiply-accumulates plus one per output for a bias.
    model = small_net(bias=False)
    macs, params = ptflops.get_model_complexity_info(model, (3, 40, 40), as_strings=False,
                                                     print_per_layer_stat=False, backend="aten")
    summary = summarize(model, (3, 40, 40))
    assert summary.total_macs == macs and summary.total_params == params
    # Its pytorch backend also counts one addition per output for each bias: within 1% on a network
    # of convolutions and linear layers.
    model = nn.Sequential(nn.Conv2d(3, 16, 5, padding=2), nn.Conv2d(16, 32, 3, stride=2), nn.Conv2d(32, 32, 3),
                          nn.Flatten(), nn.Linear(32 * 17 * 17, 100), nn.Linear(100, 10))
    macs, _ = ptflops.get_model_complexity_info(model, (3, 40, 40), as_strings=False,
                                                print_per_layer_stat=False, backend="pytorch")
    ours = summarize(model, (3, 40, 40)).total_macs
    assert ours < macs and ours == pytest.approx(macs, rel=0.01)


def test_recurrent_macs_by_hand():
    model = nn.LSTM(10, 20, num_layers=2, batch_first=True)
    summary = summarize(model, (7, 10))  # 7 steps of 10 features
    per_step = 4 * 20 * (10 + 20) + 4 * 20 * (20 + 20)
    assert summary.total_macs == 7 * per_step
    assert summary.depth == 2


# -------------------------------------------------------------------------------------- depth, output

def test_depth_limits_rows_to_blocks_and_keeps_totals():
    full = summarize("lenet5")
    blocks = summarize("lenet5", depth=1)
    assert [r.name for r in blocks.layers] == ["features", "classifier"]
    assert sum(r.macs for r in blocks.layers) == full.total_macs == sum(r.macs for r in full.layers)
    assert sum(r.params for r in blocks.layers) == full.total_params


def test_to_dict_csv_markdown():
    summary = summarize("lenet5")
    data = summary.to_dict()
    assert data["total_params"] == summary.total_params and len(data["layers"]) == len(summary.layers)
    assert data["total_flops"] == 2 * data["total_macs"]
    csv_lines = summary.to_csv().splitlines()
    assert len(csv_lines) == len(summary.layers) + 1 and csv_lines[1].startswith("features.0,Conv2d")
    assert summary.to_markdown().count("\n|") >= len(summary.layers)
    assert isinstance(summary, Summary)


def test_bad_input_sizes_are_clear_errors():
    with pytest.raises(ShapeError, match="cannot take"):
        summarize(nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.Linear(10, 2)), (3, 8, 8))
    with pytest.raises(ShapeError):
        summarize("lenet5", "3xfoo")
    with pytest.raises(ShapeError):
        summarize(nn.Conv2d(1, 1, 3))
    with pytest.raises(cnnlab.errors.UnknownNameError):
        summarize("lenet6")


class SharedReLUBlock(nn.Module):
    """A residual block that calls one ReLU module twice, as torchvision's BasicBlock does."""

    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(4, 4, 3, padding=1)
        self.conv2 = nn.Conv2d(4, 4, 3, padding=1)
        self.relu = nn.ReLU()

    def forward(self, x):
        return self.relu(self.conv2(self.relu(self.conv1(x))) + x)


def test_a_module_called_twice_has_two_rows_and_its_parameters_once():
    model = nn.Sequential(SharedReLUBlock(), nn.Conv2d(4, 2, 1))
    summary = summarize(model, (4, 8, 8))
    names = [r.name for r in summary.layers]
    assert names == ["0.conv1", "0.relu", "0.conv2", "0.<add>", "0.relu (call 2)", "1"]
    assert sum(r.total_params for r in summary.layers) == summary.total_params
    assert summary.depth == 3
    assert summary.layers[3].rf_size == (5, 5)  # two 3x3 convolutions; the identity path adds nothing
