"""Receptive fields checked by gradients: the input pixels that reach one output unit.

With positive weights, positive inputs and average pooling no gradient cancels, so the pixels with a
non-zero gradient are exactly the unit's receptive field clipped to the image: they must lie inside
the computed field and reach its edges. With max pooling only one pixel of a window passes a
gradient, so there the pixels need only lie inside.
"""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnlab
from cnnlab.analysis import summarize
from cnnlab.analysis.receptive import AxisField, merge


pytestmark = pytest.mark.usefixtures("one_thread")


def gradient_box(model: nn.Module, input_shape, layer: str, unit: tuple[int, int]):
    """Rows and columns (first, last) of the input pixels whose gradient for one unit of ``layer`` is non-zero."""
    captured = {}
    module = model.get_submodule(layer) if layer else model
    handle = module.register_forward_hook(lambda m, i, o: captured.setdefault("out", o))
    x = (torch.rand(1, *input_shape) + 0.5).requires_grad_()
    model(x)
    handle.remove()
    out = captured["out"]
    out[(0, 0) + unit].backward()
    support = x.grad[0].abs().sum(0) > 0
    rows = support.any(1).nonzero().flatten()
    cols = support.any(0).nonzero().flatten()
    return (int(rows[0]), int(rows[-1])), (int(cols[0]), int(cols[-1]))


def expected_box(row, input_shape, unit):
    box = []
    for axis, index in enumerate(unit):
        first = row.rf_start[axis] + index * row.rf_jump[axis]
        last = first + row.rf_size[axis] - 1
        box.append((max(first, 0), min(last, input_shape[1 + axis] - 1)))
    return tuple(box)


def positive(model: nn.Module) -> nn.Module:
    torch.manual_seed(0)
    with torch.no_grad():
        for p in model.parameters():
            p.uniform_(0.1, 1.0)
    return model.eval()


def check(model: nn.Module, input_shape, layer: str, units, exact: bool = True, depth: int | None = None) -> None:
    summary = summarize(model, input_shape, depth=depth)
    row = next(r for r in summary.layers if r.name == layer) if layer else None
    if row is None:  # the model's output
        row = summary.layers[-1]
    for unit in units:
        got = gradient_box(model, input_shape, layer, unit)
        want = expected_box(row, input_shape, unit)
        if exact:
            assert got == want, (layer, unit)
        else:
            assert all(w[0] <= g[0] and g[1] <= w[1] for g, w in zip(got, want)), (layer, unit, got, want)


def test_stacked_3x3_convolutions_see_5x5_and_7x7():
    model = positive(nn.Sequential(nn.Conv2d(1, 1, 3), nn.Conv2d(1, 1, 3), nn.Conv2d(1, 1, 3)))
    summary = summarize(model, (1, 16, 16))
    assert [r.rf_size for r in summary.layers] == [(3, 3), (5, 5), (7, 7)]
    check(model, (1, 16, 16), "1", [(4, 4)])
    check(model, (1, 16, 16), "2", [(0, 0), (9, 3)])


def test_strides_padding_dilation_and_pooling():
    model = positive(nn.Sequential(
        nn.Conv2d(2, 3, 5, stride=2, padding=2), nn.AvgPool2d(3, 2, padding=1), nn.Conv2d(3, 3, 3, dilation=2),
        nn.Conv2d(3, 2, (3, 1), padding=(1, 0))))
    summary = summarize(model, (2, 48, 40))
    assert summary.layers[-1].rf_size[0] != summary.layers[-1].rf_size[1]  # a 3x1 kernel widens one axis only
    for layer, units in (("0", [(0, 0), (5, 7)]), ("1", [(0, 0), (6, 5)]), ("3", [(0, 0), (3, 2), (7, 5)])):
        check(model, (2, 48, 40), layer, units)


