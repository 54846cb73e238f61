"""Detection metrics: PASCAL VOC's mAP@0.5 and COCO's AP@[.5:.95] family, for boxes and masks.

**VOC** (Everingham et al. 2010, section 4.2; the devkit from VOC2010 on): per class, detections of
all images by decreasing score; each one is a true positive when its best-overlapping ground truth of
that class has IoU > 0.5 and was not matched before (an object marked ``difficult`` / crowd is neither a
hit nor a miss); AP is the area under the precision-recall curve with precision made monotone
("all-point" interpolation). mAP averages the classes that have objects.

**COCO** (Lin et al. 2014; the ``COCOeval`` protocol): ten IoU thresholds .50:.05:.95, per image and
class at most 100 detections by score, greedy matching by IoU where a crowd region may absorb any number
of detections (its IoU is the intersection over the detection's area), ground truth outside an area
range ignored, unmatched detections outside it ignored; precision interpolated at 101 recall points and
averaged over classes (and thresholds). Areas are the annotation's ``area`` for ground truth, the box's
``w x h`` (mask pixels for masks) for detections; small < 32^2 <= medium < 96^2 <= large.

The functions follow the published protocol step for step so that the figures equal pycocotools' on
the same predictions (``tests/test_detection_metrics.py`` checks it to 1e-4).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import torch

IOU_THRESHOLDS = np.linspace(0.5, 0.95, int(np.round((0.95 - 0.5) / 0.05)) + 1, endpoint=True)
RECALL_POINTS = np.linspace(0.0, 1.00, int(np.round((1.00 - 0.0) / 0.01)) + 1, endpoint=True)
AREA_RANGES = {"all": (0.0, 1e5 ** 2), "small": (0.0, 32.0 ** 2), "medium": (32.0 ** 2, 96.0 ** 2),
               "large": (96.0 ** 2, 1e5 ** 2)}
MAX_DETS = (1, 10, 100)
# COCOeval.summarize()'s twelve figures, in its order
COCO_STATS = ("map", "ap50", "ap75", "ap_small", "ap_medium", "ap_large",
              "ar1", "ar10", "ar100", "ar_small", "ar_medium", "ar_large")


@dataclass
class _Image:
    gt_boxes: torch.Tensor  # G x 4 float64 x1 y1 x2 y2
    gt_labels: torch.Tensor  # G
    gt_crowd: torch.Tensor  # G bool
    gt_areas: torch.Tensor  # G float64
    dt_boxes: torch.Tensor  # D x 4
    dt_scores: torch.Tensor  # D
    dt_labels: torch.Tensor  # D
    gt_masks: torch.Tensor | None = None  # G x H x W bool
    dt_masks: torch.Tensor | None = None  # D x H x W bool


def _overlaps(dt: torch.Tensor, gt: torch.Tensor, crowd: torch.Tensor, masks: bool) -> np.ndarray:
    """D x G IoU; for a crowd ground truth, intersection over the detection's area (COCO)."""
    if len(dt) == 0 or len(gt) == 0:
        return np.zeros((len(dt), len(gt)))
    if masks:
        a = dt.flatten(1).double()
        b = gt.flatten(1).double()
        inter = a @ b.T
        area_d, area_g = a.sum(1), b.sum(1)
    else:
        lt = torch.maximum(dt[:, None, :2], gt[None, :, :2])
        rb = torch.minimum(dt[:, None, 2:], gt[None, :, 2:])
        wh = (rb - lt).clamp(min=0)
        inter = wh[..., 0] * wh[..., 1]
        area_d = (dt[:, 2] - dt[:, 0]) * (dt[:, 3] - dt[:, 1])
        area_g = (gt[:, 2] - gt[:, 0]) * (gt[:, 3] - gt[:, 1])
    union = torch.where(crowd[None, :], area_d[:, None].expand_as(inter), area_d[:, None] + area_g[None, :] - inter)
    iou = torch.where(union > 0, inter / union.clamp(min=1e-300), torch.zeros_like(inter))
    return iou.numpy()


