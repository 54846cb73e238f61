"""How good generated images are, measured in the feature space of a classifier.

* **FID** (Heusel et al., "GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash
  Equilibrium", NeurIPS 2017, Eq. 6): the Fréchet distance between two Gaussians fitted to the
  features of real and generated images,
  ``|mu_r - mu_g|^2 + tr(S_r + S_g - 2 (S_r S_g)^(1/2))``.
* **KID** (Bińkowski et al., "Demystifying MMD GANs", ICLR 2018, §3): the unbiased estimate of the
  squared MMD with the cubic polynomial kernel ``k(x, y) = (x.y / d + 1)^3``, averaged over subsets.

The papers use Inception-v3 pool features of ImageNet; cnnlab uses the penultimate features of a
cnnlab classifier trained on the same dataset (:class:`FeatureSpace`), or raw pixels. The figures are
therefore comparable between models measured in the same feature space, not with published
Inception FIDs.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import torch

from ..errors import DataError


def _moments(features: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = features.double()
    mu = x.mean(0)
    centred = x - mu
    return mu, centred.T @ centred / (len(x) - 1)  # the unbiased covariance, D x D


def _psd_sqrt(matrix: torch.Tensor) -> torch.Tensor:
    """The square root of a symmetric positive semi-definite matrix (eigenvalues clipped at 0)."""
    values, vectors = torch.linalg.eigh((matrix + matrix.T) / 2)
    return (vectors * values.clamp(min=0).sqrt()) @ vectors.T


def frechet_distance(real: torch.Tensor, fake: torch.Tensor) -> float:
    """FID of two feature sets (N x D and M x D).

    ``tr (S_r S_g)^(1/2)`` is computed as the trace of the square root of the symmetric
    ``S_r^(1/2) S_g S_r^(1/2)``, which has the same eigenvalues as ``S_r S_g`` and needs only
    symmetric eigendecompositions (no general matrix square root).
    """
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise DataError(f"FID compares two N x D feature sets of one D; got {tuple(real.shape)} and {tuple(fake.shape)}")
    if len(real) < 2 or len(fake) < 2:
        raise DataError("FID needs at least two images on each side")
    mu_r, s_r = _moments(real)
    mu_g, s_g = _moments(fake)
    root = _psd_sqrt(s_r)
    cross = torch.linalg.eigvalsh(root @ s_g @ root).clamp(min=0).sqrt().sum()
    value = (mu_r - mu_g).square().sum() + torch.trace(s_r) + torch.trace(s_g) - 2 * cross
    return float(value.clamp(min=0))


def _mmd2_unbiased(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    d = x.shape[1]
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    m, n = len(x), len(y)
    return ((kxx.sum() - kxx.diagonal().sum()) / (m * (m - 1)) + (kyy.sum() - kyy.diagonal().sum()) / (n * (n - 1))
            - 2 * kxy.mean())


def kernel_inception_distance(real: torch.Tensor, fake: torch.Tensor, *, subsets: int = 10, subset_size: int = 1000,
                              seed: int = 0) -> tuple[float, float]:
    """KID (mean, standard deviation over ``subsets`` random subsets of ``subset_size`` of each side)."""
    if real.ndim != 2 or fake.ndim != 2 or real.shape[1] != fake.shape[1]:
        raise DataError(f"KID compares two N x D feature sets of one D; got {tuple(real.shape)} and {tuple(fake.shape)}")
    size = min(subset_size, len(real), len(fake))
    if size < 2:
        raise DataError("KID needs at least two images on each side")
    x, y = real.double(), fake.double()
    generator = torch.Generator().manual_seed(seed)
    values = []
    for _ in range(subsets):
        i = torch.randperm(len(x), generator=generator)[:size]
        j = torch.randperm(len(y), generator=generator)[:size]
        values.append(_mmd2_unbiased(x[i], y[j]))
    stacked = torch.stack(values)
    return float(stacked.mean()), float(stacked.std()) if len(values) > 1 else 0.0


def pairwise_diversity(features: torch.Tensor, *, limit: int = 500) -> float:
    """The mean distance between two different images of a batch (its first ``limit``): near 0 for a
    generator that has collapsed onto a few outputs."""
    x = features[:limit].double()
    if len(x) < 2:
        raise DataError("diversity needs at least two images")
    distances = torch.cdist(x, x)
    return float(distances.sum() / (len(x) * (len(x) - 1)))


class FeatureSpace:
    """Where images are compared: the penultimate features of a cnnlab classifier's checkpoint
    (``run``), or raw pixels in [0, 1] (``run`` None). ``__call__`` takes uint8 N x C x H x W."""

    def __init__(self, run: str | Path | None = None, *, device: str | torch.device = "cpu",
                 input_size: Sequence[int] | None = None):
        self.run, self.device, self.model, self.checkpoint = run, torch.device(device), None, None
        if run:
            from ..train.checkpoint import load_checkpoint

            self.checkpoint = load_checkpoint(run, device=self.device)
            if self.checkpoint.task != "classify":
                raise DataError(f"FID features come from a classifier; '{run}' is a {self.checkpoint.task} model")
            if input_size is not None and tuple(self.checkpoint.preprocessing.input_size) != tuple(input_size):
                raise DataError(f"the feature classifier '{run}' takes "
                                f"{'x'.join(map(str, self.checkpoint.preprocessing.input_size))} images, the "
                                f"generator makes {'x'.join(map(str, input_size))}")
            self.model = self.checkpoint.model.eval()

    @property
    def name(self) -> str:
        return f"classifier {Path(self.run).name}" if self.run else "pixels"

    @property
    def class_names(self) -> list[str]:
        return self.checkpoint.class_names if self.checkpoint else []

    def _inputs(self, images: torch.Tensor) -> torch.Tensor:
        from ..data.transforms import normalize

        pre = self.checkpoint.preprocessing
        return normalize(images.to(self.device), pre.mean, pre.std)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        if self.model is None:
            return images.reshape(len(images), -1).float() / 255.0
        out = []
        for start in range(0, len(images), batch_size):
            x = self._inputs(images[start:start + batch_size])
            out.append(self.model.forward_head(self.model.forward_features(x), pre_logits=True).flatten(1).cpu())
        return torch.cat(out)

    @torch.no_grad()
    def classify(self, images: torch.Tensor, batch_size: int = 500) -> torch.Tensor:
        """The classifier's class for each image (only with a classifier)."""
        if self.model is None:
            raise DataError("classifying samples needs a classifier (--feature-model RUN)")
        return torch.cat([self.model(self._inputs(images[s:s + batch_size])).argmax(1).cpu()
                          for s in range(0, len(images), batch_size)])
