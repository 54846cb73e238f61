"""Networks for the NumPy engine, laid out exactly like their torch twins so weights load by name.

* :class:`LeNet5`: LeCun et al., Proc. IEEE 1998, Fig. 2, in the decks' form (28x28 input padded by 2,
  sigmoid, average pooling, fully connected F5/F6); same names as ``cnnlab.models.lenet``.
* :class:`VGG`: Simonyan & Zisserman, ICLR 2015, Table 1: stacks of 3x3 convolutions (padding 1) and
  2x2/2 max-pooling, then fully connected layers with dropout; torchvision's names (``features.N``,
  ``classifier.N``). :func:`vgg_small` is a narrow, shallow column for 28x28 inputs.
* :class:`BasicBlock` and :class:`ResNet`: He et al., CVPR 2016, Fig. 2 and Table 1 (the two-3x3 block
  of ResNet-18/34, projection shortcut "option B" when the shape changes); torchvision's names.
* :class:`InceptionBlock`: Szegedy et al., CVPR 2015, Fig. 2(b) and Table 1 (1x1, 1x1->3x3, 1x1->5x5,
  3x3 max-pool->1x1 branches concatenated along channels).
"""

from __future__ import annotations

import numpy as np

from .nn import (AvgPool2d, BatchNorm, Conv2d, Dropout, Flatten, GlobalAvgPool2d, Identity, Linear, MaxPool2d, Module,
                 ReLU, Sequential, Sigmoid)


