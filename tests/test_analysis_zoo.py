"""Summaries of the registered networks against their papers' published figures.

Each expected value is a published fact (a paper's table or text) or a hand count from a paper's
table; the tolerance says how close the paper's rounding lets us check.
"""

from __future__ import annotations

import pytest

import cnnlab
from cnnlab.analysis import compare_models, summarize


def weight_count(name: str) -> int:
    """Weights of convolutions and linear layers only (no biases, no batch norm), as GoogLeNet's Table 1 counts."""
    import torch

    with torch.device("meta"):
        model = cnnlab.create_model(name)
    return sum(p.numel() for n, p in model.named_parameters() if p.dim() > 1 and "aux" not in n)


def test_alexnet_original_matches_the_deck_tables():
    summary = summarize("alexnet_original", (3, 227, 227))
    weighted = [r for r in summary.layers if r.kind in ("conv", "linear")]
    assert [r.output_shape[-1] for r in weighted[:5]] == [55, 27, 13, 13, 13]
    assert [r.total_params for r in weighted] == [34944, 307456, 885120, 663936, 442624, 37752832, 16781312,
                                                  4097000]
    assert summary.total_neurons == 659272
    assert summary.depth == 8
    assert summary.feature_rf_size == (195, 195)


# VGG paper, Table 2: number of parameters in millions for configurations A, B, D, E.
@pytest.mark.parametrize("name, millions, depth", [("vgg11", 133, 11), ("vgg13", 133, 13), ("vgg16", 138, 16),
                                                    ("vgg19", 144, 19)])
def test_vgg_parameters_table_2(name, millions, depth):
    summary = summarize(name)
    assert summary.total_params / 1e6 == pytest.approx(millions, abs=0.5)
    assert summary.depth == depth
    assert summary.share("params")["linear"] > 0.85  # "most parameters are in the FC layers"


def test_googlenet_depth_22_and_table_1_weights():
    summary = summarize("googlenet")
    assert summary.depth == 22  # "22 layers deep when counting only layers with parameters"
    # Table 1 columns: stem (7x7x3x64, 1x1x64x64, 3x3x64x192), nine inception blocks, linear 1024x1000
    rows = [(192, 64, 96, 128, 16, 32, 32), (256, 128, 128, 192, 32, 96, 64), (480, 192, 96, 208, 16, 48, 64),
            (512, 160, 112, 224, 24, 64, 64), (512, 128, 128, 256, 24, 64, 64), (512, 112, 144, 288, 32, 64, 64),
            (528, 256, 160, 320, 32, 128, 128), (832, 256, 160, 320, 32, 128, 128),
            (832, 384, 192, 384, 48, 128, 128)]
    total = 7 * 7 * 3 * 64 + 64 * 64 + 9 * 64 * 192 + 1024 * 1000
    for cin, c1, r3, c3, r5, c5, proj in rows:
        total += cin * (c1 + r3 + r5 + proj) + 9 * r3 * c3 + 25 * r5 * c5
    assert weight_count("googlenet") == total
    # "the network ... 1.5 billion multiply-adds at inference time"
    assert summary.total_macs / 1e9 == pytest.approx(1.5, rel=0.07)


# Table 1 of Szegedy et al. 2015: output size and ops (M = 10^6 multiply-adds) of each inception block;
# 4c and 5a are left out of the ops check, their printed figures do not follow from their columns.
TABLE_1_OPS = {"3a": ((256, 28), 128), "3b": ((480, 28), 304), "4a": ((512, 14), 73), "4b": ((512, 14), 88),
               "4c": ((512, 14), None), "4d": ((528, 14), 119), "4e": ((832, 14), 170), "5a": ((832, 7), None),
               "5b": ((1024, 7), 71)}


