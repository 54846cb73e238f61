"""SSD against the paper's rules computed by hand: default boxes (§2.2 scales and ratios), matching
(best default box per object, then IoU > 0.5), the MultiBox loss with 3:1 hard negatives, and a short
run through the command line that lowers the loss and detects."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from cnnlab.cli import main
from cnnlab.data.objects import Objects
from cnnlab.detection.default_boxes import DefaultBoxSettings, default_boxes, match, multibox_loss
from cnnlab.registry import create_model


def objects(boxes, labels) -> Objects:
    n = len(boxes)
    return Objects(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), torch.tensor(labels, dtype=torch.long),
                   torch.zeros(n, dtype=torch.bool), torch.arange(n))


def test_default_boxes_follow_the_scale_and_ratio_rule():
    settings = DefaultBoxSettings(min_scale=0.2, max_scale=0.8, ratios=((2.0,), (2.0, 3.0)))
    boxes = default_boxes([(2, 2), (1, 1)], (100, 100), settings)
    assert len(boxes) == 2 * 2 * 4 + 1 * 6  # 4 boxes per cell with ratios {1, 2, 1/2}, 6 with 3 and 1/3 too
    # map 1, cell (0, 0): centre (25, 25); s_1 = 0.2, s'_1 = sqrt(0.2 * 0.8) (s_2 = 0.8), then a = 2 and 1/2
    first = boxes[:4]
    side = [0.2 * 100, math.sqrt(0.2 * 0.8) * 100]
    assert torch.allclose(first[0], torch.tensor([25 - side[0] / 2, 25 - side[0] / 2, 25 + side[0] / 2, 25 + side[0] / 2]))
    assert torch.allclose(first[1, 2] - first[1, 0], torch.tensor(side[1]))
    w, h = first[2, 2] - first[2, 0], first[2, 3] - first[2, 1]
    assert torch.allclose(w / h, torch.tensor(2.0)) and torch.allclose(w * h, torch.tensor(20.0 ** 2))
    # the second cell of the first row is centred at (75, 25): cell-major order
    assert torch.allclose((boxes[4, :2] + boxes[4, 2:]) / 2, torch.tensor([75.0, 25.0]))
    # map 2 (1 x 1): s_2 = 0.8 centred on the image
    assert torch.allclose(boxes[16], torch.tensor([10.0, 10.0, 90.0, 90.0]))


def test_matching_gives_each_object_its_best_box_then_every_box_above_half():
    priors = torch.tensor([[0.0, 0, 10, 10], [0, 0, 10, 12], [30, 30, 40, 40], [60, 60, 70, 70]])
    t = objects([[0, 0, 10, 11], [31, 31, 45, 45]], [4, 7])
    classes, matched = match(priors, t.boxes, t.labels, 0.5)
    # prior 2 overlaps object 2 by 81 / 215 < 0.5, but it is that object's best: matched anyway
    assert classes.tolist() == [5, 5, 8, 0]
    assert torch.equal(matched[2], t.boxes[1])


def test_multibox_loss_keeps_three_negatives_per_positive():
    priors = torch.tensor([[0.0, 0, 10, 10]] + [[20.0 * i, 50, 20 * i + 10, 60] for i in range(6)])
    targets = [objects([[0, 0, 10, 10]], [0])]
    g = torch.Generator().manual_seed(0)
    scores = torch.randn(1, 7, 3, generator=g)
    offsets = torch.randn(1, 7, 4, generator=g)
    losses = multibox_loss(scores, offsets, priors, targets, DefaultBoxSettings())
    ce = F.cross_entropy(scores[0], torch.tensor([1, 0, 0, 0, 0, 0, 0]), reduction="none")
    hardest = ce[1:].sort(descending=True).values[:3]
    assert losses["cls"] == pytest.approx(float(ce[0] + hardest.sum()), rel=1e-6)
    # the positive's box target is the object itself: zero offsets encode it exactly
    assert losses["box"] == pytest.approx(float(F.smooth_l1_loss(offsets[0, 0], torch.zeros(4), reduction="sum")), rel=1e-6)


def test_an_image_without_objects_has_no_box_loss_and_no_negatives():
    model = create_model("ssd", num_classes=3).train()
    losses = model(torch.randn(2, 3, 128, 128), [objects([], []), objects([], [])])
    assert float(losses["cls"]) == 0.0 and float(losses["box"]) == 0.0


def test_ssd_trains_and_detects_through_the_command_line(tmp_path, capsys):
    run = tmp_path / "ssd"
    assert main(["train", "ssd", "--epochs", "3", "--batch-size", "4", "--optimizer", "adam", "--lr", "0.001",
                 "--weight-decay", "0", "--schedule", "constant", "--threads", "1", "--limit-train", "8",
                 "--limit-test", "4", "--plan", "no", "--out", str(run), "--quiet"]) == 0
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert history[-1]["train_loss"] < 0.7 * history[0]["train_loss"]
    assert main(["eval", str(run), "--limit", "4", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert 0 <= metrics["map"] <= 1 and metrics["images"] == 4
    assert main(["viz", "predictions", str(run), "--kind", "proposals", "--out", str(tmp_path / "v")]) != 0
    assert "single-shot" in capsys.readouterr().err
