"""Keypoint metrics against independent figures: COCO keypoint AP equal to pycocotools' COCOeval on the
same predictions, OKS and PCK computed by hand."""

from __future__ import annotations

import contextlib
import io
import math

import numpy as np
import pytest
import torch

from cnnlab.data.figures import COCO_SIGMAS, KEYPOINT_NAMES, SKELETON
from cnnlab.keypoints.metrics import keypoint_ap, oks, pck


def _ground_truth(rng: np.random.Generator, images: int = 12) -> dict:
    """A COCO person-keypoints dict: 1-3 people per image, some keypoints unlabelled, a crowd, a person
    without any labelled keypoint."""
    anns, imgs = [], []
    aid = 1
    for i in range(1, images + 1):
        imgs.append({"id": i, "file_name": f"{i}.jpg", "width": 200, "height": 200})
        for p in range(int(rng.integers(1, 4))):
            x, y = rng.uniform(0, 120, 2)
            w, h = rng.uniform(30, 80, 2)
            kp = np.zeros((17, 3))
            kp[:, 0] = x + rng.uniform(0, w, 17)
            kp[:, 1] = y + rng.uniform(0, h, 17)
            kp[:, 2] = rng.choice([0, 1, 2], 17, p=[0.2, 0.2, 0.6])
            if i == 3 and p == 0:
                kp[:, 2] = 0  # labelled person, no keypoints: COCOeval ignores it
            kp[kp[:, 2] == 0, :2] = 0
            anns.append({"id": aid, "image_id": i, "category_id": 1, "bbox": [x, y, w, h], "area": w * h * 0.6,
                         "iscrowd": int(i == 5 and p == 0), "keypoints": kp.reshape(-1).round(2).tolist(),
                         "num_keypoints": int((kp[:, 2] > 0).sum())})
            aid += 1
    return {"images": imgs, "annotations": anns,
            "categories": [{"id": 1, "name": "person", "keypoints": KEYPOINT_NAMES, "skeleton": SKELETON}]}


def _detections(rng: np.random.Generator, gt: dict) -> list[dict]:
    """Noisy copies of the people (noise growing with the person), missed people, and false alarms."""
    dets = []
    for a in gt["annotations"]:
        if rng.uniform() < 0.15:
            continue  # missed
        kp = np.asarray(a["keypoints"], float).reshape(17, 3)
        x, y, w, h = a["bbox"]
        noise = rng.uniform(0.5, 12)
        out = np.stack([kp[:, 0] + rng.normal(0, noise, 17), kp[:, 1] + rng.normal(0, noise, 17), np.ones(17)], 1)
        out[kp[:, 2] == 0, 0] = x + w / 2 + rng.normal(0, 5, int((kp[:, 2] == 0).sum()))
        out[kp[:, 2] == 0, 1] = y + h / 2
        dets.append({"image_id": a["image_id"], "category_id": 1, "keypoints": out.reshape(-1).round(3).tolist(),
                     "score": float(rng.uniform(0.2, 1.0) / (1 + noise / 10))})
    for i in rng.integers(1, len(gt["images"]) + 1, 6):  # false alarms somewhere in the image
        out = np.stack([rng.uniform(0, 200, 17), rng.uniform(0, 200, 17), np.ones(17)], 1)
        dets.append({"image_id": int(i), "category_id": 1, "keypoints": out.reshape(-1).round(3).tolist(),
                     "score": float(rng.uniform(0, 0.6))})
    return dets


