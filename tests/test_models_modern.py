"""ResNet, DenseNet, the light networks, SENet and the recurrent classifiers against their papers."""

import pytest
import torch

import cnnlab
from cnnlab.layers.residual import BasicBlock, SqueezeExcitation, ZeroPadShortcut
from cnnlab.models.shufflenet import channel_shuffle
from cnnlab.specs.resnet import CIFAR_PARAMS_MILLIONS, TABLE1_OUTPUT_SIDES


def count(name: str, **kw) -> int:
    with torch.device("meta"):
        model = cnnlab.create_model(name, **kw)
    return sum(p.numel() for p in model.parameters())


def stage_shapes(model: torch.nn.Module, x: torch.Tensor) -> dict[str, tuple[int, ...]]:
    """Output shape (C, H, W) after each trunk module, by its name, run on the meta device (shapes only)."""
    shapes = {}
    for path, layer in model.trunk():
        x = layer(x)
        shapes[path.rsplit(".", 1)[-1]] = tuple(x.shape[1:])
    return shapes


def meta_model(name: str, **kw):
    with torch.device("meta"):
        return cnnlab.create_model(name, **kw).eval()


@pytest.mark.parametrize("name, expected", [
    ("resnet18", 11_689_512), ("resnet50", 25_557_032), ("densenet121", 7_978_856), ("squeezenet1_0", 1_248_424),
    ("mobilenet_v2", 3_504_872), ("shufflenet_v2_x1_0", 2_278_604),
    # Further published figures (torchvision's model docs; Keras' Xception, timm's seresnet50 28.09M):
    ("resnet34", 21_797_672), ("resnet101", 44_549_160), ("resnet152", 60_192_808),
    ("densenet169", 14_149_480), ("densenet201", 20_013_928), ("xception", 22_855_952),
])
def test_published_parameter_counts(name, expected):
    assert count(name) == expected


def test_se_resnet50_adds_the_gates_parameters():
    # Each bottleneck adds FC C->C/16 and FC C/16->C with biases, C = 256/512/1024/2048 over 3/4/6/3 blocks.
    gates = sum(n * (c * (c // 16) + c // 16 + (c // 16) * c + c)
                for c, n in ((256, 3), (512, 4), (1024, 6), (2048, 3)))
    assert count("se_resnet50") == 25_557_032 + gates
    assert round(count("se_resnet50") / 1e6, 2) == 28.09  # SENet Table 2 / timm: 28.1M


@pytest.mark.parametrize("depth", sorted(CIFAR_PARAMS_MILLIONS))
def test_cifar_resnet_table6_parameters(depth):
    n = (depth - 2) // 6
    # Hand count: first conv 3*3*3*16 + BN; basic blocks of two 3x3 convs + 2 BN; option A shortcuts are free.
    by_hand = 27 * 16 + 32
    for i, (c_in, c) in enumerate(((16, 16), (16, 32), (32, 64))):
        by_hand += (9 * c_in * c + 9 * c * c + 4 * c) + (n - 1) * (2 * 9 * c * c + 4 * c)
    by_hand += 64 * 10 + 10
    assert count(f"resnet{depth}") == count(f"plain{depth}") == by_hand
    assert by_hand / 1e6 == pytest.approx(CIFAR_PARAMS_MILLIONS[depth], abs=0.006 if depth < 110 else 0.05)


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "se_resnet50"])
def test_resnet_table1_output_sizes(name):
    model = meta_model(name)
    shapes = stage_shapes(model, torch.zeros(1, 3, 224, 224, device="meta"))
    expansion = 1 if name == "resnet18" else 4
    assert shapes["conv1"][-1] == TABLE1_OUTPUT_SIDES["conv1"]
    for i, width in enumerate((64, 128, 256, 512)):
        side = TABLE1_OUTPUT_SIDES[f"conv{i + 2}_x"]
        assert shapes[f"layer{i + 1}"] == (width * expansion, side, side)
    assert not any(k.startswith(("features.", "classifier.")) for k in model.state_dict())  # torchvision's names


def test_cifar_resnet_grids():
    shapes = stage_shapes(meta_model("resnet20"), torch.zeros(1, 3, 32, 32, device="meta"))
    # §4.2: 32x32x16 -> 16x16x32 -> 8x8x64
    assert [shapes[k] for k in ("layer1", "layer2", "layer3")] == [(16, 32, 32), (32, 16, 16), (64, 8, 8)]


def test_plain_block_has_no_shortcut():
    torch.manual_seed(0)
    x = torch.rand(1, 4, 5, 5)
    residual, plain = BasicBlock(4, 4), BasicBlock(4, 4, shortcut=False)
    for block in (residual, plain):
        torch.nn.init.zeros_(block.bn2.weight)  # F(x) = 0
        block.eval()
    assert torch.allclose(residual(x), x)  # relu(0 + x) with x >= 0: the identity
    assert torch.count_nonzero(plain(x)) == 0  # relu(0): nothing gets through


def test_zero_pad_shortcut():
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).reshape(1, 2, 4, 4)
    out = ZeroPadShortcut(5, 2)(x)
    assert out.shape == (1, 5, 2, 2)
    assert torch.equal(out[0, :2], x[0, :, ::2, ::2]) and torch.count_nonzero(out[0, 2:]) == 0


def test_squeeze_excitation_by_hand():
    torch.manual_seed(0)
    se = SqueezeExcitation(8, reduction=4)
    x = torch.randn(2, 8, 3, 3)
    z = x.mean((2, 3))  # squeeze: N x C
    w1, w2 = se.fc1.weight[:, :, 0, 0], se.fc2.weight[:, :, 0, 0]  # C/r x C and C x C/r
    s = torch.sigmoid(torch.relu(z @ w1.T + se.fc1.bias) @ w2.T + se.fc2.bias)  # excitation: N x C in (0, 1)
    assert torch.allclose(se(x), x * s[:, :, None, None], atol=1e-6)


