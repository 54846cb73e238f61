"""DCGAN (Radford, Metz & Chintala, "Unsupervised Representation Learning with Deep Convolutional
Generative Adversarial Networks", ICLR 2016) and its class-conditional form.

§3 of the paper gives the architecture guidelines this module follows:

* no pooling: strided convolutions in the discriminator, fractional-strided (transposed)
  convolutions in the generator;
* batch norm in both networks, except the generator's output layer and the discriminator's input
  layer;
* no fully connected hidden layers: the generator's first layer is a "project and reshape" of ``z``,
  the discriminator's last a single convolution flattened into one logit;
* ReLU in the generator (tanh on the output), LeakyReLU (slope 0.2) in the discriminator;
* §4: weights from N(0, 0.02), Adam with learning rate 2e-4 and beta1 0.5, mini-batches of 128.

Fig. 1 (LSUN, 64 x 64) goes 4 x 4 x 1024 -> 8 -> 16 -> 32 -> 64 x 64 x 3. For 28 x 28 and 32 x 32 images
the same three doublings start from the side / 8 (rounded up), four times ``width`` channels:

=========================  ================================  ===============================
generator                  28 x 28 (Fashion-MNIST)           32 x 32
=========================  ================================  ===============================
z (100)                    project -> 256 x 4 x 4            256 x 4 x 4
fractional-strided conv    128 x 7 x 7   (3 x 3: 4 -> 7)     128 x 8 x 8   (4 x 4)
fractional-strided conv    64 x 14 x 14                      64 x 16 x 16
fractional-strided conv    C x 28 x 28, tanh                 C x 32 x 32, tanh
=========================  ================================  ===============================

The discriminator mirrors it: strided 4 x 4 convolutions C -> 64 -> 128 -> 256 channels (28 -> 14 -> 7
-> 3), then one convolution over the whole last map gives the logit.

The class-conditional GAN (``cgan``) keeps both networks and adds the label:

* the generator takes ``[z, embed(y)]`` (concatenation, as in Mirza & Osindero 2014): the simplest way
  to let every layer depend on the class, and the label costs one 100-d input;
* the discriminator uses the **projection** of Miyato & Koyama ("cGANs with Projection Discriminator",
  ICLR 2018, Eq. 3): ``D(x, y) = psi(phi(x)) + <embed(y), sum phi(x)>``. Concatenating one-hot maps to
  the discriminator's input (the other common choice) gives it a label it can learn to ignore;
  the projection makes the inner product with the class embedding part of the logit itself, which
  the paper shows trains more stably and gives better class fidelity, at one embedding table of cost.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from ..errors import ConfigError
from ..registry import register_model

PAPER = "Radford, Metz & Chintala, ICLR 2016"


def sides(image_size: int) -> list[int]:
    """The feature-map sides from the image down, three halvings rounded up: 28 -> [28, 14, 7, 4]."""
    out = [image_size]
    for _ in range(3):
        out.append(math.ceil(out[-1] / 2))
    return out


def up(cin: int, cout: int, side_in: int, side_out: int) -> nn.ConvTranspose2d:
    """A fractional-strided convolution doubling the side (4 x 4, stride 2), or 2s - 1 (3 x 3)."""
    if side_out == 2 * side_in:
        return nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1, bias=False)
    if side_out == 2 * side_in - 1:
        return nn.ConvTranspose2d(cin, cout, 3, stride=2, padding=1, bias=False)
    raise ConfigError(f"no stride-2 transposed convolution takes {side_in} to {side_out}")


class Generator(nn.Module):
    """z (N x latent) [+ class y] -> N x C x H x H in [-1, 1]."""

    def __init__(self, *, latent_dim: int = 100, width: int = 64, out_channels: int = 1, image_size: int = 28,
                 num_classes: int = 0):
        super().__init__()
        s = sides(image_size)  # 28, 14, 7, 4
        self.latent_dim, self.num_classes, self.start = latent_dim, num_classes, (4 * width, s[3])
        # Concatenated class embedding (the conditional form only).
        self.embed = nn.Embedding(num_classes, latent_dim) if num_classes else None
        inputs = latent_dim * (2 if num_classes else 1)
        # "Project and reshape": one matrix multiply from z to the first 4w x s x s map.
        self.project = nn.Sequential(nn.Linear(inputs, 4 * width * s[3] * s[3], bias=False))
        self.bn0 = nn.BatchNorm2d(4 * width)
        self.body = nn.Sequential(
            up(4 * width, 2 * width, s[3], s[2]), nn.BatchNorm2d(2 * width), nn.ReLU(True),  # N x 128 x 7 x 7
            up(2 * width, width, s[2], s[1]), nn.BatchNorm2d(width), nn.ReLU(True),  # N x 64 x 14 x 14
            up(width, out_channels, s[1], s[0]), nn.Tanh(),  # N x C x 28 x 28; no batch norm on the output
        )

    def forward(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.embed is not None:
            if y is None:
                raise ConfigError("this generator is class-conditional: give the classes y")
            z = torch.cat([z, self.embed(y)], 1)  # N x 200
        return self.decode(z)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Images of the generator's input codes: latents, followed by the class embedding if conditional."""
        channels, side = self.start
        h = self.project(codes).view(-1, channels, side, side)  # N x 256 x 4 x 4
        return self.body(torch.relu(self.bn0(h)))


