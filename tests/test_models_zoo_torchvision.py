"""torchvision weight files of the light and modern networks through cnnlab's verbs (torchvision env only);
the state-dict parity of these networks is in test_models_torchvision.py with the others."""

import pytest
import torch


torchvision = pytest.importorskip("torchvision")


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
