"""Deployment: batch-norm folding, ONNX / TorchScript export checked against PyTorch, int8 quantisation."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from cnnlab import create_model
from cnnlab.cli import main
from cnnlab.deploy import (ExportError, compare_outputs, count_batchnorms, export_onnx, export_torchscript,
                           fold_batchnorm, fold_into, load_exported, quantize_onnx)
from cnnlab.train import train


def _with_statistics(model: nn.Module, steps: int = 3) -> nn.Module:
    """Give every batch norm non-trivial running statistics and affine parameters, then switch to eval."""
    g = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.momentum = None  # cumulative average: the statistics of all batches seen
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5, generator=g)
                m.bias.uniform_(-0.5, 0.5, generator=g)
    model.train()
    with torch.no_grad():
        for _ in range(steps):
            model(torch.randn(32, 1, 28, 28, generator=g) * 2 + 0.5)
    return model.eval()


def test_fold_into_matches_pytorchs_batch_norm():
    torch.manual_seed(1)
    conv, bn = nn.Conv2d(3, 4, 3, bias=False), nn.BatchNorm2d(4)
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    bn.weight.data.uniform_(0.5, 2)
    bn.bias.data.uniform_(-1, 1)
    bn.eval()
    x = torch.randn(2, 3, 8, 8)
    fused = fold_into(conv, bn)
    assert torch.allclose(fused(x), bn(conv(x)), atol=1e-5)
    # One output channel by hand: scale = gamma / sqrt(var + eps), bias = beta - mean * scale.
    scale = (bn.weight[0] / torch.sqrt(bn.running_var[0] + bn.eps)).detach()
    assert torch.allclose(fused.weight[0], conv.weight[0] * scale)
    assert float(fused.bias[0].detach()) == pytest.approx(float(bn.bias[0].detach() - bn.running_mean[0] * scale), abs=1e-6)


def test_fold_batchnorm_removes_every_norm_and_keeps_the_function():
    model = _with_statistics(create_model("lenet5_modern"))
    folded = fold_batchnorm(model)
    assert count_batchnorms(model) == 4 and count_batchnorms(folded) == 0
    x = torch.randn(16, 1, 28, 28)
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-4)
    assert count_batchnorms(model) == 4  # the original is left alone


class _Shared(nn.Module):
    """A conv whose raw output is used twice (normalised and as a shortcut): must not be folded."""

    def __init__(self):
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(1, 2, 3, padding=1), nn.BatchNorm2d(2)
        self.conv2, self.bn2 = nn.Conv2d(2, 2, 3, padding=1), nn.BatchNorm2d(2)

    def forward(self, x):
        z = self.conv1(x)
        y = self.bn1(z) + z
        return self.bn2(self.conv2(y))


def test_fold_batchnorm_keeps_a_shared_output_unfolded():
    model = _Shared()
    for bn in (model.bn1, model.bn2):
        bn.running_mean.fill_(0.3)
        bn.running_var.fill_(2.0)
    model.eval()
    folded = fold_batchnorm(model)
    assert count_batchnorms(folded) == 1  # bn2 folded into conv2, bn1 kept
    x = torch.randn(2, 1, 6, 6)
    with torch.no_grad():
        assert torch.allclose(folded(x), model(x), atol=1e-5)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """lenet5_modern trained briefly on the bundled sample, with real test images to check against."""
    from cnnlab.data import load_dataset
    from cnnlab.data.transforms import normalize

    out = tmp_path_factory.mktemp("ckpt")
    result = train(model="lenet5_modern", data="fashion-mnist-mini", epochs=1, limit_train=1024, limit_test=256,
                   batch_size=64, lr=0.05, threads=1, out=str(out))
    from cnnlab.train.checkpoint import load_checkpoint

    ckpt = load_checkpoint(result.run_dir)
    test = load_dataset("fashion-mnist-mini", "test")
    return ckpt, normalize(test.images[:256], ckpt.mean, ckpt.std)


@pytest.fixture(scope="module")
def onnx_file(trained, tmp_path_factory):
    ckpt, _ = trained
    return export_onnx(ckpt.model, tmp_path_factory.mktemp("onnx") / "m.onnx", ckpt.input_size)


@pytest.mark.parametrize("batch", [1, 5])
def test_onnx_runtime_matches_pytorch_at_any_batch(trained, onnx_file, batch):
    ckpt, images = trained
    run = load_exported(onnx_file)
    x = images[:batch]
    with torch.no_grad():
        expected = ckpt.model(x)
    assert run(x).shape == (batch, 10)
    assert torch.allclose(run(x), expected, atol=1e-4, rtol=1e-4)


def test_int8_keeps_the_predictions(trained, onnx_file, tmp_path):
    ckpt, images = trained
    int8 = quantize_onnx(onnx_file, tmp_path / "m8.onnx", images[:128])
    check = compare_outputs(ckpt.model, load_exported(int8), images, tolerance=1.0)
    assert check.top1_agreement >= 0.95
    assert check.max_abs_diff > 0  # it really is a different (integer) computation
    assert int8.stat().st_size < onnx_file.stat().st_size / 2  # int8 weights: about a quarter of fp32


def test_torchscript_round_trip(trained, tmp_path):
    ckpt, images = trained
    path = export_torchscript(ckpt.model, tmp_path / "m.pt", ckpt.input_size)
    with torch.no_grad():
        assert torch.allclose(load_exported(path)(images[:7]), ckpt.model(images[:7]), atol=1e-6)


def test_compare_outputs_catches_a_wrong_model(trained):
    ckpt, images = trained
    check = compare_outputs(ckpt.model, lambda x: ckpt.model(x) * 1.01, images[:32], tolerance=1e-4)
    assert not check.ok and check.max_rel_diff == pytest.approx(0.01, rel=1e-3)


def test_export_command(trained, tmp_path, capsys):
    ckpt, _ = trained
    out = tmp_path / "model.pt"
    assert main(["export", str(ckpt.path), "--format", "torchscript", "--fold-bn", "--out", str(out), "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["check"]["ok"] and report["check"]["inputs"] == "fashion-mnist-mini test images"
    assert report["check"]["top1_agreement"] == 1.0 and out.is_file()


def test_export_command_errors(trained, tmp_path, capsys):
    ckpt, _ = trained
    assert main(["export", str(tmp_path / "nothing")]) == 1
    assert main(["export", str(ckpt.path), "--format", "torchscript", "--int8"]) == 1
    err = capsys.readouterr().err
    assert "does not exist" in err and "--int8 needs --format onnx" in err and "Traceback" not in err


def test_missing_exported_file_is_a_clear_error(tmp_path):
    with pytest.raises(ExportError, match="does not exist"):
        load_exported(tmp_path / "x.onnx")


@pytest.mark.parametrize("fmt, suffix", [("onnx", ".onnx"), ("torchscript", ".pt")])
def test_exported_files_carry_classes_input_size_and_normalisation(trained, tmp_path, capsys, fmt, suffix):
    from cnnlab.deploy.export import read_metadata

    ckpt, images = trained
    out = tmp_path / f"model{suffix}"
    assert main(["export", str(ckpt.path), "--format", fmt, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "it expects: greyscale image" in printed and "N x 1 x 28 x 28 float32" in printed
    meta = read_metadata(out)
    assert json.loads(meta["class_names"]) == ckpt.class_names and json.loads(meta["input_size"]) == [1, 28, 28]
    assert json.loads(meta["mean"]) == list(ckpt.mean) and meta["cnnlab.arch"] == "lenet5_modern"
    with torch.no_grad():  # the metadata did not disturb the model
        assert torch.allclose(load_exported(out)(images[:4]), ckpt.model(images[:4]), atol=1e-4)
