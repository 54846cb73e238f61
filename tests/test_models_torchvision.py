"""Weight-file parity with torchvision: its state_dict loads into cnnlab's model and gives the same outputs.

Skipped when torchvision is not installed. To run: install torchvision in an environment of its own
(it pins its own torch), install cnnlab there with ``pip install -e .``, then
``pytest tests/test_models_torchvision.py``.
"""

import pytest
import torch

import cnnlab

torchvision = pytest.importorskip("torchvision")

# (cnnlab name, torchvision builder, input side)
SHARED = [
    ("alexnet", "alexnet", 224), ("vgg11", "vgg11", 224), ("vgg11_bn", "vgg11_bn", 224),
    ("resnet18", "resnet18", 224), ("resnet50", "resnet50", 224), ("densenet121", "densenet121", 224),
    ("squeezenet1_0", "squeezenet1_0", 224), ("mobilenet_v2", "mobilenet_v2", 224),
    ("shufflenet_v2_x1_0", "shufflenet_v2_x1_0", 224), ("inception_v3", "inception_v3", 299),
    ("mobilenet_v3_large", "mobilenet_v3_large", 224), ("mobilenet_v3_small", "mobilenet_v3_small", 224),
    ("efficientnet_b0", "efficientnet_b0", 224), ("efficientnet_b5", "efficientnet_b5", 96),
    ("wide_resnet50_2", "wide_resnet50_2", 160),
]


@pytest.mark.parametrize("name, tv_name, side", SHARED)
def test_torchvision_state_dict_loads_and_agrees(name, tv_name, side):
    torch.manual_seed(0)
    kwargs = {"init_weights": True} if tv_name == "inception_v3" else {}
    theirs = getattr(torchvision.models, tv_name)(weights=None, num_classes=10, **kwargs).eval()
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


def test_alexnet_agrees_with_torchvision_in_training_mode_too():
    # Dropout draws its masks in module order, so equal outputs under the same seed mean the dropout layers sit
    # where torchvision's do (before FC6 and FC7), not only that the weights line up.
    torch.manual_seed(0)
    theirs = torchvision.models.alexnet(weights=None, num_classes=10).train()
    ours = cnnlab.create_model("alexnet", num_classes=10).train()
    ours.load_state_dict(theirs.state_dict(), strict=True)
    x = torch.randn(3, 3, 224, 224)
    torch.manual_seed(1)
    expected = theirs(x)
    torch.manual_seed(1)
    got = ours(x)
    assert torch.allclose(got, expected, rtol=1e-4, atol=1e-4)
    torch.manual_seed(2)
    assert not torch.allclose(ours(x), expected, rtol=1e-4, atol=1e-4)  # another mask gives another output
