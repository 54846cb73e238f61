"""Parts of the detectors against hand-checked facts: anchor labelling (Faster R-CNN 3.1.2), RoI
sampling, mask pasting, selective search's hierarchy, and Fast R-CNN learning on four scenes."""

from __future__ import annotations

import pytest
import torch

from cnnlab.detection.heads import paste_masks
from cnnlab.detection.sampling import BACKGROUND, IGNORED, match, sample


def test_anchor_labels_follow_the_papers_thresholds():
    gt = torch.tensor([[0.0, 0, 10, 10]])
    anchors = torch.tensor([[0.0, 0, 10, 10],    # IoU 1: positive
                            [0, 0, 10, 12],      # IoU 100/120 = 0.83: positive
                            [0, 0, 10, 20],      # IoU 0.5: ignored (between 0.3 and 0.7)
                            [5, 5, 25, 25],      # IoU 25/475: negative
                            [50, 50, 60, 60]])   # no overlap: negative
    assert match(anchors, gt, high=0.7, low=0.3).tolist() == [0, 0, IGNORED, BACKGROUND, BACKGROUND]
    # condition (i): an object whose best anchor is below 0.7 still gets that anchor
    assert match(anchors[2:], gt, high=0.7, low=0.3, best_for_each=True).tolist() == [0, BACKGROUND, BACKGROUND]
    # crowd regions are never positives
    assert match(anchors, gt, high=0.7, low=0.3, gt_ignore=torch.tensor([True])).tolist()[:2] == [IGNORED, IGNORED]


def test_sampling_caps_the_positive_fraction():
    matches = torch.tensor([0] * 50 + [BACKGROUND] * 300 + [IGNORED] * 10)
    pos, neg = sample(matches, 256, 0.25, torch.Generator().manual_seed(0))
    assert len(pos) == 50 and len(neg) == 206  # fewer positives than 64: negatives fill the batch
    pos, neg = sample(torch.tensor([0] * 200 + [BACKGROUND] * 300), 128, 0.25)
    assert len(pos) == 32 and len(neg) == 96
    assert (torch.cat([pos, neg]) < 500).all() and len(set(pos.tolist()) & set(neg.tolist())) == 0


def test_a_full_mask_pastes_to_its_box():
    masks = torch.ones(1, 28, 28)
    out = paste_masks(masks, torch.tensor([[2.0, 3.0, 7.0, 9.0]]), 12, 12)
    want = torch.zeros(12, 12, dtype=torch.bool)
    want[3:9, 2:7] = True
    assert torch.equal(out[0], want)


def test_selective_search_covers_the_objects_and_ends_with_one_region():
    pytest.importorskip("skimage")
    from cnnlab.data import load_object_dataset
    from cnnlab.detection.selective_search import selective_search
    from cnnlab.ops import box_iou

    ds = load_object_dataset("fashion-scenes-mini", "test")
    found = []
    for i in range(4):
        boxes = torch.from_numpy(selective_search(ds.image(i)[0].numpy() / 255.0, scale=50, min_size=10))
        assert boxes[0].tolist() == [0.0, 0.0, 128.0, 128.0]  # the last merge is the whole image
        assert (boxes[:, 2:] > boxes[:, :2]).all() and boxes.min() >= 0 and boxes.max() <= 128
        found += (box_iou(ds.target(i).boxes, boxes).max(1).values >= 0.5).tolist()
    assert sum(found) / len(found) >= 0.7


def test_fast_rcnn_learns_four_scenes():
    pytest.importorskip("skimage")
    from cnnlab.data import load_object_dataset
    from cnnlab.registry import create_model

    torch.manual_seed(0)
    ds = load_object_dataset("fashion-scenes-mini", "train")
    x = torch.stack([ds.image(i) for i in range(4)]).float() / 255
    targets = [ds.target(i) for i in range(4)]
    model = create_model("fast_rcnn", num_classes=10, in_channels=1)
    optimizer = torch.optim.Adam(model.parameters(), 1e-3)
    losses = []
    for _ in range(8):
        loss = sum(model(x, targets).values())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    # the softmax over 11 classes starts at log 11 = 2.4; a few steps on the same scenes must cut it well down
    assert losses[0] > 2.0 and min(losses[-3:]) < 0.6 * losses[0]


