"""What a run keeps besides its last checkpoint: the best one, per-step and per-epoch CSV, TensorBoard
events, early stopping on a validation figure, and a resume hint after Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time

import pytest

from cnnlab.cli import main
from cnnlab.errors import ConfigError
from cnnlab.train.checkpoint import load_checkpoint
from cnnlab.train.logs import read_csv
from cnnlab.train.trainer import train

SMALL = dict(model="lenet5", data="fashion-mnist-mini", limit_train=512, limit_test=128, batch_size=64, threads=1)


def test_best_checkpoint_csv_logs_and_early_stopping(isolated_data_root, tmp_path):
    # A learning rate this high makes the sigmoid LeNet worse than its start: the validation accuracy
    # stops improving at once, and early stopping must end the run long before 12 epochs.
    result = train(epochs=12, out=str(tmp_path / "r"), val_fraction=0.25, early_stopping=2, lr=30.0, schedule="constant",
                   **{k: v for k, v in SMALL.items()})
    history = result.history
    best_epoch = max(range(len(history)), key=lambda i: (history[i]["val_acc"], -i)) + 1
    assert result.stopped_early and len(history) == best_epoch + 2 < 12
    assert result.best == {"key": "val_acc", "value": history[best_epoch - 1]["val_acc"], "epoch": best_epoch}
    best = load_checkpoint(tmp_path / "r" / "best")
    assert best.meta.epoch == best_epoch and load_checkpoint(tmp_path / "r").meta.epoch == len(history)
    epochs = read_csv(tmp_path / "r" / "epochs.csv")
    assert [e["epoch"] for e in epochs] == [h["epoch"] for h in history]
    assert epochs[-1]["val_acc"] == pytest.approx(history[-1]["val_acc"])
    steps = read_csv(tmp_path / "r" / "steps.csv")
    assert len(steps) == len(history) * 6 and [s["global_step"] for s in steps] == list(range(1, len(steps) + 1))
    assert {s["step"] for s in steps} == set(range(1, 7)) and all(s["lr"] == 30.0 for s in steps)


def test_early_stopping_needs_a_validation_split():
    with pytest.raises(ConfigError, match="validation split"):
        train(epochs=2, early_stopping=1, **SMALL)


def test_steps_csv_survives_a_resume_without_duplicates(isolated_data_root, tmp_path):
    train(epochs=3, out=str(tmp_path / "r"), stop_after=2, **SMALL)
    train(resume=str(tmp_path / "r"))
    steps = read_csv(tmp_path / "r" / "steps.csv")
    assert [(s["epoch"], s["step"]) for s in steps] == [(e, k) for e in (1, 2, 3) for k in range(1, 9)]


def test_tensorboard_event_files_hold_the_epoch_figures(isolated_data_root, tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = train(epochs=2, out=str(tmp_path / "r"), tensorboard=True, **SMALL)
    events = EventAccumulator(str(tmp_path / "r" / "tensorboard"))
    events.Reload()
    accuracy = [e.value for e in events.Scalars("test/acc")]
    assert accuracy == pytest.approx([h["test_acc"] for h in result.history], rel=1e-6)
    assert len(events.Scalars("train/loss_step")) == 16


def test_ctrl_c_prints_how_to_resume(isolated_data_root, tmp_path):
    run = tmp_path / "r"
    process = subprocess.Popen([sys.executable, "-m", "cnnlab.cli", "train", "lenet5", "--epochs", "200",
                                "--out", str(run), "--threads", "1", "--limit-train", "256", "--limit-test", "64"],
                               stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (run / "last" / "meta.json").exists() and time.time() < deadline:
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=60)
    assert process.returncode == 130
    assert f"continue with: cnnlab train --resume {run}" in err
    assert main(["train", "--resume", str(run), "--epochs", str(load_checkpoint(run).meta.epoch + 1), "--quiet"]) == 0
