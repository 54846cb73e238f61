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
