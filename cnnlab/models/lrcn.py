"""LRCN: Donahue, Hendricks, Guadarrama, Rohrbach, Venugopalan, Saenko & Darrell, "Long-term Recurrent
Convolutional Networks for Visual Recognition and Description", CVPR 2015 (arXiv 1411.4389).

Activity recognition, §4 and Figure 3 (left) of the paper: a 2D CNN reads each frame on its own (the
same weights for every frame), its features go in frame order into an LSTM, the LSTM's state at each
step is classified, and the clip's prediction is the average of the per-step predictions ("the final
prediction ... averaging across all frames"). The paper's frame CNN is CaffeNet with fc6 features
into an LSTM of 256 units. ``lrcn_small`` keeps the design with a small frame CNN (three 3 x 3 conv
stages 16-32-64, batch normalisation, max pooling, the last map flattened so the LSTM sees where the
item is) and an LSTM of 128 units. ``forward`` answers the log of the averaged probabilities, so that
the cross-entropy of the classifier tasks is the negative log-likelihood of the averaged prediction.
"""

from __future__ import annotations

import torch
from torch import nn

from ..backbone import Backbone
from ..errors import DataError
from ..registry import register_model


class LRCN(Backbone):
    """``frame_features`` (2D, per frame) -> ``lstm`` (over time) -> ``classifier`` per step -> mean of softmaxes."""

    def __init__(self, *, num_classes: int = 9, in_channels: int = 1, widths: tuple[int, ...] = (16, 32, 64),
                 embed: int = 256, hidden: int = 128, image_size: int = 32, frames: int = 16):
        super().__init__()
        layers: list[nn.Module] = []
        cin = in_channels
        for width in widths:  # N*T x w x S/2^i x S/2^i
            layers += [nn.Conv2d(cin, width, 3, padding=1, bias=False), nn.BatchNorm2d(width), nn.ReLU(inplace=True),
                       nn.MaxPool2d(2)]
            cin = width
        side = image_size // 2 ** len(widths)
        if side < 1:
            raise DataError(f"frames of {image_size} pixels are too small for {len(widths)} poolings")
        self.features = nn.Sequential(*layers, nn.Flatten(), nn.Linear(cin * side * side, embed), nn.ReLU(inplace=True))
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.classifier = nn.Sequential(nn.Dropout(0.3), nn.Linear(hidden, num_classes))
        self.num_classes = num_classes
        self.frames = frames
        self.feature_info = []  # per-step vectors, not a pyramid of maps

    head_modules = ("classifier",)

    def trunk(self) -> list[tuple[str, nn.Module]]:
        return [("features", self.features), ("lstm", self.lstm)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            raise DataError(f"a video model takes clips N x C x T x H x W, got {tuple(x.shape)}")
        n, c, t, h, w = x.shape
        frames = x.transpose(1, 2).reshape(n * t, c, h, w)  # every frame on its own: N*T x C x H x W
        steps = self.features(frames).view(n, t, -1)  # N x T x embed, in frame order
        out, _ = self.lstm(steps)
        return out  # N x T x hidden

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        if pre_logits:
            return x.mean(1)
        probs = self.classifier(x).softmax(-1).mean(1)  # the average of the per-step predictions: N x K
        return probs.clamp_min(1e-12).log()


@register_model("lrcn_small", family="LRCN", paper="Donahue et al., CVPR 2015 (arXiv 1411.4389)", year=2015,
                input_size=(1, 16, 32, 32), num_classes=9, task="video", tags=("video", "recurrent"),
                description="per-frame CNN (16-32-64) -> LSTM 128 -> average of per-step predictions")
def lrcn_small(*, num_classes: int = 9, in_channels: int = 1, image_size: int = 32, frames: int = 16) -> LRCN:
    """Three 3 x 3 conv stages per frame, FC 256, an LSTM of 128 units, per-step classes averaged."""
    return LRCN(num_classes=num_classes, in_channels=in_channels, image_size=image_size, frames=frames)
