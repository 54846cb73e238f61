"""U-Net (Ronneberger, Fischer & Brox, "U-Net: Convolutional Networks for Biomedical Image
Segmentation", MICCAI 2015).

Fig. 1 of the paper: a contracting path of four steps, each two unpadded 3x3 convolutions with ReLU
and a 2x2 max-pool that doubles the channels (64, 128, 256, 512), a bottom of two 3x3 convolutions
of 1024 channels, and an expansive path of four steps, each a 2x2 "up-convolution" that halves the
channels, a concatenation with the **cropped** map of the same level of the contracting path
("copy and crop": the unpadded convolutions lose a border pixel each, so the encoder map is larger),
and two 3x3 convolutions; a 1x1 convolution gives the class scores. With valid convolutions a
572 x 572 tile gives a 388 x 388 map (the paper's Fig. 1); the network has 23 convolutional layers
and about 31M parameters (1 input channel, 2 classes).

``padded=True`` pads every 3x3 convolution so the output has the input's size (the common modern
form); the small-input form (the scenes, 1 x 128 x 128) is padded, adds batch norm and starts at 16
channels (16, 32, 64, 128, bottom 256).
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ..layers.upsample import crop_to, transfer_convolutions
from ..registry import register_model

PAPER = "Ronneberger, Fischer & Brox, MICCAI 2015"


def double_conv(cin: int, cout: int, *, padded: bool, batch_norm: bool) -> nn.Sequential:
    """Two 3x3 convolutions, each with ReLU (batch norm before it, in the small-input form)."""
    layers: list[nn.Module] = []
    for c in (cin, cout):
        layers.append(nn.Conv2d(c, cout, 3, padding=1 if padded else 0))
        if batch_norm:
            layers.append(nn.BatchNorm2d(cout))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class UNet(nn.Module):
    def __init__(self, *, num_classes: int = 2, in_channels: int = 1, width: int = 64, depth: int = 4,
                 padded: bool = False, batch_norm: bool = False):
        super().__init__()
        widths = [width * 2 ** i for i in range(depth + 1)]  # 64, 128, 256, 512, 1024
        self.padded = padded
        self.down = nn.ModuleList()
        channels = in_channels
        for w in widths[:-1]:
            self.down.append(double_conv(channels, w, padded=padded, batch_norm=batch_norm))
            channels = w
        self.pool = nn.MaxPool2d(2, 2)
        self.bottom = double_conv(widths[-2], widths[-1], padded=padded, batch_norm=batch_norm)
        self.up = nn.ModuleList()
        self.up_conv = nn.ModuleList()
        for w in reversed(widths[:-1]):  # 512, 256, 128, 64
            self.up.append(nn.ConvTranspose2d(2 * w, w, 2, stride=2))  # "up-convolution" halving the channels
            self.up_conv.append(double_conv(2 * w, w, padded=padded, batch_norm=batch_norm))
        self.score = nn.Conv2d(widths[0], num_classes, 1)
        for m in self.modules():  # §3: Gaussian of standard deviation sqrt(2 / N), N = fan-in
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_in", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = []
        for block in self.down:
            x = block(x)  # valid, 572: 568, then 280, 136, 64 after each step's two convolutions
            skips.append(x)
            if not self.padded and x.shape[-1] % 2:
                raise ConfigError(f"U-Net's valid form needs even maps before every pool; got {x.shape[-1]} "
                                  "(use a 572 x 572 tile, or a side of 16k + 12)")
            x = self.pool(x)
        x = self.bottom(x)  # N x 1024 x 28 x 28
        for up, conv, skip in zip(self.up, self.up_conv, reversed(skips)):
            x = up(x)  # N x 512 x 56 x 56
            x = conv(torch.cat([crop_to(skip, *x.shape[-2:]), x], 1))  # copy and crop: 64 -> 56
        return self.score(x)  # N x 2 x 388 x 388 (valid) or N x K x H x W (padded)

    def output_size(self, size: int) -> int:
        """The side of the output for an input of side ``size`` (valid form: 572 -> 388)."""
        if self.padded:
            return size
        depth = len(self.down)
        for _ in range(depth):
            size = (size - 4) // 2
        size -= 4
        for _ in range(depth):
            size = size * 2 - 4
        return size

    @torch.no_grad()
    def encoder_from(self, classifier: nn.Module) -> int:
        """Start the contracting path from a classifier's first convolutions, where their shapes match."""
        return transfer_convolutions(classifier, self.down)


@register_model("unet", family="U-Net", paper=PAPER, year=2015, input_size=(1, 572, 572), num_classes=2,
                task="segment", tags=("segmentation",))
def unet(*, num_classes: int = 2, in_channels: int = 1, small_input: bool = False, padded: bool | None = None) -> UNet:
    """U-Net: the paper's valid convolutions (572 -> 388, copy and crop), or padded for same-size output."""
    if small_input:
        return UNet(num_classes=num_classes, in_channels=in_channels, width=16, padded=True if padded is None else padded,
                    batch_norm=True)
    return UNet(num_classes=num_classes, in_channels=in_channels, padded=bool(padded))
