"""The decks' worked examples, with the expected numbers written out by hand from the slides."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from cnnlab.cli import main
from cnnlab.reference import explain as ex


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    code = main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# Slide "卷积运算": 0*0 + 1*1 + 3*2 + 4*3 = 19, then 25, 37, 43.
DECK_CONV = {
    "basic": [[19, 25], [37, 43]],
    # Slide "什么是填充": the 3x3 input padded to 5x5 gives a 4x4 output.
    "padding": [[0, 3, 8, 4], [9, 19, 25, 10], [21, 37, 43, 16], [6, 7, 8, 0]],
    # Slide "步幅的应用举例": vertical stride 3, horizontal stride 2: 0*0+0*1+1*2+2*3 = 8, 0*0+6*1+0*2+0*3 = 6.
    "stride": [[0, 8], [6, 8]],
    # Slide "多输入通道举例": two channels summed.
    "channels": [[56, 72], [104, 120]],
    # Slide "图像目标中的边缘检测": the vertical edge lights up the two middle columns.
    "edge": [[0, 30, 30, 0]] * 4,
}


@pytest.mark.parametrize("name", list(DECK_CONV))
def test_conv_examples_give_the_decks_numbers(name):
    explanation = ex.explain_conv(**ex.CONV_EXAMPLES[name])
    np.testing.assert_array_equal(explanation.result["output"], DECK_CONV[name])


def test_conv_explanation_shows_windows_products_sums_and_formula():
    text = ex.explain_conv(**ex.CONV_EXAMPLES["basic"]).text()
    assert "0*0 + 1*1 + 3*2 + 4*3 = 19" in text
    assert "4*0 + 5*1 + 7*2 + 8*3 = 43" in text
    assert "floor((3 + 2*0 - 2) / 1) + 1 = 2" in text
    assert "(3 - 2 + 0 + 1) x (3 - 2 + 0 + 1)" in text  # the decks' (n_h - k_h + p_h + 1) form
    strided = ex.explain_conv(**ex.CONV_EXAMPLES["stride"]).text()
    assert "floor((3 + 2*1 - 2) / 3) + 1 = 2" in strided and "floor((3 + 2*1 - 2) / 2) + 1 = 2" in strided
    channels = ex.explain_conv(**ex.CONV_EXAMPLES["channels"]).text()
    assert "sum over channels: 19 + 37 = 56" in channels


def test_true_convolution_turns_the_kernel():
    # Kernel 0..3 turned 180 degrees is [[3, 2], [1, 0]]: 0*3 + 1*2 + 3*1 + 4*0 = 5, and so on.
    result = ex.explain_conv(**ex.CONV_EXAMPLES["basic"]).result
    np.testing.assert_array_equal(result["true_convolution"], [[5, 11], [23, 29]])
    # The edge filter turned is its negative: the true convolution flips the sign.
    edge = ex.explain_conv(**ex.CONV_EXAMPLES["edge"]).result
    np.testing.assert_array_equal(edge["true_convolution"], [[0, -30, -30, 0]] * 4)


def test_deck_edge_filter_first_window_is_minus_five():
    # Slide "边缘检测": 3+1+2+0+0+0+(-1)+(-8)+(-2) = -5 on the 6x6 image starting 3 0 1 2 7 4.
    image = np.array([[3, 0, 1, 2, 7, 4], [1, 5, 8, 9, 3, 1], [2, 7, 2, 5, 1, 3],
                      [0, 1, 3, 1, 7, 8], [4, 2, 1, 6, 2, 8], [2, 4, 5, 2, 3, 9]])
    out = ex.explain_conv(image, np.tile([1, 0, -1], (3, 1))).result["output"]
    assert out.shape == (4, 4) and out[0, 0] == -5


def test_pool_examples_give_the_decks_numbers():
    # Slide "什么是池化层": max(0,1,3,4)=4, max(1,2,4,5)=5, max(3,4,6,7)=7, max(4,5,7,8)=8.
    np.testing.assert_array_equal(ex.explain_pool(**ex.POOL_EXAMPLES["ramp"]).result["output"], [[4, 5], [7, 8]])
    # cs231n slide "max pool with 2x2 filters and stride 2": 6 8 / 3 4.
    np.testing.assert_array_equal(ex.explain_pool(**ex.POOL_EXAMPLES["stride2"]).result["output"], [[6, 8], [3, 4]])
    text = ex.explain_pool(**ex.POOL_EXAMPLES["ramp"]).text()
    assert "max(0, 1, 3, 4) = 4" in text
    avg = ex.explain_pool(ex.POOL_EXAMPLES["stride2"]["x"], 2, 2, "avg").result["output"]
    np.testing.assert_allclose(avg, [[13 / 4, 21 / 4], [8 / 4, 8 / 4]])


def test_cli_explain_pool_says_overlapping_means_a_stride_below_the_window(capsys):
    # Krizhevsky et al. 2012, section 3.4: stride s < window z overlaps. One deck defines it the other way round
    # ("池化窗口大小小于步幅大小"), which would describe windows with gaps between them.
    code, out, _ = run_cli(capsys, "explain", "pool", "--input", "0 1 2 3; 4 5 6 7; 8 9 10 11; 12 13 14 15",
                           "--size", "3", "--stride", "1")
    assert code == 0 and "overlapping pooling: stride (1, 1) < window (3, 3)" in out
    assert "out[1,1] = max(5, 6, 7, 9, 10, 11, 13, 14, 15) = 15" in out  # shares 5, 6, 9, 10 ... with out[0,0]
    code, out, _ = run_cli(capsys, "explain", "pool", "--input", "0 1 2 3; 4 5 6 7; 8 9 10 11; 12 13 14 15",
                           "--size", "2", "--stride", "2")
    assert code == 0 and "overlapping pooling" not in out and "without overlapping" in out
    code, out, _ = run_cli(capsys, "explain", "pool", "--input", "0 1 2 3 4; 5 6 7 8 9", "--size", "1", "--stride", "2")
    assert code == 0 and "overlapping pooling" not in out and "fall between windows" in out


def test_cli_explain_conv_prints_the_size_formula_with_the_kernel_subtracted(capsys):
    # One deck writes the padded output size as (n_h + k_h - 1 + p_h); its worked step and the formula subtract
    # the kernel: (n_h - k_h + p_h + 1), p_h the total padding. For a 3x3 input, 2x2 kernel, padding 1: 4x4.
    code, out, _ = run_cli(capsys, "explain", "conv", "--input", "0 1 2; 3 4 5; 6 7 8", "--kernel", "0 1; 2 3",
                           "--padding", "1")
    assert code == 0
    expected = torch.nn.functional.conv2d(torch.arange(9.0).view(1, 1, 3, 3), torch.arange(4.0).view(1, 1, 2, 2),
                                          padding=1).shape[2:]
    assert tuple(expected) == (4, 4)
    assert "(n_h - k_h + p_h + 1) x (n_w - k_w + p_w + 1) = (3 - 2 + 2 + 1) x (3 - 2 + 2 + 1) = 4 x 4" in out
    assert "n_h + k_h" not in out


def test_one_by_one_convolution_is_the_decks_fully_connected_example():
    # Slide "1*1 的卷积核": 0.5, 0.3 and 0.2 times three channels sum to 2.6 3.8 5.0 / 3.8 5.0 6.2 / 5.0 6.2 7.4.
    out = ex.explain_conv(**ex.CONV_EXAMPLES["one-by-one"]).result["output"]
    np.testing.assert_allclose(out, [[2.6, 3.8, 5.0], [3.8, 5.0, 6.2], [5.0, 6.2, 7.4]], atol=1e-12)


def test_batch_norm_by_hand():
    result = ex.explain_bn(np.array([[1.0, 2], [3, 6], [5, 10], [7, 14]]), eps=0.0).result
    # feature 0: mean 4, biased variance (9+1+1+9)/4 = 5
    np.testing.assert_allclose(result["output"][:, 0], np.array([-3, -1, 1, 3]) / math.sqrt(5))
    np.testing.assert_allclose(result["running_mean"], [0.4, 0.8])
    np.testing.assert_allclose(result["running_var"], [0.9 + 0.1 * 20 / 3, 0.9 + 0.1 * 80 / 3])  # unbiased: 20/3, 80/3


def test_lrn_by_hand_with_alexnets_constants():
    out = ex.explain_lrn(np.array([10.0, 20, 30, 40, 50])).result["output"]
    assert out[2] == pytest.approx(30 / (2 + 1e-4 * (100 + 400 + 900 + 1600 + 2500)) ** 0.75)
    assert out[0] == pytest.approx(10 / (2 + 1e-4 * (100 + 400 + 900)) ** 0.75)


def test_dropout_keeps_and_scales():
    result = ex.explain_dropout(np.arange(1.0, 9).reshape(2, 4), 0.5, seed=3).result
    kept = result["mask"] != 0
    np.testing.assert_allclose(result["output"][kept], 2 * np.arange(1.0, 9).reshape(2, 4)[kept])
    assert (result["output"][~kept] == 0).all()


@pytest.mark.parametrize("kind", ["rnn", "lstm"])
def test_recurrent_explanations_match_torch_cells(kind):
    xs = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, -0.5]])
    result = ex.explain_recurrent(kind, xs, hidden=2, seed=0).result
    params = {k: torch.tensor(v, dtype=torch.float64) for k, v in result["params"].items()}
    cell = {"rnn": torch.nn.RNNCell, "lstm": torch.nn.LSTMCell}[kind](2, 2).double()
    cell.load_state_dict(params)
    h = torch.zeros(1, 2, dtype=torch.float64)
    c = torch.zeros(1, 2, dtype=torch.float64)
    for t, x in enumerate(torch.tensor(xs)):
        if kind == "lstm":
            h, c = cell(x[None], (h, c))
        else:
            h = cell(x[None], h)
        np.testing.assert_allclose(result["hidden_states"][t], h[0].detach().numpy(), rtol=1e-12)


def test_gru_explanation_follows_the_decks_equations():
    # torch's GRUCell applies the reset gate after the hidden product, so the decks' equations are written
    # out here instead: R, Z = sigma(...), H~ = tanh(X W_xh + (R . H) W_hh + b_h), H = Z . H + (1 - Z) . H~.
    xs = np.array([[1.0, 0.0], [0.0, 1.0], [0.5, -0.5]])
    result = ex.explain_recurrent("gru", xs, hidden=2, seed=0).result
    w_ih, w_hh = np.array(result["params"]["weight_ih"]), np.array(result["params"]["weight_hh"])
    b_ih, b_hh = np.array(result["params"]["bias_ih"]), np.array(result["params"]["bias_hh"])

    def sigma(v):
        return 1 / (1 + np.exp(-v))

    h = np.zeros(2)
    for t, x in enumerate(xs):
        r = sigma(x @ w_ih[0:2].T + h @ w_hh[0:2].T + b_ih[0:2] + b_hh[0:2])
        z = sigma(x @ w_ih[2:4].T + h @ w_hh[2:4].T + b_ih[2:4] + b_hh[2:4])
        candidate = np.tanh(x @ w_ih[4:6].T + (r * h) @ w_hh[4:6].T + b_ih[4:6] + b_hh[4:6])
        h = z * h + (1 - z) * candidate
        np.testing.assert_allclose(result["hidden_states"][t], h, rtol=1e-12)


def test_cli_explain_conv_defaults_print_every_deck_example(capsys):
    code, out, _ = run_cli(capsys, "explain", "conv")
    assert code == 0
    for text in ("19", "56", "104", "0*0 + 0*1 + 1*2 + 2*3 = 8", "true convolution"):
        assert text in out


def test_cli_explain_conv_json_with_own_matrices(capsys):
    code, out, _ = run_cli(capsys, "explain", "conv", "--input", "1 2 3; 4 5 6; 7 8 9", "--kernel", "1 0; 0 -1",
                           "--stride", "1", "--json")
    assert code == 0
    # by hand: 1-5, 2-6 / 4-8, 5-9
    assert json.loads(out)["result"]["output"] == [[-4, -4], [-4, -4]]


@pytest.mark.parametrize("argv", [
    ["explain", "conv", "--input", "1 2; 3", "--kernel", "1"],
    ["explain", "conv", "--input", "1 2; 3 4", "--kernel", "a b"],
    ["explain", "conv", "--input", "1 2; 3 4", "--kernel", "1 1 1; 1 1 1; 1 1 1"],
    ["explain", "conv", "--input", "1 2; 3 4"],
    ["explain", "conv", "--example", "nope"],
    ["explain", "dropout", "--p", "1.5"],
    ["explain", "pool", "--input", "1 2; 3 4", "--stride", "x"],
])
def test_cli_explain_bad_input_is_one_line(capsys, argv):
    code, out, err = run_cli(capsys, *argv)
    assert code == 1 and err.startswith("cnnlab explain: error:") and err.count("\n") == 1


def test_fc_is_a_matrix_vector_product_checked_against_torch_linear(capsys):
    e = ex.explain_fc(**ex.FC_EXAMPLE)
    w, b = torch.tensor(ex.FC_EXAMPLE["weights"]), torch.tensor(ex.FC_EXAMPLE["bias"])
    want = torch.nn.functional.linear(torch.tensor(ex.FC_EXAMPLE["x"]).reshape(1, -1), w, b)[0].numpy()
    np.testing.assert_allclose(e.result["output"], want, rtol=1e-12)
    np.testing.assert_allclose(e.result["output"], [6.5, 7.7, -1.0], rtol=1e-12)  # by hand: 2 - 3.5 + 8; ...
    code, out, _ = run_cli(capsys, "explain", "fc")
    assert code == 0 and "y = W x + b" in out and "1x1" not in out and "pixel" not in out
    assert "y[0] = 0.5*4 + 0*5 + -0.5*7 + 1*8 + 0 = 6.5" in out
    code, out, _ = run_cli(capsys, "explain", "fc", "--input", "1 2 3", "--weights", "1 0 -1; 2 2 2", "--bias", "0.5 -1",
                           "--json")
    assert code == 0 and json.loads(out)["result"]["output"] == [-1.5, 11.0]
    code, _, err = run_cli(capsys, "explain", "fc", "--input", "1 2 3", "--weights", "1 0; 2 2")
    assert code == 1 and "3 columns" in err


def test_two_channel_conv_labels_each_channels_input_kernel_and_the_flip(capsys):
    code, out, _ = run_cli(capsys, "explain", "conv", "--example", "channels")
    assert code == 0
    assert "cross-correlation, the kernel is NOT flipped" in out and "PyTorch" in out
    for c in (0, 1):
        assert f"channel {c}: input x[{c}] and kernel w[{c}]" in out
        assert f"turned kernel w[{c}] (for input x[{c}])" in out
    # each channel's window sum is labelled with the pair it comes from; channel 1: 1*1 + 2*2 + 4*3 + 5*4
    assert "channel 1 (x[1] * w[1]): 1*1 + 2*2 + 4*3 + 5*4 = 37" in out
    lines = out.splitlines()
    first = lines.index("channel 1: input x[1] and kernel w[1] (w[1] slides over x[1] only):")
    assert lines[first + 2].split() == ["1", "2", "3", "1", "2"]  # x[1]'s first row beside w[1]'s first row
    x, k = ex.CONV_EXAMPLES["channels"]["x"], ex.CONV_EXAMPLES["channels"]["kernel"]
    want = torch.nn.functional.conv2d(torch.tensor(x)[None], torch.tensor(k)[None])[0, 0].numpy()
    assert "56  72" in out and want.tolist() == [[56, 72], [104, 120]]


def test_bn_shift_and_lrn_beta_are_separate_options_and_beta_warns(capsys):
    code, out, _ = run_cli(capsys, "explain", "bn", "--bn-shift", "3", "--json")
    shifted = np.array(json.loads(out)["result"]["output"])
    code, out, _ = run_cli(capsys, "explain", "bn", "--json")
    plain = np.array(json.loads(out)["result"]["output"])
    np.testing.assert_allclose(shifted - plain, 3.0, rtol=1e-12)
    code, out, _ = run_cli(capsys, "explain", "lrn", "--lrn-beta", "0.5", "--json")
    assert json.loads(out)["result"]["output"][2] == pytest.approx(30 / (2 + 1e-4 * 5500) ** 0.5)
    code, out, err = run_cli(capsys, "explain", "lrn", "--beta", "0.5", "--json")
    assert code == 0 and "--beta is deprecated" in err and "--lrn-beta" in err
    assert json.loads(out)["result"]["output"][2] == pytest.approx(30 / (2 + 1e-4 * 5500) ** 0.5)
    code, out, err = run_cli(capsys, "explain", "bn", "--beta", "3", "--json")
    assert "--bn-shift" in err and np.allclose(np.array(json.loads(out)["result"]["output"]) - plain, 3.0)
    code, _, err = run_cli(capsys, "explain", "conv", "--beta", "1")
    assert code == 1 and "--bn-shift" in err and "--lrn-beta" in err
    code, _, err = run_cli(capsys, "explain", "bn", "--beta", "1", "--bn-shift", "2")
    assert code == 1 and "--bn-shift only" in err
