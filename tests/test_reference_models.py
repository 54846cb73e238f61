"""Whole networks: torch weights loaded by name into the NumPy engine give the same logits and gradients."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from cnnlab.reference import functional as F
from cnnlab.reference import nn as rnn
from cnnlab.registry import create_model


# --- torch twins of the reference networks, written from the papers with torchvision's names --------

class TorchVGG(nn.Module):
    def __init__(self, batch_norm: bool, dropout: float):
        super().__init__()
        layers, channels = [], 1
        for item in [8, "M", 16, 16, "M"]:
            if item == "M":
                layers.append(nn.MaxPool2d(2, 2))
            else:
                layers += [nn.Conv2d(channels, item, 3, padding=1)] + ([nn.BatchNorm2d(item)] if batch_norm else [])
                layers.append(nn.ReLU())
                channels = item
        self.features = nn.Sequential(*layers)
        self.classifier = nn.Sequential(nn.Linear(16 * 7 * 7, 64), nn.ReLU(), nn.Dropout(dropout), nn.Linear(64, 64),
                                        nn.ReLU(), nn.Dropout(dropout), nn.Linear(64, 10))

    def forward(self, x):
        return self.classifier(torch.flatten(self.features(x), 1))


class TorchBasicBlock(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.downsample = None
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout))

    def forward(self, x):
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(out + (self.downsample(x) if self.downsample is not None else x))


class TorchResNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv1 = nn.Conv2d(1, 8, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(8)
        self.layer1 = nn.Sequential(TorchBasicBlock(8, 8, 1), TorchBasicBlock(8, 8, 1))
        self.layer2 = nn.Sequential(TorchBasicBlock(8, 16, 2))
        self.fc = nn.Linear(16, 10)

    def forward(self, x):
        x = self.layer2(self.layer1(torch.relu(self.bn1(self.conv1(x)))))
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(x, 1), 1))


class TorchInception(nn.Module):
    def __init__(self, cin, c1, c3, c5, pool_proj):
        super().__init__()
        self.branch1 = nn.Sequential(nn.Conv2d(cin, c1, 1), nn.ReLU())
        self.branch2 = nn.Sequential(nn.Conv2d(cin, c3[0], 1), nn.ReLU(), nn.Conv2d(c3[0], c3[1], 3, padding=1), nn.ReLU())
        self.branch3 = nn.Sequential(nn.Conv2d(cin, c5[0], 1), nn.ReLU(), nn.Conv2d(c5[0], c5[1], 5, padding=2), nn.ReLU())
        self.branch4 = nn.Sequential(nn.MaxPool2d(3, 1, 1), nn.Conv2d(cin, pool_proj, 1), nn.ReLU())

    def forward(self, x):
        return torch.cat([self.branch1(x), self.branch2(x), self.branch3(x), self.branch4(x)], 1)


def compare(torch_model: nn.Module, reference: rnn.Module, x: np.ndarray, training: bool, seed: int = 0) -> None:
    """Same weights, same batch: logits, every parameter gradient and the BN running statistics agree."""
    torch_model = torch_model.double().train(training)
    reference.load_state_dict(torch_model.state_dict())
    reference.astype(np.float64).train(training)

    logits_t = torch_model(torch.tensor(x))
    logits = reference(x)
    np.testing.assert_allclose(logits, logits_t.detach().numpy(), rtol=1e-9, atol=1e-10)

    if logits.ndim == 2:
        labels = np.random.default_rng(seed).integers(0, logits.shape[1], len(x))
        nn.functional.cross_entropy(logits_t, torch.tensor(labels)).backward()
        reference.backward(F.cross_entropy_backward(logits, labels))
    else:
        weights = np.random.default_rng(seed).standard_normal(logits.shape)
        (logits_t * torch.tensor(weights)).sum().backward()
        reference.backward(weights)

    torch_params = dict(torch_model.named_parameters())
    names = [name for name, _ in reference.named_parameters()]
    assert names and sorted(names) == sorted(torch_params)
    for name, param in reference.named_parameters():
        np.testing.assert_allclose(param.grad, torch_params[name].grad.numpy(), rtol=1e-8, atol=1e-10, err_msg=name)
    torch_state = torch_model.state_dict()
    for name, value in reference.state_dict().items():
        np.testing.assert_allclose(value, torch_state[name].numpy(), rtol=1e-10, atol=1e-12, err_msg=name)


@pytest.mark.parametrize("arch", ["lenet5", "lenet5_modern"])
def test_lenet5_matches_the_torch_model_of_the_registry(arch):
    torch.manual_seed(0)
    x = np.random.default_rng(1).standard_normal((4, 1, 28, 28))
    compare(create_model(arch), getattr(rnn, arch)(), x, training=True)


def test_lenet5_inference_mode_matches():
    torch.manual_seed(1)
    x = np.random.default_rng(2).standard_normal((3, 1, 28, 28))
    compare(create_model("lenet5_modern"), rnn.lenet5_modern(), x, training=False)


@pytest.mark.parametrize("batch_norm,training", [(False, False), (True, True)])
def test_small_vgg_matches(batch_norm, training):
    torch.manual_seed(2)
    x = np.random.default_rng(3).standard_normal((3, 1, 28, 28))
    # dropout draws different masks in the two engines, so compare with it switched off or in eval mode
    dropout = 0.5 if not training else 0.0
    compare(TorchVGG(batch_norm, dropout), rnn.vgg_small(batch_norm=batch_norm, dropout=dropout), x, training)


def test_small_resnet_matches():
    torch.manual_seed(3)
    x = np.random.default_rng(4).standard_normal((3, 1, 12, 12))
    compare(TorchResNet(), rnn.ResNet((2, 1), (8, 16)), x, training=True)


def test_inception_block_matches_and_concatenates_channels():
    torch.manual_seed(4)
    x = np.random.default_rng(5).standard_normal((2, 6, 7, 7))
    block = rnn.InceptionBlock(6, 4, (3, 5), (2, 3), 2)
    compare(TorchInception(6, 4, (3, 5), (2, 3), 2), block, x, training=True)
    assert block(x).shape == (2, 4 + 5 + 3 + 2, 7, 7)


def test_inception_3a_has_the_papers_parameter_count():
    # GoogLeNet Table 1, inception (3a): "159K" parameters, weights only, K = 1024:
    # 192*64 + 192*96 + 96*128*9 + 192*16 + 16*32*25 + 192*32 = 163,328 = 159.5K
    block = rnn.InceptionBlock(192, 64, (96, 128), (16, 32), 32)
    weights = sum(p.data.size for name, p in block.named_parameters() if name.endswith("weight"))
    assert weights == 163_328
    assert weights // 1024 == 159


def test_wrong_state_dict_is_a_clear_error():
    model = rnn.lenet5()
    state = dict(model.state_dict())
    state.pop("features.0.weight")
    with pytest.raises(ValueError, match="missing"):
        model.load_state_dict(state)
    bad = dict(model.state_dict())
    bad["features.0.weight"] = np.zeros((3, 3))
    with pytest.raises(ValueError, match="does not fit"):
        model.load_state_dict(bad)


def test_the_reference_package_never_imports_torch():
    import subprocess
    import sys
    from pathlib import Path

    import cnnlab.reference

    package = Path(cnnlab.reference.__file__).parent
    for source in package.glob("*.py"):
        text = source.read_text()
        assert "import torch" not in text and "from torch" not in text, source.name
    code = ("import sys, cnnlab.reference, cnnlab.reference.train, cnnlab.reference.explain, "
            "cnnlab.reference.threads; print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_skipping_the_first_layers_input_gradient_changes_no_parameter_gradient():
    x = np.random.default_rng(6).standard_normal((2, 1, 28, 28))
    labels = np.array([3, 7])
    grads = []
    for needs in (True, False):
        rnn.manual_seed(0)
        model = rnn.lenet5()
        model.features[0].needs_input_grad = needs
        dx = model.backward(F.cross_entropy_backward(model(x), labels))
        assert (dx is None) == (not needs)
        grads.append({name: p.grad for name, p in model.named_parameters()})
    for name in grads[0]:
        np.testing.assert_array_equal(grads[0][name], grads[1][name])
