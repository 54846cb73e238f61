"""AlexNet, Krizhevsky, Sutskever & Hinton 2012, Fig. 2 and §3, as the decks tabulate it, and ZFNet.

Each conv row: (name, filters, kernel, stride, padding, groups). ``groups=2`` marks the layers
whose kernels see only the half of the previous layer on their own GPU (C2, C4, C5); C3 and the
fully connected layers are connected across both GPUs.
"""

ALEXNET_CONVS = [
    ("conv1", 96, 11, 4, 0, 1),   # 227 -> 55
    ("conv2", 256, 5, 1, 2, 2),   # 27 -> 27
    ("conv3", 384, 3, 1, 1, 1),   # 13 -> 13
    ("conv4", 384, 3, 1, 1, 2),
    ("conv5", 256, 3, 1, 1, 2),
]
ALEXNET_FC = [4096, 4096]

# ZFNet, Zeiler & Fergus 2014, Fig. 3: AlexNet's layers with conv1 7x7 stride 2 (not 11x11 stride 4),
# conv2 stride 2, and every layer on one GPU (no groups). conv3/4/5 keep AlexNet's 384, 384, 256 maps.
ZFNET_CONVS = [
    ("conv1", 96, 7, 2, 1, 1),    # 224 -> 110
    ("conv2", 256, 5, 2, 0, 1),   # 55 -> 26
    ("conv3", 384, 3, 1, 1, 1),   # 13 -> 13
    ("conv4", 384, 3, 1, 1, 1),
    ("conv5", 256, 3, 1, 1, 1),
]

# The wider variant of the same paper, Table 2's row "1 convnet as per Fig. 3 but with layers 3,4,5:
# 512,1024,512 maps - (b)": one of the six networks of the paper's best ensemble, not Fig. 3's model.
ZFNET_WIDE_CONVS = ZFNET_CONVS[:2] + [
    ("conv3", 512, 3, 1, 1, 1),
    ("conv4", 1024, 3, 1, 1, 1),
    ("conv5", 512, 3, 1, 1, 1),
]
