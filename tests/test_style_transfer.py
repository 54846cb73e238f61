"""Neural style transfer: Gram matrices and Gatys et al.'s losses against hand computations, the
paper's layers at torchvision's VGG-19 indices, a weight file read weights-only (a pickle refused),
and a short optimisation with random weights that lowers the loss, through ``cnnlab style``."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.cli import main
from cnnlab.errors import CheckpointError
from cnnlab.generation.style import (CONTENT_LAYERS, LAYERS, STYLE_LAYERS, content_loss, gram_matrix, load_vgg19,
                                     style_layer_loss, stylize)


def test_gram_matrix_and_the_paper_losses_by_hand():
    f = torch.arange(12, dtype=torch.float64).reshape(1, 2, 2, 3)  # N = 2 channels, M = 6 positions
    rows = f.reshape(2, 6).numpy()
    want = np.array([[sum(rows[i, k] * rows[j, k] for k in range(6)) for j in range(2)] for i in range(2)])
    assert np.allclose(gram_matrix(f)[0].numpy(), want)
    target = torch.zeros(1, 2, 2)
    assert float(style_layer_loss(f, target)) == pytest.approx((want ** 2).sum() / (4 * 2 ** 2 * 6 ** 2))
    assert float(content_loss(f, torch.zeros_like(f))) == pytest.approx(0.5 * (rows ** 2).sum())


def test_the_papers_layers_are_torchvision_vgg19_relus():
    vgg = load_vgg19(None)
    # torchvision's vgg19.features: conv4_2 is features.21, its ReLU features.22; conv5_1's ReLU features.29
    assert LAYERS["conv4_2"] == 22 and LAYERS["conv5_1"] == 29 and LAYERS["conv1_1"] == 1
    assert all(isinstance(vgg[LAYERS[n]], torch.nn.ReLU) and isinstance(vgg[LAYERS[n] - 1], torch.nn.Conv2d)
               for n in CONTENT_LAYERS + STYLE_LAYERS)
    channels = [vgg[LAYERS[n] - 1].out_channels for n in STYLE_LAYERS]
    assert channels == [64, 128, 256, 512, 512] and CONTENT_LAYERS == ("conv4_2",)
    assert not any(isinstance(m, torch.nn.MaxPool2d) for m in vgg)  # average pools, §2.1
    assert len(vgg) == 30


def test_weight_file_is_loaded_weights_only(tmp_path):
    torch.manual_seed(3)
    donor = load_vgg19(None, average_pool=False)
    state = {f"features.{k}": v for k, v in donor.state_dict().items()}
    state["classifier.6.weight"] = torch.zeros(1000, 4096)  # a torchvision file has the classifier too
    path = tmp_path / "vgg19.pth"
    torch.save(state, path)
    torch.manual_seed(4)
    vgg = load_vgg19(path)
    assert torch.equal(vgg[LAYERS["conv4_2"] - 1].weight, donor[21].weight)
    evil = tmp_path / "evil.pth"
    with open(evil, "wb") as f:
        pickle.dump({"features.0.weight": object()}, f)
    with pytest.raises(CheckpointError, match="weights-only"):
        load_vgg19(evil)
    small = tmp_path / "small.pth"
    torch.save({"features.0.weight": torch.zeros(3)}, small)
    with pytest.raises(CheckpointError, match="not a VGG-19"):
        load_vgg19(small)


def test_style_with_random_weights_lowers_the_loss(tmp_path, capsys):
    g = torch.Generator().manual_seed(0)
    content = (torch.rand(3, 40, 40, generator=g) * 255).to(torch.uint8)
    style = torch.zeros(3, 40, 40, dtype=torch.uint8)
    style[0] = 200  # a red style image
    torch.manual_seed(0)
    result = stylize(content, style, size=32, steps=8, optimizer="adam")
    assert result.image.shape == (3, 32, 32) and result.losses[-1] < result.losses[0]
    # the colours move towards the style's red
    assert float(result.image[0].float().mean() - result.image[1].float().mean()) > \
        float(content[0].float().mean() - content[1].float().mean())
    a, b = tmp_path / "a.png", tmp_path / "b.png"
    Image.fromarray(content.permute(1, 2, 0).numpy()).save(a)
    Image.fromarray(style.permute(1, 2, 0).numpy()).save(b)
    out = tmp_path / "styled.png"
    assert main(["style", str(a), str(b), "--size", "32", "--steps", "3", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert out.exists() and summary["last_loss"] < summary["first_loss"]
    assert main(["style", str(a), str(b), "--weights", str(tmp_path / "missing.pth"), "--out", str(out)]) != 0
    assert "does not exist" in capsys.readouterr().err
