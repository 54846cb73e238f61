"""The light networks' tables: SqueezeNet, MobileNetV2, ShuffleNet V2, Xception, SENet.

Plain data for :mod:`cnnlab.models`; every entry names the paper table it comes from.
"""

# SqueezeNet v1.0 (Iandola et al. 2016), Table 1: fire modules as (squeeze 1x1, expand 1x1, expand 3x3);
# "M" is a 3x3/2 max-pool.
SQUEEZENET_1_0 = ["M", (16, 64, 64), (16, 64, 64), (32, 128, 128), "M", (32, 128, 128), (48, 192, 192),
                  (48, 192, 192), (64, 256, 256), "M", (64, 256, 256)]

# MobileNetV2 (Sandler et al., CVPR 2018), Table 2: (expansion t, output channels c, repeats n, stride s)
MOBILENET_V2 = [(1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 4, 2), (6, 96, 3, 1), (6, 160, 3, 2),
                (6, 320, 1, 1)]
MOBILENET_V2_STEM, MOBILENET_V2_LAST = 32, 1280

# ShuffleNet V2 (Ma et al., ECCV 2018), Table 5, 1x: units per stage and output channels
# (conv1, stage2, stage3, stage4, conv5).
SHUFFLENET_V2_REPEATS = (4, 8, 4)
SHUFFLENET_V2_CHANNELS = {"0.5x": (24, 48, 96, 192, 1024), "1x": (24, 116, 232, 464, 1024),
                          "1.5x": (24, 176, 352, 704, 1024), "2x": (24, 244, 488, 976, 2048)}

# Xception (Chollet, CVPR 2017), Fig. 5: entry flow residual blocks, the middle flow, the exit flow.
XCEPTION_ENTRY = (128, 256, 728)  # each: two separable convs, a 3x3/2 max-pool, a 1x1/2 shortcut
XCEPTION_MIDDLE_REPEATS, XCEPTION_MIDDLE_WIDTH = 8, 728
XCEPTION_EXIT = ((728, 1024), (1536, 2048))

# SENet (Hu et al., CVPR 2018): squeeze-and-excitation reduction ratio r (§6.1 picks 16).
SE_REDUCTION = 16
