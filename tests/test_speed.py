"""Benchmarks: the textbook baseline is faithful, ratios are computed from the measured figures, and the
``fast`` recipe is what its documentation says."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.bench import infer as bench_infer
from cnnlab.bench import train as bench_train
from cnnlab.cli import main
from cnnlab.data import load_dataset
from cnnlab.train import build_config


def test_to_tensor_is_torchvisions_definition():
    # ToTensor: a mode "L" image of H x W bytes becomes a 1 x H x W float tensor, value / 255.
    array = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    tensor = bench_train.to_tensor(Image.fromarray(array, mode="L"))
    assert tensor.shape == (1, 3, 4) and tensor.dtype == torch.float32
    assert tensor[0, 2, 3].item() == pytest.approx(array[2, 3] / 255)


def test_textbook_loader_yields_what_the_tensor_pipeline_computes():
    data = load_dataset("fashion-mnist-mini", "train").subset(slice(0, 300))
    x, y = next(iter(bench_train.textbook_loader(data.images, data.labels, batch_size=256, workers=0, shuffle=False)))
    assert x.shape == (256, 1, 28, 28) and torch.equal(y, data.labels[:256])
    assert torch.equal(x, data.images[:256].float() / 255)


def test_textbook_model_is_sigmoid_lenet_with_xavier_weights():
    model = bench_train.textbook_model()
    assert any(isinstance(m, torch.nn.Sigmoid) for m in model.modules())
    first = model.features[0].weight.detach()  # 6 x 1 x 5 x 5: fan_in 25, fan_out 150
    assert float(first.abs().max()) <= math.sqrt(6 / (25 + 150))
    assert float(first.abs().max()) > 0.9 * math.sqrt(6 / (25 + 150))  # uniform over the whole Glorot range


class _Scripted:
    """A pipeline whose test accuracy after each epoch is given in advance."""

    def __init__(self, accuracies):
        self.accuracies, self.epoch = list(accuracies), 0

    def train_epoch(self) -> int:
        if self.epoch == len(self.accuracies):
            return 0  # its schedule has ended
        self.epoch += 1
        return 1

    def accuracy(self) -> float:
        return self.accuracies[self.epoch - 1]


def test_time_to_accuracy_records_the_first_epoch_over_each_target():
    result = bench_train.time_to_accuracy(lambda: _Scripted([0.5, 0.82, 0.81, 0.9, 0.95]), [0.8, 0.85],
                                          budget=60, max_epochs=10)
    curve = result["curve"]
    assert len(curve) == 4  # stops once every target is reached
    assert result["reached"]["0.8000"] == curve[1]["seconds"] and result["reached"]["0.8500"] == curve[3]["seconds"]
    missed = bench_train.time_to_accuracy(lambda: _Scripted([0.5, 0.6]), [0.8], budget=60, max_epochs=5)
    assert missed["reached"]["0.8000"] is None and missed["best_acc"] == 0.6 and len(missed["curve"]) == 2


def test_bench_train_ratios_come_from_the_measured_rates(capsys):
    code = main(["bench", "train", "--data", "fashion-mnist-mini", "--limit-train", "512", "--limit-test", "128",
                 "--rounds", "1", "--workers", "0", "--budget", "0", "--precision", "fp32", "--json"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    tp = result["throughput"]
    rates = tp["images_per_second"]
    assert set(rates) == {"textbook", "cnnlab", "cnnlab+cl"}
    for name, ratio in tp["speedup"].items():
        assert ratio == pytest.approx(rates[name] / rates["textbook"])
    assert tp["best"] == max(["cnnlab", "cnnlab+cl"], key=rates.get)
    # For people: the tables, then the ratio as the last line.
    assert main(["bench", "train", "--data", "fashion-mnist-mini", "--limit-train", "256", "--limit-test", "64",
                 "--rounds", "1", "--workers", "0", "--budget", "0", "--precision", "fp32"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("training images/s, cnnlab") and last.endswith("x")


def test_bench_infer_variants_agree_and_ratios_are_printed_last(capsys):
    code = main(["bench", "infer", "lenet5_modern", "--batch-sizes", "1,8", "--variants", "eager,folded,folded+cl",
                 "--seconds", "0.05", "--rounds", "1"])
    assert code == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[-2].startswith("speed-up over eager fp32 at batch 1:") and "folded+cl" in lines[-1]
    result = bench_infer.measure("lenet5_modern", batch_sizes=[4], variants=["eager", "folded"], seconds=0.05, rounds=1)
    assert result["quality"] == {"eager": 1.0, "folded": 1.0}  # folding changes no prediction
    assert result["speedup"]["4"]["eager"] == 1.0
    assert result["speedup"]["4"]["folded"] == pytest.approx(
        result["images_per_second"]["4"]["folded"] / result["images_per_second"]["4"]["eager"])


def test_bench_infer_rejects_unknown_variants(capsys):
    assert main(["bench", "infer", "lenet5", "--variants", "eager,warp-drive"]) == 1
    assert "warp-drive" in capsys.readouterr().err


def test_fast_recipe():
    config = build_config(recipe="fast")
    assert config.model == "lenet5_modern" and config.schedule == "onecycle"
    # layout and precision are measured on the machine (bf16 a candidate only where native: docs/speed.md)
    assert config.channels_last is None and config.precision == "auto" and config.threads == 0
    assert build_config(recipe="fast", overrides={"epochs": 15}).epochs == 15


def test_native_bf16_follows_the_cpu_flags(monkeypatch):
    from cnnlab import system

    monkeypatch.setattr(system, "_cpuinfo", lambda: ("a CPU", frozenset({"avx2", "fma"})))
    assert not system.native_bf16("cpu") and not system.cpu_has_vnni()
    monkeypatch.setattr(system, "_cpuinfo", lambda: ("a CPU", frozenset({"avx512f", "avx512_bf16", "avx512_vnni"})))
    assert system.native_bf16("cpu") and system.cpu_has_vnni()
    assert "a CPU" in system.hardware()


@pytest.mark.parametrize("native", [False, True])
def test_precision_auto_is_decided_by_the_hardware_and_recorded(native, monkeypatch, tmp_path):
    from cnnlab.train import load_checkpoint, train
    from cnnlab.train import trainer

    monkeypatch.setattr(trainer, "native_bf16", lambda device: native)
    config = build_config(overrides={"data": "fashion-mnist-mini", "epochs": 1, "limit_train": 64, "limit_test": 32,
                                     "batch_size": 32, "precision": "auto", "out": str(tmp_path / "run"),
                                     "threads": 1})
    result = train(config)
    assert load_checkpoint(result.run_dir).meta.config["precision"] == ("bf16" if native else "fp32")


def test_fast_resnet_recipe():
    config = build_config(recipe="fast-resnet")
    assert config.model == "resnet20" and config.precision == "auto" and config.channels_last is None  # measured
    assert config.epochs == 5 and config.tta_flip


@pytest.mark.slow
def test_fast_recipe_accuracy_on_the_real_test_split(shared_data, tmp_path):
    """Fashion-MNIST, seed fixed, measured on the 10,000 test images it never trained on."""
    from cnnlab.train import train

    config = build_config(recipe="fast", overrides={"data": "fashion-mnist", "data_dir": str(shared_data),
                                                    "epochs": 2, "out": str(tmp_path / "run"), "threads": 1})
    result = train(config)
    assert result.final["test_acc"] >= 0.89


def test_bench_infer_scores_a_checkpoint_on_its_test_split(tmp_path):
    from cnnlab import create_model
    from cnnlab.train import evaluate, save_checkpoint

    torch.manual_seed(0)
    model = create_model("lenet5_modern").eval()
    test = load_dataset("fashion-mnist-mini", "test")
    save_checkpoint(tmp_path / "ckpt", model, {"arch": "lenet5_modern", "arch_kwargs": {},
                                               "class_names": test.class_names, "input_size": [1, 28, 28],
                                               "mean": list(test.mean), "std": list(test.std),
                                               "dataset": "fashion-mnist-mini"})
    result = bench_infer.measure(str(tmp_path / "ckpt"), batch_sizes=[2], variants=["eager", "folded"],
                                 seconds=0.02, rounds=1, limit_test=200)
    assert result["metric"] == "test_top1" and result["samples"] == 200
    expected = evaluate(model, test.subset(slice(0, 200)))["top1"]  # the trainer's own evaluation
    assert result["quality"]["eager"] == pytest.approx(expected)
    assert result["quality"]["folded"] == pytest.approx(expected)


def test_bench_train_times_the_real_trainers_epoch():
    from cnnlab.train.trainer import Trainer

    pipeline = bench_train.TrainerPipeline("fashion-mnist-mini", "", 300, 64, channels_last=False, precision="fp32",
                                           threads=1)
    assert isinstance(pipeline.trainer, Trainer) and pipeline.trainer.config.lr == 0.9
    before = [p.detach().clone() for p in pipeline.trainer.model.parameters()]
    assert pipeline.train_epoch() == 300
    steps = pipeline.trainer.scheduler.last_epoch
    assert steps == 2  # ceil(300 / 256) optimiser steps of the trainer's own loop
    assert any(not torch.equal(a, b) for a, b in zip(before, pipeline.trainer.model.parameters()))
