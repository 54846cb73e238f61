"""Pretrained weights: shipped files (SHA-256, stated accuracy), torchvision/timm state dicts, transfer learning."""

import json
import shutil

import pytest
import torch

import cnnlab
from cnnlab import weights
from cnnlab.cli import main
from cnnlab.errors import CheckpointError, ConfigError
from cnnlab.train.checkpoint import load_checkpoint


def test_pretrained_true_without_shipped_weights_is_a_clear_error():
    with pytest.raises(ConfigError, match="no pretrained weights are shipped for resnet18.*state-dict file"):
        cnnlab.create_model("resnet18", pretrained=True)
    with pytest.raises(ConfigError, match="has no pretrained weights 'imagenet'"):
        cnnlab.create_model("lenet5_modern", pretrained="imagenet")


# --- torchvision-layout state dicts --------------------------------------------------------------------

@pytest.fixture(scope="module")
def torchvision_file(tmp_path_factory):
    # cnnlab's resnet18 uses torchvision's names (tests/test_models_torchvision.py loads one into the other),
    # so its random weights saved with torch.save are a torchvision-layout file.
    torch.manual_seed(0)
    model = cnnlab.create_model("resnet18").eval()
    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
    folder = tmp_path_factory.mktemp("tv")
    torch.save(model.state_dict(), folder / "resnet18.pth")
    from safetensors.torch import save_file

    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(folder / "resnet18.safetensors"))
    torch.save({"state_dict": {f"module.{k}": v for k, v in model.state_dict().items()}}, folder / "wrapped.pth")
    return folder, model


@pytest.mark.parametrize("file", ["resnet18.pth", "resnet18.safetensors", "wrapped.pth"])
def test_state_dict_file_loads_with_imagenet_names(torchvision_file, file):
    folder, reference = torchvision_file
    ckpt = load_checkpoint(f"resnet18@{folder / file}")
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        assert torch.equal(ckpt.model(x), reference(x))
    assert len(ckpt.class_names) == 1000 and ckpt.class_names[:2] == ["tench", "goldfish"]
    assert ckpt.class_names[999] == "toilet tissue" and ckpt.input_size == (3, 224, 224)
    assert ckpt.mean == weights.IMAGENET_MEAN


def test_state_dict_of_another_class_count_and_architecture(tmp_path):
    torch.save(cnnlab.create_model("resnet18", num_classes=7).state_dict(), tmp_path / "seven.pth")
    ckpt = load_checkpoint(f"resnet18@{tmp_path / 'seven.pth'}")
    assert ckpt.model.fc.out_features == 7 and ckpt.class_names[0] == "class 0"
    with pytest.raises(CheckpointError, match="does not fit the model"):
        load_checkpoint(f"resnet34@{tmp_path / 'seven.pth'}")  # resnet34 has layer1.2, which the file lacks
    model = cnnlab.create_model("resnet18", pretrained=str(tmp_path / "seven.pth"), num_classes=3)
    assert model.fc.out_features == 3  # a fresh head over the file's trunk
    assert torch.equal(model.conv1.weight, ckpt.model.conv1.weight)


class NotATensor:
    pass


