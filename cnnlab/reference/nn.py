"""Layers for the NumPy engine, with torch's attribute and parameter names.

A :class:`Module` keeps its parameters, buffers and sub-modules in the order they are assigned, and
names them as torch does (``features.0.weight``, ``bn1.running_mean``), so ``load_state_dict`` accepts
a torch ``state_dict`` (tensors or arrays) and the two engines can be compared number by number.

Every layer remembers what its backward needs during ``forward``; ``backward(grad_out)`` returns the
gradient of its input and *adds* its parameter gradients to ``param.grad`` (as torch accumulates).
The networks themselves live in :mod:`cnnlab.reference.models` and are re-exported here.
"""

from __future__ import annotations

import abc
from typing import Iterator

import numpy as np

from . import functional as F
from .conv import IntPair, pair

_rng = np.random.default_rng(0)


def manual_seed(seed: int) -> None:
    """Seed the generator used for initial weights and dropout masks."""
    global _rng
    _rng = np.random.default_rng(seed)


class Parameter:
    """A trainable array and its accumulated gradient."""

    def __init__(self, data: np.ndarray):
        self.data = data
        self.grad: np.ndarray | None = None

    def accumulate(self, grad: np.ndarray) -> None:
        grad = grad.astype(self.data.dtype, copy=False)
        self.grad = grad.copy() if self.grad is None else self.grad + grad

    @property
    def shape(self) -> tuple[int, ...]:
        return self.data.shape


class Module(abc.ABC):
    """Base class: ordered parameters, buffers and children; ``train()`` / ``eval()``; state dicts."""

    def __init__(self):
        object.__setattr__(self, "_params", {})
        object.__setattr__(self, "_buffers", {})
        object.__setattr__(self, "_children", {})
        object.__setattr__(self, "training", True)

    def __setattr__(self, name: str, value) -> None:
        if isinstance(value, Parameter):
            self._params[name] = value
        elif isinstance(value, Module):
            self._children[name] = value
        object.__setattr__(self, name, value)

    def register_buffer(self, name: str, value: np.ndarray) -> None:
        self._buffers[name] = None
        object.__setattr__(self, name, value)

    # --- traversal ---------------------------------------------------------------------------------
    def named_modules(self, prefix: str = "") -> Iterator[tuple[str, "Module"]]:
        yield prefix, self
        for name, child in self._children.items():
            yield from child.named_modules(f"{prefix}.{name}" if prefix else name)

    def named_parameters(self) -> Iterator[tuple[str, Parameter]]:
        for prefix, module in self.named_modules():
            for name, param in module._params.items():
                yield (f"{prefix}.{name}" if prefix else name), param

    def parameters(self) -> list[Parameter]:
        return [p for _, p in self.named_parameters()]

    def state_dict(self) -> dict[str, np.ndarray]:
        state: dict[str, np.ndarray] = {}
        for prefix, module in self.named_modules():
            dotted = f"{prefix}." if prefix else ""
            for name, param in module._params.items():
                state[dotted + name] = param.data
            for name in module._buffers:
                state[dotted + name] = getattr(module, name)
        return state

    def load_state_dict(self, state: dict, strict: bool = True) -> None:
        """Copy arrays (or torch tensors) in by name; torch's ``num_batches_tracked`` counters are ignored."""
        own = self.state_dict()
        given = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
        missing, unexpected = sorted(set(own) - set(given)), sorted(set(given) - set(own))
        if strict and (missing or unexpected):
            raise ValueError(f"state dict does not fit: missing {missing[:5]}, unexpected {unexpected[:5]}")
        for prefix, module in self.named_modules():
            dotted = f"{prefix}." if prefix else ""
            for name, param in module._params.items():
                if dotted + name in given:
                    value = _as_array(given[dotted + name], param.data.dtype)
                    if value.shape != param.data.shape:
                        raise ValueError(f"{dotted + name}: shape {value.shape} does not fit {param.data.shape}")
                    param.data = value
            for name in module._buffers:
                if dotted + name in given:
                    object.__setattr__(module, name, _as_array(given[dotted + name], getattr(module, name).dtype))

    # --- modes, dtypes, gradients -------------------------------------------------------------------
    def train(self, mode: bool = True) -> "Module":
        for _, module in self.named_modules():
            object.__setattr__(module, "training", mode)
        return self

    def eval(self) -> "Module":
        return self.train(False)

    def astype(self, dtype) -> "Module":
        """Cast every parameter and buffer (float32 to train fast, float64 to compare with torch)."""
        for _, module in self.named_modules():
            for param in module._params.values():
                param.data = param.data.astype(dtype)
                param.grad = None
            for name in module._buffers:
                object.__setattr__(module, name, getattr(module, name).astype(dtype))
        return self

    def zero_grad(self) -> None:
        for param in self.parameters():
            param.grad = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.forward(x)

    # Every layer defines both passes; a class missing one cannot be instantiated.
    @abc.abstractmethod
    def forward(self, x: np.ndarray) -> np.ndarray:
        """The layer's output for input ``x``; keeps what ``backward`` needs."""

    @abc.abstractmethod
    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        """The gradient with respect to the input, given the gradient of the output; fills ``.grad``."""


