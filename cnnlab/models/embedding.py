"""Embedding networks for metric learning: any zoo backbone, pooled, projected and L2-normalised.

FaceNet (Schroff et al. 2015, Sec. 3 and Fig. 2) is the pattern: a deep network, then an L2
normalisation, so that embeddings lie on the unit hypersphere and squared distance runs from 0 to 4.
The backbone is a classifier of the zoo, used through the backbone contract
(``forward_features`` -> ``forward_head(pre_logits=True)``: its pooled features, N x F); a linear
projection takes them to the embedding dimension (FaceNet: 128). For the losses that classify during
training (softmax, ArcFace, CosFace) the network also holds one weight vector per training class;
they are not used to embed.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..registry import model_arguments, model_info, register_model


class EmbeddingNet(nn.Module):
    """backbone pooled features (N x F) -> linear (N x D) -> L2 normalisation (N x D, unit rows)."""

    def __init__(self, backbone: nn.Module, features: int, embedding_dim: int, num_classes: int):
        super().__init__()
        self.backbone = backbone
        self.projection = nn.Linear(features, embedding_dim)
        # One weight vector per training class, for the classifying losses (softmax / ArcFace / CosFace).
        self.class_weights = nn.Parameter(torch.randn(num_classes, embedding_dim) / embedding_dim ** 0.5)
        self.class_bias = nn.Parameter(torch.zeros(num_classes))
        self.embedding_dim = embedding_dim

    def pooled(self, x: torch.Tensor) -> torch.Tensor:
        """The backbone's pooled features, N x F."""
        return self.backbone.forward_head(self.backbone.forward_features(x), pre_logits=True).flatten(1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.projection(self.pooled(x)), dim=1)  # N x D, each row of norm 1


def _feature_width(backbone: nn.Module, in_channels: int, image_size: int) -> int:
    with torch.no_grad():  # on the meta device: the shape only, nothing computed
        probe = backbone.to("meta").eval()
        width = probe.forward_head(probe.forward_features(torch.zeros(1, in_channels, image_size, image_size,
                                                                      device="meta")), pre_logits=True)
    return int(width.flatten(1).shape[1])


@register_model("embedding_net", family="embedding", paper="Schroff et al., FaceNet, CVPR 2015 (Fig. 2)", year=2015,
                input_size=(1, 28, 28), num_classes=5, task="metric",
                description="any zoo backbone's pooled features -> projection -> L2-normalised embedding")
def embedding_net(*, backbone: str = "resnet20", embedding_dim: int = 64, num_classes: int = 5, in_channels: int = 1,
                  image_size: int = 28) -> EmbeddingNet:
    """Embedding network on ``backbone`` (a registered classifier) with ``embedding_dim`` outputs."""
    info = model_info(backbone)
    if info.task != "classify":
        raise ConfigError(f"backbone '{backbone}' is a {info.task} model; choose a classifier (cnnlab list)")
    if embedding_dim < 2:
        raise ConfigError(f"embedding_dim must be at least 2, got {embedding_dim}")
    args = model_arguments(backbone, input_size=(in_channels, image_size, image_size), num_classes=num_classes)
    trunk = info.builder(**args)
    if not hasattr(trunk, "forward_head"):
        raise ConfigError(f"backbone '{backbone}' has no forward_head(pre_logits=True) to pool features with")
    width = _feature_width(info.builder(**args), in_channels, image_size)
    return EmbeddingNet(trunk, width, embedding_dim, num_classes)
