"""VGG, Simonyan & Zisserman 2015, Table 1: the six ConvNet configurations, column by column.

An int is a 3x3 convolution with that many filters (stride 1, padding 1), ``"1x1-N"`` a 1x1
convolution (column C), ``"LRN"`` local response normalisation (column A-LRN) and ``"M"`` 2x2
max-pooling with stride 2.
"""

VGG_COLUMNS: dict[str, list] = {
    "A": [64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "A-LRN": [64, "LRN", "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "B": [64, 64, "M", 128, 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M"],
    "C": [64, 64, "M", 128, 128, "M", 256, 256, "1x1-256", "M", 512, 512, "1x1-512", "M",
          512, 512, "1x1-512", "M"],
    "D": [64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512, "M"],
    "E": [64, 64, "M", 128, 128, "M", 256, 256, 256, 256, "M", 512, 512, 512, 512, "M",
          512, 512, 512, 512, "M"],
}

# Table 2 of the paper: parameters in millions, for checking.
VGG_PARAMS_MILLIONS = {"A": 133, "A-LRN": 133, "B": 133, "C": 134, "D": 138, "E": 144}
