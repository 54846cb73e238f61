"""RNN, LSTM and GRU cells in NumPy with back-propagation through time.

The gate equations are the decks' (row-vector convention, X_t is N x inputs):

* RNN:  H_t = tanh(X_t W_xh + H_{t-1} W_hh + b_h)                       (Elman, 1990)
* LSTM: I_t, F_t, O_t = sigma(X_t W_x* + H_{t-1} W_h* + b_*),
        C~_t = tanh(X_t W_xc + H_{t-1} W_hc + b_c),
        C_t = F_t . C_{t-1} + I_t . C~_t,  H_t = O_t . tanh(C_t)        (Hochreiter & Schmidhuber, 1997;
                                                                          forget gate: Gers et al., 2000)
* GRU:  R_t, Z_t = sigma(X_t W_x* + H_{t-1} W_h* + b_*),
        H~_t = tanh(X_t W_xh + (R_t . H_{t-1}) W_hh + b_h),
        H_t = Z_t . H_{t-1} + (1 - Z_t) . H~_t                          (Cho et al., 2014)

Parameters carry torch's names and layouts (``weight_ih``: gates*hidden x inputs, ``weight_hh``,
``bias_ih``, ``bias_hh``; gate order i, f, g, o for the LSTM and r, z, n for the GRU), so
``X W_x*`` is ``x @ weight_ih.T``. torch's GRU applies the reset gate *after* the hidden matrix
product (``r . (H W_hh + b_hh)``, the cuDNN form); ``reset_after=True`` selects that form, the
default follows the decks and Cho et al.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .activation import sigmoid

Params = dict[str, np.ndarray]
GATES = {"rnn": 1, "lstm": 4, "gru": 3}


def init_params(kind: str, input_size: int, hidden_size: int, rng: np.random.Generator,
                dtype=np.float64) -> Params:
    """Uniform(-1/sqrt(H), 1/sqrt(H)) for every weight and bias, torch's initialisation."""
    if kind not in GATES:
        raise ValueError(f"unknown recurrent cell '{kind}'; known: {', '.join(GATES)}")
    bound = 1 / np.sqrt(hidden_size)
    rows = GATES[kind] * hidden_size
    shapes = {"weight_ih": (rows, input_size), "weight_hh": (rows, hidden_size), "bias_ih": (rows,), "bias_hh": (rows,)}
    return {name: rng.uniform(-bound, bound, shape).astype(dtype) for name, shape in shapes.items()}


# --- RNN -------------------------------------------------------------------------------------------

def rnn_cell(x: np.ndarray, h: np.ndarray, p: Params) -> tuple[np.ndarray, tuple]:
    h_new = np.tanh(x @ p["weight_ih"].T + p["bias_ih"] + h @ p["weight_hh"].T + p["bias_hh"])
    return h_new, (x, h, h_new)


def rnn_cell_backward(dh_new: np.ndarray, cache: tuple, p: Params) -> tuple[np.ndarray, np.ndarray, Params]:
    x, h, h_new = cache
    da = dh_new * (1 - h_new ** 2)  # through tanh
    grads = {"weight_ih": da.T @ x, "weight_hh": da.T @ h, "bias_ih": da.sum(0), "bias_hh": da.sum(0)}
    return da @ p["weight_ih"], da @ p["weight_hh"], grads


# --- LSTM ------------------------------------------------------------------------------------------

def lstm_cell(x: np.ndarray, h: np.ndarray, c: np.ndarray, p: Params) -> tuple[np.ndarray, np.ndarray, tuple]:
    pre = x @ p["weight_ih"].T + p["bias_ih"] + h @ p["weight_hh"].T + p["bias_hh"]  # N x 4H
    ai, af, ag, ao = np.split(pre, 4, axis=1)
    i, f, g, o = sigmoid(ai), sigmoid(af), np.tanh(ag), sigmoid(ao)  # input, forget, candidate C~, output
    c_new = f * c + i * g
    tanh_c = np.tanh(c_new)
    h_new = o * tanh_c
    return h_new, c_new, (x, h, c, i, f, g, o, tanh_c)


def lstm_cell_backward(dh_new: np.ndarray, dc_new: np.ndarray, cache: tuple, p: Params
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray, Params]:
    x, h, c, i, f, g, o, tanh_c = cache
    dc = dc_new + dh_new * o * (1 - tanh_c ** 2)  # C_t reaches the loss directly and through H_t
    d_pre = np.concatenate([
        dc * g * i * (1 - i),            # input gate
        dc * c * f * (1 - f),            # forget gate
        dc * i * (1 - g ** 2),           # candidate
        dh_new * tanh_c * o * (1 - o),   # output gate
    ], axis=1)  # N x 4H
    grads = {"weight_ih": d_pre.T @ x, "weight_hh": d_pre.T @ h, "bias_ih": d_pre.sum(0), "bias_hh": d_pre.sum(0)}
    return d_pre @ p["weight_ih"], d_pre @ p["weight_hh"], dc * f, grads


# --- GRU -------------------------------------------------------------------------------------------