class Branchy(nn.Module):
    """An inception split, a strided residual block with a projection shortcut and a dense concatenation."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(2, 4, 3, padding=1)
        self.branch1 = nn.Conv2d(4, 2, 1)
        self.branch5 = nn.Sequential(nn.Conv2d(4, 2, 1), nn.Conv2d(2, 2, 5, padding=2))
        self.branch_pool = nn.Sequential(nn.AvgPool2d(3, 1, 1), nn.Conv2d(4, 2, 1))
        self.body = nn.Sequential(nn.Conv2d(6, 6, 3, stride=2, padding=1), nn.Conv2d(6, 6, 3, padding=1))
        self.shortcut = nn.Conv2d(6, 6, 1, stride=2)
        self.dense = nn.ModuleList([nn.Conv2d(6, 3, 3, padding=1), nn.Conv2d(9, 3, 3, padding=1)])
        self.head = nn.Conv2d(12, 1, 1)

    def forward(self, x):
        x = self.stem(x)
        x = torch.cat([self.branch1(x), self.branch5(x), self.branch_pool(x)], 1)  # inception
        x = self.body(x) + self.shortcut(x)  # residual
        x = F.pad(x, (1, 1, 2, 2))
        for layer in self.dense:  # dense block
            x = torch.cat([x, layer(x)], 1)
        return self.head(x)


def test_branches_merge_to_the_largest_field():
    model = positive(Branchy())
    summary = summarize(model, (2, 32, 32))
    names = {r.name: r for r in summary.layers}
    # inception: the 5x5 branch after the 3x3 stem sees 7x7, more than the 1x1 (3x3) or pool (5x5) ones
    assert names["<cat>"].rf_size == (7, 7)
    # residual: the body's field (two 3x3 convs after the stride 2 one) outgrows the 1x1 shortcut
    assert names["<add>"].rf_size == (7 + 2 + 2 * 2, 7 + 2 + 2 * 2)
    assert [r.type for r in summary.layers].count("cat") == 3
    assert summary.depth == 1 + 2 + 2 + 2 + 1  # stem, 5x5 branch, body, dense layers, head
    check(model, (2, 32, 32), "", [(0, 0), (9, 10), (17, 17)])


class SqueezeExcite(nn.Module):
    """Hu et al. 2018: a global-pooled gate multiplies every position, so each unit sees the whole image."""

    def __init__(self, channels: int):
        super().__init__()
        self.conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.fc = nn.Linear(channels, channels)

    def forward(self, x):
        y = self.conv(x)
        gate = torch.sigmoid(self.fc(y.mean((2, 3)))).view(y.shape[0], -1, 1, 1)
        return y * gate


def test_squeeze_excitation_gate_spreads_the_field_over_the_image():
    model = positive(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), SqueezeExcite(2), nn.Conv2d(2, 1, 3)))
    with torch.no_grad():  # keep the sigmoid away from saturation, where its gradient rounds to zero
        model[1].fc.weight.fill_(1e-3)
        model[1].fc.bias.zero_()
    summary = summarize(model, (1, 20, 20), depth=1)
    gated = summary.layers[1]
    assert gated.rf_jump == (1, 1) and gated.rf_size[0] >= 20  # still a grid of stride 1, seeing everything
    check(model, (1, 20, 20), "1", [(0, 0), (10, 3)], depth=1)
    check(model, (1, 20, 20), "2", [(5, 5)], depth=1)


def test_broadcast_merge_widens_the_field_without_changing_the_grid():
    local = AxisField(3, 1, -1)
    global_ = AxisField(40, 32, -4)
    merged = merge([local, global_], [local])
    assert (merged.size, merged.jump, merged.start) == (40, 1, -4)


def test_lenet5_receptive_field_by_gradients():
    model = cnnlab.create_model("lenet5").eval()  # sigmoid and average pooling: no gradient is zero
    summary = summarize(model, (1, 28, 28))
    c3 = next(r for r in summary.layers if r.name == "features.4")
    assert (c3.rf_size, c3.rf_jump, c3.rf_start) == ((14, 14), (2, 2), (-2, -2))
    check(model, (1, 28, 28), "features.4", [(0, 0), (4, 6), (9, 9)])


def test_max_pooling_keeps_gradients_inside_the_field():
    model = positive(nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.ReLU(), nn.MaxPool2d(3, 2),
                                   nn.Conv2d(2, 2, 3), nn.ReLU(), nn.MaxPool2d(2)))
    check(model, (1, 33, 33), "5", [(0, 0), (3, 4), (6, 6)], exact=False)


# Small members of each branching family: residual (option-A strided shortcuts), dense, channel split
# and shuffle, inception. Deep ones with positive weights overflow float32, so these stay shallow.
@pytest.mark.parametrize("name, size", [("resnet20", 32), ("densenet_bc_small", 28), ("shufflenet_v2_x1_0", 48),
                                        ("resnet18", 48)])
def test_zoo_models_receptive_field_by_gradients(name, size):
    channels = cnnlab.model_info(name).input_size[0]
    model = positive(cnnlab.create_model(name, num_classes=4))
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.running_mean.zero_()
            module.running_var.fill_(1.0)
    summary = summarize(model, (channels, size, size))
    spatial = [r for r in summary.layers if r.kind == "conv" and r.output_shape and len(r.output_shape) == 3
               and r.rf_size and r.output_shape[-1] >= 2]
    last = spatial[-1]
    centre = (last.output_shape[-2] // 2, last.output_shape[-1] // 2)
    check(model, (channels, size, size), last.name, [(0, 0), centre], exact=False)
