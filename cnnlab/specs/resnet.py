"""ResNet, He, Zhang, Ren & Sun, CVPR 2016, "Deep residual learning for image recognition".

Table 1 (ImageNet): blocks per stage conv2_x..conv5_x, and whether the block is the two-layer
"basic" block (3x3, 3x3) or the three-layer "bottleneck" (1x1, 3x3, 1x1 with 4x expansion).
§4.2 (CIFAR-10): depth 6n + 2, three stages of n basic blocks with 16/32/64 filters on 32/16/8 maps.
"""

# name: (block kind, blocks in conv2_x, conv3_x, conv4_x, conv5_x)
IMAGENET_STAGES: dict[str, tuple[str, tuple[int, int, int, int]]] = {
    "resnet18": ("basic", (2, 2, 2, 2)),
    "resnet34": ("basic", (3, 4, 6, 3)),
    "resnet50": ("bottleneck", (3, 4, 6, 3)),
    "resnet101": ("bottleneck", (3, 4, 23, 3)),
    "resnet152": ("bottleneck", (3, 8, 36, 3)),
}
STAGE_WIDTHS = (64, 128, 256, 512)  # Table 1: the 3x3 filters of conv2_x..conv5_x
BOTTLENECK_EXPANSION = 4  # the last 1x1 of a bottleneck has 4x the 3x3's filters (256 after 64)

# Table 1's FLOPs row (multiply-adds, x 10^9) and its output sizes at 224x224.
TABLE1_GFLOPS = {"resnet18": 1.8, "resnet34": 3.6, "resnet50": 3.8, "resnet101": 7.6, "resnet152": 11.3}
TABLE1_OUTPUT_SIDES = {"conv1": 112, "conv2_x": 56, "conv3_x": 28, "conv4_x": 14, "conv5_x": 7}

# §4.2: depth 6n + 2 -> n; Table 6 gives the parameter counts (millions).
CIFAR_DEPTHS = (20, 32, 44, 56, 110)
CIFAR_WIDTHS = (16, 32, 64)
CIFAR_PARAMS_MILLIONS = {20: 0.27, 32: 0.46, 44: 0.66, 56: 0.85, 110: 1.7}


def cifar_blocks_per_stage(depth: int) -> int:
    """n of §4.2: 6n layers in the three stages, plus the first conv and the FC layer."""
    if (depth - 2) % 6:
        raise ValueError(f"a CIFAR ResNet has 6n + 2 layers, not {depth}")
    return (depth - 2) // 6