def gru_cell(x: np.ndarray, h: np.ndarray, p: Params, reset_after: bool = False) -> tuple[np.ndarray, tuple]:
    hidden = h.shape[1]
    xr, xz, xn = np.split(x @ p["weight_ih"].T + p["bias_ih"], 3, axis=1)
    w_hr_hz, w_hn = p["weight_hh"][:2 * hidden], p["weight_hh"][2 * hidden:]
    b_hr_hz, b_hn = p["bias_hh"][:2 * hidden], p["bias_hh"][2 * hidden:]
    hr, hz = np.split(h @ w_hr_hz.T + b_hr_hz, 2, axis=1)
    r, z = sigmoid(xr + hr), sigmoid(xz + hz)  # reset and update gates
    if reset_after:
        hn = h @ w_hn.T + b_hn
        n = np.tanh(xn + r * hn)
        reset_input = hn
    else:
        reset_input = r * h  # the decks' (R_t . H_{t-1}) W_hh
        n = np.tanh(xn + reset_input @ w_hn.T + b_hn)
    h_new = z * h + (1 - z) * n
    return h_new, (x, h, r, z, n, reset_input, reset_after)


def gru_cell_backward(dh_new: np.ndarray, cache: tuple, p: Params) -> tuple[np.ndarray, np.ndarray, Params]:
    x, h, r, z, n, reset_input, reset_after = cache
    hidden = h.shape[1]
    w_hr_hz, w_hn = p["weight_hh"][:2 * hidden], p["weight_hh"][2 * hidden:]
    dz = dh_new * (h - n)
    dn_pre = dh_new * (1 - z) * (1 - n ** 2)
    dh = dh_new * z
    if reset_after:
        dhn = dn_pre * r  # gradient of h W_hn^T + b_hn
        dr = dn_pre * reset_input
        d_hidden_n_weight = dhn.T @ h
        dh = dh + dhn @ w_hn
        d_hidden_n_bias = dhn.sum(0)
    else:
        d_reset_input = dn_pre @ w_hn  # gradient of R . H
        dr = d_reset_input * h
        dh = dh + d_reset_input * r
        d_hidden_n_weight = dn_pre.T @ reset_input
        d_hidden_n_bias = dn_pre.sum(0)
    dr_pre, dz_pre = dr * r * (1 - r), dz * z * (1 - z)
    d_gates = np.concatenate([dr_pre, dz_pre], axis=1)  # N x 2H, shared by input and hidden paths
    d_input = np.concatenate([d_gates, dn_pre], axis=1)  # N x 3H
    dh = dh + d_gates @ w_hr_hz
    grads = {
        "weight_ih": d_input.T @ x,
        "weight_hh": np.concatenate([d_gates.T @ h, d_hidden_n_weight], axis=0),
        "bias_ih": d_input.sum(0),
        "bias_hh": np.concatenate([d_gates.sum(0), d_hidden_n_bias]),
    }
    return d_input @ p["weight_ih"], dh, grads


# --- Sequences and back-propagation through time --------------------------------------------------

@dataclass
class SequenceRun:
    """What a forward pass over T steps keeps for BPTT."""

    kind: str
    caches: list = field(default_factory=list)
    reset_after: bool = False


def run_sequence(kind: str, xs: np.ndarray, p: Params, h0: np.ndarray | None = None, c0: np.ndarray | None = None,
                 reset_after: bool = False) -> tuple[np.ndarray, tuple[np.ndarray, ...], SequenceRun]:
    """Unroll a cell over xs (T x N x inputs); returns outputs T x N x H, the final state and the tape."""
    if kind not in GATES:
        raise ValueError(f"unknown recurrent cell '{kind}'; known: {', '.join(GATES)}")
    steps, batch, _ = xs.shape
    hidden = p["weight_hh"].shape[1]
    h = np.zeros((batch, hidden), xs.dtype) if h0 is None else h0
    c = np.zeros((batch, hidden), xs.dtype) if c0 is None else c0
    run = SequenceRun(kind, reset_after=reset_after)
    outputs = []
    for t in range(steps):
        if kind == "rnn":
            h, cache = rnn_cell(xs[t], h, p)
        elif kind == "lstm":
            h, c, cache = lstm_cell(xs[t], h, c, p)
        else:
            h, cache = gru_cell(xs[t], h, p, reset_after)
        run.caches.append(cache)
        outputs.append(h)
    final = (h, c) if kind == "lstm" else (h,)
    return np.stack(outputs), final, run


def run_sequence_backward(grad_outputs: np.ndarray, run: SequenceRun, p: Params,
                          grad_final: tuple[np.ndarray, ...] | None = None
                          ) -> tuple[np.ndarray, tuple[np.ndarray, ...], Params]:
    """BPTT: walk the steps backwards, carrying dL/dH (and dL/dC) from step t to t-1 and summing each
    step's parameter gradients, since every step shares the same weights.

    Returns ``(dxs, initial-state gradients, parameter gradients)``.
    """
    dh = np.zeros_like(grad_outputs[0]) if grad_final is None else grad_final[0].copy()
    dc = np.zeros_like(dh) if grad_final is None or len(grad_final) < 2 else grad_final[1].copy()
    total = {name: np.zeros_like(value) for name, value in p.items()}
    dxs = []
    for t in reversed(range(len(run.caches))):
        dh = dh + grad_outputs[t]
        if run.kind == "rnn":
            dx, dh, grads = rnn_cell_backward(dh, run.caches[t], p)
        elif run.kind == "lstm":
            dx, dh, dc, grads = lstm_cell_backward(dh, dc, run.caches[t], p)
        else:
            dx, dh, grads = gru_cell_backward(dh, run.caches[t], p)
        for name, g in grads.items():
            total[name] += g
        dxs.append(dx)
    initial = (dh, dc) if run.kind == "lstm" else (dh,)
    return np.stack(dxs[::-1]), initial, total
