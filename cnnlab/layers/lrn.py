"""Local response normalisation with the AlexNet paper's constants.

Krizhevsky et al. 2012, §3.3: ``b[i] = a[i] / (k + alpha * sum_{j in window of n} a[j]^2) ^ beta``,
with k = 2, n = 5, alpha = 1e-4, beta = 0.75. PyTorch's ``nn.LocalResponseNorm`` divides its
``alpha`` by ``n`` (it averages the squares instead of summing them), so the paper's alpha is passed
to it multiplied by ``n``.
"""

from __future__ import annotations

from torch import nn


class PaperLRN(nn.LocalResponseNorm):
    """``nn.LocalResponseNorm`` taking the paper's ``alpha`` (a coefficient on the *sum* of squares)."""

    def __init__(self, size: int = 5, alpha: float = 1e-4, beta: float = 0.75, k: float = 2.0):
        super().__init__(size=size, alpha=alpha * size, beta=beta, k=k)
        self.paper_alpha = alpha

    def extra_repr(self) -> str:
        return f"size={self.size}, paper_alpha={self.paper_alpha}, beta={self.beta}, k={self.k}"
