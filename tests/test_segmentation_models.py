"""FCN, DeconvNet, SegNet and U-Net against their papers: parameter counts from the layer tables
(counted by hand here, layer by layer, and the papers' rounded totals), output sizes (U-Net's
572 -> 388), bilinear initialisation against PyTorch's interpolation, unpooling at the switch
locations, and an encoder started from a classifier."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

import cnnlab
from cnnlab.layers.upsample import BilinearUpsample, bilinear_kernel, crop_to

torch.set_num_threads(1)


def big(name: str, **kwargs) -> nn.Module:
    """A paper-sized model on the meta device: shapes and counts without memory or initialisation time."""
    with torch.device("meta"):
        return cnnlab.create_model(name, **kwargs).eval()


def count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def conv(cin: int, cout: int, k: int = 3, bias: bool = True) -> int:
    return k * k * cin * cout + (cout if bias else 0)


# VGG-16's thirteen 3x3 convolutions (Simonyan & Zisserman, Table 1, column D).
VGG16 = [(3, 64), (64, 64), (64, 128), (128, 128), (128, 256), (256, 256), (256, 256),
         (256, 512), (512, 512), (512, 512), (512, 512), (512, 512), (512, 512)]


def vgg16_convs(in_channels: int = 3) -> int:
    return sum(conv(in_channels if i == 0 else a, b) for i, (a, b) in enumerate(VGG16))


def test_fcn_parameter_counts_follow_the_reference_nets():
    k = 21  # PASCAL VOC: 20 classes and background
    fc = conv(512, 4096, 7) + conv(4096, 4096, 1) + conv(4096, k, 1)  # fc6, fc7, score_fr
    up = lambda f: conv(k, k, 2 * f, bias=False)  # noqa: E731 - a 2f x 2f transposed convolution, no bias
    expected = {
        "fcn32s": vgg16_convs() + fc + up(32),
        "fcn16s": vgg16_convs() + fc + conv(512, k, 1) + up(2) + up(16),
        "fcn8s": vgg16_convs() + fc + conv(512, k, 1) + conv(256, k, 1) + 2 * up(2) + up(8),
    }
    for name, want in expected.items():
        assert count(big(name, num_classes=k)) == want, name
    # Long et al. Table 1: FCN-VGG16 has 134M parameters.
    assert round(expected["fcn8s"] / 1e6) == 134


def test_fcn_paper_form_takes_any_size_and_crops_back_to_it():
    model = big("fcn8s", num_classes=3)
    with torch.no_grad():
        for side in (500, 227, 40):
            assert model(torch.zeros(1, 3, side, side + 3, device="meta")).shape == (1, 3, side, side + 3)


@pytest.mark.parametrize("name", ["fcn32s", "fcn16s", "fcn8s", "fcn8s_resnet18", "fcn8s_mobilenet_v2",
                                  "deconvnet", "segnet", "unet"])
def test_small_forms_give_a_score_map_of_the_scenes_size(name):
    model = cnnlab.create_model(name, input_size=(1, 128, 128), num_classes=11).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 1, 128, 128))
    assert out.shape == (2, 11, 128, 128)
    assert count(model) < 12_000_000


def test_fcn_on_a_backbone_reads_its_three_deepest_resolutions():
    model = cnnlab.create_model("fcn8s", backbone="resnet18", in_channels=1, num_classes=5)
    assert model.encoder.reductions == [8, 16, 32] and model.encoder.channels == [128, 256, 512]
    assert model.fc6 is None  # scores straight from the trunk, as the paper does for GoogLeNet


def test_deconvnet_is_vgg16_with_its_fc_layers_and_a_mirrored_decoder():
    k = 21
    bn = lambda c: 2 * c  # noqa: E731 - batch norm's scale and shift
    encoder = vgg16_convs() + sum(bn(b) for _, b in VGG16)
    fc = conv(512, 4096, 7) + bn(4096) + conv(4096, 4096, 1) + bn(4096) + conv(4096, 512, 7) + bn(512)
    # deconv5_1..3 (512), 4_1, 4_2 (512), 4_3 (256), 3_1, 3_2 (256), 3_3 (128), 2_1 (128), 2_2 (64), 1_1, 1_2 (64)
    decoder_layers = [(512, 512)] * 3 + [(512, 512), (512, 512), (512, 256), (256, 256), (256, 256), (256, 128),
                                         (128, 128), (128, 64), (64, 64), (64, 64)]
    decoder = sum(conv(a, b) + bn(b) for a, b in decoder_layers)
    want = encoder + fc + decoder + conv(64, k, 1)
    model = big("deconvnet", num_classes=k)
    assert count(model) == want
    assert round(want / 1e6) == 252  # SegNet's Table 6: DeconvNet 252M
    with torch.no_grad():
        assert model(torch.zeros(1, 3, 224, 224, device="meta")).shape == (1, k, 224, 224)


def test_segnet_has_no_fc_layers_and_about_29_5m_parameters():
    k = 12  # CamVid's 11 classes and void
    bn = lambda c: 2 * c  # noqa: E731
    encoder = vgg16_convs() + sum(bn(b) for _, b in VGG16)
    decoder_layers = [(512, 512)] * 3 + [(512, 512), (512, 512), (512, 256), (256, 256), (256, 256), (256, 128),
                                         (128, 128), (128, 64), (64, 64)]
    decoder = sum(conv(a, b) + bn(b) for a, b in decoder_layers) + conv(64, k)
    model = big("segnet", num_classes=k)
    assert count(model) == encoder + decoder
    assert abs(count(model) / 1e6 - 29.5) < 0.1  # Badrinarayanan et al. Table 6: 29.5M
    assert not any(isinstance(m, nn.Linear) for m in model.modules())


def test_segnet_unpools_to_the_switch_locations():
    model = cnnlab.create_model("segnet", input_size=(1, 64, 64), num_classes=2).eval()
    x = torch.zeros(1, 1, 4, 4)
    x[0, 0, 1, 0], x[0, 0, 2, 3] = 5.0, 7.0  # the maxima of two windows
    pooled, index = model.pool(x)
    sparse = model.unpool(pooled, index, output_size=x.shape[-2:])
    assert torch.equal(sparse, x)  # the values go back where they came from, zeros elsewhere


def test_unet_valid_form_maps_572_to_388_with_the_papers_parameters():
    model = big("unet")
    widths = [64, 128, 256, 512, 1024]
    down = sum(conv(1 if i == 0 else widths[i - 1], w) + conv(w, w) for i, w in enumerate(widths))
    up = sum(conv(2 * w, w, 2) + conv(2 * w, w) + conv(w, w) for w in widths[:-1])
    assert count(model) == down + up + conv(64, 2, 1)
    assert abs(count(model) / 1e6 - 31.0) < 0.1  # the paper's net: about 31M
    assert len([m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d))]) == 23  # §2: 23 conv layers
    with torch.no_grad():
        assert model(torch.zeros(1, 1, 572, 572, device="meta")).shape == (1, 2, 388, 388)
    assert model.output_size(572) == 388
    padded = cnnlab.create_model("unet", padded=True).eval()
    with torch.no_grad():
        assert padded(torch.zeros(1, 1, 96, 96)).shape == (1, 2, 96, 96)


def test_bilinear_upsampling_starts_as_pytorchs_bilinear_interpolation():
    x = torch.randn(1, 3, 6, 6, dtype=torch.float64)
    for factor in (2, 4, 8):
        up = BilinearUpsample(3, factor).double()
        mine = up(x)
        ref = F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)
        inner = slice(factor, -factor)  # the transposed conv pads with zeros at the border; inside they agree
        assert mine.shape == ref.shape
        torch.testing.assert_close(mine[..., inner, inner], ref[..., inner, inner])
    ramp = torch.tensor([0.25, 0.75, 0.75, 0.25])  # FCN's 4x4, stride-2 kernel: a separable tent
    assert torch.equal(bilinear_kernel(1, 4)[0, 0], ramp[:, None] * ramp[None, :])


def test_crop_to_is_centred_or_at_an_offset():
    x = torch.arange(36.0).view(1, 1, 6, 6)
    assert torch.equal(crop_to(x, 2, 2), x[..., 2:4, 2:4])
    assert torch.equal(crop_to(x, 2, 3, 1), x[..., 1:3, 1:4])
    with pytest.raises(ValueError):
        crop_to(x, 4, 4, 3)


def test_fcn_encoder_starts_from_a_vgg16_classifier():
    classifier = cnnlab.create_model("vgg16_bn", in_channels=1, small_input=True, num_classes=10)
    fcn = cnnlab.create_model("fcn8s", input_size=(1, 128, 128), num_classes=11)
    # All thirteen convolutions (the small classifier has 3 pools, FCN 5), and fc6 / fc7: the classifier's
    # first linear layer reads a 128 x 3 x 3 map, so it is exactly a 3x3 convolution of 512 filters.
    assert fcn.encoder_from(classifier) == 15
    assert torch.equal(fcn.fc6[0].weight.flatten(1), classifier.classifier[0].weight)
    src = [m for m in classifier.features if isinstance(m, nn.Conv2d)]
    dst = [m for m in fcn.encoder.model.features if isinstance(m, nn.Conv2d)]
    assert all(torch.equal(a.weight, b.weight) for a, b in zip(src, dst))
    # The paper's form: fc6 takes the classifier's first linear layer, reshaped to 4096 x 512 x 7 x 7.
    vgg = cnnlab.create_model("vgg16", num_classes=10)
    fcn32 = cnnlab.create_model("fcn32s", num_classes=3)
    assert fcn32.encoder_from(vgg) == 15
    assert torch.equal(fcn32.fc6[0].weight.flatten(1), vgg.classifier[0].weight)
