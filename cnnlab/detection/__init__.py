"""Object detection and instance segmentation: evaluation (:mod:`.evaluate`), the detectors' shared
parts (:mod:`.rpn`, :mod:`.heads`) and drawing (:mod:`.draw`); the networks are in
:mod:`cnnlab.models.faster_rcnn`, the task in :mod:`cnnlab.tasks.detect`."""

from .evaluate import COCO_STATS, DetectionEvaluator, voc_ap

__all__ = ["COCO_STATS", "DetectionEvaluator", "voc_ap"]
