"""The keypoint prior: one learned heatmap per keypoint, the same for every crop (a baseline, no paper).

A top-down crop is centred on its person, so a fixed skeleton already places many keypoints near their
place; this model learns that skeleton and nothing else. Its only parameters are K heatmaps at the
output stride of SimpleBaseline and the hourglass (4), and since the heatmap loss (the mean squared
error to Gaussian targets) is quadratic in them, training converges to the mean target heatmap of the
training crops, whose arg-max is the most common place of each keypoint. A pose model has to beat it to
show that it reads the image: ``docs/keypoints.md`` compares both with it.
"""

from __future__ import annotations

import torch
from torch import nn

from ..errors import ConfigError
from ..registry import register_model

STRIDE = 4  # the keypoint models' heatmaps are a quarter of the input side


class KeypointPrior(nn.Module):
    """K learned heatmaps of (side / 4) x (side / 4), returned for every image of the batch."""

    def __init__(self, num_keypoints: int, side: int):
        super().__init__()
        if side % STRIDE:
            raise ConfigError(f"keypoint_prior needs a crop side divisible by {STRIDE}, got {side}")
        self.heatmaps = nn.Parameter(torch.zeros(num_keypoints, side // STRIDE, side // STRIDE))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # N x K x side/4 x side/4: the image is not read, only its batch size; the zero term keeps the
        # input in the graph, so that an exported file still takes the image
        return self.heatmaps.unsqueeze(0).expand(x.shape[0], -1, -1, -1) + 0 * x.sum()


@register_model("keypoint_prior", family="KeypointPrior", paper="baseline: the mean skeleton of the training crops",
                year=2018, input_size=(3, 64, 64), num_classes=17, task="keypoints",
                description="keypoint baseline: one learned heatmap per keypoint, the same for every crop")
def keypoint_prior(*, num_classes: int = 17, in_channels: int = 3, image_size: int = 64) -> KeypointPrior:
    # num_classes: the keypoints (one heatmap each); in_channels is not read (the image is ignored)
    return KeypointPrior(num_classes, image_size)
