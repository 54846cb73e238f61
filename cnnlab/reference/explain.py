"""Step-by-step explanations of what each layer computes, number by number, for small matrices.

Each ``explain_*`` function returns an :class:`Explanation`: lines of text for a person and the numbers
(``result``) for a program. The defaults are the lecture decks' worked examples (the d2l.ai examples
they draw on): the 3x3 input 0..8 with the 2x2 kernel 0..3, the same with padding 1 and with strides
(3, 2), two input channels, the vertical-edge filter on a 6x6 image of 10s and 0s, 2x2 max-pooling,
the 1x1 convolution that is a fully connected layer per pixel.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from . import functional as F
from ..output_size import output_hw
from .conv import pair


@dataclass
class Explanation:
    title: str
    lines: list[str] = field(default_factory=list)
    result: dict = field(default_factory=dict)

    def text(self) -> str:
        return "\n".join([self.title, "=" * len(self.title), *self.lines])

    def as_dict(self) -> dict:
        return {"title": self.title, "steps": self.lines,
                "result": {k: (v.tolist() if isinstance(v, np.ndarray) else v) for k, v in self.result.items()}}


# --- formatting -----------------------------------------------------------------------------------

def num(value: float) -> str:
    """12.0 -> '12', 0.25 -> '0.25', -0.333333 -> '-0.3333'."""
    value = float(value)
    if value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return f"{value:.4f}".rstrip("0").rstrip(".")


def grid(matrix: np.ndarray, indent: str = "  ") -> list[str]:
    """A 2-D array as aligned rows."""
    matrix = np.atleast_2d(matrix)
    cells = [[num(v) for v in row] for row in matrix]
    width = max(len(c) for row in cells for c in row)
    return [indent + " ".join(c.rjust(width) for c in row) for row in cells]


def parse_matrix(text: str) -> np.ndarray:
    """'0 1 2; 3 4 5' -> 2 x 3; channels separated by '|': '0 1; 2 3 | 4 5; 6 7' -> 2 x 2 x 2."""
    try:
        channels = [[[float(v) for v in row.replace(",", " ").split()] for row in part.split(";") if row.strip()]
                    for part in text.split("|")]
    except ValueError:
        raise ValueError(f"cannot read '{text}' as numbers: write rows separated by ';', e.g. '0 1 2; 3 4 5'") from None
    for rows in channels:
        if not rows or any(len(r) != len(rows[0]) for r in rows) or len(rows) != len(channels[0]) \
                or len(rows[0]) != len(channels[0][0]) or not rows[0]:
            raise ValueError(f"'{text}' is not rectangular: every row (and channel) needs the same length")
    array = np.array(channels)
    return array[0] if len(channels) == 1 else array


def _side_by_side(left: list[str], right: list[str], left_title: str, right_title: str) -> list[str]:
    """Two grids printed next to each other under their titles."""
    width = max(len(left_title), *(len(r) for r in left)) + 4
    rows = max(len(left), len(right))
    left, right = left + [""] * (rows - len(left)), right + [""] * (rows - len(right))
    return [f"  {left_title.ljust(width - 2)}{right_title}"] + [f"{a.ljust(width)}{b}" for a, b in zip(left, right)]


def _as_channels(array: np.ndarray) -> np.ndarray:
    return array[None] if array.ndim == 2 else array


# --- convolution ----------------------------------------------------------------------------------

def explain_conv(x: np.ndarray, kernel: np.ndarray, stride=1, padding=0, title: str = "convolution") -> Explanation:
    """Every window of a cross-correlation, its products and their sum; the output-size formula filled
    in; and the true convolution (kernel turned 180 degrees) beside it."""
    x, kernel = _as_channels(np.asarray(x, float)), _as_channels(np.asarray(kernel, float))
    if x.shape[0] != kernel.shape[0]:
        raise ValueError(f"the input has {x.shape[0]} channels but the kernel {kernel.shape[0]}: they must match")
    (sh, sw), (ph, pw) = pair(stride), pair(padding)
    channels, (n_h, n_w), (k_h, k_w) = x.shape[0], x.shape[1:], kernel.shape[1:]
    if min(sh, sw) < 1 or min(ph, pw) < 0:
        raise ValueError("stride must be at least 1 and padding at least 0")
    o_h, o_w = output_hw((n_h, n_w), (k_h, k_w), (sh, sw), (ph, pw))
    out = F.conv2d_sliding(x[None], kernel[None], None, (sh, sw), (ph, pw))[0, 0]
    e = Explanation(f"{title}: input {channels}x{n_h}x{n_w}, kernel {channels}x{k_h}x{k_w}, "
                    f"stride ({sh}, {sw}), padding ({ph}, {pw})")
    e.lines.append("computed as PyTorch's conv2d computes it: a cross-correlation, the kernel is NOT flipped")
    for c in range(channels):
        if channels > 1:
            e.lines += [f"channel {c}: input x[{c}] and kernel w[{c}] (w[{c}] slides over x[{c}] only):",
                        *_side_by_side(grid(x[c]), grid(kernel[c]), f"input x[{c}]", f"kernel w[{c}]")]
        else:
            e.lines += ["input:", *grid(x[c]), "kernel:", *grid(kernel[c])]
    padded = np.pad(x, ((0, 0), (ph, ph), (pw, pw)))
    if ph or pw:
        e.lines.append(f"zero padding: {ph} row(s) above and below, {pw} column(s) left and right")
        for c in range(channels):
            e.lines += [f"padded input{f' (channel {c})' if channels > 1 else ''}:", *grid(padded[c])]
    e.lines += [
        "output size: floor((n + 2p - k) / s) + 1 per axis",
        f"  height: floor(({n_h} + 2*{ph} - {k_h}) / {sh}) + 1 = {o_h}",
        f"  width:  floor(({n_w} + 2*{pw} - {k_w}) / {sw}) + 1 = {o_w}",
    ]
    if sh == sw == 1:
        e.lines.append(f"  (with stride 1 this is the decks' (n_h - k_h + p_h + 1) x (n_w - k_w + p_w + 1) "
                       f"= ({n_h} - {k_h} + {2 * ph} + 1) x ({n_w} - {k_w} + {2 * pw} + 1) = {o_h} x {o_w}, p = total padding)")
    e.lines.append("each output = sum over the window of input * kernel (the kernel is NOT flipped):")
    for i in range(o_h):
        for j in range(o_w):
            top, left = i * sh, j * sw
            parts = []
            for c in range(channels):
                window = padded[c, top:top + k_h, left:left + k_w]
                terms = " + ".join(f"{num(a)}*{num(b)}" for a, b in zip(window.ravel(), kernel[c].ravel()))
                parts.append((terms, (window * kernel[c]).sum()))
            where = f"out[{i},{j}] window rows {top}..{top + k_h - 1}, cols {left}..{left + k_w - 1}"
            if channels == 1:
                e.lines.append(f"  {where}: {parts[0][0]} = {num(out[i, j])}")
            else:
                e.lines.append(f"  {where}:")
                for c, (terms, subtotal) in enumerate(parts):
                    e.lines.append(f"    channel {c} (x[{c}] * w[{c}]): {terms} = {num(subtotal)}")
                e.lines.append(f"    sum over channels: {' + '.join(num(s) for _, s in parts)} = {num(out[i, j])}")
    flipped = kernel[:, ::-1, ::-1]
    true_conv = F.true_convolution(x[None], kernel[None], (sh, sw), (ph, pw))[0, 0]
    e.lines += ["output (cross-correlation, what frameworks call convolution):", *grid(out),
                "true convolution (signal processing) turns the kernel 180 degrees first; the turned kernel"
                + (" of each channel:" if channels > 1 else ":")]
    for c in range(channels):
        if channels > 1:
            e.lines.append(f"  turned kernel w[{c}] (for input x[{c}]):")
            e.lines += grid(flipped[c], "    ")
        else:
            e.lines += grid(flipped[c])
    e.lines += ["true convolution output:", *grid(true_conv)]
    same = np.array_equal(out, true_conv)
    e.lines.append("the two agree here (the kernel is symmetric under a half turn)" if same else
                   "they differ: a learned kernel simply learns the turned weights, so frameworks skip the flip")
    e.result = {"output": out, "true_convolution": true_conv, "output_size": [o_h, o_w]}
    return e


_RAMP = np.arange(9.0).reshape(3, 3)
_K = np.arange(4.0).reshape(2, 2)
_EDGE_IMAGE = np.tile([10.0, 10, 10, 0, 0, 0], (6, 1))
_VERTICAL_EDGE = np.tile([1.0, 0, -1], (3, 1))

CONV_EXAMPLES = {
    "basic": dict(x=_RAMP, kernel=_K, title="the decks' first example"),
    "padding": dict(x=_RAMP, kernel=_K, padding=1, title="padding 1"),
    "stride": dict(x=_RAMP, kernel=_K, padding=1, stride=(3, 2), title="padding 1, strides (3, 2)"),
    "channels": dict(x=np.stack([_RAMP, _RAMP + 1]), kernel=np.stack([_K, _K + 1]), title="two input channels"),
    "one-by-one": dict(x=np.stack([np.arange(1.0, 10).reshape(3, 3), np.arange(1.0, 10).reshape(3, 3).T,
                                   np.arange(9.0, 0, -1).reshape(3, 3)]),
                       kernel=np.array([0.5, 0.3, 0.2]).reshape(3, 1, 1),
                       title="the decks' 1x1 convolution: a fully connected layer over the channels at every pixel"),
    "edge": dict(x=_EDGE_IMAGE, kernel=_VERTICAL_EDGE, title="vertical-edge filter on a 6x6 image of 10s and 0s"),
}


# --- pooling --------------------------------------------------------------------------------------

def explain_pool(x: np.ndarray, size=2, stride=None, mode: str = "max", title: str = "pooling") -> Explanation:
    """Each window and its maximum (or mean); pooling runs per channel, so channels stay the same."""
    x = np.asarray(x, float)
    if x.ndim != 2:
        raise ValueError("explain pool takes one 2-D matrix")
    if mode not in ("max", "avg"):
        raise ValueError(f"pooling mode must be max or avg, not '{mode}'")
    (k_h, k_w) = pair(size)
    (sh, sw) = pair(stride if stride is not None else size)
    o_h, o_w = output_hw(x.shape, (k_h, k_w), (sh, sw))
    pool = F.max_pool2d if mode == "max" else F.avg_pool2d
    out = pool(x[None, None], (k_h, k_w), (sh, sw))[0, 0]
    e = Explanation(f"{title}: {mode} pooling {k_h}x{k_w}, stride ({sh}, {sw}), on a {x.shape[0]}x{x.shape[1]} input")
    e.lines += ["input:", *grid(x), "output size: floor((n - k) / s) + 1 per axis",
                f"  height: floor(({x.shape[0]} - {k_h}) / {sh}) + 1 = {o_h}",
                f"  width:  floor(({x.shape[1]} - {k_w}) / {sw}) + 1 = {o_w}"]
    # Krizhevsky et al. 2012, section 3.4: pooling overlaps when the stride s is smaller than the window z.
    if sh < k_h or sw < k_w:
        e.lines.append(f"overlapping pooling: stride ({sh}, {sw}) < window ({k_h}, {k_w}), so neighbouring windows "
                       f"share input values (AlexNet pools 3x3 windows at stride 2)")
    elif sh == k_h and sw == k_w:
        e.lines.append("stride = window: the windows tile the input without overlapping")
    else:
        e.lines.append(f"stride ({sh}, {sw}) > window ({k_h}, {k_w}): some input values fall between windows")
    for i in range(o_h):
        for j in range(o_w):
            window = x[i * sh:i * sh + k_h, j * sw:j * sw + k_w].ravel()
            values = ", ".join(num(v) for v in window)
            formula = f"max({values})" if mode == "max" else f"({' + '.join(num(v) for v in window)}) / {window.size}"
            e.lines.append(f"  out[{i},{j}] = {formula} = {num(out[i, j])}")
    e.lines += ["output:", *grid(out), "no weights are learned, and each channel is pooled on its own"]
    e.result = {"output": out, "output_size": [o_h, o_w]}
    return e


POOL_EXAMPLES = {
    "ramp": dict(x=_RAMP, size=2, stride=1, title="2x2 max-pooling, stride 1, on the 3x3 input 0..8"),
    "stride2": dict(x=np.array([[1.0, 1, 2, 4], [5, 6, 7, 8], [3, 2, 1, 0], [1, 2, 3, 4]]), size=2, stride=2,
                    title="2x2 max-pooling with stride 2"),
}


# --- fully connected ------------------------------------------------------------------------------

def explain_fc(x: np.ndarray, weights: np.ndarray, bias: np.ndarray | None = None,
               title: str = "fully connected") -> Explanation:
    """A fully connected layer, y = W x + b: every output is one row of W times the input vector, plus
    its bias. An input with more than one axis (a feature map) is flattened first, row by row, as a
    network flattens its last feature maps before its classifier."""
    x_in = np.asarray(x, float)
    x = x_in.reshape(-1)
    weights = np.atleast_2d(np.asarray(weights, float))  # outputs x inputs, torch's nn.Linear layout
    if weights.shape[1] != x.size:
        raise ValueError(f"the input has {x.size} values, so W needs {x.size} columns (one per input); "
                         f"it has {weights.shape[1]}")
    bias = np.zeros(weights.shape[0]) if bias is None else np.asarray(bias, float).reshape(-1)
    if bias.size != weights.shape[0]:
        raise ValueError(f"W has {weights.shape[0]} rows (outputs), so b needs {weights.shape[0]} values, "
                         f"got {bias.size}")
    out = weights @ x + bias
    m, n = weights.shape
    e = Explanation(f"{title}: y = W x + b, {n} input(s) -> {m} output(s)")
    if x_in.ndim > 1:
        e.lines += [f"input {'x'.join(map(str, x_in.shape))} flattened row by row into x ({n} values)"]
    e.lines += [f"W ({m} x {n}: one row per output, one column per input):", *grid(weights),
                f"x ({n} values): " + ", ".join(num(v) for v in x),
                f"b ({m} values): " + ", ".join(num(v) for v in bias),
                "y_i = sum_j W[i,j] * x[j] + b[i]:"]
    for i in range(m):
        terms = " + ".join(f"{num(w)}*{num(v)}" for w, v in zip(weights[i], x))
        e.lines.append(f"  y[{i}] = {terms} + {num(bias[i])} = {num(out[i])}")
    e.lines += ["y = " + ", ".join(num(v) for v in out),
                f"parameters: {m}*{n} weights + {m} biases = {m * n + m}"]
    e.result = {"output": out}
    return e


# The 2x2 max-pooled output 4 5 7 8 of the decks' pooling example, flattened, into three outputs.
FC_EXAMPLE = dict(x=np.array([[4.0, 5], [7, 8]]),
                  weights=np.array([[0.5, 0, -0.5, 1], [0.1, 0.2, 0.3, 0.4], [-1, 1, 0, 0]]),
                  bias=np.array([0.0, 1, -2]), title="a fully connected layer on the pooled 2x2 output")


# --- batch norm, LRN, dropout ---------------------------------------------------------------------

def explain_bn(x: np.ndarray, gamma=None, beta=None, eps: float = 1e-5) -> Explanation:
    """Batch normalisation in training: per feature, subtract the batch mean, divide by the batch std."""
    x = np.atleast_2d(np.asarray(x, float))  # N x features
    if x.shape[0] < 2:
        raise ValueError("batch norm needs a batch of at least two rows")
    features = x.shape[1]
    gamma = np.ones(features) if gamma is None else np.broadcast_to(np.asarray(gamma, float), (features,))
    beta = np.zeros(features) if beta is None else np.broadcast_to(np.asarray(beta, float), (features,))
    running_mean, running_var = np.zeros(features), np.ones(features)
    out = F.batch_norm(x, running_mean, running_var, gamma, beta, True, 0.1, eps)
    e = Explanation(f"batch normalisation (training): a batch of {x.shape[0]}, {features} feature(s)")
    e.lines += ["input (rows: examples, columns: features):", *grid(x)]
    for f in range(features):
        col = x[:, f]
        mean, var = col.mean(), col.var()
        e.lines += [
            f"feature {f}:",
            f"  mean = ({' + '.join(num(v) for v in col)}) / {len(col)} = {num(mean)}",
            f"  variance = mean of squared deviations = ({' + '.join(num((v - mean) ** 2) for v in col)})"
            f" / {len(col)} = {num(var)}",
            f"  x_hat = (x - {num(mean)}) / sqrt({num(var)} + {eps:g}) = "
            + ", ".join(num(v) for v in (col - mean) / math.sqrt(var + eps)),
            f"  y = {num(gamma[f])} * x_hat + {num(beta[f])} = " + ", ".join(num(v) for v in out[:, f]),
        ]
    e.lines += ["output:", *grid(out),
                "the running averages (momentum 0.1) move toward the batch's mean and unbiased variance:",
                "  running_mean = " + ", ".join(num(v) for v in running_mean),
                "  running_var  = " + ", ".join(num(v) for v in running_var),
                "at inference the running averages replace the batch statistics"]
    e.result = {"output": out, "running_mean": running_mean, "running_var": running_var}
    return e


def explain_lrn(a: np.ndarray, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0) -> Explanation:
    """AlexNet's local response normalisation across channels at one pixel."""
    a = np.asarray(a, float).reshape(-1)
    out = F.local_response_norm(a.reshape(1, -1, 1, 1), size, alpha, beta, k).reshape(-1)
    e = Explanation(f"local response normalisation (AlexNet): {len(a)} channels at one pixel, n={size}, k={num(k)}, "
                    f"alpha={alpha:g}, beta={num(beta)}")
    e.lines += ["b_c = a_c / (k + alpha * sum of a_j^2 over the n channels around c) ^ beta",
                "activities: " + ", ".join(num(v) for v in a)]
    for c in range(len(a)):
        lo, hi = max(0, c - size // 2), min(len(a) - 1, c + (size - 1) // 2)
        squares = " + ".join(f"{num(v)}^2" for v in a[lo:hi + 1])
        total = float((a[lo:hi + 1] ** 2).sum())
        e.lines.append(f"  b_{c} = {num(a[c])} / ({num(k)} + {alpha:g} * ({squares} = {num(total)})) ^ {num(beta)}"
                       f" = {num(out[c])}")
    e.result = {"output": out}
    return e


def explain_dropout(x: np.ndarray, p: float = 0.5, seed: int = 0) -> Explanation:
    """Inverted dropout: each unit kept with probability 1 - p and scaled by 1 / (1 - p)."""
    x = np.asarray(x, float)
    out, mask = F.dropout(x, p, True, np.random.default_rng(seed))
    e = Explanation(f"dropout (inverted), p = {num(p)}, seed {seed}")
    e.lines += ["input:", *grid(x), f"mask: 0 = dropped, {num(1 / (1 - p))} = kept and scaled by 1/(1-p):",
                *grid(mask), "output = input * mask:", *grid(out),
                "the expected value of every unit is unchanged, so inference uses the input as it is"]
    e.result = {"output": out, "mask": mask}
    return e


# --- recurrent cells ------------------------------------------------------------------------------

def _recurrent_params(kind: str, inputs: int, hidden: int, seed: int) -> dict[str, np.ndarray]:
    from .recurrent import init_params

    return {k: np.round(v, 2) for k, v in init_params(kind, inputs, hidden, np.random.default_rng(seed)).items()}


def explain_recurrent(kind: str, xs: np.ndarray, hidden: int = 2, seed: int = 0,
                      params: dict[str, np.ndarray] | None = None) -> Explanation:
    """Each time step of an RNN, LSTM or GRU cell with the decks' gate equations and every gate's value."""
    from .activation import sigmoid

    xs = np.atleast_2d(np.asarray(xs, float))  # T x inputs
    p = params or _recurrent_params(kind, xs.shape[1], hidden, seed)
    hidden = p["weight_hh"].shape[1]
    equations = {
        "rnn": ["H_t = tanh(X_t W_xh + H_{t-1} W_hh + b_h)"],
        "lstm": ["I_t = sigma(X_t W_xi + H_{t-1} W_hi + b_i)   input gate",
                 "F_t = sigma(X_t W_xf + H_{t-1} W_hf + b_f)   forget gate",
                 "O_t = sigma(X_t W_xo + H_{t-1} W_ho + b_o)   output gate",
                 "C~_t = tanh(X_t W_xc + H_{t-1} W_hc + b_c)   candidate memory",
                 "C_t = F_t . C_{t-1} + I_t . C~_t,   H_t = O_t . tanh(C_t)"],
        "gru": ["R_t = sigma(X_t W_xr + H_{t-1} W_hr + b_r)   reset gate",
                "Z_t = sigma(X_t W_xz + H_{t-1} W_hz + b_z)   update gate",
                "H~_t = tanh(X_t W_xh + (R_t . H_{t-1}) W_hh + b_h)   candidate state",
                "H_t = Z_t . H_{t-1} + (1 - Z_t) . H~_t"],
    }[kind]
    e = Explanation(f"{kind.upper()} cell: {xs.shape[0]} step(s), {xs.shape[1]} input(s), {hidden} hidden unit(s)")
    e.lines += [*equations, "weights (torch layout: rows are gates*hidden, X W_x* = x @ weight_ih.T; "
                f"gate order {'-' if kind == 'rnn' else 'i, f, c~, o' if kind == 'lstm' else 'r, z, h~'}):"]
    for name, value in p.items():
        e.lines += [f"  {name}:", *grid(value, "    ")]
    h, c = np.zeros(hidden), np.zeros(hidden)
    states = []
    for t, x in enumerate(xs):
        e.lines.append(f"step {t}: X_t = [{', '.join(num(v) for v in x)}], H_(t-1) = [{', '.join(num(v) for v in h)}]")
        pre_x = p["weight_ih"] @ x + p["bias_ih"]
        if kind == "rnn":
            h = np.tanh(pre_x + p["weight_hh"] @ h + p["bias_hh"])
        elif kind == "lstm":
            i, f, g, o = np.split(pre_x + p["weight_hh"] @ h + p["bias_hh"], 4)
            i, f, g, o = sigmoid(i), sigmoid(f), np.tanh(g), sigmoid(o)
            c = f * c + i * g
            h = o * np.tanh(c)
            for label, v in (("I_t", i), ("F_t", f), ("O_t", o), ("C~_t", g), ("C_t", c)):
                e.lines.append(f"  {label} = [{', '.join(num(u) for u in v)}]")
        else:
            xr, xz, xn = np.split(pre_x, 3)
            w_hh, b_hh = p["weight_hh"], p["bias_hh"]
            r = sigmoid(xr + w_hh[:hidden] @ h + b_hh[:hidden])
            z = sigmoid(xz + w_hh[hidden:2 * hidden] @ h + b_hh[hidden:2 * hidden])
            candidate = np.tanh(xn + w_hh[2 * hidden:] @ (r * h) + b_hh[2 * hidden:])
            h = z * h + (1 - z) * candidate
            for label, v in (("R_t", r), ("Z_t", z), ("H~_t", candidate)):
                e.lines.append(f"  {label} = [{', '.join(num(u) for u in v)}]")
        e.lines.append(f"  H_t = [{', '.join(num(u) for u in h)}]")
        states.append(h.copy())
    e.result = {"hidden_states": np.array(states), "params": {k: v.tolist() for k, v in p.items()}}
    if kind == "lstm":
        e.result["cell_state"] = c
    return e
