"""DeconvNet (Noh, Hong & Han, "Learning Deconvolution Network for Semantic Segmentation", ICCV 2015).

Table 1 / Fig. 2 of the paper: the convolution network is VGG-16 with its fully connected layers
as convolutions (fc6 a 7x7 convolution taking pool5's 7 x 7 x 512 map to 1 x 1 x 4096, fc7 a 1x1);
the deconvolution network mirrors it: a 7x7 deconvolution (transposed convolution) back to
7 x 7 x 512, then for each pooling layer an **unpooling** layer that puts every value back at the
switch location recorded by its max-pool, and 3x3 deconvolution layers that densify the enlarged,
sparse map. Every convolution and deconvolution is followed by batch normalisation and ReLU (§3.3:
batch norm is what makes the deep net trainable); the last 1x1 layer gives the class scores. The
paper's form takes 224 x 224 inputs (object proposals) and has about 252M parameters (SegNet's
Table 6 counts 252M), most in fc6, fc7 and the deconvolution of fc6.

The small-input form (the scenes, 1 x 128 x 128) divides every width by 4, narrows fc6 / fc7 to 512
channels and sizes fc6's kernel to pool5 (4 x 4 at 128 x 128), so it still takes the whole map to 1 x 1.
An image smaller than 224 x 224 cannot hold fc6's 7x7 window and gets the small-input form.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ..layers.upsample import transfer_convolutions
from ..registry import register_model
from .segnet import vgg_blocks, vgg_encoder

PAPER = "Noh, Hong & Han, ICCV 2015"


def conv_bn_relu(cin: int, cout: int, kernel: int = 3, *, transposed: bool = False) -> nn.Sequential:
    layer = (nn.ConvTranspose2d(cin, cout, kernel, padding=kernel // 2 if kernel == 3 else 0) if transposed
             else nn.Conv2d(cin, cout, kernel, padding=kernel // 2 if kernel == 3 else 0))
    return nn.Sequential(layer, nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class DeconvNet(nn.Module):
    """Convolution network (VGG-16 + fc6 / fc7) and its mirror, the deconvolution network."""

    def __init__(self, *, num_classes: int = 21, in_channels: int = 3, width_divisor: int = 1, fc_width: int = 4096,
                 fc_kernel: int = 7):
        super().__init__()
        blocks = vgg_blocks(in_channels, width_divisor)
        self.encoder, channels = vgg_encoder(blocks, in_channels)
        self.pool = nn.MaxPool2d(2, 2, return_indices=True)
        self.fc6 = conv_bn_relu(channels, fc_width, fc_kernel)  # 7 x 7 x 512 -> 1 x 1 x 4096
        self.fc7 = conv_bn_relu(fc_width, fc_width, 1)  # 1 x 1 x 4096
        self.deconv_fc6 = conv_bn_relu(fc_width, channels, fc_kernel, transposed=True)  # -> 7 x 7 x 512
        self.unpool = nn.MaxUnpool2d(2, 2)
        self.decoder = nn.ModuleList()
        for i, widths in enumerate(reversed(blocks)):  # deconv5_1..5_3 (512), deconv4_1, 4_2 (512), 4_3 (256) ...
            out = blocks[len(blocks) - 2 - i][-1] if i < len(blocks) - 1 else widths[-1]
            layers = [conv_bn_relu(widths[-1], widths[-1], transposed=True) for _ in widths[:-1]]
            layers.append(conv_bn_relu(widths[-1], out, transposed=True))
            self.decoder.append(nn.Sequential(*layers))
        self.score = nn.Conv2d(blocks[0][-1], num_classes, 1)  # 224 x 224 x 21
        self.fc_kernel = fc_kernel
        for m in self.modules():
            if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        switches = []
        for block in self.encoder:
            x = block(x)
            size = x.shape[-2:]
            x, index = self.pool(x)  # switch variables: where each maximum was
            switches.append((index, size))
        if x.shape[-1] < self.fc_kernel or x.shape[-2] < self.fc_kernel:
            raise ConfigError(f"DeconvNet's fc6 is a {self.fc_kernel}x{self.fc_kernel} window on pool5, which is only "
                              f"{x.shape[-2]}x{x.shape[-1]} here: the input is too small")
        x = self.deconv_fc6(self.fc7(self.fc6(x)))  # N x 512 x 7 x 7 -> N x 4096 x 1 x 1 -> N x 512 x 7 x 7
        for block, (index, size) in zip(self.decoder, reversed(switches)):
            x = block(self.unpool(x, index, output_size=size))  # unpool 7 -> 14, deconv5_x ... unpool 112 -> 224
        return self.score(x)  # N x K x 224 x 224

    @torch.no_grad()
    def encoder_from(self, classifier: nn.Module) -> int:
        """Start the convolution network from a VGG-16 classifier (the paper starts from ImageNet's)."""
        return transfer_convolutions(classifier, self.encoder)


@register_model("deconvnet", family="DeconvNet", paper=PAPER, year=2015, input_size=(3, 224, 224), num_classes=21,
                task="segment", tags=("segmentation",))
def deconvnet(*, num_classes: int = 21, in_channels: int = 3, small_input: bool = False,
              image_size: int = 224) -> DeconvNet:
    """DeconvNet: mirrored VGG-16 with unpooling by switch locations and deconvolution layers (Fig. 2)."""
    if image_size % 32:
        raise ConfigError(f"DeconvNet takes images whose side is a multiple of 32 (five pools), not {image_size}")
    if small_input or image_size < 224:
        return DeconvNet(num_classes=num_classes, in_channels=in_channels, width_divisor=4, fc_width=512,
                         fc_kernel=image_size // 32)
    return DeconvNet(num_classes=num_classes, in_channels=in_channels)
