"""Receptive fields through a decoder (transposed convolutions and unpooling), checked against autograd:
the input pixels whose gradient reaches one output unit lie inside the field ``cnnlab summary`` reports,
the stride-1 case is exact, and the decoders of the segmentation models get a field on every row."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.analysis import summarize

torch.set_num_threads(1)


def reached(model: nn.Module, side: int, unit: int) -> tuple[int, int]:
    """First and last input column whose value changes output unit (row 0 .. any, column ``unit``), by autograd."""
    x = torch.randn(1, 1, side, side, dtype=torch.float64, requires_grad=True)
    out = model(x)
    out[0, :, out.shape[2] // 2, unit].sum().backward()
    columns = torch.nonzero(x.grad[0, 0].abs().sum(0) > 0).flatten()
    return int(columns.min()), int(columns.max())


class Unpooling(nn.Module):
    """conv -> max-pool with indices -> conv -> unpool at the switches -> conv (SegNet's step)."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = (nn.Conv2d(1, 1, 3, padding=1) for _ in range(3))
        self.pool, self.unpool = nn.MaxPool2d(2, return_indices=True), nn.MaxUnpool2d(2)

    def forward(self, x):
        y, index = self.pool(self.a(x))
        return self.c(self.unpool(self.b(y), index, output_size=x.shape[-2:]))


def last_field(model: nn.Module, side: int):
    row = summarize(model, (1, side, side)).layers[-1]
    return row.rf_size[1], row.rf_jump[1], row.rf_start[1], row.rf_exact


def test_a_stride_1_transposed_convolution_is_the_convolutions_rule_exactly():
    model = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ConvTranspose2d(2, 1, 3)).double()
    size, jump, start, exact = last_field(model, 12)
    assert (size, jump, start, exact) == (5, 1, -2, True)
    for unit in range(2, 10):  # the units whose field lies inside the image
        assert reached(model, 12, unit) == (start + unit * jump, start + unit * jump + size - 1)


@pytest.mark.parametrize("kind", ["transposed", "unpool"])
def test_upsampling_fields_hold_every_units_true_field(kind):
    side = 16
    if kind == "transposed":  # conv -> avg-pool (every pixel of the window counts) -> conv -> up x2 -> conv
        model = nn.Sequential(nn.Conv2d(1, 2, 3, padding=1), nn.AvgPool2d(2), nn.Conv2d(2, 2, 3, padding=1),
                              nn.ConvTranspose2d(2, 2, 4, stride=2, padding=1), nn.Conv2d(2, 1, 3, padding=1))
    else:
        model = Unpooling()
    model = model.double()
    size, jump, start, exact = last_field(model, side)
    assert jump == 1 and not exact  # back at full resolution; a stepped field is given as a bound
    spans = []
    for unit in range(side):
        first, last = reached(model, side, unit)
        lo, hi = start + unit * jump, start + unit * jump + size - 1
        assert lo <= first and last <= hi, (unit, first, last, lo, hi)
        spans.append(last - first + 1)
    # the bound is close: no wider than the largest true field plus one stride step each side
    assert size <= max(spans) + 2 * 2


@pytest.mark.parametrize("name", ["segnet", "deconvnet", "unet", "fcn8s"])
def test_every_decoder_row_has_a_field(name):
    summary = summarize(cnnlab.create_model(name, input_size=(1, 64, 64), num_classes=3), (1, 64, 64), depth=1)
    assert all(row.rf_size is not None for row in summary.layers), [r.name for r in summary.layers if r.rf_size is None]
    assert summary.layers[-1].rf_jump == (1, 1)  # the score map is at the input's resolution
