"""FCN (Long, Shelhamer & Darrell, "Fully Convolutional Networks for Semantic Segmentation", CVPR 2015).

A classifier becomes a pixel classifier (§3.1): its fully connected layers are convolutions whose
kernels cover their whole input (VGG-16's fc6 is a 7x7 convolution over pool5, fc7 a 1x1), so the
net takes any input size and gives a coarse map of class scores; a learnable upsampling,
initialised to bilinear interpolation (§3.3), brings it back to the input's size. The skip
architecture (§4.2, Fig. 3) refines the coarse stride-32 prediction with scores from shallower layers:

========  =========================================================================================
FCN-32s   score_fr (stride 32) -> upsample x32
FCN-16s   2 x score_fr + score_pool4 (stride 16) -> upsample x16
FCN-8s    2 x (2 x score_fr + score_pool4) + score_pool3 (stride 8) -> upsample x8
========  =========================================================================================

**The paper's form** (VGG-16, ``small_input=False``) follows the reference Caffe nets: conv1_1 pads
by 100 so that fc6's 7x7 window fits any image, max-pools round up (Caffe's pooling), the upsampling
layers are transposed convolutions of kernel 2f and stride f (4x4 / stride 2 for the x2 steps, 64 /
32, 32 / 16 and 16 / 8 for the final ones) and the ``Crop`` layers take fixed offsets (5 for pool4,
9 for pool3; 19, 27 and 31 for the outputs of 32s, 16s and 8s). FCN-8s for the 21 classes of PASCAL
VOC has 134M parameters (Table 1 of the paper counts "134M" for FCN-VGG16).

**The small-input form** (the scenes: 1 x 128 x 128) keeps VGG-16's thirteen convolutions and five
pools with widths divided by 4 and batch norm, makes fc6 a 3x3 convolution of 512 channels (pool5
is 4 x 4, smaller than the paper's 7x7 window) and fc7 a 1x1, and upsamples by exactly f (padding
f / 2), cropping to the skip map's size, so no 100-pixel margin is needed.

**Any zoo backbone** (``backbone="resnet18"``, ...) through ``features_only``: its deepest three
resolutions play pool3 / pool4 / pool5, and scores are taken from them directly (as the paper does
for GoogLeNet, whose only fully connected layer is the classifier).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..backbone import FeatureExtractor
from ..errors import ConfigError
from ..layers.upsample import BilinearUpsample, crop_to, transfer_convolutions
from ..registry import create_model, model_info, register_model
from ..specs.vgg import VGG_COLUMNS
from .vgg import VGG, make_features

PAPER = "Long, Shelhamer & Darrell, CVPR 2015"
# The reference Caffe nets' crop offsets (voc-fcn32s / 16s / 8s): how far each map's pixel (0, 0)
# lies from the input's, once conv1_1's 100-pixel padding is accounted for.
CAFFE_OFFSETS = {"pool4": 5, "pool3": 9, 32: 19, 16: 27, 8: 31}


def fit(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """``x`` cropped (from the top left) or edge-padded to ``height x width``: an upsampled map of a
    ceil-pooled encoder is at least the finer map's size; one of a floor-pooled backbone may be a pixel short."""
    h, w = x.shape[-2:]
    if h < height or w < width:
        x = F.pad(x, (0, max(0, width - w), 0, max(0, height - h)), mode="replicate")
    return x[..., :height, :width]


class VGGPools(nn.Module):
    """VGG-16's thirteen convolutions and five pools (column D of Table 1 of Simonyan & Zisserman),
    returning the outputs of pool3, pool4 and pool5 (strides 8, 16, 32), the maps FCN's skips read.

    The classifier is kept whole but for its head, so its weights keep their names (``model.features.N``)."""

    def __init__(self, in_channels: int, *, small_input: bool, batch_norm: bool):
        super().__init__()
        vgg = VGG("D", in_channels=in_channels, batch_norm=batch_norm)
        if small_input:  # the same column with widths / 4, all five pools kept
            vgg.features, _, vgg.feature_info = make_features(VGG_COLUMNS["D"], in_channels, batch_norm,
                                                              width_divisor=4)
        else:
            vgg.features[0].padding = (100, 100)  # the reference nets' margin: fc6's 7x7 window fits any image
        vgg.avgpool = vgg.classifier = None
        self.pools = [i for i, m in enumerate(vgg.features) if isinstance(m, nn.MaxPool2d)]
        for i in self.pools:
            vgg.features[i].ceil_mode = True  # Caffe rounds pooled sizes up
        self.model = vgg
        convs = [m for m in vgg.features if isinstance(m, nn.Conv2d)]
        self.channels = [convs[6].out_channels, convs[9].out_channels, convs[12].out_channels]  # conv3_3, 4_3, 5_3
        self.reductions = [8, 16, 32]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        for i, layer in enumerate(self.model.features):
            x = layer(x)
            if i in self.pools[2:]:
                maps.append(x)
        return maps


