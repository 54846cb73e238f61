"""Keypoint metrics: PCK and COCO's keypoint AP by object keypoint similarity (OKS).

PCK@a (percentage of correct keypoints; Yang & Ramanan 2013, with the reference length of Andriluka et
al. 2014 replaced by the box): the share of labelled ground-truth keypoints whose prediction lies within
``a * max(box width, box height)``.

OKS (Ruggero Ronchi & Perona 2017; cocodataset.org/#keypoints-eval): for a detection and a ground-truth
person with area ``s`` and labelled keypoints ``i``, ``OKS = mean_i exp(-d_i^2 / (2 s k_i^2))`` with
``k_i = 2 sigma_i``. AP follows COCOeval exactly: per image, detections by score (at most 20), greedy
matching at 10 OKS thresholds 0.50:0.05:0.95, people without labelled keypoints or crowds ignored,
precision made monotone and read at 101 recall points. ``tests/test_keypoints_metrics.py`` checks the
figures against pycocotools on the same predictions.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch

THRESHOLDS = np.linspace(0.5, 0.95, 10)
RECALLS = np.linspace(0.0, 1.0, 101)
MAX_DETECTIONS = 20


def pck(predicted: torch.Tensor, truth: torch.Tensor, boxes: torch.Tensor, alpha: float) -> float:
    """PCK@``alpha``: ``predicted`` N x K x 2, ``truth`` N x K x 3 (v > 0 labelled), ``boxes`` N x 4 (x1 y1 x2 y2)."""
    size = torch.maximum(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])  # N
    distance = (predicted - truth[..., :2]).norm(dim=-1)  # N x K
    labelled = truth[..., 2] > 0
    if not labelled.any():
        return float("nan")
    return float((distance <= alpha * size[:, None])[labelled].float().mean())


def oks(dt: np.ndarray, gt: np.ndarray, gt_box: Sequence[float], area: float, sigmas: np.ndarray) -> float:
    """OKS of detection keypoints ``dt`` (K x 2 or K x 3) and ground truth ``gt`` (K x 3, COCO values) whose
    box is ``gt_box`` (x, y, w, h). Where ``gt`` has no labelled keypoint, COCOeval measures the distance
    to a box twice the size of the ground truth's instead, which is what is done here."""
    var = (2 * sigmas) ** 2
    vis = gt[:, 2] > 0
    if vis.any():
        dx, dy = dt[:, 0] - gt[:, 0], dt[:, 1] - gt[:, 1]
    else:
        x, y, w, h = gt_box
        x0, x1, y0, y1 = x - w, x + 2 * w, y - h, y + 2 * h
        dx = np.maximum(0, x0 - dt[:, 0]) + np.maximum(0, dt[:, 0] - x1)
        dy = np.maximum(0, y0 - dt[:, 1]) + np.maximum(0, dt[:, 1] - y1)
    e = (dx ** 2 + dy ** 2) / var / (area + np.spacing(1)) / 2
    if vis.any():
        e = e[vis]
    return float(np.sum(np.exp(-e)) / e.shape[0])


def keypoint_ap(ground_truth: dict, detections: list[dict], sigmas: Sequence[float]) -> dict[str, float]:
    """COCO keypoint AP, AP50, AP75 and AR of ``detections`` (COCO results: ``image_id``, ``keypoints``
    flat x y v, ``score``) against ``ground_truth`` (a COCO dict), for every area (COCOeval's "all")."""
    sigmas = np.asarray(sigmas, float)
    gts: dict[int, list[dict]] = {}
    for a in ground_truth["annotations"]:
        gts.setdefault(a["image_id"], []).append(a)
    dts: dict[int, list[dict]] = {}
    for d in detections:
        dts.setdefault(d["image_id"], []).append(d)
    image_ids = sorted(im["id"] for im in ground_truth["images"])
    t = len(THRESHOLDS)
    scores, matched, ignored, positives = [], [], [], 0
    for image_id in image_ids:
        g_all, d_all = gts.get(image_id, []), dts.get(image_id, [])
        g_ignore = np.array([bool(g.get("iscrowd", 0)) or g.get("num_keypoints", _labelled(g)) == 0 for g in g_all],
                            bool)
        order = np.argsort(g_ignore, kind="mergesort")  # non-ignored first, as COCOeval sorts them
        g_all, g_ignore = [g_all[i] for i in order], g_ignore[order]
        d_all = sorted(d_all, key=lambda d: -d["score"])[:MAX_DETECTIONS]
        if not g_all and not d_all:
            continue
        positives += int((~g_ignore).sum())
        crowd = np.array([bool(g.get("iscrowd", 0)) for g in g_all], bool)
        ious = np.array([[oks(np.asarray(d["keypoints"], float).reshape(-1, 3), np.asarray(g["keypoints"], float)
                              .reshape(-1, 3), g["bbox"], g["area"], sigmas) for g in g_all] for d in d_all])
        d_match = np.zeros((t, len(d_all)), bool)
        d_ignore = np.zeros((t, len(d_all)), bool)
        for ti, threshold in enumerate(THRESHOLDS):
            g_taken = np.zeros(len(g_all), bool)
            for di in range(len(d_all)):
                best, m = min(threshold, 1 - 1e-10), -1
                for gi in range(len(g_all)):
                    if g_taken[gi] and not crowd[gi]:
                        continue
                    if m > -1 and not g_ignore[m] and g_ignore[gi]:
                        break  # a match with a counted person beats any with an ignored one
                    if ious[di, gi] < best:
                        continue
                    best, m = ious[di, gi], gi
                if m == -1:
                    continue
                d_ignore[ti, di] = g_ignore[m]
                d_match[ti, di] = True
                g_taken[m] = True
        scores += [d["score"] for d in d_all]
        matched.append(d_match)
        ignored.append(d_ignore)
    if not scores:
        return {"ap": -1.0, "ap50": -1.0, "ap75": -1.0, "ar": -1.0}
    order = np.argsort(-np.asarray(scores), kind="mergesort")
    d_match = np.concatenate(matched, 1)[:, order]
    d_ignore = np.concatenate(ignored, 1)[:, order]
    tps = np.cumsum(d_match & ~d_ignore, 1).astype(float)
    fps = np.cumsum(~d_match & ~d_ignore, 1).astype(float)
    precision = np.zeros((t, len(RECALLS)))
    recall_at = np.zeros(t)
    if positives == 0:
        return {"ap": -1.0, "ap50": -1.0, "ap75": -1.0, "ar": -1.0}
    for ti in range(t):
        tp, fp = tps[ti], fps[ti]
        rc = tp / positives
        pr = tp / (fp + tp + np.spacing(1))
        recall_at[ti] = rc[-1] if len(rc) else 0
        pr = np.maximum.accumulate(pr[::-1])[::-1] if len(pr) else pr  # monotone precision envelope
        index = np.searchsorted(rc, RECALLS, side="left")
        q = np.zeros(len(RECALLS))
        valid = index < len(pr)
        q[valid] = pr[index[valid]]
        precision[ti] = q
    per_threshold = precision.mean(1)
    return {"ap": float(per_threshold.mean()), "ap50": float(per_threshold[0]), "ap75": float(per_threshold[5]),
            "ar": float(recall_at.mean())}


def _labelled(annotation: dict) -> int:
    kp = annotation.get("keypoints") or []
    return int(sum(1 for v in kp[2::3] if v > 0))
