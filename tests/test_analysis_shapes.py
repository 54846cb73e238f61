"""The output-size formula against the decks' hand computations and against PyTorch's own layers."""

from __future__ import annotations

from fractions import Fraction

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from cnnlab.analysis.shapes import (ShapeError, conv_output_size, parse_input, parse_layer, same_padding,
                                    shape_chain)


@pytest.mark.parametrize("stride, expected", [(1, 5), (2, 3)])
def test_deck_7x7_input_3x3_filter_fits_at_strides_1_and_2(stride, expected):
    # Deck: (7-3)/1+1 = 5 and (7-3)/2+1 = 3.
    size = conv_output_size(7, 3, stride)
    assert size.fits and size.exact == expected and size.size == expected


def test_deck_7x7_input_3x3_filter_stride_3_does_not_fit_and_padding_1_does():
    size = conv_output_size(7, 3, 3)
    assert not size.fits
    assert size.exact == Fraction(7, 3)  # the deck's 2.33
    assert size.formula().endswith("= 2.33")
    assert size.size == nn.Conv2d(1, 1, 3, stride=3)(torch.zeros(1, 1, 7, 7)).shape[-1]  # PyTorch floors to 2
    assert size.fitting_paddings()[0] == 1  # the deck: padding 1 -> 3x3 feature map
    assert conv_output_size(7, 3, 3, padding=1).exact == 3
    assert "padding 1" in size.advice()


def test_no_padding_can_fit_when_parity_forbids_it():
    # 8 - 3 = 5 is odd and 2P is even, so N - F + 2P is never a multiple of 2.
    size = conv_output_size(8, 3, 2)
    assert size.fitting_paddings() == []
    assert "no symmetric padding" in size.advice()


def test_deck_32x32x3_with_ten_5x5_filters():
    step = shape_chain(parse_input("3x32x32"), [parse_layer("conv:k5,s1,p2,c10")])[0]
    conv = nn.Conv2d(3, 10, 5, padding=2)
    assert step.output_shape == (10, 32, 32)
    assert tuple(conv(torch.zeros(1, 3, 32, 32)).shape[1:]) == (10, 32, 32)
    # (5*5*3 + 1)*10 = 760; one deck writes (5*5+1)*10 = 260, forgetting the 3 input channels.
    assert step.params == sum(p.numel() for p in conv.parameters()) == 760


def test_alexnet_chain_55_27_13_13_13_6():
    layers = [parse_layer(s) for s in ("conv:k11,s4,c96", "pool:k3,s2", "conv:k5,p2,c256", "pool:k3,s2",
                                       "conv:k3,p1,c384", "conv:k3,p1,c384", "conv:k3,p1,c256", "pool:k3,s2")]
    steps = shape_chain((3, 227, 227), layers)
    assert [s.output_shape[1] for s in steps] == [55, 27, 27, 13, 13, 13, 13, 6]
    assert all(s.fits for s in steps)
    # The paper's 224x224 input does not fit the first layer: (224 - 11)/4 + 1 = 54.25.
    assert not shape_chain((3, 224, 224), layers[:1])[0].fits


def test_lenet_c1_and_same_padding():
    step = shape_chain(parse_input("1x28x28"), [parse_layer("conv:k5,p2,c6")])[0]
    assert step.output_shape == (6, 28, 28) and step.params == (5 * 5 + 1) * 6
    # Deck: F=3 -> pad 1, F=5 -> pad 2, F=7 -> pad 3 keep the size.
    assert [same_padding(f) for f in (3, 5, 7)] == [1, 2, 3]
    assert shape_chain((4, 13, 13), [parse_layer("conv:k7,p=same,c4")])[0].output_shape == (4, 13, 13)


def test_googlenet_pooling_needs_ceil_mode():
    # Table 1 goes 112 -> 56 with a 3x3/2 max pool: (112 - 3)/2 + 1 = 55.5, so Caffe rounds up.
    assert conv_output_size(112, 3, 2).size == 55
    ceil = conv_output_size(112, 3, 2, ceil_mode=True)
    pool = nn.MaxPool2d(3, 2, ceil_mode=True)
    assert ceil.size == 56 == pool(torch.zeros(1, 1, 112, 112)).shape[-1]


def test_stacked_3x3_receptive_fields_are_5_and_7():
    steps = shape_chain((1, 32, 32), [parse_layer("conv:k3")] * 3)
    assert [s.field_size[0] for s in steps] == [3, 5, 7]
    # and the parameters the deck compares: one 5x5 filter + bias = 26, two 3x3 filters + biases = 20
    assert shape_chain((1, 9, 9), [parse_layer("conv:k5")])[0].params == 26
    assert sum(s.params for s in steps[:2]) == 20


def test_grouped_conv_and_fc_parameters_match_pytorch():
    steps = shape_chain((96, 27, 27), [parse_layer("conv:k5,p2,c256,g2"), parse_layer("fc:100")])
    conv = nn.Conv2d(96, 256, 5, padding=2, groups=2)
    assert steps[0].params == sum(p.numel() for p in conv.parameters())
    assert steps[1].params == (27 * 27 * 256 + 1) * 100


