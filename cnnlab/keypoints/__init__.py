"""Keypoint detection pieces shared by the ``keypoints`` task: person crops (top-down), Gaussian heatmap
targets, sub-pixel decoding, flip testing, and the metrics (PCK, COCO keypoint AP by OKS)."""

from .crops import PersonCrops, crop_people
from .heatmaps import decode_heatmaps, flip_heatmaps, gaussian_targets
from .metrics import keypoint_ap, oks, pck

__all__ = ["PersonCrops", "crop_people", "decode_heatmaps", "flip_heatmaps", "gaussian_targets", "keypoint_ap",
           "oks", "pck"]
