"""SGD (momentum, Nesterov, weight decay) and Adam in NumPy, with torch's update rules.

SGD with momentum: Polyak 1964, in torch's form v <- mu v + g, p <- p - lr v (first step v = g);
Nesterov: p <- p - lr (g + mu v) (Sutskever et al., ICML 2013). Weight decay adds wd * p to g.
Adam: Kingma & Ba, ICLR 2015, Algorithm 1, with bias-corrected first and second moments.
Each optimiser updates objects that have ``.data`` and ``.grad`` NumPy arrays, in place.
"""

from __future__ import annotations

from typing import Iterable, Protocol

import numpy as np


class HasGradient(Protocol):
    data: np.ndarray
    grad: np.ndarray | None


class SGD:
    """Stochastic gradient descent as ``torch.optim.SGD``."""

    def __init__(self, params: Iterable[HasGradient], lr: float, momentum: float = 0.0, dampening: float = 0.0,
                 nesterov: bool = False, weight_decay: float = 0.0):
        if lr <= 0 or momentum < 0 or weight_decay < 0:
            raise ValueError("SGD needs lr > 0, momentum >= 0, weight_decay >= 0")
        if nesterov and (momentum == 0 or dampening != 0):
            raise ValueError("Nesterov momentum needs momentum > 0 and no dampening")
        self.params = list(params)
        self.lr, self.momentum, self.dampening = lr, momentum, dampening
        self.nesterov, self.weight_decay = nesterov, weight_decay
        self.velocity: list[np.ndarray | None] = [None] * len(self.params)

    def step(self) -> None:
        for index, p in enumerate(self.params):
            if p.grad is None:
                continue
            g = p.grad + self.weight_decay * p.data if self.weight_decay else p.grad
            if self.momentum:
                v = self.velocity[index]
                if v is None:
                    v = self.velocity[index] = g.copy()
                else:
                    v *= self.momentum
                    v += (1 - self.dampening) * g
                g = g + self.momentum * v if self.nesterov else v
            p.data -= (self.lr * g).astype(p.data.dtype, copy=False)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None


class Adam:
    """Adam as ``torch.optim.Adam`` (L2 weight decay added to the gradient, not decoupled)."""

    def __init__(self, params: Iterable[HasGradient], lr: float = 1e-3, betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, weight_decay: float = 0.0):
        if lr <= 0 or not (0 <= betas[0] < 1 and 0 <= betas[1] < 1):
            raise ValueError("Adam needs lr > 0 and betas in [0, 1)")
        self.params = list(params)
        self.lr, self.betas, self.eps, self.weight_decay = lr, betas, eps, weight_decay
        self.first = [np.zeros_like(p.data) for p in self.params]
        self.second = [np.zeros_like(p.data) for p in self.params]
        self.steps = 0

    def step(self) -> None:
        self.steps += 1
        b1, b2 = self.betas
        correction1, correction2 = 1 - b1 ** self.steps, 1 - b2 ** self.steps
        for p, m, v in zip(self.params, self.first, self.second):
            if p.grad is None:
                continue
            g = p.grad + self.weight_decay * p.data if self.weight_decay else p.grad
            m *= b1
            m += (1 - b1) * g  # running mean of gradients
            v *= b2
            v += (1 - b2) * g * g  # running mean of squared gradients
            denom = np.sqrt(v / correction2) + self.eps
            p.data -= ((self.lr / correction1) * m / denom).astype(p.data.dtype, copy=False)

    def zero_grad(self) -> None:
        for p in self.params:
            p.grad = None
