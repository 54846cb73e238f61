"""SegNet (Badrinarayanan, Kendall & Cipolla, "SegNet: A Deep Convolutional Encoder-Decoder
Architecture for Image Segmentation", TPAMI 2017).

The encoder is VGG-16's thirteen convolutions (column D of Simonyan & Zisserman's Table 1) with batch
norm, without the fully connected layers (§3: dropping them cuts the encoder from 134M to 14.7M
parameters and keeps higher-resolution maps). Each 2x2 max-pool stores the index of the maximum
in its window; the decoder mirrors the encoder and upsamples with those indices (Fig. 2 and 3: a
sparse map, the value put back where the maximum was, zeros elsewhere), then densifies the sparse map
with trainable 3x3 convolutions. No upsampling is learnt and no encoder map is copied, only its
pooling indices (2 bits per 2x2 window). The last decoder convolution gives the class scores (the
paper's soft-max classifier follows it); SegNet has 29.5M parameters (Table 6).

The small-input form (the scenes, 1 x 128 x 128) keeps the layers and divides every width by 4.
"""

from __future__ import annotations

import torch
from torch import nn

from ..layers.upsample import transfer_convolutions
from ..registry import register_model
from ..specs.vgg import VGG_COLUMNS

PAPER = "Badrinarayanan, Kendall & Cipolla, TPAMI 2017"


def conv_bn_relu(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


def vgg_blocks(in_channels: int, width_divisor: int = 1) -> list[list[int]]:
    """VGG-16's column D as five blocks of output widths ([64, 64], [128, 128], [256] * 3, [512] * 3, [512] * 3)."""
    blocks, current = [], []
    for item in VGG_COLUMNS["D"]:
        if item == "M":
            blocks.append(current)
            current = []
        else:
            current.append(max(16, item // width_divisor))
    return blocks


def vgg_encoder(blocks: list[list[int]], in_channels: int) -> tuple[nn.ModuleList, int]:
    """VGG-16's five convolution blocks (3x3, batch norm, ReLU), one module per block so that each
    block's output can be pooled with its indices; and the last block's width."""
    encoder = nn.ModuleList()
    channels = in_channels
    for widths in blocks:
        layers = []
        for w in widths:
            layers.append(conv_bn_relu(channels, w))
            channels = w
        encoder.append(nn.Sequential(*layers))
    return encoder, channels


class SegNet(nn.Module):
    """Encoder: five VGG-16 blocks, each ending in a 2x2 max-pool that remembers its indices;
    decoder: five mirrored blocks, each starting with max-unpooling by those indices."""

    def __init__(self, *, num_classes: int = 12, in_channels: int = 3, width_divisor: int = 1):
        super().__init__()
        blocks = vgg_blocks(in_channels, width_divisor)
        self.encoder, channels = vgg_encoder(blocks, in_channels)
        self.pool = nn.MaxPool2d(2, 2, return_indices=True)
        self.unpool = nn.MaxUnpool2d(2, 2)
        # Decoder block i mirrors encoder block 4 - i: its convolutions keep the width but for the last,
        # which narrows to the next (shallower) block's width; the very last outputs the class scores.
        self.decoder = nn.ModuleList()
        for i, widths in enumerate(reversed(blocks)):
            out = blocks[len(blocks) - 2 - i][-1] if i < len(blocks) - 1 else None
            layers = [conv_bn_relu(widths[-1], widths[-1]) for _ in widths[:-1]]
            layers.append(conv_bn_relu(widths[-1], out) if out is not None
                          else nn.Conv2d(widths[-1], num_classes, 3, padding=1))
            self.decoder.append(nn.Sequential(*layers))
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        switches = []
        for block in self.encoder:
            x = block(x)
            size = x.shape[-2:]
            x, index = self.pool(x)  # 224: N x 64 x 112 x 112 ... N x 512 x 7 x 7
            switches.append((index, size))
        for block, (index, size) in zip(self.decoder, reversed(switches)):
            x = block(self.unpool(x, index, output_size=size))  # sparse, then densified
        return x  # N x K x H x W

    @torch.no_grad()
    def encoder_from(self, classifier: nn.Module) -> int:
        """Start the encoder from a VGG-16 classifier's convolutions (the paper starts from ImageNet's)."""
        return transfer_convolutions(classifier, self.encoder)


@register_model("segnet", family="SegNet", paper=PAPER, year=2017, input_size=(3, 360, 480), num_classes=12,
                task="segment", tags=("segmentation",))
def segnet(*, num_classes: int = 12, in_channels: int = 3, small_input: bool = False) -> SegNet:
    """SegNet: VGG-16's 13 convolutions, a decoder unpooling with the encoder's max-pooling indices (Fig. 2)."""
    return SegNet(num_classes=num_classes, in_channels=in_channels, width_divisor=4 if small_input else 1)
