"""Pieces of the mobile inverted-bottleneck networks (MobileNet v3, EfficientNet, GhostNet).

* :func:`make_divisible`: channel counts rounded to a multiple of 8 (never below 90% of the target),
  the rule the MobileNet papers' released models apply after a width multiplier.
* :class:`ChannelGate`: squeeze-and-excitation with a chosen inner activation and gate, as MobileNet v3
  (ReLU, hard sigmoid, §5.3), EfficientNet (SiLU, sigmoid) and GhostNet use it. Names ``fc1``/``fc2``.
* :class:`StochasticDepth`: drop a residual branch for a whole sample (Huang et al. 2016), as
  EfficientNet trains with.
"""

from __future__ import annotations

import torch
from torch import nn


def make_divisible(value: float, divisor: int = 8, minimum: int | None = None) -> int:
    """``value`` rounded to the nearest multiple of ``divisor``, raised by one step if that loses over 10%."""
    minimum = divisor if minimum is None else minimum
    rounded = max(minimum, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


class ChannelGate(nn.Module):
    """x * gate(fc2(act(fc1(mean(x))))): one weight per channel from the whole map."""

    def __init__(self, channels: int, squeeze: int, act: type[nn.Module] = nn.ReLU,
                 gate: type[nn.Module] = nn.Sigmoid):
        super().__init__()
        self.fc1 = nn.Conv2d(channels, squeeze, 1)  # N x squeeze x 1 x 1
        self.act = act()
        self.fc2 = nn.Conv2d(squeeze, channels, 1)  # N x C x 1 x 1
        self.gate = gate()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gate(self.fc2(self.act(self.fc1(x.mean((2, 3), keepdim=True)))))


class StochasticDepth(nn.Module):
    """In training, zero the branch of each sample with probability ``p`` and scale survivors by 1/(1-p)."""

    def __init__(self, p: float):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = torch.empty((x.shape[0],) + (1,) * (x.ndim - 1), dtype=x.dtype, device=x.device)
        return x * keep.bernoulli_(1.0 - self.p) / (1.0 - self.p)


def init_mobile(model: nn.Module) -> None:
    """He-normal (fan out) convolutions, unit BN, small-normal FC: the initialisation of the mobile nets."""
    for m in model.modules():
        if getattr(m, "weight", None) is None or m.weight.device.type == "meta":
            continue
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, 0, 0.01)
            nn.init.zeros_(m.bias)
