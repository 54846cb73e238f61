"""R-CNN (Girshick, Donahue, Darrell & Malik 2014, "Rich feature hierarchies for accurate object detection
and semantic segmentation", CVPR; Figure 1, §2).

Every region is its own image: selective search proposes regions (§2.1, "fast mode";
:mod:`cnnlab.detection.selective_search`), each is warped, with context around it, to the CNN's fixed
input, a classification network computes its features, and three learners use them (§2.3, Appendix C;
:mod:`cnnlab.detection.rcnn_losses`):

===================  ===============================================================================
fine-tuning          the CNN with a K + 1-way softmax on warped proposals: IoU >= 0.5 with an object is
                     that class, the rest background, 32 foreground of 128 per minibatch (25 %)
per-class SVMs       linear, hinge loss, on the detached features: ground truth positive, IoU < 0.3
                     negative; their margins are the detection scores
box regression       class-specific linear offsets on the detached features, proposals with IoU >= 0.6
test time            ~130 proposals per scene each through the CNN, SVM scores, regressed boxes,
                     greedy NMS per class
===================  ===============================================================================

The paper's steps run one after the other; here they are three terms of one loss on each step, the SVMs
and the regressor seeing features cut from the graph, so that they fit the network as it is without
changing it, as in the paper. **Adapted to the scenes**: the paper warps to 227 x 227 with 16 pixels of
context for AlexNet; here crops are 32 x 32 with the same share of context (the box fills 195 / 227 of
the crop) for a CIFAR-style ResNet-20 (any zoo classifier: ``backbone``); 32 RoIs per image (the paper's
minibatch of 128 over several images); NMS at IoU 0.3.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..detection.heads import HeadSettings, sample_rois
from ..detection.rcnn_losses import hinge_loss, regression_loss, svm_targets
from ..detection.selective_search import ProposalSource
from ..ops import batched_nms, roi_align
from ..ops.boxes import clip_boxes, decode_boxes
from ..registry import create_model, register_model

_PAPER = "Girshick et al. 2014, Rich feature hierarchies for accurate object detection and semantic segmentation"
CONTEXT = 227 / 195  # the warped box with 16 pixels of context on each side of a 227-pixel crop
NMS_IOU = 0.3
DETECTIONS = 100
SVM_L2 = 1e-3
REGRESSION_L2 = 1e-3


def warp_regions(images: torch.Tensor, rois: list[torch.Tensor], size: int) -> torch.Tensor:
    """R x C x size x size: each box, enlarged by the context factor, warped (anisotropically) to a square."""
    grown = []
    for r in rois:
        c = (r[:, :2] + r[:, 2:]) / 2
        half = (r[:, 2:] - r[:, :2]) / 2 * CONTEXT
        grown.append(torch.cat([c - half, c + half], 1))
    return roi_align(images, grown, size, spatial_scale=1.0, sampling_ratio=2, aligned=True)


class RCNN(nn.Module):
    """Selective search -> warped crops -> CNN -> softmax (fine-tuning), SVMs (scores) and box regression.

    ``forward(images, targets)`` in training returns the losses ``cls`` (fine-tuning), ``svm`` and ``box``;
    in evaluation one dict per image with ``boxes``, ``scores`` (the SVM margin through a sigmoid, so
    that the boundary is 0.5), ``labels`` and the ``proposals``.
    """

    def __init__(self, cnn: nn.Module, features: int, num_classes: int, *, crop: int = 32, scale: float = 50.0,
                 min_size: int = 10, rois_per_image: int = 32):
        super().__init__()
        self.cnn, self.crop, self.num_classes = cnn, int(crop), int(num_classes)
        self.softmax = nn.Linear(features, num_classes + 1)  # fine-tuning's K + 1-way classifier
        self.svm = nn.Linear(features, num_classes)  # one linear SVM per class
        self.regressor = nn.Linear(features, 4 * num_classes)  # class-specific box offsets
        nn.init.zeros_(self.regressor.weight)
        nn.init.zeros_(self.regressor.bias)
        self.proposals = ProposalSource(scale=scale, min_size=min_size)
        self.sampling = HeadSettings(rois_per_image=rois_per_image, positive_fraction=0.25, foreground_iou=0.5)
        self.generator: torch.Generator | None = None

    def region_features(self, images: torch.Tensor, rois: list[torch.Tensor]) -> torch.Tensor:
        crops = warp_regions(images, rois, self.crop)  # R x C x 32 x 32
        return self.cnn.forward_head(self.cnn.forward_features(crops), pre_logits=True).flatten(1)  # R x D

    def forward(self, images: torch.Tensor, targets=None):
        proposals = self.proposals(images, remember=self.training)
        if self.training:
            return self._losses(images, proposals, targets)
        return self._detect(images, proposals)

    def _losses(self, images, proposals, targets) -> dict[str, torch.Tensor]:
        rois, labels, _ = sample_rois(proposals, targets, self.sampling, self.generator)
        # the ground-truth boxes themselves: the SVMs' only positives
        rois = [torch.cat([r, t.boxes[~t.iscrowd]]) for r, t in zip(rois, targets)]
        feats = self.region_features(images, rois)
        label = torch.cat([torch.cat([lab, t.labels[~t.iscrowd] + 1]) for lab, t in zip(labels, targets)])
        cls = F.cross_entropy(self.softmax(feats), label)
        fixed = feats.detach()
        svm_t, start, box = [], 0, []
        deltas = self.regressor(fixed)
        for r, lab, t in zip(rois, labels, targets):
            n = len(r)
            is_truth = torch.arange(n, device=r.device) >= len(lab)
            svm_t.append(svm_targets(r, is_truth, t.labels[~t.iscrowd], t.boxes, t.labels, self.num_classes))
            box.append(regression_loss(deltas[start:start + n], r, t.boxes, t.labels, self.regressor.weight, 0.0))
            start += n
        svm = hinge_loss(self.svm(fixed), torch.cat(svm_t), self.svm.weight, SVM_L2)
        ridge = torch.stack(box).mean() + REGRESSION_L2 * self.regressor.weight.pow(2).sum()
        return {"cls": cls, "svm": svm, "box": ridge}

    def _detect(self, images, proposals) -> list[dict[str, torch.Tensor]]:
        size = (int(images.shape[-2]), int(images.shape[-1]))
        out = []
        for i, props in enumerate(proposals):
            if len(props) == 0:
                empty = props.new_zeros(0)
                out.append({"boxes": props.new_zeros(0, 4), "scores": empty, "labels": empty.long(), "proposals": props})
                continue
            feats = self.region_features(images[i:i + 1], [props])
            scores = torch.sigmoid(self.svm(feats))  # R x K
            boxes = clip_boxes(decode_boxes(self.regressor(feats), props).reshape(len(props), -1, 4), *size)  # R x K x 4
            roi, label = torch.nonzero(scores > 0.05, as_tuple=True)
            b, s = boxes[roi, label], scores[roi, label]
            ok = ((b[:, 2] - b[:, 0]) >= 1) & ((b[:, 3] - b[:, 1]) >= 1)
            b, s, label = b[ok], s[ok], label[ok]
            keep = batched_nms(b, s, label, NMS_IOU)[:DETECTIONS]
            out.append({"boxes": b[keep], "scores": s[keep], "labels": label[keep], "proposals": props})
        return out


@register_model("rcnn", family="R-CNN", paper=_PAPER, year=2014, input_size=(3, 128, 128), num_classes=10,
                task="detect", description="R-CNN: selective search, warped 32 x 32 crops through a ResNet-20, "
                                           "per-class linear SVMs (hinge) and box regression")
def rcnn(*, num_classes: int = 10, in_channels: int = 3, backbone: str = "resnet20", crop: int = 32) -> RCNN:
    cnn = create_model(backbone, num_classes=num_classes + 1, input_size=(in_channels, crop, crop))
    with torch.no_grad():
        features = cnn.forward_head(cnn.forward_features(torch.zeros(1, in_channels, crop, crop)),
                                    pre_logits=True).flatten(1).shape[1]
    return RCNN(cnn, int(features), num_classes, crop=crop)