def voc_ap(recall: np.ndarray, precision: np.ndarray) -> float:
    """All-point interpolated average precision (VOC2010+): area under the monotone PR envelope."""
    r = np.concatenate([[0.0], recall, [1.0]])
    p = np.concatenate([[0.0], precision, [0.0]])
    p = np.maximum.accumulate(p[::-1])[::-1]
    steps = np.nonzero(r[1:] != r[:-1])[0]
    return float(np.sum((r[steps + 1] - r[steps]) * p[steps + 1]))


@dataclass
class DetectionEvaluator:
    """Collects ground truth and detections image by image, then computes VOC and COCO figures.

    >>> ev = DetectionEvaluator(num_classes=2)
    >>> box = torch.tensor([[0.0, 0, 10, 10]])
    >>> ev.add(box, torch.tensor([1]), box, torch.tensor([0.9]), torch.tensor([1]))
    >>> round(ev.coco()["map"], 3), round(ev.voc()["map50"], 3)
    (1.0, 1.0)
    """

    num_classes: int
    images: list[_Image] = field(default_factory=list)

    def add(self, gt_boxes: torch.Tensor, gt_labels: torch.Tensor, dt_boxes: torch.Tensor, dt_scores: torch.Tensor,
            dt_labels: torch.Tensor, *, gt_crowd: torch.Tensor | None = None, gt_areas: torch.Tensor | None = None,
            gt_masks: torch.Tensor | None = None, dt_masks: torch.Tensor | None = None) -> None:
        """One image: ground truth (boxes ``x1 y1 x2 y2``, labels, crowd flags, areas; default the box
        areas) and detections (boxes, scores, labels), masks (N x H x W bool) for mask AP."""
        gt_boxes = gt_boxes.detach().cpu().double().reshape(-1, 4)
        if gt_areas is None:
            gt_areas = (gt_boxes[:, 2] - gt_boxes[:, 0]) * (gt_boxes[:, 3] - gt_boxes[:, 1])
        crowd = torch.zeros(len(gt_boxes), dtype=torch.bool) if gt_crowd is None else gt_crowd.cpu().bool()
        self.images.append(_Image(gt_boxes, gt_labels.cpu().long(), crowd, gt_areas.cpu().double(),
                                  dt_boxes.detach().cpu().double().reshape(-1, 4), dt_scores.detach().cpu().double(),
                                  dt_labels.cpu().long(),
                                  None if gt_masks is None else gt_masks.cpu().bool(),
                                  None if dt_masks is None else dt_masks.detach().cpu().bool()))

    @property
    def has_masks(self) -> bool:
        return bool(self.images) and all(im.gt_masks is not None and im.dt_masks is not None for im in self.images)

    # --- VOC ----------------------------------------------------------------------------------
    def voc(self, iou_threshold: float = 0.5) -> dict[str, Any]:
        """``map50`` (the mean over classes with objects) and ``per_class_ap`` (None for a class without objects)."""
        per_class: list[float | None] = []
        for k in range(self.num_classes):
            scores, hits, positives = [], [], 0
            for im in self.images:
                g = im.gt_labels == k
                d = torch.nonzero(im.dt_labels == k).flatten()
                gt, crowd = im.gt_boxes[g], im.gt_crowd[g]
                positives += int((~crowd).sum())
                if len(d) == 0:
                    continue
                d = d[torch.argsort(-im.dt_scores[d], stable=True)]
                iou = _overlaps(im.dt_boxes[d], gt, torch.zeros(len(gt), dtype=torch.bool), False)
                taken = np.zeros(len(gt), bool)
                for j in range(len(d)):
                    scores.append(float(im.dt_scores[d[j]]))
                    if len(gt) == 0:
                        hits.append(0)
                        continue
                    best = int(iou[j].argmax())
                    if iou[j, best] > iou_threshold:
                        if bool(crowd[best]):
                            hits.append(-1)  # a difficult object: neither true nor false positive
                        elif not taken[best]:
                            taken[best] = True
                            hits.append(1)
                        else:
                            hits.append(0)
                    else:
                        hits.append(0)
            if positives == 0:
                per_class.append(None)
                continue
            order = np.argsort(-np.asarray(scores), kind="mergesort")
            h = np.asarray(hits, dtype=np.int64)[order] if hits else np.zeros(0, np.int64)
            h = h[h >= 0]
            tp, fp = np.cumsum(h == 1), np.cumsum(h == 0)
            recall = tp / positives
            precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
            per_class.append(voc_ap(recall, precision))
        valid = [a for a in per_class if a is not None]
        return {"map50": float(np.mean(valid)) if valid else 0.0, "per_class_ap": per_class}

    # --- COCO ---------------------------------------------------------------------------------
    def coco(self, kind: str = "bbox") -> dict[str, Any]:
        """COCOeval's twelve figures (:data:`COCO_STATS`) for ``kind`` ``bbox`` or ``segm``, and
        ``per_class_ap`` (AP@[.5:.95] per class, None for a class without objects)."""
        masks = kind == "segm"
        if masks and not self.has_masks:
            raise ValueError("mask AP needs ground-truth and predicted masks for every image")
        T, R, K, A, M = len(IOU_THRESHOLDS), len(RECALL_POINTS), self.num_classes, len(AREA_RANGES), len(MAX_DETS)
        precision = -np.ones((T, R, K, A, M))
        recall = -np.ones((T, K, A, M))
        ranges = list(AREA_RANGES.values())
        max_det = MAX_DETS[-1]
        for k in range(K):
            # per image: matches for each area range (evaluateImg), at the largest maxDet
            per_area: list[list[tuple[np.ndarray, np.ndarray, np.ndarray, int]]] = [[] for _ in ranges]
            for im in self.images:
                g = torch.nonzero(im.gt_labels == k).flatten()
                d = torch.nonzero(im.dt_labels == k).flatten()
                if len(g) == 0 and len(d) == 0:
                    continue
                d = d[torch.from_numpy(np.argsort(-im.dt_scores[d].numpy(), kind="mergesort"))][:max_det]
                crowd = im.gt_crowd[g]
                if masks:
                    iou_all = _overlaps(im.dt_masks[d], im.gt_masks[g], crowd, True)
                    dt_area = im.dt_masks[d].flatten(1).sum(1).double().numpy()
                else:
                    iou_all = _overlaps(im.dt_boxes[d], im.gt_boxes[g], crowd, False)
                    b = im.dt_boxes[d]
                    dt_area = ((b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])).numpy()
                gt_area = im.gt_areas[g].numpy()
                scores = im.dt_scores[d].numpy()
                for a, (lo, hi) in enumerate(ranges):
                    ignore = crowd.numpy() | (gt_area < lo) | (gt_area > hi)
                    gorder = np.argsort(ignore, kind="mergesort")
                    g_ign, g_crowd = ignore[gorder], crowd.numpy()[gorder]
                    iou = iou_all[:, gorder] if iou_all.size else np.zeros((len(d), len(g)))
                    dtm = np.zeros((T, len(d)), bool)
                    dt_ign = np.zeros((T, len(d)), bool)
                    gtm = np.zeros((T, len(g)), bool)
                    for t, thr in enumerate(IOU_THRESHOLDS):
                        for j in range(len(d)):
                            best_iou, m = min(thr, 1 - 1e-10), -1
                            for q in range(len(g)):
                                if gtm[t, q] and not g_crowd[q]:
                                    continue
                                if m > -1 and not g_ign[m] and g_ign[q]:
                                    break
                                if iou[j, q] < best_iou:
                                    continue
                                best_iou, m = iou[j, q], q
                            if m == -1:
                                continue
                            dt_ign[t, j] = g_ign[m]
                            dtm[t, j] = True
                            gtm[t, m] = True
                    outside = (dt_area < lo) | (dt_area > hi)
                    dt_ign |= ~dtm & outside[None, :]
                    per_area[a].append((scores, dtm, dt_ign, int((~g_ign).sum())))
            for a in range(A):
                items = per_area[a]
                if not items:
                    continue
                positives = sum(it[3] for it in items)
                if positives == 0:
                    continue
                for mi, md in enumerate(MAX_DETS):
                    scores = np.concatenate([it[0][:md] for it in items])
                    order = np.argsort(-scores, kind="mergesort")
                    dtm = np.concatenate([it[1][:, :md] for it in items], axis=1)[:, order]
                    dt_ign = np.concatenate([it[2][:, :md] for it in items], axis=1)[:, order]
                    tps = np.cumsum(dtm & ~dt_ign, axis=1).astype(np.float64)
                    fps = np.cumsum(~dtm & ~dt_ign, axis=1).astype(np.float64)
                    for t in range(T):
                        tp, fp = tps[t], fps[t]
                        rc = tp / positives
                        pr = tp / (fp + tp + np.spacing(1))
                        recall[t, k, a, mi] = rc[-1] if len(tp) else 0
                        pr = np.maximum.accumulate(pr[::-1])[::-1] if len(pr) else pr
                        q = np.zeros(R)
                        idx = np.searchsorted(rc, RECALL_POINTS, side="left")
                        ok = idx < len(pr)
                        q[ok] = pr[idx[ok]]
                        precision[t, :, k, a, mi] = q
        return self._summarize(precision, recall)

    @staticmethod
    def _summarize(precision: np.ndarray, recall: np.ndarray) -> dict[str, Any]:
        areas = list(AREA_RANGES)

        def mean(values: np.ndarray) -> float:
            v = values[values > -1]
            return float(np.mean(v)) if v.size else -1.0

        def ap(t: int | None = None, area: str = "all", md: int = 100) -> float:
            p = precision[:, :, :, areas.index(area), MAX_DETS.index(md)]
            return mean(p if t is None else p[t])

        def ar(area: str = "all", md: int = 100) -> float:
            return mean(recall[:, :, areas.index(area), MAX_DETS.index(md)])

        t50 = int(np.argmin(np.abs(IOU_THRESHOLDS - 0.5)))
        t75 = int(np.argmin(np.abs(IOU_THRESHOLDS - 0.75)))
        values = [ap(), ap(t50), ap(t75), ap(area="small"), ap(area="medium"), ap(area="large"),
                  ar(md=1), ar(md=10), ar(), ar("small"), ar("medium"), ar("large")]
        out: dict[str, Any] = dict(zip(COCO_STATS, values))
        per = precision[:, :, :, 0, -1]
        out["per_class_ap"] = [None if not (per[:, :, k] > -1).any() else mean(per[:, :, k])
                               for k in range(per.shape[2])]
        return out


def summary(evaluator: DetectionEvaluator) -> dict[str, Any]:
    """VOC and COCO box figures (and mask figures as ``mask_*`` when both sides have masks) in one dict."""
    out: dict[str, Any] = {}
    voc = evaluator.voc()
    out["map50_voc"] = voc["map50"]
    out["per_class_ap50"] = voc["per_class_ap"]
    coco = evaluator.coco("bbox")
    out.update({k: v for k, v in coco.items()})
    if evaluator.has_masks:
        segm = evaluator.coco("segm")
        out.update({f"mask_{k}": v for k, v in segm.items() if k != "per_class_ap"})
    return out


def stats_names(masks: bool) -> Sequence[str]:
    return ("map50_voc", *COCO_STATS, *([f"mask_{k}" for k in COCO_STATS] if masks else ()))
