"""cnnlab's box operations equal torchvision.ops on random inputs (run in the torchvision environment:
``PYTHONPATH=$PWD /tmp/tv/bin/python -m pytest tests/test_ops_torchvision.py``; skipped elsewhere)."""

from __future__ import annotations

import pytest
import torch

tv = pytest.importorskip("torchvision")
import torchvision.ops as tvops  # noqa: E402
from torchvision.models.detection._utils import BoxCoder  # noqa: E402
from torchvision.models.detection.anchor_utils import AnchorGenerator  # noqa: E402
from torchvision.models.detection.image_list import ImageList  # noqa: E402

from cnnlab import ops  # noqa: E402
from cnnlab.ops.boxes import cell_anchors  # noqa: E402


def random_boxes(n: int, size: float = 100.0, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * size
    wh = torch.rand(n, 2, generator=g) * size / 2 + 1
    return torch.cat([xy, xy + wh], 1)


def test_iou_and_giou_equal_torchvision():
    a, b = random_boxes(40, seed=1), random_boxes(30, seed=2)
    torch.testing.assert_close(ops.box_iou(a, b), tvops.box_iou(a, b))
    torch.testing.assert_close(ops.generalized_box_iou(a, b), tvops.generalized_box_iou(a, b))
    torch.testing.assert_close(ops.box_area(a), tvops.box_area(a))


@pytest.mark.parametrize("threshold", [0.3, 0.5, 0.7])
def test_nms_and_batched_nms_keep_the_same_boxes(threshold):
    boxes = random_boxes(300, seed=3)
    scores = torch.rand(300, generator=torch.Generator().manual_seed(4))
    classes = torch.randint(0, 5, (300,), generator=torch.Generator().manual_seed(5))
    assert torch.equal(ops.nms(boxes, scores, threshold), tvops.nms(boxes, scores, threshold))
    assert torch.equal(ops.batched_nms(boxes, scores, classes, threshold),
                       tvops.batched_nms(boxes, scores, classes, threshold))


def _features_and_rois(seed: int = 6):
    g = torch.Generator().manual_seed(seed)
    features = torch.randn(2, 3, 20, 24, generator=g)
    boxes = random_boxes(25, size=150, seed=seed)  # image coordinates, partly outside the 160x192 map
    index = torch.randint(0, 2, (25, 1), generator=g).float()
    return features, torch.cat([index, boxes], 1)


def test_roi_pool_equals_torchvision():
    features, rois = _features_and_rois()
    for size in (7, (3, 5)):
        torch.testing.assert_close(ops.roi_pool(features, rois, size, spatial_scale=1 / 8),
                                   tvops.roi_pool(features, rois, size, spatial_scale=1 / 8))


@pytest.mark.parametrize("aligned", [True, False])
@pytest.mark.parametrize("sampling_ratio", [2, 1, -1])
def test_roi_align_equals_torchvision(aligned, sampling_ratio):
    features, rois = _features_and_rois(7)
    ours = ops.roi_align(features, rois, (7, 6), spatial_scale=0.125, sampling_ratio=sampling_ratio, aligned=aligned)
    theirs = tvops.roi_align(features, rois, (7, 6), spatial_scale=0.125, sampling_ratio=sampling_ratio, aligned=aligned)
    torch.testing.assert_close(ours, theirs, atol=1e-5, rtol=1e-5)


def test_roi_align_gradient_equals_torchvision():
    features, rois = _features_and_rois(8)
    a = features.clone().requires_grad_(True)
    b = features.clone().requires_grad_(True)
    ops.roi_align(a, rois, 5, spatial_scale=0.125, sampling_ratio=2).square().sum().backward()
    tvops.roi_align(b, rois, 5, spatial_scale=0.125, sampling_ratio=2, aligned=True).square().sum().backward()
    torch.testing.assert_close(a.grad, b.grad, atol=1e-5, rtol=1e-5)


def test_encode_decode_equal_torchvisions_box_coder():
    weights = (10.0, 10.0, 5.0, 5.0)
    coder = BoxCoder(weights)
    reference, boxes = random_boxes(50, seed=9), random_boxes(50, seed=10)
    theirs = coder.encode_single(boxes, reference)
    torch.testing.assert_close(ops.encode_boxes(boxes, reference, weights), theirs)
    deltas = torch.randn(50, 8, generator=torch.Generator().manual_seed(11))
    torch.testing.assert_close(ops.decode_boxes(deltas, reference, weights),
                               coder.decode_single(deltas, reference).reshape(50, 8), atol=1e-4, rtol=1e-5)


def test_anchors_equal_torchvisions_anchor_generator():
    sizes, ratios = (16.0, 32.0, 64.0), (0.5, 1.0, 2.0)
    generator = AnchorGenerator(sizes=(sizes,), aspect_ratios=(ratios,))
    torch.testing.assert_close(cell_anchors(sizes, ratios), generator.cell_anchors[0])
    images = ImageList(torch.zeros(1, 3, 128, 96), [(128, 96)])
    feature = torch.zeros(1, 8, 16, 12)  # stride 8
    (theirs,) = generator(images, [feature])
    torch.testing.assert_close(ops.make_anchors(16, 12, 8, sizes, ratios), theirs)
