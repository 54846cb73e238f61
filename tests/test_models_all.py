"""Every registered model, in its small-input form: forward, backward, shapes, no NaN."""

import pytest
import torch

import cnnlab
from cnnlab.backbone import main_logits
from cnnlab.train.losses import auxiliary_loss


# Classifiers only: the other tasks' models answer maps, boxes or images and have their own tests.
# EfficientNet-B1..B7 repeat B0's blocks at other widths and depths; test_models_zoo.py checks their shapes.
SMALL_FORMS = [n for n in cnnlab.list_models(task="classify") if "compound-scaled" not in cnnlab.model_info(n).tags]


@pytest.mark.parametrize("name", SMALL_FORMS)
def test_small_input_forward_backward(name):
    torch.manual_seed(0)
    model = cnnlab.create_model(name, num_classes=7, in_channels=1, small_input=True)
    model.train()
    x = torch.randn(2, 1, 28, 28)
    out = model(x)
    logits = main_logits(out)
    assert logits.shape == (2, 7)
    loss = auxiliary_loss(out, torch.tensor([0, 6]), torch.nn.CrossEntropyLoss())
    loss.backward()
    assert torch.isfinite(loss)
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert grads and all(g is not None and torch.isfinite(g).all() for g in grads)
    model.eval()
    with torch.no_grad():
        features = model.forward_features(x)
        assert features.ndim in (3, 4) and torch.isfinite(features).all()


@pytest.mark.parametrize("name", cnnlab.list_models())
def test_registry_metadata(name):
    info = cnnlab.model_info(name)
    assert info.family and info.paper and 1989 <= info.year <= 2024
    assert len(info.input_size) == (4 if info.task == "video" else 3)  # clips: C x T x H x W
