"""Every op of the NumPy engine against torch in float64 (forward and gradients) and a numerical gradient."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as TF
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.reference import functional as F
from cnnlab.reference.optim import SGD, Adam

SETTINGS = settings(max_examples=25, deadline=None)
TOL = dict(rtol=1e-10, atol=1e-10)


def torch_run(fn, *arrays, grad_out_seed: int = 0):
    """Run a torch function on float64 copies; return its output and the input gradients for a random grad_out."""
    tensors = [torch.tensor(a, dtype=torch.float64, requires_grad=True) for a in arrays]
    out = fn(*tensors)
    grad_out = np.random.default_rng(grad_out_seed).standard_normal(tuple(out.shape))
    out.backward(torch.tensor(grad_out))
    return out.detach().numpy(), grad_out, [t.grad.numpy() for t in tensors]


def numerical_grad(f, x: np.ndarray, grad_out: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Central differences of sum(f(x) * grad_out), one coordinate at a time."""
    grad = np.zeros_like(x)
    flat, gflat = x.reshape(-1), grad.reshape(-1)
    for i in range(flat.size):
        keep = flat[i]
        flat[i] = keep + eps
        up = (f(x) * grad_out).sum()
        flat[i] = keep - eps
        down = (f(x) * grad_out).sum()
        flat[i] = keep
        gflat[i] = (up - down) / (2 * eps)
    return grad