def backbone_encoder(name: str, in_channels: int, *, small_input: bool) -> FeatureExtractor:
    """A zoo classifier's trunk through ``features_only``: the last stage of each of its three deepest resolutions."""
    info = model_info(name)
    if info.task != "classify":
        raise ConfigError(f"FCN needs a classifier as its backbone; {name} is a {info.task} model")
    kwargs = {"in_channels": in_channels} if "in_channels" in info.arguments else {}
    if info.has_small_form:
        kwargs["small_input"] = small_input
    probe = create_model(name, **kwargs)
    stages = list(probe.feature_info)
    last_of = {}
    for i, f in enumerate(stages):
        last_of[f.reduction] = i
    if len(last_of) < 3:
        raise ConfigError(f"{name} has {len(last_of)} resolutions; FCN's skips need three")
    chosen = [last_of[r] for r in sorted(last_of)[-3:]]
    return FeatureExtractor(probe, out_indices=chosen)


class FCN(nn.Module):
    """FCN-32s / 16s / 8s over an encoder that returns the maps of strides 8, 16 and 32."""

    def __init__(self, encoder: nn.Module, *, num_classes: int, stride: int = 8,
                 fc: tuple[int, int] | None = (4096, 7), caffe: bool = False, dropout: float = 0.5,
                 batch_norm: bool = False):
        super().__init__()
        if stride not in (32, 16, 8):
            raise ConfigError(f"FCN's output stride is 32, 16 or 8, not {stride}")
        self.encoder, self.stride, self.caffe = encoder, stride, caffe
        c3, c4, c5 = encoder.channels
        r3, r4, r5 = encoder.reductions
        self.ratios = (r5 // r4, r4 // r3, r3)  # 2, 2, 8 for VGG-16
        if fc is not None:  # fc6 / fc7 as convolutions (§3.1)
            width, kernel = fc
            norm = (lambda: [nn.BatchNorm2d(width)]) if batch_norm else (lambda: [])
            self.fc6 = nn.Sequential(nn.Conv2d(c5, width, kernel, padding=0 if caffe else kernel // 2), *norm(),
                                     nn.ReLU(inplace=True), nn.Dropout2d(dropout))
            self.fc7 = nn.Sequential(nn.Conv2d(width, width, 1), *norm(), nn.ReLU(inplace=True), nn.Dropout2d(dropout))
            c5 = width
        else:
            self.fc6 = self.fc7 = None
        pad = 0 if caffe else None
        self.score_fr = nn.Conv2d(c5, num_classes, 1)
        if stride <= 16:
            self.score_pool4 = nn.Conv2d(c4, num_classes, 1)
            self.upscore2 = BilinearUpsample(num_classes, self.ratios[0], padding=pad)
        if stride == 8:
            self.score_pool3 = nn.Conv2d(c3, num_classes, 1)
            self.upscore_pool4 = BilinearUpsample(num_classes, self.ratios[1], padding=pad)
        final = {32: r5, 16: r4, 8: r3}[stride]
        self.upscore = BilinearUpsample(num_classes, final, padding=pad)
        for m in (self.score_fr, getattr(self, "score_pool4", None), getattr(self, "score_pool3", None)):
            if m is not None:  # §4.3: "class scoring layers ... zero-initialized" (random init gave no gain)
                nn.init.zeros_(m.weight)
                nn.init.zeros_(m.bias)

    def _join(self, coarse: torch.Tensor, skip: torch.Tensor, key: str) -> torch.Tensor:
        if self.caffe:  # crop the finer score map to the upsampled one, at the reference offset
            return coarse + crop_to(skip, *coarse.shape[-2:], CAFFE_OFFSETS[key])
        return fit(coarse, *skip.shape[-2:]) + skip

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        pool3, pool4, pool5 = self.encoder(x)  # strides 8, 16, 32 (VGG-16 at 500x500, caffe: 88, 44, 22 with the margin)
        h = pool5
        if self.fc6 is not None:
            h = self.fc7(self.fc6(h))  # N x 4096 x 16 x 16 (paper form, 500x500)
        h = self.score_fr(h)  # N x K x 16 x 16
        if self.stride <= 16:
            h = self._join(self.upscore2(h), self.score_pool4(pool4), "pool4")  # N x K x 34 x 34
        if self.stride == 8:
            h = self._join(self.upscore_pool4(h), self.score_pool3(pool3), "pool3")  # N x K x 70 x 70
        h = self.upscore(h)  # N x K x 568 x 568
        if self.caffe:
            return crop_to(h, height, width, CAFFE_OFFSETS[self.stride])  # N x K x 500 x 500
        return fit(h, height, width)

    @torch.no_grad()
    def encoder_from(self, classifier: nn.Module) -> int:
        """Start the encoder (and fc6 / fc7 where the shapes allow) from a trained classifier: the FCN
        paper's point (§3.1, §4.1). Returns the number of layers copied."""
        copied = 0
        if isinstance(self.encoder.model, VGG) and isinstance(classifier, VGG):
            copied = transfer_convolutions(classifier.features, self.encoder.model.features)
            linear = [m for m in classifier.classifier if isinstance(m, nn.Linear)]
            for conv, lin in zip((self.fc6, self.fc7), linear[:2]):  # a linear layer is a conv over its whole input
                if conv is not None and conv[0].weight.numel() == lin.weight.numel():
                    conv[0].weight.copy_(lin.weight.view_as(conv[0].weight))
                    conv[0].bias.copy_(lin.bias)
                    copied += 1
            return copied
        from ..backbone import load_backbone_state

        return len(load_backbone_state(self.encoder, classifier.state_dict()))


def _build(stride: int, *, num_classes: int, in_channels: int, small_input: bool, backbone: str,
           batch_norm: bool | None) -> FCN:
    bn = small_input if batch_norm is None else batch_norm
    if backbone == "vgg16":
        encoder = VGGPools(in_channels, small_input=small_input, batch_norm=bn)
        fc = (512, 3) if small_input else (4096, 7)
        return FCN(encoder, num_classes=num_classes, stride=stride, fc=fc, caffe=not small_input, batch_norm=bn)
    return FCN(backbone_encoder(backbone, in_channels, small_input=small_input), num_classes=num_classes,
               stride=stride, fc=None)


def _register(stride: int) -> None:
    def build(*, num_classes: int = 21, in_channels: int = 3, small_input: bool = False, backbone: str = "vgg16",
              batch_norm: bool | None = None) -> FCN:
        return _build(stride, num_classes=num_classes, in_channels=in_channels, small_input=small_input,
                      backbone=backbone, batch_norm=batch_norm)

    build.__doc__ = f"FCN-{stride}s on VGG-16 (or any zoo backbone), Fig. 3 of the paper."
    register_model(f"fcn{stride}s", family="FCN", paper=PAPER, year=2015, input_size=(3, 500, 500), num_classes=21,
                   task="segment", tags=("segmentation",))(build)


for _stride in (32, 16, 8):
    _register(_stride)


def _register_on(backbone: str) -> None:
    def build(*, num_classes: int = 21, in_channels: int = 3, small_input: bool = False) -> FCN:
        return _build(8, num_classes=num_classes, in_channels=in_channels, small_input=small_input,
                      backbone=backbone, batch_norm=None)

    build.__doc__ = f"FCN-8s's skips over the zoo's {backbone} (features_only)."
    register_model(f"fcn8s_{backbone}", family="FCN", paper=PAPER, year=2015, input_size=(3, 224, 224),
                   num_classes=21, task="segment", tags=("segmentation",))(build)


for _backbone in ("resnet18", "resnet50", "mobilenet_v2"):
    _register_on(_backbone)
