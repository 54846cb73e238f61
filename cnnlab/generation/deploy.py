"""A GAN's generator as a file to ship: latents in, images out, with no batch to depend on.

In training and in ``cnnlab generate`` the generator normalises with the statistics of the batch it
draws (the DCGAN practice), so one image depends on the others of its batch. A shipped generator must
not: its batch norms are given *standing statistics* (Brock et al. 2019, BigGAN §3.1 / Appendix C):
the average, over many batches of random latents, of the statistics each batch would have used, after
which the network runs in eval mode and maps each latent to one image on its own.

Input: ``N x (latent [+ K]) x 1 x 1`` float32, the latents (N(0, I), the DCGAN reference
implementation's ``nz x 1 x 1`` shape) followed, for a class-conditional generator, by a one-hot class
(the embedding lookup becomes a product with the table, which any runtime does). Output: ``N x C x H x W``
in [-1, 1]; ``(x + 1) * 127.5`` are the grey levels.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

STANDING_LATENTS = 4096  # latents drawn for the standing statistics
STANDING_BATCH = 256  # in batches of this many (the training batch size of the DCGAN recipe is 128)


class ShippedGenerator(nn.Module):
    """The generator of a :class:`~cnnlab.models.dcgan.GAN`: N x D x 1 x 1 codes -> N x C x H x W images."""

    def __init__(self, gan: nn.Module, *, latents: int = STANDING_LATENTS, seed: int = 0):
        super().__init__()
        self.generator = copy.deepcopy(gan.generator)
        self.latent_dim, self.num_classes = int(gan.latent_dim), int(gan.num_classes)
        standing_statistics(self, latents, seed)

    @property
    def code_size(self) -> int:
        return self.latent_dim + self.num_classes

    def forward(self, codes: torch.Tensor) -> torch.Tensor:
        v = codes.flatten(1)  # N x D
        z = v[:, :self.latent_dim]
        if self.num_classes:  # one-hot @ table = the embedding of the class
            z = torch.cat([z, v[:, self.latent_dim:] @ self.generator.embed.weight], 1)
        return self.generator.decode(z)

    def examples(self, n: int, seed: int = 0) -> torch.Tensor:
        """``n`` codes: N(0, I) latents and, if conditional, every class in turn."""
        g = torch.Generator().manual_seed(seed)
        z = torch.randn(n, self.latent_dim, generator=g)
        if self.num_classes:
            z = torch.cat([z, nn.functional.one_hot(torch.arange(n) % self.num_classes, self.num_classes).float()], 1)
        return z[:, :, None, None]


@torch.no_grad()
def standing_statistics(shipped: ShippedGenerator, latents: int = STANDING_LATENTS, seed: int = 0) -> None:
    """Set every batch norm's running mean and variance to the average of the batch statistics of
    ``latents`` random codes (a cumulative average: ``momentum=None``), then switch to eval mode."""
    norms = [m for m in shipped.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None
    shipped.train()
    codes = shipped.examples(latents, seed)
    for start in range(0, latents, STANDING_BATCH):
        shipped(codes[start:start + STANDING_BATCH])
    for m, momentum in zip(norms, saved):
        m.momentum = momentum
    shipped.eval()
