"""cnnlab.viz: numbers checked against hand computations, the papers' definitions and PyTorch itself."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch import nn

import cnnlab
from cnnlab.errors import DataError, UnknownNameError
from cnnlab.viz import style
from cnnlab.viz.activation import maximize_channel, top_activations
from cnnlab.viz.cam import default_target_layer, cam_maps, grad_cam, grad_cam_pp, saliency
from cnnlab.train.metrics import confusion_matrix
from cnnlab.viz.confusion import plot_confusion, worst_mistakes
from cnnlab.viz.curves import plot_curves, read_history
from cnnlab.viz.embed import pca_2d, penultimate_features
from cnnlab.train.meta import Preprocessing
from cnnlab.viz.features import feature_maps, plot_feature_maps
from cnnlab.viz.filters import filter_tiles, find_conv, plot_filters
from cnnlab.viz.kernels import KERNELS, apply_kernel, gaussian_kernel
from cnnlab.viz.stages import feature_stages, find_stage

torch.set_num_threads(1)


# --- the decks' kernels on the decks' 6x6 examples -----------------------------------------------------

# "Vertical edge detection" slide: a 6x6 grid of digits convolved with [[1,0,-1]]*3; the slide works
# out the top-left output (-5); the rest is the same hand sum of the left column minus the right one.
DECK_DIGITS = [[3, 0, 1, 2, 7, 4],
               [1, 5, 8, 9, 3, 1],
               [2, 7, 2, 5, 1, 3],
               [0, 1, 3, 1, 7, 8],
               [4, 2, 1, 6, 2, 8],
               [2, 4, 5, 2, 3, 9]]
DECK_DIGITS_VERTICAL = [[-5, -4, 0, 8],
                        [-10, -2, 2, 3],
                        [0, -2, -4, -7],
                        [-3, -2, -3, -16]]
# "Edge detection in an image" slides: bright left half (10) against dark right half (0), and the same
# turned on its side.
VERTICAL_STEP = [[10, 10, 10, 0, 0, 0]] * 6
HORIZONTAL_STEP = [[10] * 6] * 3 + [[0] * 6] * 3


def test_vertical_edge_kernel_matches_the_decks_worked_examples():
    vertical = KERNELS["vertical"].weights
    np.testing.assert_array_equal(apply_kernel(DECK_DIGITS, vertical, padding="valid"), DECK_DIGITS_VERTICAL)
    np.testing.assert_array_equal(apply_kernel(VERTICAL_STEP, vertical, padding="valid"), [[0, 30, 30, 0]] * 4)
    np.testing.assert_array_equal(apply_kernel(HORIZONTAL_STEP, vertical, padding="valid"), np.zeros((4, 4)))


@pytest.mark.parametrize("name, row", [
    # By hand on the 10|0 step: every window's rows are equal, so each output is
    # 10 x (sum of the kernel columns under the 10s). Column sums: emboss (-2, 0, 2),
    # edge (3, -5, 3), edge8 (-3, 6, -3). Windows cover 10s in columns {0,1,2}, {0,1}, {0}, {}.
    ("emboss", [0, -20, -20, 0]),
    ("edge", [10, -20, 30, 0]),
    ("edge8", [0, 30, -30, 0]),
    ("sobel_x", [0, -40, -40, 0]),
    ("laplacian", [0, -10, 10, 0]),
])
def test_deck_kernels_on_the_step_image_equal_hand_sums(name, row):
    out = apply_kernel(VERTICAL_STEP, KERNELS[name].weights, padding="valid")
    np.testing.assert_allclose(out, [row] * 4, atol=1e-12)


def test_deck_kernel_literals_are_the_slides_numbers():
    np.testing.assert_array_equal(KERNELS["emboss"].weights, [[-1, -1, 0], [-1, 0, 1], [0, 1, 1]])
    np.testing.assert_array_equal(KERNELS["edge"].weights, [[1, 1, 1], [1, -7, 1], [1, 1, 1]])
    np.testing.assert_array_equal(KERNELS["edge8"].weights, [[-1, -1, -1], [-1, 8, -1], [-1, -1, -1]])


def test_same_padding_keeps_size_and_blurs_preserve_a_flat_image():
    flat = np.full((9, 7), 0.4)
    for name in ("box", "gaussian", "sharpen", "identity"):
        out = apply_kernel(flat, KERNELS[name].weights)
        assert out.shape == flat.shape
        np.testing.assert_allclose(out, flat, atol=1e-12)  # kernels that sum to 1 leave a constant unchanged
    g = gaussian_kernel(5, 1.0)
    assert g.sum() == pytest.approx(1.0)
    # sigma 1: the centre-to-neighbour ratio of a Gaussian is exp(1/2)
    assert g[2, 2] / g[2, 3] == pytest.approx(np.exp(0.5))


def test_kernel_errors():
    with pytest.raises(ValueError):
        apply_kernel(np.zeros((5, 5)), np.ones((3, 3)), padding="full")
    from cnnlab.viz.kernels import get_kernel

    with pytest.raises(UnknownNameError, match="did you mean"):
        get_kernel("embos")


# --- stages and feature maps ----------------------------------------------------------------------------

def test_lenet_feature_map_shapes_follow_the_conv_arithmetic():
    # Deck: C1 6@28x28 (5x5, pad 2), S2 6@14x14, C3 16@10x10 (28/2 - 5 + 1), S4 16@5x5.
    model = cnnlab.create_model("lenet5_modern").eval()
    maps = feature_maps(model, torch.randn(1, 1, 28, 28))
    assert [(n, tuple(m.shape)) for n, m in maps] == [
        ("conv1", (1, 6, 28, 28)), ("pool1", (1, 6, 14, 14)), ("conv2", (1, 16, 10, 10)), ("pool2", (1, 16, 5, 5))]


def test_feature_maps_equal_pytorch_and_the_analysis_summary():
    from cnnlab.analysis.summary import summarize

    model = cnnlab.create_model("lenet5_modern").eval()
    x = torch.randn(1, 1, 28, 28)
    maps = dict(feature_maps(model, x))
    torch.testing.assert_close(maps["pool2"], model.features(x))  # the last stage is the body's output
    torch.testing.assert_close(maps["conv1"], model.features[:3](x))  # conv -> bn -> relu
    rows = {r.name: tuple(r.output_shape) for r in summarize(model, (1, 28, 28)).layers}
    for stage in feature_stages(model):
        assert tuple(maps[stage.name].shape[1:]) == rows[stage.paths[-1]]


class _Block(nn.Module):
    """A residual block: a composite module whose forward adds its input."""

    def __init__(self, c):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, padding=1)

    def forward(self, x):
        return torch.relu(self.conv(x) + x)


class _Net(nn.Module):
    def __init__(self):
        super().__init__()
        vgg_block = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(inplace=True),
                                  nn.Conv2d(4, 4, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2))
        self.features = nn.Sequential(vgg_block, nn.Sequential(_Block(4), _Block(4)), nn.BatchNorm2d(4))
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))

    def forward(self, x):
        return self.classifier(self.features(x))


def test_stages_open_plain_blocks_and_keep_composite_ones():
    model = _Net().eval()
    stages = feature_stages(model)
    assert [(s.name, s.kind) for s in stages] == [("conv1", "conv"), ("conv2", "conv"), ("pool1", "pool"),
                                                  ("sequential1", "block")]
    assert stages[1].paths == ["features.0.2", "features.0.3"]
    assert stages[3].paths == ["features.1", "features.2"]  # the trailing BatchNorm joins the last stage
    assert find_stage(model, "features.0.2").name == "conv2"
    with pytest.raises(UnknownNameError):
        find_stage(model, "conv9")
    x = torch.randn(1, 3, 8, 8)
    maps = dict(feature_maps(model, x))
    torch.testing.assert_close(maps["sequential1"], model.features(x))
    # in-place ReLUs must not overwrite the recorded conv maps: conv2's map is its own ReLU output
    torch.testing.assert_close(maps["conv2"], model.features[0][:4](x))


class _Inception(nn.Module):
    """Four parallel branches concatenated on channels (Szegedy et al., CVPR 2015, Fig. 2b), in small."""

    def __init__(self, c_in):
        super().__init__()
        self.b1 = nn.Conv2d(c_in, 2, 1)
        self.b2 = nn.Sequential(nn.Conv2d(c_in, 2, 1), nn.ReLU(inplace=True), nn.Conv2d(2, 3, 3, padding=1))
        self.b3 = nn.Sequential(nn.Conv2d(c_in, 1, 1), nn.ReLU(inplace=True), nn.Conv2d(1, 2, 5, padding=2))
        self.b4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(c_in, 1, 1))

    def forward(self, x):
        return torch.relu(torch.cat([self.b1(x), self.b2(x), self.b3(x), self.b4(x)], 1))  # 8 channels


def test_inception_stages_cam_and_activation():
    model = nn.Module()
    model.features = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(inplace=True), nn.MaxPool2d(2),
                                   _Inception(4), _Inception(8))
    model.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 3))
    model.forward = lambda x: model.classifier(model.features(x))
    model.eval()
    stages = feature_stages(model)
    assert [s.name for s in stages] == ["conv1", "pool1", "_inception1", "_inception2"]
    x = torch.randn(1, 1, 12, 12)
    maps = dict(feature_maps(model, x))
    assert tuple(maps["_inception2"].shape) == (1, 8, 6, 6)
    assert default_target_layer(model, x) is model.features[4]
    heat = grad_cam(model, x, class_index=0)
    assert heat.shape == (12, 12) and 0.0 <= heat.min() and heat.max() <= 1.0
    images = torch.randint(0, 256, (10, 1, 12, 12), dtype=torch.uint8)
    top = top_activations(model, "_inception1", images, 5, preprocessing=Preprocessing((1, 1, 1), (0.5,), (0.5,)), k=3)
    assert len(top.indices) == 3 and top.scores == sorted(top.scores, reverse=True)


def test_feature_map_figure_has_one_row_per_stage():
    model = cnnlab.create_model("lenet5_modern").eval()
    maps = feature_maps(model, torch.randn(1, 1, 28, 28))
    fig = plot_feature_maps(maps, np.zeros((28, 28), np.uint8), channels=4)
    assert [len(ax.images) for ax in fig.axes] == [1, 4, 4, 4, 4]  # input, then 4 stages x 4 strongest channels
    labels = [text.get_text() for text in fig.axes[3].texts]
    strongest = maps[2][1][0].mean((1, 2)).argsort(descending=True)[:4].tolist()  # conv2's channels by mean
    assert labels == [f"ch {c}" for c in strongest]
    style.pyplot().close(fig)


# --- filters ----------------------------------------------------------------------------------------------

def test_filter_grid_has_one_tile_per_filter():
    conv = nn.Conv2d(3, 20, 5)
    fig = plot_filters(conv.weight)
    assert sum(1 for ax in fig.axes if ax.images) == 20
    style.pyplot().close(fig)
    grey = cnnlab.create_model("lenet5").features[0].weight  # 6 filters, 1 x 5 x 5
    fig = plot_filters(grey)
    assert sum(1 for ax in fig.axes if ax.images) == 6
    style.pyplot().close(fig)


def test_filter_tiles_scale_each_rgb_filter_to_unit_range():
    w = torch.zeros(2, 3, 2, 2)
    w[0, 0, 0, 0], w[0, 2, 1, 1] = -2.0, 6.0  # filter 0 spans [-2, 6]: -2 -> 0, 0 -> 0.25, 6 -> 1
    tiles = filter_tiles(w)
    assert tiles.shape == (2, 2, 2, 3)  # O x kh x kw x RGB
    assert tiles[0, 0, 0, 0] == 0.0 and tiles[0, 1, 1, 2] == 1.0 and tiles[0, 0, 1, 1] == pytest.approx(0.25)
    assert np.all(tiles[1] == 0.0)  # a constant filter does not divide by zero


def test_find_conv_by_stage_name_or_path():
    model = cnnlab.create_model("lenet5")
    assert find_conv(model)[0] == "features.0"
    assert find_conv(model, "conv2")[0] == "features.4"
    assert find_conv(model, "features.4")[1] is model.features[4]
    with pytest.raises(UnknownNameError):
        find_conv(model, "conv7")


# --- class activation maps --------------------------------------------------------------------------------

SIDE, HALF = 24, 12


def _quadrant_task(n: int, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """The class is what the top-left quadrant holds: 0 a horizontal bar, 1 a vertical bar, 2 nothing.
    The other quadrants hold bright squares that carry no information. With the empty class, neither
    bar class can be told by the absence of the other, so each must be seen where it is."""
    x = 0.25 * torch.rand(n, 1, SIDE, SIDE, generator=generator)
    y = torch.randint(0, 3, (n,), generator=generator)
    where = torch.randint(2, HALF - 4, (n, 4, 2), generator=generator)
    for i in range(n):
        r, c = where[i, 0].tolist()
        if y[i] == 1:
            x[i, 0, 2:HALF - 2, c:c + 2] = 1.0
        elif y[i] == 0:
            x[i, 0, r:r + 2, 2:HALF - 2] = 1.0
        for q in (1, 2, 3):
            r0, c0 = (q // 2) * HALF, (q % 2) * HALF
            r, c = where[i, q].tolist()
            x[i, 0, r0 + r:r0 + r + 3, c0 + c:c0 + c + 3] = 1.0
    return x, y


class _Tiny(nn.Module):
    """Two conv stages and a global-average-pooling head, like GoogLeNet's and ResNet's."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                                      nn.Conv2d(8, 16, 3, padding=1), nn.ReLU())  # N x 16 x 12 x 12
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 3))

    def forward(self, x):
        return self.classifier(self.features(x))


