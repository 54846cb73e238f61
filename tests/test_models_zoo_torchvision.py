"""The light and modern networks load torchvision's state dicts and give its outputs (torchvision env only)."""

import pytest
import torch

import cnnlab

torchvision = pytest.importorskip("torchvision")


@pytest.mark.parametrize("name, side", [("mobilenet_v3_large", 224), ("mobilenet_v3_small", 224),
                                        ("efficientnet_b0", 224), ("efficientnet_b5", 96), ("wide_resnet50_2", 160)])
def test_torchvision_state_dict_loads_and_agrees(name, side):
    torch.manual_seed(0)
    theirs = getattr(torchvision.models, name)(weights=None, num_classes=10).eval()
    for m in theirs.modules():  # non-trivial batch-norm statistics, so a misplaced BN would show
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
    ours = cnnlab.create_model(name, num_classes=10).eval()
    state = theirs.state_dict()
    assert set(ours.state_dict()) == set(state)
    ours.load_state_dict(state, strict=True)
    x = torch.randn(2, 3, side, side)
    with torch.no_grad():
        expected, got = theirs(x), ours(x)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("name", ["resnet18", "mobilenet_v3_small", "efficientnet_b0"])
def test_torchvision_weight_file_serves_imagenet_labels(name, tmp_path):
    # A user's torchvision file (random weights here), saved the way torchvision's own are: a plain state dict.
    from cnnlab.train.checkpoint import load_checkpoint

    torch.manual_seed(0)
    theirs = getattr(torchvision.models, name)(weights=None).eval()
    torch.save(theirs.state_dict(), tmp_path / f"{name}.pth")
    ckpt = load_checkpoint(f"{name}@{tmp_path / f'{name}.pth'}")
    x = torch.randn(1, 3, 224, 224)
    with torch.no_grad():
        assert torch.allclose(ckpt.model(x), theirs(x), rtol=1e-4, atol=1e-5)
    from torchvision.models import get_model_weights

    # torchvision's own category list, as its ImageNet weights carry it
    categories = get_model_weights(name).DEFAULT.meta["categories"]
    assert ckpt.class_names == list(categories)
