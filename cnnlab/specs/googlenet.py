"""GoogLeNet (Inception v1), Szegedy et al. 2015, "Going deeper with convolutions", Table 1.

Each inception row lists the table's columns in order:
(#1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj), with the table's "params" (in K, where
K = 1024 as the arithmetic shows) and "ops" (millions of multiply-accumulates) for checking.
"""

# name: (in_channels, #1x1, #3x3 reduce, #3x3, #5x5 reduce, #5x5, pool proj)
INCEPTION_ROWS: dict[str, tuple[int, int, int, int, int, int, int]] = {
    "3a": (192, 64, 96, 128, 16, 32, 32),
    "3b": (256, 128, 128, 192, 32, 96, 64),
    "4a": (480, 192, 96, 208, 16, 48, 64),
    "4b": (512, 160, 112, 224, 24, 64, 64),
    "4c": (512, 128, 128, 256, 24, 64, 64),
    "4d": (512, 112, 144, 288, 32, 64, 64),
    "4e": (528, 256, 160, 320, 32, 128, 128),
    "5a": (832, 256, 160, 320, 32, 128, 128),
    "5b": (832, 384, 192, 384, 48, 128, 128),
}

# The table's "params" and "ops" columns for the inception rows.
TABLE_PARAMS_K = {"3a": 159, "3b": 380, "4a": 364, "4b": 437, "4c": 463, "4d": 580, "4e": 840, "5a": 1072, "5b": 1388}
TABLE_OPS_M = {"3a": 128, "3b": 304, "4a": 73, "4b": 88, "4c": 100, "4d": 119, "4e": 170, "5a": 54, "5b": 71}
# The table's "output size" column: spatial side at 224x224 input, and depth.
TABLE_OUTPUT = {"3a": (28, 256), "3b": (28, 480), "4a": (14, 512), "4b": (14, 512), "4c": (14, 512),
                "4d": (14, 528), "4e": (14, 832), "5a": (7, 832), "5b": (7, 1024)}


def inception_out_channels(row: tuple[int, ...]) -> int:
    """Depth of an inception module's output: the concatenation of its four branches."""
    _, c1, _, c3, _, c5, pool = row
    return c1 + c3 + c5 + pool