def test_densenet121_table1_shapes():
    model = meta_model("densenet121")
    shapes = stage_shapes(model, torch.zeros(1, 3, 224, 224, device="meta"))
    # Table 1: 112 (conv), 56 (pool, block 1), 28 (transition 1, block 2), 14, 7; channels 64 + 6*32 = 256 ...
    expected = {"conv0": (64, 112, 112), "pool0": (64, 56, 56), "denseblock1": (256, 56, 56),
                "transition1": (128, 28, 28), "denseblock2": (128 + 12 * 32, 28, 28), "transition2": (256, 14, 14),
                "denseblock3": (256 + 24 * 32, 14, 14), "transition3": (512, 7, 7), "denseblock4": (1024, 7, 7)}
    assert {k: shapes[k] for k in expected} == expected


def test_mobilenet_v2_table2_shapes():
    model = meta_model("mobilenet_v2")
    shapes = list(stage_shapes(model, torch.zeros(1, 3, 224, 224, device="meta")).values())
    # Table 2's "input" column of the next row = output of each row: 112²x32, 112²x16, 56²x24, 28²x32,
    # 14²x64, 14²x96, 7²x160, 7²x320, 7²x1280 (after 1, 1, 2, 3, 4, 3, 3, 1, 1 layers).
    ends = [1, 2, 4, 7, 11, 14, 17, 18, 19]
    assert [shapes[e - 1] for e in ends] == [(32, 112, 112), (16, 112, 112), (24, 56, 56), (32, 28, 28),
                                             (64, 14, 14), (96, 14, 14), (160, 7, 7), (320, 7, 7), (1280, 7, 7)]


def test_shufflenet_v2_table5_shapes():
    shapes = stage_shapes(meta_model("shufflenet_v2_x1_0"), torch.zeros(1, 3, 224, 224, device="meta"))
    assert shapes == {"conv1": (24, 112, 112), "maxpool": (24, 56, 56), "stage2": (116, 28, 28),
                      "stage3": (232, 14, 14), "stage4": (464, 7, 7), "conv5": (1024, 7, 7)}


def test_channel_shuffle_interleaves_the_groups():
    x = torch.arange(6, dtype=torch.float32).reshape(1, 6, 1, 1)
    assert channel_shuffle(x, 2).flatten().tolist() == [0, 3, 1, 4, 2, 5]


def test_squeezenet_table1_shapes():
    x = torch.zeros(1, 3, 227, 227, device="meta")
    shapes = list(stage_shapes(meta_model("squeezenet1_0"), x).values())
    # Table 1 (227x227 input): conv1 111x111x96, maxpool1 55, fire2-4 128/128/256, maxpool4 27,
    # fire5-8 256/384/384/512, maxpool8 13, fire9 512
    assert shapes[0] == (96, 111, 111)
    assert shapes[2:] == [(96, 55, 55), (128, 55, 55), (128, 55, 55), (256, 55, 55), (256, 27, 27),
                                       (256, 27, 27), (384, 27, 27), (384, 27, 27), (512, 27, 27), (512, 13, 13),
                                       (512, 13, 13)]


def test_xception_fig5_shapes():
    shapes = stage_shapes(meta_model("xception"), torch.zeros(1, 3, 299, 299, device="meta"))
    # Fig. 5: entry flow -> 19x19x728, middle flow keeps it, exit flow -> 10x10x2048 (1024 after the residual block)
    assert shapes["entry3"] == shapes["middle8"] == (728, 19, 19)
    assert shapes["exit1"] == (1024, 10, 10) and shapes["exit2"] == (2048, 10, 10)
    separable = [m for m in meta_model("xception").modules() if isinstance(m, torch.nn.Conv2d) and m.groups > 1]
    # 34 separable convolutions + the 2 stem convolutions = the 36 convolutional layers of §3 ("Xception architecture")
    assert len(separable) == 2 + 2 + 2 + 8 * 3 + 2 + 2 == 34


@pytest.mark.parametrize("name", ["lstm_classifier", "gru_classifier"])
def test_recurrent_reads_rows(name):
    torch.manual_seed(0)
    model = cnnlab.create_model(name, num_classes=10).eval()
    x = torch.randn(3, 1, 28, 28)
    seq = model.features(x)
    assert seq.shape == (3, 28, 128)
    # The sequence is the image's rows: running the RNN on x[:, 0] row by row gives the same states.
    rnn = model.features.rnn
    by_hand, _ = rnn(x[:, 0])
    assert torch.allclose(seq, by_hand, atol=1e-6)
    assert torch.allclose(model(x), model.classifier[1](by_hand[:, -1]), atol=1e-6)
    with pytest.raises(ValueError, match="rows of 28 pixels"):
        model(torch.randn(1, 1, 28, 32))


@pytest.mark.parametrize("name, side", [
    # 28 -> stem keeps 28 -> first pool 14 -> then one halving per stage (ceil where padded):
    ("resnet18", 2), ("se_resnet50", 2), ("densenet121", 1), ("densenet_bc_small", 7), ("mobilenet_v2", 4), ("shufflenet_v2_x1_0", 4),
    ("squeezenet1_0", 3), ("xception", 2), ("googlenet", 3), ("resnet20", 7),
])
def test_small_input_grids(name, side):
    model = meta_model(name, num_classes=10, in_channels=1, small_input=True)
    assert model.forward_features(torch.zeros(1, 1, 28, 28, device="meta")).shape[-1] == side
