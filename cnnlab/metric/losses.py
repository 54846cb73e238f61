"""The losses of metric learning, on L2-normalised embeddings (N x D) and integer labels (N).

=============  =================================================================================
contrastive    Hadsell, Chopra and LeCun 2006, eq. 4: (1-Y) D^2 / 2 + Y max(0, m - D)^2 / 2 over
               every pair of the batch (Y = 1 for a dissimilar pair)
triplet_hard   Schroff et al. 2015 (FaceNet) eq. 1, with the batch-hard mining of Hermans et al.
               2017: each anchor with its farthest positive and nearest negative
triplet_semi   FaceNet Sec. 3.2: every positive pair with a semi-hard negative (farther than the
               positive, within the margin: d_ap < d_an < d_ap + m), the hardest such one
arcface        Deng et al. 2019 eq. 3: s cos(theta_y + m) for the true class
cosface        Wang et al. 2018 (CosFace / LMCL) eq. 4: s (cos(theta_y) - m) for the true class
softmax        a plain linear classifier over the training classes (the baseline)
=============  =================================================================================
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..errors import ConfigError

LOSSES = ("contrastive", "triplet_hard", "triplet_semi", "arcface", "cosface", "softmax")
CLASSIFYING = ("arcface", "cosface", "softmax")
# Margins (and scales) of the papers: FaceNet alpha 0.2 (on squared distances of unit vectors),
# ArcFace m 0.5 with s 64, CosFace m 0.35 with s 64; a small-data default scale of 30.
DEFAULT_MARGIN = {"contrastive": 1.0, "triplet_hard": 0.2, "triplet_semi": 0.2, "arcface": 0.5, "cosface": 0.35,
                  "softmax": 0.0}


def pairwise_distances(embeddings: torch.Tensor, squared: bool = False) -> torch.Tensor:
    """Euclidean distances between the rows, N x N (squared if asked), with an exact zero diagonal."""
    gram = embeddings @ embeddings.T
    norms = gram.diagonal()
    d2 = (norms[:, None] + norms[None, :] - 2 * gram).clamp_min(0)
    d2 = d2 * (1 - torch.eye(len(embeddings), device=embeddings.device, dtype=d2.dtype))
    if squared:
        return d2
    # sqrt has an infinite gradient at 0: take it on a shifted value where the distance is 0
    zero = d2 == 0
    return torch.sqrt(d2 + zero.to(d2.dtype) * 1e-16) * (~zero).to(d2.dtype)


def _masks(labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    same = labels[:, None] == labels[None, :]
    eye = torch.eye(len(labels), dtype=torch.bool, device=labels.device)
    return same & ~eye, ~same  # positives (not oneself), negatives


def contrastive_loss(embeddings: torch.Tensor, labels: torch.Tensor, margin: float = 1.0) -> torch.Tensor:
    """Mean over all pairs i < j of Hadsell et al.'s loss (eq. 4)."""
    d = pairwise_distances(embeddings)
    positive, negative = _masks(labels)
    upper = torch.triu(torch.ones_like(positive), diagonal=1)
    per_pair = positive * d.pow(2) / 2 + negative * F.relu(margin - d).pow(2) / 2
    return (per_pair * upper).sum() / upper.sum().clamp_min(1)


def triplet_batch_hard(embeddings: torch.Tensor, labels: torch.Tensor, margin: float = 0.2) -> torch.Tensor:
    """Mean over anchors with a positive and a negative of max(0, d(a, hardest p)^2 - d(a, hardest n)^2 + m)."""
    d = pairwise_distances(embeddings, squared=True)
    positive, negative = _masks(labels)
    hardest_positive = (d * positive).max(1).values
    hardest_negative = d.masked_fill(~negative, float("inf")).min(1).values
    valid = positive.any(1) & negative.any(1)
    losses = F.relu(hardest_positive - hardest_negative + margin)
    return losses[valid].mean() if valid.any() else embeddings.sum() * 0


def triplet_semi_hard(embeddings: torch.Tensor, labels: torch.Tensor, margin: float = 0.2) -> torch.Tensor:
    """FaceNet's semi-hard triplets: for each (anchor, positive), the nearest negative farther than the positive;
    where there is none, the farthest negative (the choice of TensorFlow's triplet_semihard_loss). Mean over the pairs."""
    d = pairwise_distances(embeddings, squared=True)
    positive, negative = _masks(labels)
    a, p = positive.nonzero(as_tuple=True)
    if len(a) == 0:
        return embeddings.sum() * 0
    d_ap = d[a, p]  # P pairs
    d_an = d[a]  # P x N
    neg = negative[a]
    semi = neg & (d_an > d_ap[:, None])
    nearest_semi = d_an.masked_fill(~semi, float("inf")).min(1).values
    farthest = d_an.masked_fill(~neg, float("-inf")).max(1).values
    chosen = torch.where(semi.any(1), nearest_semi, farthest)
    valid = neg.any(1)
    losses = F.relu(d_ap - chosen + margin)
    return losses[valid].mean() if valid.any() else embeddings.sum() * 0


def margin_logits(embeddings: torch.Tensor, weights: torch.Tensor, labels: torch.Tensor, kind: str,
                  margin: float, scale: float) -> torch.Tensor:
    """s cos(theta + m) (ArcFace) or s (cos(theta) - m) (CosFace) for the true class, s cos(theta) elsewhere."""
    cosine = F.normalize(embeddings, dim=1) @ F.normalize(weights, dim=1).T  # N x classes
    true = F.one_hot(labels, weights.shape[0]).bool()
    if kind == "arcface":
        theta = torch.acos(cosine.clamp(-1 + 1e-7, 1 - 1e-7))
        # beyond pi - m, cos(theta + m) would rise again; fall back there to the CosFace-like
        # cos(theta) - m sin(m), which keeps the true logit falling as theta grows
        target = torch.where(theta + margin < torch.pi, torch.cos(theta + margin),
                             cosine - margin * torch.sin(torch.tensor(margin)))
    elif kind == "cosface":
        target = cosine - margin
    else:
        raise ConfigError(f"no margin of kind '{kind}'")
    return scale * torch.where(true, target, cosine)


def metric_loss(kind: str, embeddings: torch.Tensor, labels: torch.Tensor, *, margin: float | None = None,
                scale: float = 30.0, weights: torch.Tensor | None = None,
                bias: torch.Tensor | None = None) -> torch.Tensor:
    """The loss ``kind`` (one of :data:`LOSSES`); ``weights`` (classes x D) for the classifying ones."""
    if kind not in LOSSES:
        raise ConfigError(f"metric loss must be one of {', '.join(LOSSES)}, not '{kind}'")
    m = DEFAULT_MARGIN[kind] if margin is None or margin < 0 else margin
    if kind == "contrastive":
        return contrastive_loss(embeddings, labels, m)
    if kind == "triplet_hard":
        return triplet_batch_hard(embeddings, labels, m)
    if kind == "triplet_semi":
        return triplet_semi_hard(embeddings, labels, m)
    if weights is None:
        raise ConfigError(f"the {kind} loss needs class weights")
    if kind == "softmax":
        return F.cross_entropy(embeddings @ weights.T + (0 if bias is None else bias), labels)
    return F.cross_entropy(margin_logits(embeddings, weights, labels, kind, m, scale), labels)
