"""DenseNet, Huang, Liu, van der Maaten & Weinberger, CVPR 2017, "Densely connected convolutional networks".

Table 1 (ImageNet, DenseNet-BC with growth rate k = 32): layers per dense block. Each layer is
BN-ReLU-1x1 conv (4k filters, the "bottleneck") then BN-ReLU-3x3 conv (k filters); transitions
halve the channels ("compression" theta = 0.5) and the grid (2x2 average pooling).
"""

# name: dense layers in blocks 1..4 (Table 1)
DENSENET_BLOCKS: dict[str, tuple[int, int, int, int]] = {
    "densenet121": (6, 12, 24, 16),
    "densenet169": (6, 12, 32, 32),
    "densenet201": (6, 12, 48, 32),
    "densenet264": (6, 12, 64, 48),
}
GROWTH_RATE = 32
STEM_CHANNELS = 64  # 2k: the first 7x7/2 convolution
BOTTLENECK_FACTOR = 4  # the 1x1 conv produces 4k maps
COMPRESSION = 0.5

# The small DenseNet-BC of §4 (CIFAR/SVHN, k = 12, three blocks) shortened for 28x28 images.
SMALL_BC_BLOCKS = (6, 12, 8)
SMALL_BC_GROWTH = 12
