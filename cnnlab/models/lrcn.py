"""LRCN: Donahue, Hendricks, Guadarrama, Rohrbach, Venugopalan, Saenko & Darrell, "Long-term Recurrent
Convolutional Networks for Visual Recognition and Description", CVPR 2015 (arXiv 1411.4389).

Activity recognition, §4 and Figure 3 (left) of the paper: a 2D CNN reads each frame on its own (the
same weights for every frame), its features go in frame order into an LSTM, the LSTM's state at each
step is classified, and the clip's prediction is the average of the per-step predictions ("the final
prediction ... averaging across all frames"). The paper's frame CNN is CaffeNet (AlexNet, one
tower's pooling before normalisation) with its fc6 features (4096) into an LSTM of 256 units: ``lrcn``
is that, with the zoo's paper AlexNet (:mod:`cnnlab.models.alexnet`) up to fc6 on 227 x 227 frames.
``lrcn_small`` keeps the design with a small frame CNN (three 3 x 3 conv
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
                 embed: int = 256, hidden: int = 128, image_size: int = 32, frames: int = 16,
                 encoder: nn.Module | None = None, frame_size: int | None = None):
        super().__init__()
        # the frame side the layers are sized for: an ``encoder``'s, or the small CNN's flattened map's
        self.frame_size = frame_size if encoder is not None else image_size
        self._build(encoder, in_channels, widths, embed, image_size)
        self.lstm = nn.LSTM(embed, hidden, batch_first=True)
        self.classifier = nn.Sequential(nn.Dropout(0.3 if encoder is None else 0.5), nn.Linear(hidden, num_classes))
        self.num_classes = num_classes
        self.frames = frames
        self.feature_info = []  # per-step vectors, not a pyramid of maps

    def _build(self, encoder: nn.Module | None, in_channels: int, widths: tuple[int, ...], embed: int,
               image_size: int) -> None:
        """``features``: ``encoder`` (one frame -> ``embed`` values), or the small frame CNN."""
        if encoder is not None:
            self.features = encoder
            return
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

    head_modules = ("classifier",)

    def trunk(self) -> list[tuple[str, nn.Module]]:
        return [("features", self.features), ("lstm", self.lstm)]

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 5:
            raise DataError(f"a video model takes clips N x C x T x H x W, got {tuple(x.shape)}")
        n, c, t, h, w = x.shape
        if self.frame_size is not None and (h, w) != (self.frame_size, self.frame_size):
            raise DataError(f"this LRCN's frame CNN takes {self.frame_size} x {self.frame_size} frames, got {h} x {w} "
                            "(lrcn_small takes small clips)")
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


@register_model("lrcn", family="LRCN", paper="Donahue et al., CVPR 2015 (arXiv 1411.4389)", year=2015,
                input_size=(3, 16, 227, 227), num_classes=101, task="video", tags=("video", "recurrent"),
                description="CaffeNet (paper AlexNet) fc6 per frame -> LSTM 256 -> average of per-step predictions")
def lrcn(*, num_classes: int = 101, in_channels: int = 3, frames: int = 16) -> LRCN:
    """§4 of the paper: each 227 x 227 frame through AlexNet's five convolutions and fc6 (4096, ReLU,
    dropout), an LSTM of 256 units, per-step classes averaged (101 for UCF101)."""
    from ..models.alexnet import PaperAlexNet
    from ..specs.alexnet import ALEXNET_CONVS, ALEXNET_FC

    caffenet = PaperAlexNet(ALEXNET_CONVS, num_classes=1, in_channels=in_channels, fc=ALEXNET_FC)
    head = caffenet.classifier
    encoder = nn.Sequential(caffenet.features, head.flatten, head.fc6, head.relu6, head.drop6)  # N*T x 4096
    return LRCN(num_classes=num_classes, in_channels=in_channels, embed=4096, hidden=256, frames=frames,
                encoder=encoder, frame_size=227)
