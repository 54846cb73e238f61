"""RNN, LSTM and GRU cells with BPTT against torch's nn.RNN / nn.LSTM / nn.GRU, and against the decks' equations."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from cnnlab.reference.recurrent import init_params, run_sequence, run_sequence_backward

STEPS, BATCH, INPUTS, HIDDEN = 5, 3, 4, 6


def _torch_layer(kind: str, params: dict[str, np.ndarray]) -> torch.nn.Module:
    layer = {"rnn": torch.nn.RNN, "lstm": torch.nn.LSTM, "gru": torch.nn.GRU}[kind](INPUTS, HIDDEN).double()
    layer.load_state_dict({f"{name}_l0": torch.tensor(value) for name, value in params.items()})
    return layer


@pytest.mark.parametrize("kind", ["rnn", "lstm", "gru"])
def test_sequence_and_bptt_match_torch(kind):
    rng = np.random.default_rng(0)
    params = init_params(kind, INPUTS, HIDDEN, rng)
    xs = rng.standard_normal((STEPS, BATCH, INPUTS))
    h0 = rng.standard_normal((BATCH, HIDDEN))
    c0 = rng.standard_normal((BATCH, HIDDEN))
    grad_outputs = rng.standard_normal((STEPS, BATCH, HIDDEN))
    grad_h_final = rng.standard_normal((BATCH, HIDDEN))

    layer = _torch_layer(kind, params)
    x_t = torch.tensor(xs, requires_grad=True)
    h0_t = torch.tensor(h0[None], requires_grad=True)
    c0_t = torch.tensor(c0[None], requires_grad=True)
    out_t, state_t = layer(x_t, (h0_t, c0_t) if kind == "lstm" else h0_t)
    h_final_t = state_t[0] if kind == "lstm" else state_t
    loss = (out_t * torch.tensor(grad_outputs)).sum() + (h_final_t[0] * torch.tensor(grad_h_final)).sum()
    loss.backward()

    # torch's GRU resets after the hidden product; the same option makes ours comparable.
    outputs, final, run = run_sequence(kind, xs, params, h0, c0, reset_after=True)
    np.testing.assert_allclose(outputs, out_t.detach().numpy(), rtol=1e-10, atol=1e-12)
    grad_final = (grad_h_final, np.zeros_like(grad_h_final)) if kind == "lstm" else (grad_h_final,)
    dxs, initial, grads = run_sequence_backward(grad_outputs, run, params, grad_final)
    np.testing.assert_allclose(dxs, x_t.grad.numpy(), rtol=1e-9, atol=1e-11)
    np.testing.assert_allclose(initial[0], h0_t.grad.numpy()[0], rtol=1e-9, atol=1e-11)
    if kind == "lstm":
        np.testing.assert_allclose(initial[1], c0_t.grad.numpy()[0], rtol=1e-9, atol=1e-11)
    for name, value in grads.items():
        np.testing.assert_allclose(value, getattr(layer, f"{name}_l0").grad.numpy(), rtol=1e-9, atol=1e-11)


def _sig(v: float) -> float:
    return 1 / (1 + math.exp(-v))


def test_gru_follows_the_decks_equations_by_hand():
    # One input, one hidden unit: the decks' equations written out with scalars.
    p = {"weight_ih": np.array([[0.5], [-0.3], [0.8]]), "weight_hh": np.array([[0.2], [0.4], [-0.6]]),
         "bias_ih": np.array([0.1, 0.0, -0.2]), "bias_hh": np.array([0.05, 0.1, 0.3])}
    x, h = 1.5, -0.7
    r = _sig(x * 0.5 + h * 0.2 + 0.1 + 0.05)
    z = _sig(x * -0.3 + h * 0.4 + 0.0 + 0.1)
    candidate = math.tanh(x * 0.8 + (r * h) * -0.6 + (-0.2 + 0.3))  # H~ = tanh(X W_xh + (R.H) W_hh + b_h)
    expected = z * h + (1 - z) * candidate
    outputs, _, _ = run_sequence("gru", np.array([[[x]]]), p, np.array([[h]]))
    assert outputs[0, 0, 0] == pytest.approx(expected, rel=1e-12)
    torch_form = math.tanh(x * 0.8 - 0.2 + r * (h * -0.6 + 0.3))
    outputs_after, _, _ = run_sequence("gru", np.array([[[x]]]), p, np.array([[h]]), reset_after=True)
    assert outputs_after[0, 0, 0] == pytest.approx(z * h + (1 - z) * torch_form, rel=1e-12)


def test_lstm_follows_the_decks_equations_by_hand():
    # Gate rows in torch's order i, f, g (candidate C~), o.
    p = {"weight_ih": np.array([[0.3], [0.5], [-0.4], [0.9]]), "weight_hh": np.array([[0.1], [-0.2], [0.6], [0.3]]),
         "bias_ih": np.array([0.0, 1.0, 0.1, -0.1]), "bias_hh": np.zeros(4)}
    x, h, c = 0.8, 0.2, -0.5
    i = _sig(0.3 * x + 0.1 * h)
    f = _sig(0.5 * x - 0.2 * h + 1.0)
    candidate = math.tanh(-0.4 * x + 0.6 * h + 0.1)
    o = _sig(0.9 * x + 0.3 * h - 0.1)
    c_new = f * c + i * candidate
    outputs, (h_final, c_final), _ = run_sequence("lstm", np.array([[[x]]]), p, np.array([[h]]), np.array([[c]]))
    assert c_final[0, 0] == pytest.approx(c_new, rel=1e-12)
    assert h_final[0, 0] == pytest.approx(o * math.tanh(c_new), rel=1e-12)


def test_gru_decks_form_gradient_matches_finite_differences():
    rng = np.random.default_rng(1)
    params = init_params("gru", 2, 3, rng)
    xs = rng.standard_normal((3, 2, 2))
    weights = rng.standard_normal((3, 2, 3))

    def loss(p):
        return (run_sequence("gru", xs, p)[0] * weights).sum()

    _, _, run = run_sequence("gru", xs, params)
    _, _, grads = run_sequence_backward(weights, run, params)
    for name, value in params.items():
        numeric = np.zeros_like(value)
        for index in np.ndindex(value.shape):
            keep = value[index]
            value[index] = keep + 1e-6
            up = loss(params)
            value[index] = keep - 1e-6
            down = loss(params)
            value[index] = keep
            numeric[index] = (up - down) / 2e-6
        np.testing.assert_allclose(grads[name], numeric, atol=1e-8)


def test_unknown_cell_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown recurrent cell"):
        run_sequence("transformer", np.zeros((1, 1, 1)), {})
