"""Statistics of a detection / segmentation dataset, from its annotation table alone (no pixels read):
objects per image, class counts, object sizes (COCO's small / medium / large: area below 32², below
96², above), box overlap and, where the data records it (generated scenes), occlusion."""

from __future__ import annotations

import numpy as np
import torch

from typing import TYPE_CHECKING

if TYPE_CHECKING:  # for the annotation only: objects.py imports this module on use
    from .objects import ObjectDataset

SMALL, MEDIUM = 32 ** 2, 96 ** 2  # COCO's area thresholds (Lin et al. 2014, detection evaluation)


def _overlapping(boxes: torch.Tensor) -> torch.Tensor:
    """N bool: whether each box overlaps (positive intersection area with) another box of the image."""
    if len(boxes) < 2:
        return torch.zeros(len(boxes), dtype=torch.bool)
    lt = torch.maximum(boxes[:, None, :2], boxes[None, :, :2])
    rb = torch.minimum(boxes[:, None, 2:], boxes[None, :, 2:])
    inter = (rb - lt).clamp(min=0).prod(-1)
    inter.fill_diagonal_(0)
    return (inter > 0).any(1)


def object_statistics(dataset: "ObjectDataset") -> dict:
    """A JSON-ready summary of ``dataset`` (see the module docstring)."""
    t = dataset.table
    n_images = len(dataset)
    counts = (t.offsets[1:] - t.offsets[:-1]).numpy()
    areas = t.areas.numpy()
    boxes = t.boxes
    widths = (boxes[:, 2] - boxes[:, 0]).numpy()
    heights = (boxes[:, 3] - boxes[:, 1]).numpy()
    side = np.sqrt(areas)
    overlap = torch.cat([_overlapping(boxes[t.rows(i)]) for i in range(n_images)]) if n_images else torch.zeros(0, dtype=torch.bool)
    sizes = {(im.height, im.width) for im in dataset.images}
    percentiles = [5, 25, 50, 75, 95]
    out = {
        "name": dataset.name, "split": dataset.split, "images": n_images, "objects": int(len(t.labels)),
        "input_size": list(dataset.input_size) if dataset.input_size else None,
        "image_sizes": None if not sizes else {"min": list(min(sizes)), "max": list(max(sizes)), "distinct": len(sizes)},
        "classes": dataset.class_names,
        "per_class": torch.bincount(t.labels, minlength=dataset.num_classes).tolist(),
        "crowd": int(t.iscrowd.sum()),
        "masks": dataset.has_masks, "keypoints": dataset.keypoint_names,
        "objects_per_image": {
            "mean": round(float(counts.mean()), 3) if n_images else 0.0,
            "min": int(counts.min()) if n_images else 0, "max": int(counts.max()) if n_images else 0,
            "histogram": np.bincount(counts).tolist() if n_images else []},
        "size": {
            "sqrt_area_percentiles": dict(zip(map(str, percentiles),
                                              np.round(np.percentile(side, percentiles), 2).tolist())) if len(side) else {},
            "box_width_mean": round(float(widths.mean()), 2) if len(widths) else 0.0,
            "box_height_mean": round(float(heights.mean()), 2) if len(heights) else 0.0,
            "small": int((areas < SMALL).sum()), "medium": int(((areas >= SMALL) & (areas < MEDIUM)).sum()),
            "large": int((areas >= MEDIUM).sum())},
        "overlap_rate": round(float(overlap.float().mean()), 4) if len(overlap) else 0.0,
        "occlusion": None,
    }
    if t.occluded is not None and len(t.occluded):
        occ = t.occluded.numpy()
        hidden = occ > 0
        out["occlusion"] = {"rate": round(float(hidden.mean()), 4), "mean_hidden": round(float(occ.mean()), 4),
                            "mean_hidden_when_occluded": round(float(occ[hidden].mean()), 4) if hidden.any() else 0.0,
                            "max_hidden": round(float(occ.max()), 4)}
    return out