@pytest.mark.parametrize("bad", ["conv", "conv:s2", "blur:k3", "conv:k3,c0", "fc:", "conv:kx"])
def test_bad_layers_raise_a_clear_error(bad):
    with pytest.raises(ShapeError):
        parse_layer(bad)


@pytest.mark.parametrize("bad", ["", "0", "axb", "3@4x4x4", "1x2x3x4", "x@4x4", "3@4", "0@4x4"])
def test_bad_inputs_raise_a_clear_error(bad):
    with pytest.raises(ShapeError):
        parse_input(bad)


@pytest.mark.parametrize("text, expected", [
    ("3x32x32", (3, 32, 32)), ("3@32x32", (3, 32, 32)), ("6@28x28", (6, 28, 28)), ("7", (1, 7, 7)),
    ("512x7x7", (512, 7, 7)), ("3x32x48", (3, 32, 48)), ("3 x 224 x 224", (3, 224, 224)), ("64x64x64", (64, 64, 64)),
])
def test_inputs_are_read_channels_first_like_summary(text, expected):
    from cnnlab.analysis.summary import parse_input_size

    assert parse_input(text) == expected
    if "@" not in text and "x" in text:  # the same text means the same C x H x W to `cnnlab summary --input`
        assert parse_input(text) == parse_input_size(text)


@pytest.mark.parametrize("text, fix", [("32x32x3", "3x32x32"), ("227x227x3", "3x227x227"), ("7x7x512", "512x7x7")])
def test_the_decks_hxwxc_order_is_refused_and_the_fix_is_named(text, fix):
    # Read channels first, 32x32x3 would be 32 channels of 32x3 pixels, which is never what the decks mean.
    with pytest.raises(ShapeError, match="ambiguous") as error:
        parse_input(text)
    assert f"write {fix}" in str(error.value) and "\n" not in str(error.value)
    assert parse_input(fix)[0] == int(text.split("x")[-1])


def test_two_sizes_without_channels_are_refused():
    with pytest.raises(ShapeError, match="write 1x28x28"):
        parse_input("28x28")


def test_flattening_counts_values_and_the_fc_layer_holds_the_parameters():
    # VGG-16's pool5, 512x7x7: one deck calls the 25,088 flattened values "参数" (parameters); they are
    # activations, and the parameters are FC6's (25,088 + 1) * 4096.
    step = shape_chain(parse_input("512x7x7"), [parse_layer("fc:4096")])[0]
    fc = nn.Linear(512 * 7 * 7, 4096)
    assert step.formula() == "flatten 512*7*7 = 25,088 values -> 4096"
    assert step.params == sum(p.numel() for p in fc.parameters()) == 102_764_544
    assert step.output_shape == (4096, 1, 1)


@pytest.mark.parametrize("layer, overlapping", [("pool:k3,s2", True), ("pool:k2,s2", False), ("pool:k2,s3", False),
                                                ("avgpool:k3x1,s2x1", True)])
def test_overlapping_pooling_means_a_stride_smaller_than_the_window(layer, overlapping):
    # Krizhevsky et al. 2012, section 3.4: s = 2 < z = 3 overlaps. One deck defines it the other way round.
    step = shape_chain((96, 55, 55), [parse_layer(layer)])[0]
    assert any("overlapping pooling" in note for note in step.notes) == overlapping


def test_one_output_size_formula_serves_the_calculator_and_the_reference_engine():
    import cnnlab.output_size as shared
    import cnnlab.reference.conv
    import cnnlab.reference.explain
    import cnnlab.reference.pool

    assert conv_output_size is shared.conv_output_size
    for module in (cnnlab.reference.conv, cnnlab.reference.pool, cnnlab.reference.explain):
        assert module.output_hw is shared.output_hw and not hasattr(module, "conv_output_size")
    conv = nn.Conv2d(1, 1, (5, 3), stride=(2, 3), padding=(1, 2), dilation=(2, 1))
    assert shared.output_hw((31, 17), (5, 3), (2, 3), (1, 2), (2, 1)) == conv(torch.zeros(1, 1, 31, 17)).shape[2:]
    with pytest.raises(ShapeError, match="does not fit an input of 4"):
        shared.output_hw((4, 9), (7, 3))


@settings(max_examples=60, deadline=None)
@given(n=st.integers(1, 40), k=st.integers(1, 7), s=st.integers(1, 5), p=st.integers(0, 3), d=st.integers(1, 3),
       ceil=st.booleans())
def test_size_matches_pytorch_pooling_and_convolution(n, k, s, p, d, ceil):
    size = conv_output_size(n, k, s, p, d, ceil_mode=ceil)
    x = torch.zeros(1, 1, n)
    if 2 * p > k or size.slack < 0:  # PyTorch refuses these pools; convolutions need a non-empty output
        return
    pooled = nn.MaxPool1d(k, s, p, d, ceil_mode=ceil)(x).shape[-1]
    assert size.size == pooled
    if not ceil:
        assert size.size == nn.Conv1d(1, 1, k, s, p, d)(x).shape[-1]
        assert size.fits == (size.exact.denominator == 1)