def test_rcnn_svm_targets_follow_the_papers_overlap_rule():
    from cnnlab.detection.rcnn_losses import svm_targets

    boxes, labels = torch.tensor([[0.0, 0, 10, 10], [50, 50, 70, 70]]), torch.tensor([0, 1])
    rois = torch.tensor([[0.0, 0, 10, 10],     # the true box of class 0: its positive
                         [0, 0, 10, 20],       # IoU 0.5 with it: left out for class 0, a negative for class 1
                         [30, 30, 40, 40],     # overlaps nothing: a negative for both
                         [50, 50, 70, 70]])    # the true box of class 1: positive for 1, negative for 0
    is_truth = torch.tensor([True, False, False, True])
    t = svm_targets(rois, is_truth, torch.tensor([0, 1]), boxes, labels, 2)
    assert t.tolist() == [[1, -1], [0, -1], [-1, -1], [-1, 1]]


def test_rcnn_hinge_and_ridge_losses_by_hand():
    from cnnlab.detection.rcnn_losses import hinge_loss, regression_loss

    scores = torch.tensor([[2.0, 0.5], [-0.2, -3.0]])
    targets = torch.tensor([[1.0, -1.0], [0.0, -1.0]])
    w = torch.tensor([[1.0, 2.0]])
    # margins: max(0, 1 - 2) = 0, max(0, 1 + 0.5) = 1.5, (left out), max(0, 1 - 3) = 0 -> mean 0.5; + 0.1 / 2 * 5
    assert float(hinge_loss(scores, targets, w, 0.1)) == pytest.approx(0.5 + 0.25)
    rois = torch.tensor([[0.0, 0, 10, 10], [40, 40, 50, 50]])
    boxes, labels = torch.tensor([[1.0, 0, 11, 10]]), torch.tensor([1])
    deltas = torch.zeros(2, 8)
    # only the first RoI overlaps (IoU 90/110 >= 0.6): its class-1 target is (0.1, 0, 0, 0)
    assert float(regression_loss(deltas, rois, boxes, labels, w, 0.0)) == pytest.approx(0.01)


def test_rcnn_warps_each_proposal_with_context():
    from cnnlab.models.rcnn import CONTEXT, warp_regions

    image = torch.zeros(1, 1, 64, 64)
    image[..., 20:40, 10:30] = 1.0  # a bright 20 x 20 square
    crop = warp_regions(image, [torch.tensor([[10.0, 20, 30, 40]])], 32)[0, 0]
    inside = (crop > 0.5).float().mean()
    assert float(inside) == pytest.approx((1 / CONTEXT) ** 2, abs=0.03)  # the box fills 195/227 of each side


def test_rcnn_trains_and_detects_through_the_command_line(tmp_path, capsys):
    import json

    from cnnlab.cli import main

    run = tmp_path / "rcnn"
    assert main(["train", "rcnn", "--epochs", "3", "--batch-size", "4", "--optimizer", "adam", "--lr", "0.002",
                 "--weight-decay", "0", "--schedule", "constant", "--threads", "1", "--limit-train", "8",
                 "--limit-test", "2", "--plan", "no", "--out", str(run), "--quiet"]) == 0
    history = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines()]
    assert history[-1]["train_svm"] < history[0]["train_svm"] and history[-1]["train_cls"] < history[0]["train_cls"]
    assert main(["eval", str(run), "--limit", "2", "--json"]) == 0
    metrics = json.loads(capsys.readouterr().out)
    assert 0 <= metrics["map"] <= 1 and metrics["seconds_per_image"] > 0