def _as_array(value, dtype) -> np.ndarray:
    if hasattr(value, "detach"):  # a torch tensor; converted without importing torch
        value = value.detach().cpu().numpy()
    return np.array(value, dtype=dtype)


def _uniform(bound: float, shape: tuple[int, ...]) -> np.ndarray:
    """torch's default for conv and linear layers: U(-1/sqrt(fan_in), 1/sqrt(fan_in))."""
    return _rng.uniform(-bound, bound, shape)


class Sequential(Module):
    """Children named "0", "1", ... as torch's ``nn.Sequential``."""

    def __init__(self, *layers: Module):
        super().__init__()
        for index, layer in enumerate(layers):
            setattr(self, str(index), layer)

    def __getitem__(self, index: int) -> Module:
        return list(self._children.values())[index]

    def __len__(self) -> int:
        return len(self._children)

    def forward(self, x: np.ndarray) -> np.ndarray:
        for layer in self._children.values():
            x = layer(x)
        return x

    def backward(self, grad_out: np.ndarray) -> np.ndarray:
        for layer in reversed(list(self._children.values())):
            grad_out = layer.backward(grad_out)
        return grad_out


class Identity(Module):
    def forward(self, x):
        return x

    def backward(self, grad_out):
        return grad_out


class Conv2d(Module):
    """As ``torch.nn.Conv2d``; weight O x C/groups x kH x kW, computed by im2col + matrix multiply.

    Set ``needs_input_grad = False`` on a network's first layer when training: like torch for an input
    that does not require a gradient, backward then skips the input gradient and returns None.
    """

    needs_input_grad = True

    def __init__(self, in_channels: int, out_channels: int, kernel_size: IntPair, stride: IntPair = 1,
                 padding: IntPair = 0, dilation: IntPair = 1, groups: int = 1, bias: bool = True):
        super().__init__()
        if in_channels % groups or out_channels % groups:
            raise ValueError(f"channels {in_channels} -> {out_channels} are not divisible by groups={groups}")
        kh, kw = pair(kernel_size)
        self.stride, self.padding, self.dilation, self.groups = pair(stride), pair(padding), pair(dilation), groups
        bound = 1 / np.sqrt(in_channels // groups * kh * kw)
        self.weight = Parameter(_uniform(bound, (out_channels, in_channels // groups, kh, kw)))
        self.bias = Parameter(_uniform(bound, (out_channels,))) if bias else None

    def forward(self, x):
        bias = self.bias.data if self.bias is not None else None
        y, cols = F.conv2d_im2col(x, self.weight.data, bias, self.stride, self.padding, self.dilation, self.groups)
        # The window matrix is what the weight gradient needs; keep it only when training.
        self._saved = (x, cols if self.training else None)
        return y

    def backward(self, grad_out):
        x, cols = self._saved
        args = (self.stride, self.padding, self.dilation, self.groups)
        self.weight.accumulate(F.conv2d_weight_grad(grad_out, x, self.weight.data.shape, *args, cols=cols))
        if self.bias is not None:
            self.bias.accumulate(grad_out.sum(axis=(0, 2, 3)))
        if not self.needs_input_grad:
            return None
        return F.conv2d_input_grad(grad_out, self.weight.data, x.shape, *args)


class Linear(Module):
    """As ``torch.nn.Linear``: y = x W^T + b, W out_features x in_features."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True):
        super().__init__()
        bound = 1 / np.sqrt(in_features)
        self.weight = Parameter(_uniform(bound, (out_features, in_features)))
        self.bias = Parameter(_uniform(bound, (out_features,))) if bias else None

    def forward(self, x):
        self._x = x
        return F.linear(x, self.weight.data, self.bias.data if self.bias is not None else None)

    def backward(self, grad_out):
        dx, dw, db = F.linear_backward(grad_out, self._x, self.weight.data, self.bias is not None)
        self.weight.accumulate(dw)
        if self.bias is not None:
            self.bias.accumulate(db)
        return dx


class Flatten(Module):
    def forward(self, x):
        self._shape = x.shape
        return F.flatten(x)

    def backward(self, grad_out):
        return F.flatten_backward(grad_out, self._shape)


class ReLU(Module):
    def forward(self, x):
        self._x = x
        return F.relu(x)

    def backward(self, grad_out):
        return F.relu_backward(grad_out, self._x)


class LeakyReLU(Module):
    def __init__(self, negative_slope: float = 0.01):
        super().__init__()
        self.negative_slope = negative_slope

    def forward(self, x):
        self._x = x
        return F.leaky_relu(x, self.negative_slope)

    def backward(self, grad_out):
        return F.leaky_relu_backward(grad_out, self._x, self.negative_slope)


class Sigmoid(Module):
    def forward(self, x):
        self._y = F.sigmoid(x)
        return self._y

    def backward(self, grad_out):
        return F.sigmoid_backward(grad_out, self._y)


class Tanh(Module):
    def forward(self, x):
        self._y = F.tanh(x)
        return self._y

    def backward(self, grad_out):
        return F.tanh_backward(grad_out, self._y)


class MaxPool2d(Module):
    def __init__(self, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding

    def forward(self, x):
        self._x = x
        return F.max_pool2d(x, self.kernel_size, self.stride, self.padding)

    def backward(self, grad_out):
        return F.max_pool2d_backward(grad_out, self._x, self.kernel_size, self.stride, self.padding)


class AvgPool2d(Module):
    def __init__(self, kernel_size: IntPair, stride: IntPair | None = None, padding: IntPair = 0,
                 count_include_pad: bool = True):
        super().__init__()
        self.kernel_size, self.stride, self.padding = kernel_size, stride, padding
        self.count_include_pad = count_include_pad

    def forward(self, x):
        self._shape = x.shape
        return F.avg_pool2d(x, self.kernel_size, self.stride, self.padding, self.count_include_pad)

    def backward(self, grad_out):
        return F.avg_pool2d_backward(grad_out, self._shape, self.kernel_size, self.stride, self.padding,
                                     self.count_include_pad)


class GlobalAvgPool2d(Module):
    """``nn.AdaptiveAvgPool2d(1)``: one mean per channel, N x C x 1 x 1."""

    def forward(self, x):
        self._shape = x.shape
        return F.global_avg_pool2d(x)

    def backward(self, grad_out):
        return F.global_avg_pool2d_backward(grad_out, self._shape)


class Dropout(Module):
    """Inverted dropout; a no-op in ``eval()``."""

    def __init__(self, p: float = 0.5):
        super().__init__()
        self.p = p

    def forward(self, x):
        y, self._mask = F.dropout(x, self.p, self.training, _rng)
        return y

    def backward(self, grad_out):
        return F.dropout_backward(grad_out, self._mask)


class BatchNorm(Module):
    """As ``torch.nn.BatchNorm1d`` / ``BatchNorm2d`` (one class: the channel axis is axis 1 in both)."""

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1):
        super().__init__()
        self.eps, self.momentum = eps, momentum
        self.weight = Parameter(np.ones(num_features))
        self.bias = Parameter(np.zeros(num_features))
        self.register_buffer("running_mean", np.zeros(num_features))
        self.register_buffer("running_var", np.ones(num_features))

    def forward(self, x):
        self._x, self._training_pass = x, self.training
        return F.batch_norm(x, self.running_mean, self.running_var, self.weight.data, self.bias.data,
                            self.training, self.momentum, self.eps)

    def backward(self, grad_out):
        dx, dw, db = F.batch_norm_backward(grad_out, self._x, self.weight.data, self.running_var,
                                           self._training_pass, self.eps, self.running_mean)
        self.weight.accumulate(dw)
        self.bias.accumulate(db)
        return dx.astype(self._x.dtype, copy=False)


BatchNorm1d = BatchNorm2d = BatchNorm


class LocalResponseNorm(Module):
    """AlexNet's LRN with the paper's alpha (torch's ``alpha`` argument is ``size`` times larger)."""

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0):
        super().__init__()
        self.size, self.alpha, self.beta, self.k = size, alpha, beta, k

    def forward(self, x):
        self._x = x
        return F.local_response_norm(x, self.size, self.alpha, self.beta, self.k)

    def backward(self, grad_out):
        return F.local_response_norm_backward(grad_out, self._x, self.size, self.alpha, self.beta, self.k)


from .models import (BasicBlock, InceptionBlock, LeNet5, ResNet, VGG, lenet5, lenet5_modern,  # noqa: E402
                     resnet_small, vgg_small)
