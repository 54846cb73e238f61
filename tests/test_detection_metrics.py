"""Detection metrics against pycocotools' COCOeval (the reference implementation of COCO's protocol)
and VOC's all-point AP against a hand computation."""

from __future__ import annotations

import contextlib
import io

import numpy as np
import pytest
import torch

from cnnlab.data import rle
from cnnlab.detection.evaluate import COCO_STATS, DetectionEvaluator, voc_ap

COCO = pytest.importorskip("pycocotools.coco").COCO
COCOeval = pytest.importorskip("pycocotools.cocoeval").COCOeval

SIZE = 200  # large enough for small, medium and large objects (96^2 = 9216 pixels)


def ellipse(box: torch.Tensor) -> torch.Tensor:
    x1, y1, x2, y2 = box.tolist()
    ys, xs = torch.meshgrid(torch.arange(SIZE) + 0.5, torch.arange(SIZE) + 0.5, indexing="ij")
    cx, cy, rx, ry = (x1 + x2) / 2, (y1 + y2) / 2, max((x2 - x1) / 2, 0.5), max((y2 - y1) / 2, 0.5)
    return ((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2 <= 1


def scene(seed: int, images: int = 16, classes: int = 3):
    """Ground truth (some crowd) and noisy detections: jittered copies, duplicates and random boxes."""
    g = torch.Generator().manual_seed(seed)
    data = []
    for _ in range(images):
        n = int(torch.randint(1, 7, (1,), generator=g))
        xy = (torch.rand(n, 2, generator=g) * (SIZE - 20)).round()
        wh = (torch.rand(n, 2, generator=g) ** 1.5 * 150 + 4).round()
        gt = torch.cat([xy, (xy + wh).clamp(max=SIZE)], 1)
        labels = torch.randint(0, classes, (n,), generator=g)
        crowd = torch.rand(n, generator=g) < 0.1
        jitter = gt + torch.randn(n, 4, generator=g) * wh.repeat(1, 2) * 0.08
        extra = int(torch.randint(0, 5, (1,), generator=g))
        rxy = torch.rand(extra, 2, generator=g) * (SIZE - 30)
        rand = torch.cat([rxy, rxy + torch.rand(extra, 2, generator=g) * 60 + 5], 1)
        dt = torch.cat([jitter, jitter[: n // 2] + 3, rand]).clamp(0, SIZE)
        dt[:, 2:] = torch.maximum(dt[:, 2:], dt[:, :2] + 1)
        dl = torch.cat([labels, labels[: n // 2], torch.randint(0, classes, (extra,), generator=g)])
        flip = torch.rand(len(dl), generator=g) < 0.15  # some detections of the wrong class
        dl = torch.where(flip, (dl + 1) % classes, dl)
        scores = torch.rand(len(dt), generator=g)
        data.append((gt, labels, crowd, dt, scores, dl))
    return data


def coco_pair(data, masks: bool):
    images, anns, results = [], [], []
    ann_id = 1
    for i, (gt, labels, crowd, dt, scores, dl) in enumerate(data):
        images.append({"id": i + 1, "width": SIZE, "height": SIZE, "file_name": f"{i}.png"})
        for b, l, c in zip(gt.tolist(), labels.tolist(), crowd.tolist()):
            m = ellipse(torch.tensor(b))
            ann = {"id": ann_id, "image_id": i + 1, "category_id": l + 1, "iscrowd": int(c),
                   "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]], "area": float(m.sum()),
                   "segmentation": rle.encode(m.numpy())}
            anns.append(ann)
            ann_id += 1
        for b, s, l in zip(dt.tolist(), scores.tolist(), dl.tolist()):
            r = {"image_id": i + 1, "category_id": l + 1, "score": s, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]}
            if masks:
                r["segmentation"] = rle.encode(ellipse(torch.tensor(b)).numpy())
                del r["bbox"]
            results.append(r)
    gt = {"images": images, "annotations": anns, "categories": [{"id": k + 1, "name": str(k)} for k in range(3)]}
    return gt, results


def pycoco_stats(data, kind: str) -> np.ndarray:
    gt_dict, results = coco_pair(data, kind == "segm")
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO()
        gt.dataset = gt_dict
        gt.createIndex()
        dt = gt.loadRes(results)
        ev = COCOeval(gt, dt, kind)
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev.stats


def ours(data) -> DetectionEvaluator:
    ev = DetectionEvaluator(3)
    for gt, labels, crowd, dt, scores, dl in data:
        gm = torch.stack([ellipse(b) for b in gt])
        ev.add(gt, labels, dt, scores, dl, gt_crowd=crowd, gt_areas=gm.sum((1, 2)).double(), gt_masks=gm,
               dt_masks=torch.stack([ellipse(b) for b in dt]))
    return ev


@pytest.mark.parametrize("seed", [0, 1])
def test_box_ap_equals_pycocotools(seed):
    data = scene(seed)
    want = pycoco_stats(data, "bbox")
    got = ours(data).coco("bbox")
    assert want[0] > 0.05 and min(want[3:6]) > 0  # a non-trivial case, objects of all three sizes
    for name, value in zip(COCO_STATS, want):
        assert got[name] == pytest.approx(value, abs=1e-4), name


def test_mask_ap_equals_pycocotools():
    data = scene(2)
    want = pycoco_stats(data, "segm")
    got = ours(data).coco("segm")
    for name, value in zip(COCO_STATS, want):
        assert got[name] == pytest.approx(value, abs=1e-4), name


def test_voc_all_point_ap_by_hand():
    # precision/recall steps: (r .5, p 1), (r .5, p .5), (r 1, p 2/3): envelope 1 on [0, .5], 2/3 on (.5, 1]
    assert voc_ap(np.array([0.5, 0.5, 1.0]), np.array([1.0, 0.5, 2 / 3])) == pytest.approx(0.5 + 0.5 * 2 / 3)
    ev = DetectionEvaluator(2)
    gt = torch.tensor([[0.0, 0, 10, 10], [20, 20, 30, 30]])
    dt = torch.tensor([[0.0, 0, 10, 10], [50, 50, 60, 60], [20, 20, 30, 31], [0, 0, 10, 10]])
    ev.add(gt, torch.tensor([0, 0]), dt, torch.tensor([0.9, 0.8, 0.7, 0.6]), torch.tensor([0, 0, 0, 0]))
    # by score: hit, miss, hit, duplicate -> precision 1, 1/2, 2/3, 1/2 at recall .5, .5, 1, 1
    voc = ev.voc()
    assert voc["per_class_ap"] == [pytest.approx(0.5 + 0.5 * 2 / 3), None]
    assert voc["map50"] == pytest.approx(0.5 + 0.5 * 2 / 3)


def test_images_without_detections_count_as_misses():
    ev = DetectionEvaluator(1)
    gt = torch.tensor([[0.0, 0, 10, 10]])
    masks = torch.zeros(1, 16, 16, dtype=torch.bool)
    masks[0, :10, :10] = True
    ev.add(gt, torch.tensor([0]), gt, torch.tensor([0.9]), torch.tensor([0]), gt_masks=masks, dt_masks=masks)
    ev.add(gt, torch.tensor([0]), torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long),
           gt_masks=masks, dt_masks=torch.zeros(0, 16, 16, dtype=torch.bool))
    # one of two objects found at every threshold: precision 1 up to recall 0.5 -> 51 of 101 points
    assert ev.coco("bbox")["map"] == pytest.approx(51 / 101)
    assert ev.coco("segm")["map"] == pytest.approx(51 / 101)
    assert ev.voc()["map50"] == pytest.approx(0.5)
