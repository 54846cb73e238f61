"""The trainer: learning, losses, schedules, reproducibility, divergence and resuming."""

import json

import pytest
import torch

from cnnlab.train import TrainConfig, build_config, train
from cnnlab.train.checkpoint import load_checkpoint
from cnnlab.train.losses import make_criterion, multiclass_hinge
from cnnlab.train.metrics import confusion_matrix, topk_correct
from cnnlab.train.optim import LRMultiplier
from cnnlab.train.trainer import TrainingDiverged
from cnnlab.errors import ConfigError

SMALL = dict(data="fashion-mnist-mini", limit_train=512, limit_test=256, batch_size=64)


def test_hinge_loss_matches_the_worked_example():
    # cs231n's example, as in the decks: scores for the "cat" image (3.2, 5.1, -1.7), true class cat:
    # max(0, 5.1 - 3.2 + 1) + max(0, -1.7 - 3.2 + 1) = 2.9 + 0 = 2.9
    scores = torch.tensor([[3.2, 5.1, -1.7], [1.3, 4.9, 2.0], [2.2, 2.5, -3.1]])
    target = torch.tensor([0, 1, 2])
    assert multiclass_hinge(scores[:1], target[:1]).item() == pytest.approx(2.9)
    # The example's three losses are 2.9, 0 and 12.9; their mean is 5.27.
    assert multiclass_hinge(scores, target).item() == pytest.approx((2.9 + 0 + 12.9) / 3)


def test_regression_losses_against_torch():
    scores, target = torch.randn(4, 3), torch.tensor([0, 2, 1, 2])
    one_hot = torch.eye(3)[target]
    assert make_criterion("mse")(scores, target).item() == pytest.approx(((scores - one_hot) ** 2).mean().item())
    assert make_criterion("l1")(scores, target).item() == pytest.approx((scores - one_hot).abs().mean().item())


def test_metrics():
    scores = torch.tensor([[0.1, 0.9, 0.0], [0.7, 0.1, 0.2], [0.2, 0.3, 0.5]])
    target = torch.tensor([1, 2, 0])
    assert topk_correct(scores, target, (1, 2)) == {1: 1, 2: 2}
    assert confusion_matrix(scores.argmax(1), target, 3).tolist() == [[0, 0, 1], [0, 1, 0], [1, 0, 0]]


def test_one_confusion_matrix_for_training_and_pictures():
    import numpy as np

    import cnnlab.viz.confusion
    from cnnlab.errors import DataError

    assert not hasattr(cnnlab.viz.confusion, "confusion_matrix")  # the viz verb counts with train.metrics' one
    # rows are true classes, columns predictions, from tensors, arrays or lists alike
    assert confusion_matrix(np.array([1, 1, 0]), [1, 0, 0], 2).tolist() == [[1, 1], [0, 1]]
    with pytest.raises(DataError, match="outside 0..2"):
        confusion_matrix(torch.tensor([0, 3]), torch.tensor([0, 1]), 3)
    with pytest.raises(DataError, match="2 predictions for 3 targets"):
        confusion_matrix([0, 1], [0, 1, 2], 3)


def test_schedule_shapes():
    c = TrainConfig(epochs=10, schedule="cosine", warmup_epochs=1)
    f = LRMultiplier(c, steps_per_epoch=10)
    assert f(0) == pytest.approx(1 / 11) and f(9) == pytest.approx(10 / 11)
    assert f(10) == pytest.approx(1.0) and f(99) < 0.01
    step = LRMultiplier(TrainConfig(epochs=10, schedule="step", step_epochs=3, step_gamma=0.5), 10)
    assert [step(t) for t in (0, 29, 30, 60, 99)] == [1, 1, 0.5, 0.25, 0.125]


