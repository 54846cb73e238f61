"""Box operations against hand computations (torchvision equality: tests/test_ops_torchvision.py)."""

from __future__ import annotations

import math

import torch

from cnnlab import ops
from cnnlab.ops.boxes import cell_anchors, clip_boxes


def test_iou_and_giou_by_hand():
    a = torch.tensor([[0.0, 0, 10, 10]])
    b = torch.tensor([[5.0, 5, 15, 15], [20, 20, 30, 30], [0, 0, 10, 10]])
    # overlap 5 x 5 = 25, union 100 + 100 - 25 = 175
    torch.testing.assert_close(ops.box_iou(a, b), torch.tensor([[25 / 175, 0.0, 1.0]]))
    # GIoU of the disjoint pair: 0 - (900 - 200) / 900; of the first: 25/175 - (225 - 175) / 225
    torch.testing.assert_close(ops.generalized_box_iou(a, b),
                               torch.tensor([[25 / 175 - 50 / 225, -700 / 900, 1.0]]))


def test_nms_keeps_the_best_of_each_cluster_and_batched_nms_keeps_classes_apart():
    boxes = torch.tensor([[0.0, 0, 10, 10], [1, 0, 11, 10], [50, 50, 60, 60], [0, 1, 10, 11]])
    scores = torch.tensor([0.9, 0.95, 0.5, 0.3])
    # box 1 (0.95) removes 0 (IoU 9/11) and 3 (IoU 81/119 = 0.68); box 2 stands alone
    assert ops.nms(boxes, scores, 0.5).tolist() == [1, 2]
    assert ops.nms(boxes, scores, 0.7).tolist() == [1, 2, 3]
    classes = torch.tensor([0, 1, 0, 0])
    assert ops.batched_nms(boxes, scores, classes, 0.5).tolist() == [1, 0, 2]
    assert ops.nms(torch.zeros(0, 4), torch.zeros(0), 0.5).tolist() == []


def test_roi_pool_takes_the_maximum_of_each_bin():
    features = torch.arange(16.0).reshape(1, 1, 4, 4)
    # the whole map in 2 x 2 bins: the maxima of the four quadrants
    out = ops.roi_pool(features, torch.tensor([[0.0, 0, 0, 3, 3]]), 2)
    assert out.flatten().tolist() == [5.0, 7.0, 13.0, 15.0]


def test_roi_align_of_a_linear_map_is_the_bin_centre():
    # bilinear interpolation is exact on a linear function f(y, x) = x + 10 y (values at cell centres)
    ys, xs = torch.meshgrid(torch.arange(8.0), torch.arange(8.0), indexing="ij")
    features = (xs + 10 * ys)[None, None]
    out = ops.roi_align(features, torch.tensor([[0.0, 2, 2, 6, 6]]), 2, sampling_ratio=2, aligned=True)
    # aligned: box 2..6 in pixel edges is 1.5..5.5 in centre coordinates; bin centres at 2.5 and 4.5
    want = torch.tensor([[2.5 + 25, 4.5 + 25], [2.5 + 45, 4.5 + 45]])
    torch.testing.assert_close(out[0, 0], want)


def test_encode_decode_round_trip_and_formula():
    ref = torch.tensor([[0.0, 0, 10, 20]])
    box = torch.tensor([[5.0, 10, 25, 30]])
    t = ops.encode_boxes(box, ref)
    # centres (5, 10) -> (15, 20): tx = 10 / 10, ty = 10 / 20; sizes 10 x 20 -> 20 x 20
    torch.testing.assert_close(t, torch.tensor([[1.0, 0.5, math.log(2.0), 0.0]]))
    torch.testing.assert_close(ops.decode_boxes(t, ref), box)
    assert clip_boxes(torch.tensor([[-5.0, 3, 200, 90]]), 64, 128).tolist() == [[0.0, 3.0, 128.0, 64.0]]


def test_anchors_have_the_given_areas_and_ratios_tiled_by_stride():
    a = cell_anchors((32.0,), (0.5, 1.0, 2.0))
    w, h = a[:, 2] - a[:, 0], a[:, 3] - a[:, 1]
    assert torch.allclose(h / w, torch.tensor([0.5, 1.0, 2.0]), rtol=0.05)  # sides are rounded to pixels
    assert torch.allclose(w * h, torch.full((3,), 1024.0), rtol=0.03)
    grid = ops.make_anchors(2, 3, 16, (32.0,), (1.0,))
    assert grid.shape == (6, 4)
    centres = (grid[:, :2] + grid[:, 2:]) / 2
    assert centres.tolist() == [[0, 0], [16, 0], [32, 0], [0, 16], [16, 16], [32, 16]]