@pytest.fixture(scope="module")
def quadrant_model():
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x, y = _quadrant_task(1024, g)
    model = _Tiny()
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    for _ in range(300):
        idx = torch.randint(0, len(x), (32,), generator=g)
        loss = nn.functional.cross_entropy(model(x[idx]), y[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    test_x, test_y = _quadrant_task(60, g)
    accuracy = (model(test_x).argmax(1) == test_y).float().mean().item()
    assert accuracy >= 0.95, f"the synthetic task did not train (accuracy {accuracy:.2f})"
    return model, test_x[test_y < 2]  # the images with a bar: the evidence is in the top-left quadrant


def _winning_quadrant(heat: np.ndarray) -> int:
    sums = [heat[:HALF, :HALF].sum(), heat[:HALF, HALF:].sum(), heat[HALF:, :HALF].sum(), heat[HALF:, HALF:].sum()]
    return int(np.argmax(sums))


def test_grad_cam_peaks_in_the_deciding_quadrant(quadrant_model):
    model, test_x = quadrant_model
    hits = {"grad_cam": 0, "grad_cam_pp": 0, "peak": 0}
    for i in range(len(test_x)):
        e = cam_maps(model, test_x[i:i + 1])
        assert e.grad_cam.shape == (SIDE, SIDE) and e.grad_cam.max() == pytest.approx(1.0) and e.grad_cam.min() >= 0.0
        hits["grad_cam"] += _winning_quadrant(e.grad_cam) == 0
        hits["grad_cam_pp"] += _winning_quadrant(e.grad_cam_pp) == 0
        r, c = np.unravel_index(np.argmax(e.grad_cam), e.grad_cam.shape)
        hits["peak"] += bool(r < HALF and c < HALF)
    assert min(hits.values()) >= 0.9 * len(test_x), hits


def test_grad_cam_for_the_other_class_still_uses_that_class(quadrant_model):
    model, test_x = quadrant_model
    x = test_x[:1]
    predicted = int(model(x).argmax())
    other = (predicted + 1) % 3
    e = cam_maps(model, x, class_index=other)
    assert e.class_index == other
    np.testing.assert_allclose(grad_cam(model, x), cam_maps(model, x).grad_cam)


class _GapNet(nn.Module):
    """conv -> ReLU -> global average pool -> linear: the network of CAM (Zhou et al., CVPR 2016)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 5, 3, padding=1), nn.ReLU())
        self.classifier = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(5, 3))

    def forward(self, x):
        return self.classifier(self.features(x))


def test_grad_cam_reduces_to_cam_on_a_global_average_pooling_network():
    # Grad-CAM paper, Sec. 3.1: with GAP + linear, the averaged gradient is W[c, k] / (h w), so
    # Grad-CAM is CAM = ReLU(sum_k W[c, k] A_k) up to scale; both are then divided by their maximum.
    torch.manual_seed(1)
    model = _GapNet().eval()
    x = torch.randn(1, 1, 8, 8)
    with torch.no_grad():
        a = model.features(x)[0]  # 5 x 8 x 8
        cls = int(model(x).argmax())
        cam = torch.relu((model.classifier[2].weight[cls][:, None, None] * a).sum(0))
    expected = (cam / cam.max()).numpy()
    np.testing.assert_allclose(grad_cam(model, x), expected, atol=1e-5)


def test_grad_cam_pp_weights_on_a_global_average_pooling_network():
    # With GAP, every gradient of channel k is g = W[c, k] / (h w). Eq. 19 of Grad-CAM++ gives
    # alpha = 1 / (2 + S_k g) with S_k the channel's sum, so w_k = h w ReLU(g) / (2 + S_k g).
    torch.manual_seed(2)
    model = _GapNet().eval()
    x = torch.randn(1, 1, 8, 8)
    with torch.no_grad():
        a = model.features(x)[0].double()
        cls = int(model(x).argmax())
        g = model.classifier[2].weight[cls].double() / 64
        w = 64 * torch.relu(g) / (2 + a.sum((1, 2)) * g)
        cam = torch.relu((w[:, None, None] * a).sum(0))
    expected = (cam / cam.max()).numpy() if cam.max() > 0 else cam.numpy()
    np.testing.assert_allclose(grad_cam_pp(model, x, class_index=cls), expected, atol=1e-5)


def test_saliency_of_a_linear_readout_is_the_weight_magnitude():
    # score = sum(v * conv(x)) with a 1x1 conv of weight 1: d score / d x = v exactly.
    model = nn.Module()
    model.features = nn.Sequential(nn.Conv2d(1, 1, 1, bias=False))
    model.classifier = nn.Sequential(nn.Flatten(), nn.Linear(16, 1, bias=False))
    model.forward = lambda x: model.classifier(model.features(x))
    with torch.no_grad():
        model.features[0].weight.fill_(1.0)
    v = model.classifier[1].weight.detach()[0].view(4, 4).abs()
    np.testing.assert_allclose(saliency(model, torch.randn(1, 1, 4, 4)), (v / v.max()).numpy(), atol=1e-6)


def test_default_target_layer_skips_maps_too_small_to_localise():
    model = _Tiny()
    assert default_target_layer(model) is model.features[4]
    model = cnnlab.create_model("lenet5_modern")
    assert default_target_layer(model, torch.zeros(1, 1, 28, 28)) is model.features[6]  # conv2's ReLU, 10x10


def test_cam_rejects_bad_requests():
    model = _Tiny().eval()
    with pytest.raises(ValueError, match="out of range"):
        grad_cam(model, torch.zeros(1, 1, 24, 24), class_index=7)
    with pytest.raises(UnknownNameError):
        grad_cam(model, torch.zeros(1, 1, 24, 24), target_layer="layer9")
    with pytest.raises(ValueError, match="one image"):
        grad_cam(model, torch.zeros(2, 1, 24, 24))


def test_overlay_heatmap_blends_in_the_colour_map():
    import matplotlib

    image = np.full((4, 6, 1), 100, np.uint8)
    heat = np.zeros((4, 6))
    heat[0, 0] = 5.0  # rescaled to 1 there, 0 elsewhere
    out = style.overlay_heatmap(image, heat, alpha=0.5)
    assert out.shape == (4, 6, 3) and out.dtype == np.uint8
    jet = matplotlib.colormaps["jet"]
    np.testing.assert_allclose(out[0, 0], 0.5 * 100 + 0.5 * 255 * np.array(jet(1.0)[:3]), atol=1)
    np.testing.assert_allclose(out[3, 5], 0.5 * 100 + 0.5 * 255 * np.array(jet(0.0)[:3]), atol=1)
    np.testing.assert_array_equal(style.overlay_heatmap(image, heat, alpha=0.0), np.repeat(image, 3, 2))
    assert style.overlay_heatmap(np.zeros((8, 8, 3), np.uint8), np.ones((2, 2))).shape == (8, 8, 3)


# --- activation ---------------------------------------------------------------------------------------------

class _PixelNet(nn.Module):
    """Stage 1 reads pixels through a 1x1 convolution (channel 0 = the pixel); stage 2 sums 3x3 windows."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(1, 2, 1), nn.Conv2d(2, 1, 3, padding=1))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(36, 2))
        with torch.no_grad():
            self.features[0].weight.zero_()
            self.features[0].bias.zero_()
            self.features[0].weight[0, 0] = 1.0
            self.features[1].weight.fill_(1.0)
            self.features[1].bias.zero_()

    def forward(self, x):
        return self.classifier(self.features(x))


def test_top_activations_find_the_brightest_pixels_and_their_receptive_fields():
    images = torch.zeros(5, 1, 6, 6, dtype=torch.uint8)
    images[1, 0, 2, 4] = 250
    images[3, 0, 5, 0] = 200
    images[4, 0, 0, 0] = 100
    model = _PixelNet().eval()
    top = top_activations(model, "conv1", images, 0, preprocessing=Preprocessing((1, 1, 1), (0.0,), (1.0,)), k=3)
    assert top.indices == [1, 3, 4]
    assert top.scores == pytest.approx([250 / 255, 200 / 255, 100 / 255], rel=1e-5)
    assert top.boxes[0] == (2, 4, 3, 5)  # a 1x1 convolution sees exactly its own pixel
    plus = torch.zeros(2, 1, 6, 6, dtype=torch.uint8)
    plus[1, 0, 2, 3:6] = 250
    plus[1, 0, 1:4, 4] = 250  # a plus centred on (2, 4): only the 3x3 window there holds all five pixels
    top = top_activations(model, "conv2", plus, 0, preprocessing=Preprocessing((1, 1, 1), (0.0,), (1.0,)), k=1)
    assert top.indices == [1] and top.scores[0] == pytest.approx(5 * 250 / 255, rel=1e-5)
    assert top.boxes[0] == (1, 3, 4, 6)  # the 3x3 window around (2, 4)


def test_maximised_input_brightens_a_pixel_reading_channel():
    model = _PixelNet().eval()
    result = maximize_channel(model, "conv1", 0, (1, 6, 6), preprocessing=Preprocessing((1, 1, 1), (0.0,), (1.0,)), steps=60, lr=0.2)
    assert result.image.shape == (1, 6, 6) and result.image.mean() > 0.9  # the channel is the pixel: white wins
    assert result.start == "noise" and result.final == pytest.approx(result.image.mean(), abs=1e-6)
    assert result.initial == pytest.approx(0.5, abs=0.05)  # sigmoid of faint noise: mid-grey


def test_maximisation_starts_from_the_fallback_when_the_channel_is_silent():
    model = _PixelNet().eval()
    with torch.no_grad():
        model.features[0].bias[1] = -10.0  # channel 1: pixel - 10 behind a ReLU, silent on any image in [0, 1]
    model.features.insert(1, nn.ReLU())
    model.features[2] = nn.Conv2d(2, 1, 1)
    start = torch.full((1, 6, 6), 0.3)
    result = maximize_channel(model, "features.1", 1, (1, 6, 6), preprocessing=Preprocessing((1, 1, 1), (0.0,), (1.0,)), steps=3,
                              fallback_start=start)
    assert result.start == "top image" and result.initial == 0.0
    # only the small L2 pull towards grey moves a silent channel's image: three Adam steps of 0.05 in logit
    assert np.all(np.abs(result.image - 0.3) < 0.04)
    with pytest.raises(ValueError, match="out of range"):
        maximize_channel(model, "conv1", 5, (1, 6, 6), preprocessing=Preprocessing((1, 1, 1), (0.0,), (1.0,)), steps=1)


# --- confusion, embedding, curves ----------------------------------------------------------------------------

def test_confusion_matrix_and_worst_mistakes_by_hand():
    labels = [0, 0, 1, 2, 2, 2]
    predicted = [0, 1, 1, 2, 0, 2]
    np.testing.assert_array_equal(confusion_matrix(predicted, labels, 3), [[1, 1, 0], [0, 1, 0], [1, 0, 2]])
    probs = torch.tensor([[0.9, 0.1, 0.0], [0.3, 0.7, 0.0], [0.1, 0.8, 0.1],
                          [0.0, 0.0, 1.0], [0.95, 0.0, 0.05], [0.2, 0.2, 0.6]])
    # wrong: sample 1 (0.7 for class 1) and sample 4 (0.95 for class 0); the surer mistake first
    assert worst_mistakes(probs, torch.tensor(labels), 5) == [4, 1]
    fig = plot_confusion(confusion_matrix(predicted, labels, 3).numpy(), ["a", "b", "c"])
    assert "accuracy 66.67%" in fig.axes[0].get_title()
    style.pyplot().close(fig)


def test_pca_matches_the_covariance_eigenvectors():
    rng = np.random.default_rng(0)
    t = rng.normal(size=(500, 3)) * [5.0, 2.0, 0.1]  # variances 25, 4, 0.01 along a rotated basis
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    x = t @ q.T + [1.0, -2.0, 3.0]
    coords, explained = pca_2d(x)
    values, vectors = np.linalg.eigh(np.cov(x, rowvar=False))
    order = values.argsort()[::-1]
    for j in range(2):
        expected = (x - x.mean(0)) @ vectors[:, order[j]]
        assert abs(np.corrcoef(coords[:, j], expected)[0, 1]) > 0.9999
    np.testing.assert_allclose(explained, values[order[:2]] / values.sum(), rtol=1e-6)


def test_penultimate_features_are_the_input_of_the_last_linear_layer():
    model = cnnlab.create_model("lenet5").eval()
    images = torch.randint(0, 256, (3, 1, 28, 28), dtype=torch.uint8)
    feats = penultimate_features(model, images, preprocessing=Preprocessing((1, 1, 1), (0.5,), (0.25,)))
    x = (images.float() / 255 - 0.5) / 0.25
    with torch.no_grad():
        expected = model.classifier[:-1](model.features(x))  # everything but the output layer: 84 values
    torch.testing.assert_close(feats, expected)


def test_history_reading_and_curves(tmp_path):
    run = tmp_path / "run"
    run.mkdir()
    records = [{"epoch": e, "train_loss": 1.0 / e, "train_acc": 0.5 + 0.1 * e, "test_loss": 1.2 / e,
                "test_acc": 0.45 + 0.1 * e, "lr": 0.1 / e, "seconds": 3.0 * e} for e in (1, 2, 3)]
    (run / "history.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    assert read_history(run) == records == read_history(run / "history.jsonl")
    fig = plot_curves({"a": records, "b": records[:2]})
    acc = fig.axes[1]
    test_line = next(line for line in acc.get_lines() if line.get_label() == "a test")
    np.testing.assert_allclose(test_line.get_ydata(), [55.0, 65.0, 75.0])  # percent
    assert len(fig.axes) == 3  # loss, accuracy, and the learning rate, which changes here
    style.pyplot().close(fig)
    with pytest.raises(DataError):
        read_history(tmp_path / "nothing")
    (tmp_path / "bad.jsonl").write_text("{not json\n")
    with pytest.raises(DataError, match="line 1"):
        read_history(tmp_path / "bad.jsonl")


def test_grad_cam_and_overlay_work_together_from_python():
    """What the README shows: the model's view of an image, Grad-CAM on it, the overlay, in three lines."""
    from PIL import Image as PILImage

    model = cnnlab.create_model("lenet5_modern").eval()
    prep = Preprocessing((1, 28, 28), (0.286,), (0.353,))
    photo = PILImage.fromarray(np.random.default_rng(0).integers(0, 256, (40, 30), dtype=np.uint8))
    image = prep.image(photo)  # 1 x 28 x 28 uint8 tensor
    heat = grad_cam(model, prep.normalize(image[None]))
    overlay = style.overlay_heatmap(image, heat)
    assert overlay.shape == (28, 28, 3) and overlay.dtype == np.uint8
    np.testing.assert_array_equal(overlay, style.overlay_heatmap(image.permute(1, 2, 0).numpy(), np.asarray(heat)))
    np.testing.assert_array_equal(overlay, style.overlay_heatmap(image.numpy()[0], torch.as_tensor(heat)))
