"""pix2pix (Isola, Zhu, Zhou & Efros, "Image-to-Image Translation with Conditional Adversarial
Networks", CVPR 2017): a U-Net generator and a PatchGAN discriminator, trained with the conditional
GAN loss plus 100 x L1 (Eq. 4, lambda = 100).

* Generator (§3.2.1): an encoder-decoder with skip connections between mirrored layers, "following
  the general shape of a U-Net". cnnlab's U-Net (:mod:`cnnlab.models.unet`, Ronneberger et al.) in its
  padded, batch-normalised form is used, with a tanh output; its depth is chosen so that every pool
  halves an even side (128 x 128: 4 levels; 28 x 28: 2). The paper's noise is its dropout; this
  generator is deterministic (the paper notes the dropout noise has little effect, §3.2).
* Discriminator (§3.2.2, appendix 6.1.2): the 70 x 70 PatchGAN ``C64-C128-C256-C512``, 4 x 4
  convolutions (stride 2, 2, 2, then 1), batch norm on all but C64, LeakyReLU 0.2, then a 4 x 4
  convolution to one channel: each output scores one 70 x 70 patch of the (condition, image) pair.
* A label-map condition (``num_labels`` > 0) arrives as one channel of class indices and is
  expanded to one-hot channels inside the model.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..registry import register_model
from .unet import UNet

PAPER = "Isola, Zhu, Zhou & Efros, CVPR 2017"


class PatchGAN(nn.Module):
    """The 70 x 70 PatchGAN: N x C x H x W -> N x 1 x (H/8 - 2) x (W/8 - 2) logits (128 -> 14)."""

    def __init__(self, in_channels: int, width: int = 64):
        super().__init__()
        w = width

        def block(cin: int, cout: int, stride: int, norm: bool) -> list[nn.Module]:
            layers: list[nn.Module] = [nn.Conv2d(cin, cout, 4, stride, 1, bias=not norm)]
            if norm:
                layers.append(nn.BatchNorm2d(cout))
            return layers + [nn.LeakyReLU(0.2, True)]

        self.net = nn.Sequential(
            *block(in_channels, w, 2, False),  # C64: N x 64 x 64 x 64
            *block(w, 2 * w, 2, True),  # C128: 32 x 32
            *block(2 * w, 4 * w, 2, True),  # C256: 16 x 16
            *block(4 * w, 8 * w, 1, True),  # C512: 15 x 15
            nn.Conv2d(8 * w, 1, 4, 1, 1))  # N x 1 x 14 x 14

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


class Pix2Pix(nn.Module):
    """Condition -> image (``translate``) and the PatchGAN's view of a (condition, image) pair
    (``forward``); ``generator.*`` and ``discriminator.*`` in one checkpoint."""

    def __init__(self, *, in_channels: int = 1, out_channels: int = 1, num_labels: int = 0, image_size: int = 128,
                 width: int = 64, unet_width: int = 16):
        super().__init__()
        depth = 0
        side = image_size
        while depth < 4 and side % 2 == 0 and side // 2 >= 7:
            side //= 2
            depth += 1
        if depth == 0:
            raise ConfigError(f"pix2pix needs an even image side of at least 14, not {image_size}")
        self.num_labels, self.out_channels = num_labels, out_channels
        cond = num_labels if num_labels else in_channels
        self.generator = UNet(num_classes=out_channels, in_channels=cond, width=unet_width, depth=depth, padded=True,
                              batch_norm=True)
        self.discriminator = PatchGAN(cond + out_channels, width)
        for m in self.discriminator.modules():  # §6.2: weights from N(0, 0.02)
            if isinstance(m, nn.Conv2d):
                nn.init.normal_(m.weight, 0.0, 0.02)

    def condition(self, x: torch.Tensor) -> torch.Tensor:
        """A label map (one channel of class indices) as one-hot channels; any other condition as it is."""
        if not self.num_labels:
            return x
        labels = x[:, 0].round().long().clamp(0, self.num_labels - 1)
        return F.one_hot(labels, self.num_labels).permute(0, 3, 1, 2).to(x.dtype)  # N x K x H x W

    def translate(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.generator(self.condition(x)))  # N x C x H x W in [-1, 1]

    def score(self, x: torch.Tensor, image: torch.Tensor) -> torch.Tensor:
        return self.discriminator(torch.cat([self.condition(x), image], 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.translate(x)


@register_model("pix2pix", family="pix2pix", paper=PAPER, year=2017, input_size=(1, 128, 128), num_classes=0,
                task="translate", description="pix2pix: U-Net generator, 70 x 70 PatchGAN, L1 x 100")
def pix2pix(*, in_channels: int = 1, out_channels: int = 1, num_labels: int = 0, image_size: int = 128,
            width: int = 64, unet_width: int = 16) -> Pix2Pix:
    return Pix2Pix(in_channels=in_channels, out_channels=out_channels, num_labels=num_labels, image_size=image_size,
                   width=width, unet_width=unet_width)