def test_config_file_and_overrides(tmp_path):
    path = tmp_path / "run.toml"
    path.write_text('[train]\nmodel = "lenet5"\nepochs = 3\nlr = 1\n')
    c = build_config(recipe="textbook", file=path, overrides={"batch_size": "32"})
    assert (c.model, c.epochs, c.lr, c.batch_size, c.init) == ("lenet5", 3, 1.0, 32, "xavier")
    path.write_text('epochs = "three"\n')
    with pytest.raises(ConfigError, match="epochs expects int"):
        build_config(file=path)


def test_overfits_a_small_batch(isolated_data_root, tmp_path):
    result = train(model="lenet5_modern", data="fashion-mnist-mini", limit_train=64, limit_test=64, batch_size=16,
                   epochs=40, lr=0.05, schedule="constant", weight_decay=0.0, out=str(tmp_path / "r"))
    assert result.history[-1]["train_loss"] < 0.05 < result.history[0]["train_loss"]
    # Memorised: every one of the 64 training images is classified correctly by the saved model.
    from cnnlab.data import load_dataset
    from cnnlab.train import evaluate

    seen = load_dataset("fashion-mnist-mini", "train").subset(slice(0, 64))
    assert evaluate(load_checkpoint(result.run_dir).model, seen)["top1"] == 1.0


def test_seeded_runs_are_bitwise_equal(isolated_data_root, tmp_path):
    a = train(model="lenet5_modern", epochs=1, augment="crop,flip", out=str(tmp_path / "a"), **SMALL)
    b = train(model="lenet5_modern", epochs=1, augment="crop,flip", out=str(tmp_path / "b"), **SMALL)
    sa, sb = load_checkpoint(a.run_dir).model.state_dict(), load_checkpoint(b.run_dir).model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


@pytest.mark.parametrize("extra", [{}, {"ema": 0.9, "augment": "crop,flip,erase", "label_smoothing": 0.1}])
def test_resume_is_bitwise_equal_to_an_uninterrupted_run(isolated_data_root, tmp_path, extra):
    kw = dict(model="lenet5_modern", epochs=3, schedule="onecycle", **SMALL, **extra)
    whole = train(out=str(tmp_path / "whole"), **kw)
    train(out=str(tmp_path / "cut"), stop_after=1, **kw)  # "crashes" after the first epoch
    resumed = train(resume=tmp_path / "cut")
    assert [h["test_acc"] for h in resumed.history] == [h["test_acc"] for h in whole.history]
    sa, sb = load_checkpoint(whole.run_dir).model.state_dict(), load_checkpoint(resumed.run_dir).model.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    lines = (tmp_path / "cut" / "history.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2, 3]


def test_divergence_names_the_step(isolated_data_root, tmp_path):
    with pytest.raises(TrainingDiverged, match=r"epoch 1, step \d+"):
        train(model="lenet5", epochs=1, lr=1e30, momentum=0.0, schedule="constant", out=str(tmp_path / "x"), **SMALL)


def test_flip_refused_for_digits(shared_data, tmp_path):
    with pytest.raises(ConfigError, match="flip"):
        train(model="lenet5", data="mnist-10k", data_dir=str(shared_data), augment="flip", epochs=1, out=str(tmp_path))
    # nor averaged with mirrored digits at test time (the "fast" recipe's tta_flip)
    with pytest.raises(ConfigError, match="--tta-flip false"):
        train(model="lenet5", data="mnist-10k", data_dir=str(shared_data), augment="", tta_flip=True, epochs=1,
              out=str(tmp_path))


def test_checkpoint_rebuilds_the_model(isolated_data_root, tmp_path):
    result = train(model="lenet5", epochs=1, out=str(tmp_path / "r"), **SMALL)
    ckpt = load_checkpoint(result.run_dir)
    assert ckpt.arch == "lenet5" and ckpt.input_size == (1, 28, 28) and ckpt.class_names[0] == "T-shirt/top"
    assert ckpt.meta.config["batch_size"] == 64 and ckpt.meta.metrics["test_acc"] == result.final["test_acc"]
    assert (result.run_dir / "curves.png").stat().st_size > 1000