@st.composite
def conv_cases(draw):
    groups = draw(st.integers(1, 3))
    cin, cout = groups * draw(st.integers(1, 2)), groups * draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 2))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 1))
    dh, dw = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    h = draw(st.integers(max(1, dh * (kh - 1) + 1 - 2 * ph), 9))
    w = draw(st.integers(max(1, dw * (kw - 1) + 1 - 2 * pw), 8))
    n = draw(st.integers(1, 3))
    return dict(shape=(n, cin, h, w), wshape=(cout, cin // groups, kh, kw), stride=(sh, sw), padding=(ph, pw),
                dilation=(dh, dw), groups=groups, seed=draw(st.integers(0, 2**16)))


@SETTINGS
@given(conv_cases())
def test_conv2d_matches_torch_forward_and_backward(case):
    rng = np.random.default_rng(case["seed"])
    x, w, b = rng.standard_normal(case["shape"]), rng.standard_normal(case["wshape"]), rng.standard_normal(case["wshape"][0])
    opts = dict(stride=case["stride"], padding=case["padding"], dilation=case["dilation"], groups=case["groups"])
    expected, grad_out, (dx_t, dw_t, db_t) = torch_run(lambda a, k, c: TF.conv2d(a, k, c, **opts), x, w, b)
    np.testing.assert_allclose(F.conv2d(x, w, b, **opts), expected, **TOL)
    np.testing.assert_allclose(F.conv2d_sliding(x, w, b, **opts), expected, **TOL)
    for dx, dw, db in (F.conv2d_backward(grad_out, x, w, **opts), F.conv2d_sliding_backward(grad_out, x, w, **opts)):
        np.testing.assert_allclose(dx, dx_t, **TOL)
        np.testing.assert_allclose(dw, dw_t, **TOL)
        np.testing.assert_allclose(db, db_t, **TOL)


@SETTINGS
@given(conv_cases(), st.booleans())
def test_conv_transpose2d_matches_torch(case, extra_row):
    rng = np.random.default_rng(case["seed"])
    cout, cin_g, kh, kw = case["wshape"]
    groups = case["groups"]
    x = rng.standard_normal(case["shape"][:1] + (cout,) + case["shape"][2:])  # C_in of the transpose = cout
    w = rng.standard_normal((cout, cin_g, kh, kw))
    b = rng.standard_normal(cin_g * groups)
    stride, dilation = case["stride"], case["dilation"]
    # output_padding must stay below the stride (or the dilation) on each axis
    output_padding = tuple(int(extra_row and max(s, d) > 1) for s, d in zip(stride, dilation))
    padding = tuple(min(p, (d * (k - 1)) // 2) for p, d, k in zip(case["padding"], dilation, (kh, kw)))
    opts = dict(stride=stride, padding=padding, groups=groups, dilation=dilation)
    expected, grad_out, (dx_t, dw_t, db_t) = torch_run(
        lambda a, k, c: TF.conv_transpose2d(a, k, c, output_padding=output_padding, **opts), x, w, b)
    np.testing.assert_allclose(F.conv_transpose2d(x, w, b, output_padding=output_padding, **opts), expected, **TOL)
    dx, dw, db = F.conv_transpose2d_backward(grad_out, x, w, **opts)
    np.testing.assert_allclose(dx, dx_t, **TOL)
    np.testing.assert_allclose(dw, dw_t, **TOL)
    np.testing.assert_allclose(db, db_t, **TOL)


@st.composite
def pool_cases(draw):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    h, w = draw(st.integers(max(1, kh - 2 * ph), 8)), draw(st.integers(max(1, kw - 2 * pw), 8))
    return dict(shape=(draw(st.integers(1, 2)), draw(st.integers(1, 3)), h, w), kernel_size=(kh, kw),
                stride=(sh, sw), padding=(ph, pw), seed=draw(st.integers(0, 2**16)))


@SETTINGS
@given(pool_cases())
def test_max_pool2d_matches_torch(case):
    # A permutation has no ties, so the winner of every window is unambiguous.
    x = np.random.default_rng(case["seed"]).permutation(np.prod(case["shape"])).reshape(case["shape"]).astype(float)
    opts = {k: case[k] for k in ("kernel_size", "stride", "padding")}
    expected, grad_out, (dx_t,) = torch_run(lambda a: TF.max_pool2d(a, **opts), x)
    np.testing.assert_allclose(F.max_pool2d(x, **opts), expected, **TOL)
    np.testing.assert_allclose(F.max_pool2d_backward(grad_out, x, **opts), dx_t, **TOL)


@SETTINGS
@given(pool_cases(), st.booleans())
def test_avg_pool2d_matches_torch(case, count_include_pad):
    x = np.random.default_rng(case["seed"]).standard_normal(case["shape"])
    opts = {k: case[k] for k in ("kernel_size", "stride", "padding")}
    expected, grad_out, (dx_t,) = torch_run(
        lambda a: TF.avg_pool2d(a, count_include_pad=count_include_pad, **opts), x)
    np.testing.assert_allclose(F.avg_pool2d(x, count_include_pad=count_include_pad, **opts), expected, **TOL)
    np.testing.assert_allclose(F.avg_pool2d_backward(grad_out, x.shape, count_include_pad=count_include_pad, **opts),
                               dx_t, **TOL)


def test_global_avg_pool_and_flatten_match_torch():
    x = np.random.default_rng(1).standard_normal((2, 3, 5, 4))
    expected, grad_out, (dx_t,) = torch_run(lambda a: TF.adaptive_avg_pool2d(a, 1), x)
    np.testing.assert_allclose(F.global_avg_pool2d(x), expected, **TOL)
    np.testing.assert_allclose(F.global_avg_pool2d_backward(grad_out, x.shape), dx_t, **TOL)
    assert F.flatten(x).shape == (2, 60)
    np.testing.assert_array_equal(F.flatten_backward(F.flatten(x), x.shape), x)


def test_linear_matches_torch():
    rng = np.random.default_rng(2)
    x, w, b = rng.standard_normal((5, 7)), rng.standard_normal((3, 7)), rng.standard_normal(3)
    expected, grad_out, (dx_t, dw_t, db_t) = torch_run(TF.linear, x, w, b)
    np.testing.assert_allclose(F.linear(x, w, b), expected, **TOL)
    for mine, theirs in zip(F.linear_backward(grad_out, x, w), (dx_t, dw_t, db_t)):
        np.testing.assert_allclose(mine, theirs, **TOL)


@pytest.mark.parametrize("name", ["relu", "leaky_relu", "sigmoid", "tanh", "softmax", "log_softmax"])
def test_activations_match_torch(name):
    x = np.random.default_rng(3).standard_normal((4, 6)) * 4
    x[0, 0] = 40.0  # sigmoid / softmax must not overflow
    torch_fn = {"relu": TF.relu, "leaky_relu": lambda a: TF.leaky_relu(a, 0.1), "sigmoid": torch.sigmoid,
                "tanh": torch.tanh, "softmax": lambda a: TF.softmax(a, 1),
                "log_softmax": lambda a: TF.log_softmax(a, 1)}[name]
    expected, grad_out, (dx_t,) = torch_run(torch_fn, x)
    if name == "leaky_relu":
        y, dx = F.leaky_relu(x, 0.1), F.leaky_relu_backward(grad_out, x, 0.1)
    elif name == "relu":
        y, dx = F.relu(x), F.relu_backward(grad_out, x)
    elif name in ("sigmoid", "tanh"):
        y = getattr(F, name)(x)
        dx = getattr(F, f"{name}_backward")(grad_out, y)
    elif name == "softmax":
        y = F.softmax(x, 1)
        dx = F.softmax_backward(grad_out, y, 1)
    else:
        y = F.log_softmax(x, 1)
        dx = grad_out - np.exp(y) * grad_out.sum(1, keepdims=True)  # d log_softmax, from the definition
    np.testing.assert_allclose(y, expected, **TOL)
    np.testing.assert_allclose(dx, dx_t, **TOL)


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5, 2)])
@pytest.mark.parametrize("training", [True, False])
def test_batch_norm_matches_torch_including_running_statistics(shape, training):
    rng = np.random.default_rng(4)
    x = rng.standard_normal(shape) * 3 + 1
    gamma, beta = rng.standard_normal(3), rng.standard_normal(3)
    mean0, var0 = rng.standard_normal(3), rng.random(3) + 0.5
    t_mean, t_var = torch.tensor(mean0), torch.tensor(var0)
    expected, grad_out, (dx_t, dg_t, db_t) = torch_run(
        lambda a, g, b: TF.batch_norm(a, t_mean, t_var, g, b, training, 0.1, 1e-5), x, gamma, beta)
    mean, var = mean0.copy(), var0.copy()
    y = F.batch_norm(x, mean, var, gamma, beta, training, 0.1, 1e-5)
    np.testing.assert_allclose(y, expected, **TOL)
    np.testing.assert_allclose(mean, t_mean.numpy(), **TOL)
    np.testing.assert_allclose(var, t_var.numpy(), **TOL)
    dx, dg, db = F.batch_norm_backward(grad_out, x, gamma, var0, training, 1e-5, mean0)
    for mine, theirs in ((dx, dx_t), (dg, dg_t), (db, db_t)):
        np.testing.assert_allclose(mine, theirs, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("size", [5, 4, 1])
def test_local_response_norm_is_alexnets_formula_and_matches_torch(size):
    x = np.random.default_rng(5).standard_normal((2, 7, 3, 3)) * 10
    alpha, beta, k = 1e-2, 0.75, 2.0
    # torch divides alpha by the window size; the paper does not.
    expected, grad_out, (dx_t,) = torch_run(lambda a: TF.local_response_norm(a, size, alpha * size, beta, k), x)
    np.testing.assert_allclose(F.local_response_norm(x, size, alpha, beta, k), expected, **TOL)
    np.testing.assert_allclose(F.local_response_norm_backward(grad_out, x, size, alpha, beta, k), dx_t, **TOL)
    if size == 5:  # channel 3 by hand from the paper: neighbours 1..5
        by_hand = x[0, 3, 0, 0] / (k + alpha * sum(x[0, j, 0, 0] ** 2 for j in range(1, 6))) ** beta
        assert F.local_response_norm(x, size, alpha, beta, k)[0, 3, 0, 0] == pytest.approx(by_hand, rel=1e-12)


@pytest.mark.parametrize("name", ["cross_entropy", "mse_loss", "l1_loss", "multi_margin_loss"])
def test_losses_match_torch(name):
    rng = np.random.default_rng(6)
    scores = rng.standard_normal((5, 4))
    labels = np.array([0, 3, 1, 1, 2])
    if name in ("cross_entropy", "multi_margin_loss"):
        target_np, target_t = labels, torch.tensor(labels)
    else:
        target_np = rng.standard_normal((5, 4))
        target_t = torch.tensor(target_np)
    out = torch.tensor(scores, requires_grad=True)
    loss = getattr(TF, name)(out, target_t)
    loss.backward()
    assert getattr(F, name)(scores, target_np) == pytest.approx(loss.item(), rel=1e-12)
    np.testing.assert_allclose(getattr(F, f"{name}_backward")(scores, target_np), out.grad.numpy(), **TOL)


def test_cross_entropy_rejects_bad_labels():
    with pytest.raises(ValueError, match="out of range"):
        F.cross_entropy(np.zeros((2, 3)), np.array([0, 3]))


def test_dropout_is_inverted_and_its_gradient_uses_the_same_mask():
    x = np.ones((200, 50))
    y, mask = F.dropout(x, 0.3, True, np.random.default_rng(7))
    kept = y != 0
    np.testing.assert_allclose(y[kept], 1 / 0.7)  # kept units scaled by 1/(1-p)
    assert abs(kept.mean() - 0.7) < 0.02
    assert abs(y.mean() - 1) < 0.03  # the expectation is unchanged
    np.testing.assert_array_equal(F.dropout_backward(np.full_like(x, 2.0), mask), 2 * y)
    y_eval, mask_eval = F.dropout(x, 0.3, False)
    assert mask_eval is None and y_eval is x


def test_numerical_gradients_of_conv_pool_bn_lrn():
    rng = np.random.default_rng(8)
    x = rng.standard_normal((2, 4, 5, 5))
    w = rng.standard_normal((6, 2, 3, 3))
    g = rng.standard_normal((2, 6, 2, 3))
    opts = dict(stride=(2, 1), padding=(0, 1), dilation=(1, 2), groups=2)
    dx, dw, _ = F.conv2d_backward(g, x, w, **opts)
    np.testing.assert_allclose(dx, numerical_grad(lambda a: F.conv2d(a, w, None, **opts), x, g), atol=1e-7)
    np.testing.assert_allclose(dw, numerical_grad(lambda k: F.conv2d(x, k, None, **opts), w, g), atol=1e-7)

    g_pool = rng.standard_normal((2, 4, 2, 2))
    np.testing.assert_allclose(F.max_pool2d_backward(g_pool, x, 3, 2),
                               numerical_grad(lambda a: F.max_pool2d(a, 3, 2), x, g_pool), atol=1e-7)

    gamma, beta = rng.standard_normal(4), rng.standard_normal(4)
    def bn(a):
        return F.batch_norm(a, None, None, gamma, beta, True)
    g_bn = rng.standard_normal(x.shape)
    np.testing.assert_allclose(F.batch_norm_backward(g_bn, x, gamma)[0], numerical_grad(bn, x, g_bn), atol=1e-6)

    g_lrn = rng.standard_normal(x.shape)
    np.testing.assert_allclose(F.local_response_norm_backward(g_lrn, x, 3, 0.1, 0.75, 1.0),
                               numerical_grad(lambda a: F.local_response_norm(a, 3, 0.1, 0.75, 1.0), x, g_lrn),
                               atol=1e-7)


def test_numerical_gradients_of_transposed_conv_avg_pool_and_losses():
    rng = np.random.default_rng(11)
    x = rng.standard_normal((2, 4, 3, 4))
    w = rng.standard_normal((4, 3, 2, 3))  # C_in x C_out/g x kH x kW, groups 2 -> 6 outputs
    opts = dict(stride=2, padding=(0, 1), groups=2, dilation=(2, 1))
    out = F.conv_transpose2d(x, w, None, output_padding=1, **opts)
    g = rng.standard_normal(out.shape)
    dx, dw, _ = F.conv_transpose2d_backward(g, x, w, **opts)
    np.testing.assert_allclose(dx, numerical_grad(lambda a: F.conv_transpose2d(a, w, None, output_padding=1, **opts), x, g),
                               atol=1e-7)
    np.testing.assert_allclose(dw, numerical_grad(lambda k: F.conv_transpose2d(x, k, None, output_padding=1, **opts), w, g),
                               atol=1e-7)
    g_pool = rng.standard_normal((2, 4, 4, 5))
    np.testing.assert_allclose(F.avg_pool2d_backward(g_pool, x.shape, 2, 1, 1, False),
                               numerical_grad(lambda a: F.avg_pool2d(a, 2, 1, 1, False), x, g_pool), atol=1e-7)
    scores, labels = rng.standard_normal((4, 5)), np.array([0, 4, 2, 2])
    one = np.ones(())
    for loss in ("cross_entropy", "multi_margin_loss"):
        numeric = numerical_grad(lambda s_: np.array(getattr(F, loss)(s_, labels)), scores, one)
        np.testing.assert_allclose(getattr(F, f"{loss}_backward")(scores, labels), numeric, atol=1e-7)


def test_float32_paths_stay_float32_and_agree_with_float64():
    rng = np.random.default_rng(9)
    x, w = rng.standard_normal((2, 3, 8, 8)), rng.standard_normal((4, 3, 3, 3))
    y32 = F.conv2d(x.astype(np.float32), w.astype(np.float32), None, 1, 1)
    assert y32.dtype == np.float32
    np.testing.assert_allclose(y32, F.conv2d(x, w, None, 1, 1), rtol=1e-4, atol=1e-4)
    assert F.max_pool2d(x.astype(np.float32), 2).dtype == np.float32


class _Holder:
    def __init__(self, data):
        self.data, self.grad = data, None


@pytest.mark.parametrize("kind", ["sgd", "momentum", "nesterov", "adam", "adam_wd"])
def test_optimisers_follow_torch_update_rules(kind):
    rng = np.random.default_rng(10)
    start = rng.standard_normal((3, 4))
    grads = [rng.standard_normal((3, 4)) for _ in range(4)]
    mine = _Holder(start.copy())
    theirs = torch.nn.Parameter(torch.tensor(start))
    options = {"sgd": (SGD, torch.optim.SGD, dict(lr=0.1, weight_decay=0.01)),
               "momentum": (SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9, dampening=0.1)),
               "nesterov": (SGD, torch.optim.SGD, dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.1)),
               "adam": (Adam, torch.optim.Adam, dict(lr=0.01)),
               "adam_wd": (Adam, torch.optim.Adam, dict(lr=0.01, betas=(0.8, 0.99), weight_decay=0.1))}[kind]
    ours, torch_cls, kwargs = options
    opt_mine, opt_theirs = ours([mine], **kwargs), torch_cls([theirs], **kwargs)
    for g in grads:
        mine.grad = g
        theirs.grad = torch.tensor(g)
        opt_mine.step()
        opt_theirs.step()
    np.testing.assert_allclose(mine.data, theirs.detach().numpy(), rtol=1e-12, atol=1e-12)