def test_googlenet_blocks_follow_table_1():
    summary = summarize("googlenet", depth=2)
    blocks = {r.name.rsplit("inception", 1)[-1]: r for r in summary.layers if "inception" in r.name}
    assert list(blocks) == list(TABLE_1_OPS)
    for name, ((channels, size), ops) in TABLE_1_OPS.items():
        assert blocks[name].output_shape == (channels, size, size)
        if ops is not None:
            assert blocks[name].macs / 1e6 == pytest.approx(ops, rel=0.01), name


# ResNet paper, Table 1: FLOPs (multiply-adds) x 10^9; depth from the name.
@pytest.mark.parametrize("name, depth, gmacs, tolerance", [
    ("resnet18", 18, 1.8, 0.03), ("resnet34", 34, 3.6, 0.03), ("resnet50", 50, 3.8, 0.1),
    ("resnet101", 101, 7.6, 0.1), ("resnet152", 152, 11.3, 0.1)])
def test_resnet_depth_and_table_1_flops(name, depth, gmacs, tolerance):
    summary = summarize(name)
    assert summary.depth == depth
    assert summary.total_macs / 1e9 == pytest.approx(gmacs, rel=tolerance)


def test_resnet50_receptive_field_by_hand():
    # stem 7x7/2 then 3x3/2 pool: 11 pixels, jump 4. Each 3x3 convolution adds 2 * jump. With the
    # stride in the first 3x3 of a stage (torchvision's layout) stages add 3*8, 8 + 3*16, 16 + 5*32,
    # 32 + 2*64 -> 427; with the stride in the first 1x1 (the original Caffe model) 483.
    summary = summarize("resnet50")
    assert summary.feature_rf_size in ((427, 427), (483, 483))


# ResNet paper, Table 6 (CIFAR-10): parameters 0.27M, 0.46M, 0.66M, 0.85M, 1.7M.
@pytest.mark.parametrize("name, depth, millions", [("resnet20", 20, 0.27), ("resnet32", 32, 0.46),
                                                    ("resnet44", 44, 0.66), ("resnet56", 56, 0.85),
                                                    ("resnet110", 110, 1.7)])
def test_cifar_resnets_table_6(name, depth, millions):
    summary = summarize(name)
    assert summary.depth == depth
    assert summary.total_params / 1e6 == pytest.approx(millions, abs=0.03)
    # by hand: 3x3 stem, then n = (depth - 2)/6 blocks of two 3x3 convolutions per stage at jumps 1, 2, 4;
    # the first convolution of stages 2 and 3 strides. The option-A shortcut (x[:, :, ::2, ::2]) is a
    # strided 1x1 window and never the larger field.
    n = (depth - 2) // 6
    field = 3 + 2 * n * 2 + (2 + (2 * n - 1) * 4) + (4 + (2 * n - 1) * 8)
    assert summary.feature_rf_size == (field, field)


# Weight layers on the longest path, counted by hand from each paper's table.
@pytest.mark.parametrize("name, depth", [
    ("densenet121", 1 + 2 * (6 + 12 + 24 + 16) + 3 + 1),  # Table 1: 121
    ("densenet201", 1 + 2 * (6 + 12 + 48 + 32) + 3 + 1),  # 201
    ("densenet264", 1 + 2 * (6 + 12 + 64 + 48) + 3 + 1),  # 265: the name "264" is one short
    ("squeezenet1_0", 1 + 8 * 2 + 1),  # conv1, eight fire modules (squeeze, expand), conv10
    ("mobilenet_v2", 1 + 2 + 16 * 3 + 1 + 1),  # Table 2: conv, 17 bottlenecks (the first without expansion),
    #                                            1x1 conv 1280, the final 1x1 conv classifier
    ("xception", 2 + 34 * 2 + 1),  # Fig. 5: 36 convolutions, 34 of them separable (depthwise + pointwise), FC
    ("plain56", 56), ("resnet101", 101), ("vgg19", 19),
])
def test_depth_counts_weight_layers_on_the_longest_path(name, depth):
    assert summarize(name).depth == depth


