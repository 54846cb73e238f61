"""The tables of the light and modern networks after ResNet: MobileNet v1/v3, GhostNet, EfficientNet,
Darknet-19/53, CSPDarknet-53 and Wide ResNet.

Plain data for :mod:`cnnlab.models`; every entry names the paper table it comes from.
"""

# MobileNet v1 (Howard et al. 2017), Table 1: after a 3x3/2 conv with 32 filters, depthwise-separable
# layers as (pointwise output channels, stride of the depthwise 3x3).
MOBILENET_V1_STEM = 32
MOBILENET_V1 = [(64, 1), (128, 2), (128, 1), (256, 2), (256, 1), (512, 2), (512, 1), (512, 1), (512, 1),
                (512, 1), (512, 1), (1024, 2), (1024, 1)]

# MobileNet v3 (Howard et al., ICCV 2019), Table 1 (large) and Table 2 (small): bneck rows as
# (kernel, expansion size, output channels, squeeze-excite, nonlinearity RE/HS, stride).
MOBILENET_V3_LARGE = [
    (3, 16, 16, False, "RE", 1), (3, 64, 24, False, "RE", 2), (3, 72, 24, False, "RE", 1),
    (5, 72, 40, True, "RE", 2), (5, 120, 40, True, "RE", 1), (5, 120, 40, True, "RE", 1),
    (3, 240, 80, False, "HS", 2), (3, 200, 80, False, "HS", 1), (3, 184, 80, False, "HS", 1),
    (3, 184, 80, False, "HS", 1), (3, 480, 112, True, "HS", 1), (3, 672, 112, True, "HS", 1),
    (5, 672, 160, True, "HS", 2), (5, 960, 160, True, "HS", 1), (5, 960, 160, True, "HS", 1)]
MOBILENET_V3_SMALL = [
    (3, 16, 16, True, "RE", 2), (3, 72, 24, False, "RE", 2), (3, 88, 24, False, "RE", 1),
    (5, 96, 40, True, "HS", 2), (5, 240, 40, True, "HS", 1), (5, 240, 40, True, "HS", 1),
    (5, 120, 48, True, "HS", 1), (5, 144, 48, True, "HS", 1), (5, 288, 96, True, "HS", 2),
    (5, 576, 96, True, "HS", 1), (5, 576, 96, True, "HS", 1)]
# stem filters, the last 1x1 conv, the FC (1x1 conv without BN in the paper) before the classifier
MOBILENET_V3_ENDS = {"large": (16, 960, 1280), "small": (16, 576, 1024)}

# EfficientNet-B0 (Tan & Le, ICML 2019), Table 1: stages as (expansion, kernel, stride, output channels,
# layers); the stem is a 3x3/2 conv with 32 filters, the head a 1x1 conv with 1280.
EFFICIENTNET_B0 = [(1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3), (6, 5, 1, 112, 3),
                   (6, 5, 2, 192, 4), (6, 3, 1, 320, 1)]
EFFICIENTNET_STEM, EFFICIENTNET_HEAD = 32, 1280
# §3.3 compound scaling: depth d = alpha^phi, width w = beta^phi, resolution r = gamma^phi with
# alpha * beta^2 * gamma^2 ~ 2, found by grid search at phi = 1.
EFFICIENTNET_ALPHA, EFFICIENTNET_BETA, EFFICIENTNET_GAMMA = 1.2, 1.1, 1.15
# The released B1-B7 (the paper's Table 2 models): (width multiplier, depth multiplier, resolution, dropout).
EFFICIENTNET_SCALING = {
    "b0": (1.0, 1.0, 224, 0.2), "b1": (1.0, 1.1, 240, 0.2), "b2": (1.1, 1.2, 260, 0.3),
    "b3": (1.2, 1.4, 300, 0.3), "b4": (1.4, 1.8, 380, 0.4), "b5": (1.6, 2.2, 456, 0.4),
    "b6": (1.8, 2.6, 528, 0.5), "b7": (2.0, 3.1, 600, 0.5)}
# Table 2's parameter counts (millions) and ImageNet top-1 (%).
EFFICIENTNET_TABLE2 = {"b0": (5.3, 77.1), "b1": (7.8, 79.1), "b2": (9.2, 80.1), "b3": (12, 81.6),
                       "b4": (19, 82.9), "b5": (30, 83.6), "b6": (43, 84.0), "b7": (66, 84.3)}

# GhostNet (Han et al., CVPR 2020), Table 1: G-bneck rows as (kernel, expansion size, output, SE, stride);
# stem 3x3/2 with 16 filters, then a 1x1 conv to 960, global pooling and a 1x1 conv to 1280.
GHOSTNET = [(3, 16, 16, False, 1), (3, 48, 24, False, 2), (3, 72, 24, False, 1), (5, 72, 40, True, 2),
            (5, 120, 40, True, 1), (3, 240, 80, False, 2), (3, 200, 80, False, 1), (3, 184, 80, False, 1),
            (3, 184, 80, False, 1), (3, 480, 112, True, 1), (3, 672, 112, True, 1), (5, 672, 160, True, 2),
            (5, 960, 160, False, 1), (5, 960, 160, True, 1), (5, 960, 160, False, 1), (5, 960, 160, True, 1)]
GHOSTNET_ENDS = (16, 960, 1280)

# Darknet-19 (Redmon & Farhadi, YOLO9000, CVPR 2017), Table 6: (filters, kernel) convolutions, "M" a 2x2/2 max-pool.
DARKNET19 = [(32, 3), "M", (64, 3), "M", (128, 3), (64, 1), (128, 3), "M", (256, 3), (128, 1), (256, 3), "M",
             (512, 3), (256, 1), (512, 3), (256, 1), (512, 3), "M", (1024, 3), (512, 1), (1024, 3), (512, 1),
             (1024, 3)]

# Darknet-53 (Redmon & Farhadi, YOLOv3 2018), Table 1: a 3x3 conv with 32 filters, then per stage a 3x3/2 conv
# to c filters and n residual units [1x1 c/2, 3x3 c].
DARKNET53_STEM = 32
DARKNET53 = [(64, 1), (128, 2), (256, 8), (512, 8), (1024, 4)]

# CSPDarknet-53 (Wang et al., CVPRW 2020, "CSPNet", Fig. 2 / the YOLOv4 backbone): the stages of
# Darknet-53, each split into two halves by 1x1 convs; one half runs the residual units, then a
# transition 1x1, the halves are concatenated and fused by another 1x1. The first stage keeps full width.
CSPDARKNET53_STEM = 32
CSPDARKNET53 = DARKNET53

# Wide ResNet (Zagoruyko & Komodakis, BMVC 2016), Table 1: WRN-d-k on CIFAR, groups of
# (d - 4) / 6 pre-activation basic blocks of 16k, 32k, 64k filters after a 3x3 conv with 16.
WRN_CIFAR_WIDTHS = (16, 32, 64)
WRN_CIFAR_STEM = 16
