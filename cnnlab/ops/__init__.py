"""Operations on boxes and regions that detection networks share (pure torch, vectorised)."""

from .boxes import (Anchors, batched_nms, box_area, box_iou, decode_boxes, encode_boxes, generalized_box_iou,
                    make_anchors, nms, roi_align, roi_pool)

__all__ = ["Anchors", "batched_nms", "box_area", "box_iou", "decode_boxes", "encode_boxes", "generalized_box_iou",
           "make_anchors", "nms", "roi_align", "roi_pool"]