def test_efficient_networks_published_figures():
    # MobileNetV2 Table 4: 3.4M parameters, 300M multiply-adds; ShuffleNet V2 Table 8 (1x): 146M FLOPs
    # (multiply-adds), 2.3M parameters; SqueezeNet Table 2: 1,248,424 parameters; SE-ResNet-50
    # §4: about 2.5M more parameters than ResNet-50.
    mobilenet = summarize("mobilenet_v2")
    assert mobilenet.total_params / 1e6 == pytest.approx(3.4, abs=0.15)
    assert mobilenet.total_macs / 1e6 == pytest.approx(300, rel=0.05)
    shufflenet = summarize("shufflenet_v2_x1_0")
    assert shufflenet.total_params / 1e6 == pytest.approx(2.3, abs=0.05)
    assert shufflenet.total_macs / 1e6 == pytest.approx(146, rel=0.05)
    assert summarize("squeezenet1_0").total_params == 1248424
    # SE-ResNet-50 (Hu et al. 2018, §4 and Table 2): about 2.5M parameters and 0.01 GFLOPs over ResNet-50.
    se, plain = summarize("se_resnet50"), summarize("resnet50")
    assert (se.total_params - plain.total_params) / 1e6 == pytest.approx(2.5, abs=0.1)
    assert 0 < (se.total_macs - plain.total_macs) / 1e9 < 0.02


def test_compare_tells_the_revolution_of_depth():
    rows = compare_models(["resnet152", "googlenet", "alexnet_original", "vgg16"], sort="year")
    assert rows[0].name == "alexnet_original" and rows[-1].name == "resnet152"
    assert {r.name: r.depth for r in rows} == {"alexnet_original": 8, "vgg16": 16, "googlenet": 22,
                                               "resnet152": 152}
    # GoogLeNet's auxiliary heads train only: the table's parameters leave them out
    google = next(r for r in rows if r.name == "googlenet")
    assert google.params < google.params_total
    for row in rows:
        info = cnnlab.model_info(row.name)
        assert (row.year, row.top1, row.top5) == (info.year, info.top1, info.top5)


def test_recurrent_classifier_macs_by_hand():
    # 28 rows of 28 pixels read by a 2-layer LSTM of 128 units: per step 4 gates x 128 x (input + 128)
    summary = summarize("lstm_classifier")
    lstm = 4 * 128 * (28 + 128) + 4 * 128 * (128 + 128)
    assert summary.total_macs == 28 * lstm + 128 * 10
    assert summary.depth == 3  # two recurrent layers and the output layer


DECK_SLIPS = [
    # (deck file prefix, the deck's words as docs/analysis.md quotes them)
    ("001", "池化层的池化窗口大小小于步幅大小"),  # overlapping pooling defined backwards
    ("001", "n_h + k_h"),  # the output-size formula with the kernel's sign reversed
    ("000", "卷积层3，4，5中的滤波器个数由384，384，256改为512，512，1024"),  # ZFNet's widths
    ("001", "25088 个参数"),  # flattened values called parameters
    ("004", "NORM1"),  # AlexNet's normalisation listed after its first pooling
]


@pytest.mark.parametrize("deck, words", DECK_SLIPS)
def test_the_slips_page_lists_each_deck_slip_in_the_decks_own_words(deck, words):
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    docs = (repo / "docs" / "analysis.md").read_text(encoding="utf-8")
    slips = docs[docs.index("### Slips found in the decks"):docs.index("## Limits")]
    assert words in slips
    seeds = sorted((repo.parent / "shared" / "seeds").glob(f"{deck}_*.txt"))
    if seeds:  # where the decks are at hand, the quotation must be theirs (spacing, TeX and subscripts aside)
        def plain(text: str) -> str:
            return "".join(c for c in text if c not in " $_")

        assert plain(words) in plain(seeds[0].read_text(encoding="utf-8"))