def _cocoeval(gt: dict, dets: list[dict]) -> np.ndarray:
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    with contextlib.redirect_stdout(io.StringIO()):
        coco = COCO()
        coco.dataset = {**gt, "annotations": [dict(a) for a in gt["annotations"]]}
        coco.createIndex()
        results = coco.loadRes([dict(d) for d in dets])
        ev = COCOeval(coco, results, "keypoints")
        ev.params.areaRng = [ev.params.areaRng[0]]  # every area: the figure keypoint_ap reports
        ev.params.areaRngLbl = ["all"]
        ev.evaluate()
        ev.accumulate()
    precision = ev.eval["precision"][:, :, 0, 0, -1]  # T x R
    recall = ev.eval["recall"][:, 0, 0, -1]
    return np.array([precision.mean(), precision[0].mean(), precision[5].mean(), recall.mean()])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_keypoint_ap_equals_cocoeval(seed):
    pytest.importorskip("pycocotools")
    rng = np.random.default_rng(seed)
    gt = _ground_truth(rng)
    dets = _detections(rng, gt)
    ours = keypoint_ap(gt, dets, COCO_SIGMAS)
    want = _cocoeval(gt, dets)
    got = np.array([ours["ap"], ours["ap50"], ours["ap75"], ours["ar"]])
    assert 0.05 < want[0] < 0.95  # a test with something to get wrong
    np.testing.assert_allclose(got, want, atol=1e-9)


def test_perfect_predictions_score_one_and_sigmas_are_pycocotools():
    pytest.importorskip("pycocotools")
    from pycocotools.cocoeval import Params

    np.testing.assert_allclose(COCO_SIGMAS, Params(iouType="keypoints").kpt_oks_sigmas)
    rng = np.random.default_rng(5)
    gt = _ground_truth(rng, images=4)
    dets = [{"image_id": a["image_id"], "category_id": 1, "keypoints": a["keypoints"], "score": 0.9}
            for a in gt["annotations"] if a["num_keypoints"] and not a["iscrowd"]]  # the people COCO counts
    ours = keypoint_ap(gt, dets, COCO_SIGMAS)
    assert ours["ap"] == pytest.approx(1.0) and ours["ar"] == pytest.approx(1.0)
    # a person without labelled keypoints is ignored: a detection of it costs nothing if placed in its
    # box, and is a false alarm (at the top score) far away
    far = {"image_id": 3, "category_id": 1, "keypoints": [500.0, 500.0, 1] * 17, "score": 0.99}
    worse = keypoint_ap(gt, dets + [far], COCO_SIGMAS)
    assert worse["ap"] < 0.99 and worse["ap"] == pytest.approx(_cocoeval(gt, dets + [far])[0], abs=1e-9)


def test_oks_by_hand():
    gt = np.zeros((17, 3))
    gt[0] = (10, 10, 2)
    gt[5] = (20, 30, 1)  # labelled, hidden: still counted
    dt = np.zeros((17, 3))
    dt[0, :2] = (13, 14)  # 5 px away
    dt[5, :2] = (20, 30)  # exact
    area = 400.0
    k0, k5 = 2 * COCO_SIGMAS[0], 2 * COCO_SIGMAS[5]
    want = (math.exp(-25 / (2 * area * k0 ** 2)) + 1.0) / 2
    assert oks(dt, gt, [0, 0, 20, 20], area, np.array(COCO_SIGMAS)) == pytest.approx(want, rel=1e-9)


def test_pck_by_hand():
    truth = torch.zeros(2, 3, 3)
    truth[0] = torch.tensor([[10.0, 10, 2], [20, 20, 1], [5, 5, 0]])
    truth[1] = torch.tensor([[0.0, 0, 2], [50, 50, 2], [30, 30, 2]])
    pred = truth[..., :2].clone()
    pred[0, 0] += torch.tensor([3.0, 4.0])  # 5 px: within 0.2 * 40, not 0.1 * 40
    pred[0, 1] += torch.tensor([0.0, 2.0])  # 2 px: within both
    pred[0, 2] += 100  # unlabelled: not counted
    pred[1, 0] += torch.tensor([6.0, 8.0])  # 10 px: box side 100 -> within 0.1 * 100 (boundary counts)
    pred[1, 1] += torch.tensor([0.0, 25.0])  # 25 px: outside 0.2 * 100
    boxes = torch.tensor([[0.0, 0, 40, 30], [0, 0, 60, 100]])  # reference: the longer side
    assert pck(pred, truth, boxes, 0.1) == pytest.approx(3 / 5)  # [0,1], [1,0], [1,2]
    assert pck(pred, truth, boxes, 0.2) == pytest.approx(4 / 5)
