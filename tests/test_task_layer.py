"""The task layer: a new task plugs into the trainer, checkpoints and verbs without changing them.

A throwaway task (not shipped) regresses the mean brightness of tiny images with a tiny
network; it is trained, resumed and extended, evaluated and used for prediction through the public
``cnnlab`` command line, exactly as classification is.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace

import numpy as np
import pytest
import torch
from PIL import Image
from torch import nn

import cnnlab
from cnnlab import registry
from cnnlab.cli import main
from cnnlab.tasks import Batch, StepOutput, Task, get_task, register_task, task_for_model
from cnnlab.tasks import _TASKS
from cnnlab.train.checkpoint import load_checkpoint, read_meta


@dataclass
class BrightDataset:
    name: str
    images: torch.Tensor  # N x 1 x 8 x 8 uint8
    split: str
    class_names = ["brightness"]
    mean = (0.5,)
    std = (0.5,)

    @property
    def input_size(self):
        return tuple(self.images.shape[1:])

    @property
    def targets(self) -> torch.Tensor:
        return self.images.float().mean((1, 2, 3)) / 255

    def __len__(self):
        return len(self.images)

    def subset(self, index):
        return replace(self, images=self.images[index])


class BrightTask(Task):
    name = "toy_bright"
    description = "regress the mean brightness"
    shown = ("mae",)
    primary = "mae"
    endpoint = "bright"

    def load_split(self, name, split, data_dir=None):
        g = torch.Generator().manual_seed(0 if split == "train" else 1)
        return BrightDataset(name, torch.randint(0, 256, (1024 if split == "train" else 64, 1, 8, 8),
                                                 generator=g, dtype=torch.uint8), split)

    def make_batch(self, dataset, indices, *, train, generator=None):
        return Batch(dataset.images[indices], dataset.targets[indices])

    def prepare(self, batch, device, *, channels_last=False):
        return Batch(batch.inputs.to(device).float().div(255).sub(0.5).div(0.5), batch.targets.to(device))

    def training_step(self, forward, model, batch, phase):
        error = forward(batch.inputs)[:, 0] - batch.targets
        loss = error.pow(2).mean()
        return StepOutput(loss, {"loss": loss.detach() * len(error), "mae": error.detach().abs().sum()}, len(error))

    @torch.no_grad()
    def evaluate(self, model, dataset, *, device="cpu", preprocessing=None, **options):
        model.eval()
        batch = self.prepare(self.make_batch(dataset, torch.arange(len(dataset)), train=False), torch.device(device))
        error = model(batch.inputs)[:, 0] - batch.targets
        return {"loss": float(error.pow(2).mean()), "mae": float(error.abs().mean()), "images": len(dataset)}

    def predictor(self, checkpoint, *, device="cpu"):
        task = self

        class Predictor:
            def predict_batch(self, images, top_k=1):
                with torch.no_grad():
                    x = task.prepare(Batch(images, torch.zeros(len(images))), torch.device(device)).inputs
                    return [float(v) for v in checkpoint.model(x)[:, 0]]

        return Predictor()

    def describe(self, prediction):
        return {"brightness": round(prediction, 4)}


class TinyRegressor(nn.Module):
    def __init__(self, in_channels: int):
        super().__init__()
        self.net = nn.Sequential(nn.Conv2d(in_channels, 4, 1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Linear(4, 1))

    def forward(self, x):
        return self.net(x)


@pytest.fixture()
def toy_task():
    register_task(BrightTask)

    def build(*, num_classes: int = 1, in_channels: int = 1) -> TinyRegressor:
        return TinyRegressor(in_channels)

    registry.register_model("toy_bright_net", family="toy", paper="none", year=2024, input_size=(1, 8, 8),
                            num_classes=1, task="toy_bright")(build)
    yield
    registry._MODELS.pop("toy_bright_net")
    _TASKS.pop("toy_bright")


def run_json(capsys, *argv) -> dict:
    assert main([*argv, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_a_new_task_trains_resumes_evaluates_and_predicts_through_the_verbs(toy_task, tmp_path, capsys):
    assert task_for_model("toy_bright_net") == "toy_bright"  # inferred from the model, as `cnnlab train unet` segments
    run = tmp_path / "run"
    common = ["--data", "toy", "--optimizer", "adam", "--lr", "0.02", "--weight-decay", "0", "--batch-size", "32",
              "--threads", "1"]
    first = run_json(capsys, "train", "toy_bright_net", *common, "--epochs", "2", "--out", str(run))
    assert first["task"] == "toy_bright" and first["epochs"] == 2
    meta = read_meta(run)
    assert meta.task == "toy_bright" and meta.class_names == ["brightness"] and meta.input_size == (1, 8, 8)

    # Extend the run to 5 epochs: the saved settings carry on, the history grows, learning goes on.
    extended = run_json(capsys, "train", "--resume", str(run), "--epochs", "5")
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert [h["epoch"] for h in history] == [1, 2, 3, 4, 5] and extended["epochs"] == 5
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    # Predicting the targets' mean (about 0.5) leaves a mean absolute error near 0.03; learning beats it.
    targets = BrightTask().load_split("toy", "test").targets
    baseline = float((targets - targets.mean()).abs().mean())
    assert history[-1]["test_mae"] < 0.6 * baseline

    evaluation = run_json(capsys, "eval", str(run))
    assert evaluation["task"] == "toy_bright" and evaluation["mae"] == pytest.approx(history[-1]["test_mae"], rel=1e-5)

    picture = np.random.default_rng(7).integers(0, 256, (8, 8)).astype(np.uint8)  # like the training images
    Image.fromarray(picture).save(tmp_path / "noise.png")
    (item,) = run_json(capsys, "predict", str(run), str(tmp_path / "noise.png"))
    assert item["prediction"]["brightness"] == pytest.approx(picture.mean() / 255, abs=0.05)
    model = load_checkpoint(run).model
    assert isinstance(model, TinyRegressor)


def test_an_unfinished_run_resumes_to_the_same_weights_as_an_uninterrupted_one(toy_task, tmp_path, capsys):
    common = ["toy_bright_net", "--data", "toy", "--batch-size", "32", "--threads", "1", "--lr", "0.05"]
    run_json(capsys, "train", *common, "--epochs", "3", "--out", str(tmp_path / "whole"))
    from cnnlab.train.trainer import train

    train(model="toy_bright_net", data="toy", batch_size=32, threads=1, lr=0.05, epochs=3,
          out=str(tmp_path / "cut"), stop_after=1)
    run_json(capsys, "train", "--resume", str(tmp_path / "cut"))
    whole, cut = load_checkpoint(tmp_path / "whole").model, load_checkpoint(tmp_path / "cut").model
    for (name, a), (_, b) in zip(whole.state_dict().items(), cut.state_dict().items()):
        assert torch.equal(a, b), name


def test_resume_refuses_other_settings_and_shortening(toy_task, tmp_path, capsys):
    run = tmp_path / "run"
    run_json(capsys, "train", "toy_bright_net", "--data", "toy", "--epochs", "2", "--out", str(run))
    assert main(["train", "--resume", str(run), "--lr", "0.5"]) == 1
    assert "only --epochs" in capsys.readouterr().err
    assert main(["train", "--resume", str(run), "--epochs", "1"]) == 1
    assert "shorten" in capsys.readouterr().err


def test_classification_is_the_first_task_and_get_task_knows_it():
    task = get_task("classify")
    assert task.primary == "acc" and task.phases == ("model",)
    assert task_for_model("resnet18") == "classify" and task_for_model("resnet18", "classify") == "classify"
    with pytest.raises(cnnlab.errors.UnknownNameError):
        get_task("no_such_task")


def test_the_task_layer_imports_on_its_own():
    """``cnnlab.tasks`` first, in a fresh interpreter: the classification task imports the training losses,
    which must not pull in the trainer (which imports the tasks) half-way."""
    import subprocess
    import sys

    code = "from cnnlab.tasks import get_task, list_tasks; print(get_task('classify').name, len(list_tasks()))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split()[0] == "classify" and int(done.stdout.split()[1]) >= 8