class LeNet5(Module):
    """C1 6@5x5 (pad 2) -> S2 -> C3 16@5x5 -> S4 -> F5 120 -> F6 84 -> output."""

    def __init__(self, *, num_classes: int = 10, in_channels: int = 1, image_size: int = 28, modern: bool = False):
        super().__init__()
        side = ((image_size // 2) - 4) // 2
        if side < 1:
            raise ValueError(f"LeNet-5 needs images of at least 12x12 pixels, got {image_size}x{image_size}")
        act = ReLU if modern else Sigmoid
        pool = MaxPool2d if modern else AvgPool2d
        norm = BatchNorm if modern else (lambda channels: Identity())
        self.features = Sequential(
            Conv2d(in_channels, 6, 5, padding=2), norm(6), act(), pool(2, 2),  # N x 6 x 14 x 14
            Conv2d(6, 16, 5), norm(16), act(), pool(2, 2),  # N x 16 x 5 x 5
        )
        hidden = [Linear(16 * side * side, 120), act(), Linear(120, 84), act()]
        if modern:
            hidden = [hidden[0], BatchNorm(120), act(), hidden[2], BatchNorm(84), act()]
        self.classifier = Sequential(Flatten(), *hidden, Linear(84, num_classes))

    def forward(self, x):
        return self.classifier(self.features(x))

    def backward(self, grad_out):
        return self.features.backward(self.classifier.backward(grad_out))


def lenet5(**kwargs) -> LeNet5:
    return LeNet5(**kwargs)


def lenet5_modern(**kwargs) -> LeNet5:
    return LeNet5(modern=True, **kwargs)


class VGG(Module):
    """``features`` from a column of the paper's Table 1 (numbers: 3x3 conv widths, "M": max-pool),
    then ``classifier``: Linear -> ReLU -> Dropout -> Linear -> ReLU -> Dropout -> Linear."""

    def __init__(self, config: list, *, in_channels: int = 3, image_size: int = 224, num_classes: int = 1000,
                 hidden: int = 4096, dropout: float = 0.5, batch_norm: bool = False):
        super().__init__()
        layers, channels, side = [], in_channels, image_size
        for item in config:
            if item == "M":
                layers.append(MaxPool2d(2, 2))
                side //= 2
            else:
                layers += [Conv2d(channels, item, 3, padding=1)]
                layers += [BatchNorm(item)] if batch_norm else []
                layers += [ReLU()]
                channels = item
        self.features = Sequential(*layers)
        self.flatten = Flatten()
        self.classifier = Sequential(
            Linear(channels * side * side, hidden), ReLU(), Dropout(dropout),
            Linear(hidden, hidden), ReLU(), Dropout(dropout),
            Linear(hidden, num_classes),
        )

    def forward(self, x):
        return self.classifier(self.flatten(self.features(x)))

    def backward(self, grad_out):
        return self.features.backward(self.flatten.backward(self.classifier.backward(grad_out)))


def vgg_small(**kwargs) -> VGG:
    """A VGG-style column for 1 x 28 x 28 inputs: [8, M, 16, 16, M], classifier 64 wide."""
    options = dict(in_channels=1, image_size=28, num_classes=10, hidden=64)
    options.update(kwargs)
    return VGG([8, "M", 16, 16, "M"], **options)


class BasicBlock(Module):
    """relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)), shortcut a 1x1 projection when shapes change."""

    def __init__(self, in_channels: int, channels: int, stride: int = 1):
        super().__init__()
        self.conv1 = Conv2d(in_channels, channels, 3, stride, 1, bias=False)
        self.bn1 = BatchNorm(channels)
        self.relu = ReLU()
        self.conv2 = Conv2d(channels, channels, 3, 1, 1, bias=False)
        self.bn2 = BatchNorm(channels)
        self.downsample = None
        if stride != 1 or in_channels != channels:
            self.downsample = Sequential(Conv2d(in_channels, channels, 1, stride, bias=False), BatchNorm(channels))
        self.out_relu = ReLU()  # a second instance: each ReLU remembers its own input for backward

    def forward(self, x):
        residual = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
        shortcut = self.downsample(x) if self.downsample is not None else x
        return self.out_relu(residual + shortcut)

    def backward(self, grad_out):
        g = self.out_relu.backward(grad_out)  # the sum passes g unchanged to both paths
        dx = self.conv1.backward(self.bn1.backward(self.relu.backward(self.conv2.backward(self.bn2.backward(g)))))
        return dx + (self.downsample.backward(g) if self.downsample is not None else g)


class ResNet(Module):
    """Stem 3x3 conv -> stages of :class:`BasicBlock` (the first block of a later stage halves the size)
    -> global average pool -> fc. ``depths`` and ``widths`` give the blocks and channels per stage."""

    def __init__(self, depths: tuple[int, ...] = (1, 1), widths: tuple[int, ...] = (8, 16), *, in_channels: int = 1,
                 num_classes: int = 10):
        super().__init__()
        self.conv1 = Conv2d(in_channels, widths[0], 3, 1, 1, bias=False)
        self.bn1 = BatchNorm(widths[0])
        self.relu = ReLU()
        channels = widths[0]
        for stage, (depth, width) in enumerate(zip(depths, widths), start=1):
            blocks = [BasicBlock(channels if b == 0 else width, width, 2 if (b == 0 and stage > 1) else 1)
                      for b in range(depth)]
            setattr(self, f"layer{stage}", Sequential(*blocks))
            channels = width
        self.stages = len(depths)
        self.avgpool = GlobalAvgPool2d()
        self.flatten = Flatten()
        self.fc = Linear(channels, num_classes)

    def _layers(self) -> list[Module]:
        stages = [getattr(self, f"layer{i}") for i in range(1, self.stages + 1)]
        return [self.conv1, self.bn1, self.relu, *stages, self.avgpool, self.flatten, self.fc]

    def forward(self, x):
        for layer in self._layers():
            x = layer(x)
        return x

    def backward(self, grad_out):
        for layer in reversed(self._layers()):
            grad_out = layer.backward(grad_out)
        return grad_out


def resnet_small(**kwargs) -> ResNet:
    return ResNet(**kwargs)


class InceptionBlock(Module):
    """Four parallel branches, outputs concatenated along channels: c1 + c3 + c5 + pool_proj channels.

    ``InceptionBlock(192, 64, (96, 128), (16, 32), 32)`` is the paper's inception (3a) (Table 1).
    """

    def __init__(self, in_channels: int, c1: int, c3: tuple[int, int], c5: tuple[int, int], pool_proj: int):
        super().__init__()
        self.branch1 = Sequential(Conv2d(in_channels, c1, 1), ReLU())
        self.branch2 = Sequential(Conv2d(in_channels, c3[0], 1), ReLU(), Conv2d(c3[0], c3[1], 3, padding=1), ReLU())
        self.branch3 = Sequential(Conv2d(in_channels, c5[0], 1), ReLU(), Conv2d(c5[0], c5[1], 5, padding=2), ReLU())
        self.branch4 = Sequential(MaxPool2d(3, 1, 1), Conv2d(in_channels, pool_proj, 1), ReLU())
        self.widths = (c1, c3[1], c5[1], pool_proj)

    def _branches(self) -> list[Sequential]:
        return [self.branch1, self.branch2, self.branch3, self.branch4]

    def forward(self, x):
        return np.concatenate([branch(x) for branch in self._branches()], axis=1)  # N x sum(widths) x H x W

    def backward(self, grad_out):
        pieces = np.split(grad_out, np.cumsum(self.widths)[:-1], axis=1)
        return sum(branch.backward(piece) for branch, piece in zip(self._branches(), pieces))
