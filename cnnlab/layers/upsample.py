"""Pieces the encoder-decoder segmentation networks share: learnable upsampling initialised to
bilinear interpolation (FCN, Long et al. 2015, §3.3), cropping a map to another's size (FCN's Caffe
``Crop`` layer, U-Net's "copy and crop"), and moving a classifier's convolutions into an encoder.
"""

from __future__ import annotations

import torch
from torch import nn


def bilinear_kernel(channels: int, kernel: int) -> torch.Tensor:
    """``channels x channels x kernel x kernel`` weights of a transposed convolution that performs
    bilinear interpolation channel by channel (identity across channels, a tent in space)."""
    factor = (kernel + 1) // 2
    center = factor - 1 if kernel % 2 == 1 else factor - 0.5
    ramp = 1 - (torch.arange(kernel, dtype=torch.float64) - center).abs() / factor
    tent = (ramp[:, None] * ramp[None, :]).float()  # kernel x kernel
    weight = torch.zeros(channels, channels, kernel, kernel)
    weight[range(channels), range(channels)] = tent
    return weight


class BilinearUpsample(nn.ConvTranspose2d):
    """A learnable ``factor``-times upsampling: a ``2 factor`` x ``2 factor`` transposed convolution with
    stride ``factor``, no bias, initialised to bilinear interpolation (FCN §3.3: "initialize to bilinear
    upsampling, then learn"). ``padding=factor // 2`` gives exactly ``factor`` times the input side;
    ``padding=0`` is the Caffe reference nets' form, cropped afterwards."""

    def __init__(self, channels: int, factor: int, *, padding: int | None = None):
        kernel = 2 * factor
        super().__init__(channels, channels, kernel, stride=factor,
                         padding=factor // 2 if padding is None else padding, bias=False)
        with torch.no_grad():
            self.weight.copy_(bilinear_kernel(channels, kernel))


def crop_to(x: torch.Tensor, height: int, width: int, offset: int | tuple[int, int] | None = None) -> torch.Tensor:
    """``x[..., o:o + height, o:o + width]``: ``offset`` given (FCN's fixed Caffe offsets) or centred
    (U-Net's copy and crop) when None."""
    h, w = x.shape[-2:]
    if offset is None:
        oy, ox = (h - height) // 2, (w - width) // 2
    else:
        oy, ox = (offset, offset) if isinstance(offset, int) else offset
    if oy < 0 or ox < 0 or oy + height > h or ox + width > w:
        raise ValueError(f"cannot crop a {h}x{w} map to {height}x{width} at offset ({oy}, {ox})")
    return x[..., oy:oy + height, ox:ox + width]


def conv_layers(module: nn.Module) -> list[nn.Conv2d]:
    """The ``nn.Conv2d`` layers of ``module`` in order (transposed convolutions excluded)."""
    return [m for m in module.modules() if type(m) is nn.Conv2d]


def transfer_convolutions(source: nn.Module, target: nn.Module) -> int:
    """Copy the k-th convolution (and batch norm) of ``source`` into the k-th of ``target``, for as many
    as both have with equal shapes, in order; returns how many were copied.

    This is how a classifier's trunk starts a segmentation encoder whose pooling differs (the small
    VGG classifier keeps three max-pools, its FCN / SegNet encoder five): pools hold no weights, so
    the convolutions line up one for one.
    """
    copied = 0
    src_bn = [m for m in source.modules() if isinstance(m, nn.BatchNorm2d)]
    dst_bn = [m for m in target.modules() if isinstance(m, nn.BatchNorm2d)]
    with torch.no_grad():
        for i, (a, b) in enumerate(zip(conv_layers(source), conv_layers(target))):
            if a.weight.shape != b.weight.shape:
                break
            b.weight.copy_(a.weight)
            if a.bias is not None and b.bias is not None:
                b.bias.copy_(a.bias)
            if i < len(src_bn) and i < len(dst_bn) and src_bn[i].weight.shape == dst_bn[i].weight.shape:
                dst_bn[i].load_state_dict(src_bn[i].state_dict())
            copied += 1
    return copied