class Discriminator(nn.Module):
    """N x C x H x H [+ class y] -> N logits (real > 0)."""

    def __init__(self, *, width: int = 64, in_channels: int = 1, image_size: int = 28, num_classes: int = 0):
        super().__init__()
        last = image_size // 2 // 2 // 2  # three stride-2 4 x 4 convolutions: 28 -> 3, 32 -> 4
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, True),  # N x 64 x 14 x 14; no BN
            nn.Conv2d(width, 2 * width, 4, 2, 1, bias=False), nn.BatchNorm2d(2 * width), nn.LeakyReLU(0.2, True),  # 7 x 7
            nn.Conv2d(2 * width, 4 * width, 4, 2, 1, bias=False), nn.BatchNorm2d(4 * width),
            nn.LeakyReLU(0.2, True),  # N x 256 x 3 x 3
        )
        self.logit = nn.Conv2d(4 * width, 1, last, bias=False)  # N x 1 x 1 x 1: the whole map at once
        # Projection (conditional form): <embed(y), sum over positions of phi(x)>.
        self.embed = nn.Embedding(num_classes, 4 * width) if num_classes else None

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        h = self.features(x)
        out = self.logit(h).flatten(1).sum(1)  # N
        if self.embed is not None:
            if y is None:
                raise ConfigError("this discriminator is class-conditional: give the classes y")
            out = out + (self.embed(y) * h.sum((2, 3))).sum(1)
        return out


def dcgan_init(module: nn.Module) -> None:
    """§4: all weights from a zero-centred normal of standard deviation 0.02 (batch-norm scales around 1)."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, 0.0, 0.02)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class GAN(nn.Module):
    """A generator and its discriminator, trained as two optimisation phases of one model (the
    checkpoint holds both: ``generator.*`` and ``discriminator.*``).

    ``forward(images[, y])`` is the discriminator's realness logit, so the model takes the images
    its input size names (``summary``, ``bench``, ``predict``); :meth:`generate` draws samples.
    """

    def __init__(self, *, latent_dim: int = 100, width: int = 64, in_channels: int = 1, image_size: int = 28,
                 num_classes: int = 0):
        super().__init__()
        if image_size < 16:
            raise ConfigError(f"a DCGAN needs images of at least 16 x 16, not {image_size} x {image_size}")
        self.latent_dim, self.num_classes = latent_dim, num_classes
        self.generator = Generator(latent_dim=latent_dim, width=width, out_channels=in_channels,
                                   image_size=image_size, num_classes=num_classes)
        self.discriminator = Discriminator(width=width, in_channels=in_channels, image_size=image_size,
                                           num_classes=num_classes)
        dcgan_init(self)

    @property
    def conditional(self) -> bool:
        return self.num_classes > 0

    def forward(self, x: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        if self.conditional and y is None:  # a realness score without a class: the most favourable class
            return torch.stack([self.discriminator(x, torch.full((len(x),), k, dtype=torch.long, device=x.device))
                                for k in range(self.num_classes)], 1).amax(1)
        return self.discriminator(x, y)

    def generate(self, z: torch.Tensor, y: torch.Tensor | None = None) -> torch.Tensor:
        return self.generator(z, y)


@register_model("dcgan", family="DCGAN", paper=PAPER, year=2016, input_size=(1, 28, 28), num_classes=0,
                task="generate", description="DCGAN for 28 x 28 / 32 x 32 images (generator and discriminator)")
def dcgan(*, in_channels: int = 1, image_size: int = 28, latent_dim: int = 100, width: int = 64) -> GAN:
    return GAN(latent_dim=latent_dim, width=width, in_channels=in_channels, image_size=image_size)


@register_model("cgan", family="DCGAN", paper="Radford et al. 2016; Miyato & Koyama, ICLR 2018 (projection)",
                year=2018, input_size=(1, 28, 28), num_classes=10, task="generate",
                description="class-conditional DCGAN: concatenated generator, projection discriminator")
def cgan(*, num_classes: int = 10, in_channels: int = 1, image_size: int = 28, latent_dim: int = 100,
         width: int = 64) -> GAN:
    if num_classes < 2:
        raise ConfigError(f"a class-conditional GAN needs at least 2 classes, not {num_classes}")
    return GAN(latent_dim=latent_dim, width=width, in_channels=in_channels, image_size=image_size,
               num_classes=num_classes)