def test_pickled_objects_are_refused(tmp_path):
    torch.save({"conv1.weight": NotATensor()}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_checkpoint(f"resnet18@{tmp_path / 'evil.pth'}")
    with pytest.raises(ConfigError, match="does not exist"):
        load_checkpoint(f"resnet18@{tmp_path / 'missing.pth'}")


def test_predict_gives_imagenet_labels(torchvision_file, tmp_path, capsys):
    from PIL import Image

    folder, _ = torchvision_file
    Image.new("RGB", (50, 40), (200, 30, 30)).save(tmp_path / "red.png")
    assert main(["predict", "resnet18", "--weights", str(folder / "resnet18.pth"), str(tmp_path / "red.png"),
                 "--top-k", "3", "--json"]) == 0
    top = json.loads(capsys.readouterr().out)[0]["top"]
    names = weights.imagenet_classes()
    assert [t["class"] for t in top] == [names[t["index"]] for t in top] and len(top) == 3


# --- shipped weights -----------------------------------------------------------------------------------

def test_shipped_weights_are_listed_and_checked(capsys):
    rows = weights.pretrained_table()
    assert {"lenet5_modern"} <= {r["model"] for r in rows}
    for row in rows:
        folder = weights.pretrained_folder(row["model"], row["tag"])  # SHA-256 verified
        assert sum(f.stat().st_size for f in folder.iterdir()) == row["bytes"]
    assert main(["list", "--pretrained", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)["pretrained"]
    assert [(r["model"], r["tag"]) for r in listed] == [(r["model"], r["tag"]) for r in rows]


def test_a_damaged_shipped_file_is_refused(tmp_path, monkeypatch):
    shutil.copytree(weights.PRETRAINED_DIR, tmp_path / "pretrained")
    monkeypatch.setattr(weights, "PRETRAINED_DIR", tmp_path / "pretrained")
    model_file = tmp_path / "pretrained" / "lenet5_modern-fashion-mnist" / "model.safetensors"
    data = bytearray(model_file.read_bytes())
    data[-1] ^= 1
    model_file.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="SHA-256"):
        cnnlab.create_model("lenet5_modern", pretrained="fashion-mnist")


def test_eval_reproduces_the_stated_accuracy(shared_data, capsys):
    for row in weights.pretrained_table():
        assert main(["eval", f"{row['model']}@{row['tag']}", "--data-dir", str(shared_data), "--limit", "1000",
                     "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["top1"] == pytest.approx(row["test_accuracy_first_1000"], abs=1e-4)
    assert main(["eval", "lenet5_modern@fashion-mnist", "--data-dir", str(shared_data), "--json"]) == 0
    stated = weights.pretrained_table()[[r["model"] for r in weights.pretrained_table()].index("lenet5_modern")]
    assert json.loads(capsys.readouterr().out)["top1"] == pytest.approx(stated["test_accuracy"], abs=1e-4)


def test_create_model_pretrained_gives_the_shipped_model():
    model = cnnlab.create_model("lenet5_modern", pretrained="fashion-mnist").eval()
    shipped = load_checkpoint("lenet5_modern@fashion-mnist").model
    x = torch.randn(3, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(model(x), shipped(x))
    extractor = cnnlab.create_model("lenet5_modern", pretrained=True, features_only=True)
    assert extractor.feature_info


# --- transfer learning ---------------------------------------------------------------------------------

def test_freeze_features_trains_only_the_head(shared_data, tmp_path):
    shipped = load_checkpoint("lenet5_modern@fashion-mnist").model.state_dict()
    code = main(["train", "lenet5_modern", "--data", "mnist-10k", "--data-dir", str(shared_data), "--weights",
                 "fashion-mnist", "--freeze", "features", "--epochs", "1", "--limit-train", "600",
                 "--limit-test", "500", "--batch-size", "50", "--lr", "0.05", "--plan", "no", "--threads", "1",
                 "--out", str(tmp_path / "run"), "--quiet"])
    assert code == 0
    tuned = load_checkpoint(tmp_path / "run")
    state = tuned.model.state_dict()
    head = weights.head_parameters(tuned.model)
    trunk = [k for k, _ in tuned.model.named_parameters() if k not in head]
    assert trunk and all(torch.equal(state[k], shipped[k].float()) for k in trunk)  # frozen: unchanged
    assert any(not torch.equal(state[k], shipped[k].float()) for k in head)          # the head learned
    assert tuned.meta.metrics.get("test_top1", tuned.meta.metrics.get("test_acc", 0)) > 0.5  # chance is 0.1


def test_backbone_lr_multiplier_makes_its_own_groups():
    from cnnlab.train.config import TrainConfig
    from cnnlab.train.optim import make_optimizer

    model = cnnlab.create_model("resnet20", num_classes=10)
    config = TrainConfig(model="resnet20", lr=0.1, backbone_lr=0.1)
    optimizer = make_optimizer(model.parameters(), config, slow=weights.slow_parameters(model, config))
    by_lr = {}
    for group in optimizer.param_groups:
        by_lr[round(group["lr"], 6)] = by_lr.get(round(group["lr"], 6), 0) + sum(p.numel() for p in group["params"])
    named = dict(model.named_parameters())
    head = sum(named[n].numel() for n in weights.head_parameters(model))
    assert head == 64 * 10 + 10  # the CIFAR ResNet's FC
    assert by_lr == {0.1: head, 0.01: sum(p.numel() for p in model.parameters()) - head}
    with pytest.raises(ConfigError, match="freeze must be"):
        TrainConfig(freeze="everything").validate()


def test_serve_pretrained_loads_the_best_shipped_model():
    import argparse

    from cnnlab.commands.serve import checkpoint_specs
    from cnnlab.serve.config import ServeConfig
    from cnnlab.serve.models import load_models

    specs = checkpoint_specs(argparse.Namespace(checkpoints=[], pretrained="fashion-mnist"))
    best = max((r for r in weights.pretrained_table() if r["tag"] == "fashion-mnist"), key=lambda r: r["test_accuracy"])
    assert specs == [f"fashion-mnist={best['model']}@fashion-mnist"]
    served = load_models(specs, ServeConfig(plan=False, max_batch=1))  # its batcher starts with the app
    model = served["fashion-mnist"]
    assert model.checkpoint.arch == best["model"] and model.checkpoint.class_names[0] == "T-shirt/top"
    assert len(model.predictor.predict_batch(torch.zeros(1, 1, 28, 28, dtype=torch.uint8), 3)[0]) == 3
    with pytest.raises(ConfigError, match="no shipped weights are trained on 'cifar10'"):
        checkpoint_specs(argparse.Namespace(checkpoints=[], pretrained="cifar10"))


def test_weights_publish_records_what_eval_reproduces(tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    assert main(["train", "lenet5_modern", "--epochs", "1", "--limit-train", "512", "--threads", "1", "--plan", "no",
                 "--seed", "0", "--out", str(run), "--quiet"]) == 0  # bundled fashion-mnist-mini
    shutil.copytree(weights.PRETRAINED_DIR, tmp_path / "pretrained")
    monkeypatch.setattr(weights, "PRETRAINED_DIR", tmp_path / "pretrained")
    weights._index.cache_clear()
    try:
        assert main(["weights", "publish", str(run), "--tag", "fm-mini", "--json"]) == 0
        entry = json.loads(capsys.readouterr().out)
        folder = tmp_path / "pretrained" / entry["folder"]
        assert entry["sha256"]["model.safetensors"] == weights.sha256(folder / "model.safetensors")
        assert "cnnlab train lenet5_modern --data fashion-mnist-mini --epochs 1" in entry["recipe"]
        assert ("lenet5_modern", "fm-mini") in {(r["model"], r["tag"]) for r in weights.pretrained_table()}
        assert main(["eval", "lenet5_modern@fm-mini", "--json"]) == 0  # the float16 copy, as shipped
        assert json.loads(capsys.readouterr().out)["top1"] == pytest.approx(entry["test_accuracy"], abs=1e-4)
        assert main(["weights", "verify", "--json"]) == 0
        verified = {(r["model"], r["tag"]): r for r in json.loads(capsys.readouterr().out)["verified"]}
        assert verified[("lenet5_modern", "fm-mini")]["bytes"] == entry["bytes"]
        data = bytearray((folder / "model.safetensors").read_bytes())
        data[-1] ^= 1
        (folder / "model.safetensors").write_bytes(bytes(data))
        assert main(["weights", "verify"]) != 0
        assert "SHA-256" in capsys.readouterr().err
        assert main(["weights", "publish", str(run), "--tag", "Bad Tag"]) != 0
        assert "tag" in capsys.readouterr().err
    finally:
        weights._index.cache_clear()
