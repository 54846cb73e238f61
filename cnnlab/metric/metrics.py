"""Figures of retrieval, verification and identification on embeddings of classes never trained on.

Retrieval (Musgrave, Belongie and Lim 2020, "A Metric Learning Reality Check", Sec. 3.2): every
embedding queries all the others (leave-one-out).

* precision@1: the nearest neighbour has the query's class;
* R-precision: with R the number of other examples of the query's class, the fraction of its R
  nearest neighbours that share its class;
* MAP@R: mean over the query of (1/R) sum_{i <= R} P(i) [neighbour i is of the class], P(i) the
  precision among the first i neighbours;
* Recall@K (Oh Song et al. 2016): at least one of the K nearest shares the class.

Verification: every pair of distinct examples, positive when of one class, scored by cosine
similarity (the embeddings are unit vectors); ROC, AUC, the equal error rate and the true accept
rate at a false accept rate of 1e-3. Identification: a gallery of the first ``gallery_per_class``
examples of each class, the rest probes; top-1 and top-5 by the class of the nearest gallery items.
"""

from __future__ import annotations

from typing import Any

import torch


def _neighbours(embeddings: torch.Tensor, k: int, chunk: int = 2048) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices and cosine similarities of each row's ``k`` most similar other rows, N x k, best first."""
    n = len(embeddings)
    k = min(k, n - 1)
    index, sims = [], []
    for start in range(0, n, chunk):
        s = embeddings[start:start + chunk] @ embeddings.T  # chunk x N
        rows = torch.arange(start, min(n, start + chunk))
        s[torch.arange(len(rows)), rows] = float("-inf")  # not oneself
        top = s.topk(k, dim=1)
        index.append(top.indices)
        sims.append(top.values)
    return torch.cat(index), torch.cat(sims)


def retrieval_metrics(embeddings: torch.Tensor, labels: torch.Tensor, ks: tuple[int, ...] = (1, 2, 4, 8)) -> dict[str, float]:
    """precision@1, R-precision, MAP@R and Recall@K of leave-one-out retrieval by cosine similarity."""
    embeddings = embeddings.float()
    counts = torch.bincount(labels)
    r = counts[labels] - 1  # N: how many others share each query's class
    max_r = int(r.max())
    index, _ = _neighbours(embeddings, max(max_r, max(ks)))
    hit = (labels[index] == labels[:, None]).float()  # N x k
    positions = torch.arange(1, hit.shape[1] + 1, dtype=torch.float32)
    within = positions[None, :] <= r[:, None].float()  # the first R neighbours
    precision_at_i = hit.cumsum(1) / positions
    valid = r > 0
    rf = r.clamp_min(1).float()
    r_precision = (hit * within).sum(1) / rf
    map_r = (precision_at_i * hit * within).sum(1) / rf
    out = {"precision_at_1": float(hit[valid, 0].mean()), "r_precision": float(r_precision[valid].mean()),
           "map_at_r": float(map_r[valid].mean())}
    for k in ks:
        out[f"recall_at_{k}"] = float(hit[valid, :k].amax(1).mean())
    return out


def pair_scores(embeddings: torch.Tensor, labels: torch.Tensor, max_pairs: int = 2_000_000,
                generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Cosine similarity and same-class flag of every pair i < j (a seeded sample beyond ``max_pairs``)."""
    n = len(embeddings)
    i, j = torch.triu_indices(n, n, offset=1)
    if len(i) > max_pairs:
        pick = torch.randperm(len(i), generator=generator or torch.Generator().manual_seed(0))[:max_pairs]
        i, j = i[pick], j[pick]
    scores = (embeddings[i].float() * embeddings[j].float()).sum(1)
    return scores, labels[i] == labels[j]


def roc(scores: torch.Tensor, same: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """False and true positive rates at every threshold (accepting score >= threshold), highest threshold
    first, starting from (0, 0): the points of scikit-learn's ``roc_curve(drop_intermediate=False)``."""
    order = torch.argsort(scores.double(), descending=True, stable=True)
    s, y = scores.double()[order], same[order].double()
    last = torch.ones(len(s), dtype=torch.bool)
    last[:-1] = s[1:] != s[:-1]  # the last of each run of equal scores: one point per distinct threshold
    tp, fp = y.cumsum(0)[last], (1 - y).cumsum(0)[last]
    tpr = torch.cat([torch.zeros(1, dtype=torch.float64), tp / max(1.0, float(y.sum()))])
    fpr = torch.cat([torch.zeros(1, dtype=torch.float64), fp / max(1.0, float((1 - y).sum()))])
    thresholds = torch.cat([torch.tensor([float("inf")], dtype=torch.float64), s[last]])
    return fpr, tpr, thresholds


def verification_metrics(scores: torch.Tensor, same: torch.Tensor, far: float = 1e-3) -> dict[str, Any]:
    """AUC (trapezoids under the ROC), EER (where FAR = 1 - TAR, interpolated), TAR at FAR = ``far``
    (the highest TAR at a threshold whose FAR is at most ``far``), with the thresholds of the last two."""
    fpr, tpr, thresholds = roc(scores, same)
    auc = float(torch.trapezoid(tpr, fpr))
    fnr = 1 - tpr
    i = int(torch.nonzero(fnr <= fpr).flatten()[0])  # the first threshold where misses fall below false accepts
    if i == 0:
        eer, eer_threshold = 0.0, float(thresholds[1] if len(thresholds) > 1 else 0.0)
    else:  # the two curves cross between points i-1 and i: interpolate
        a0, a1, b0, b1 = float(fpr[i - 1]), float(fpr[i]), float(fnr[i - 1]), float(fnr[i])
        t = (b0 - a0) / ((a1 - a0) - (b1 - b0)) if (a1 - a0) != (b1 - b0) else 0.0
        eer = a0 + t * (a1 - a0)
        eer_threshold = float(thresholds[i])
    allowed = fpr <= far
    j = int(torch.nonzero(allowed).flatten()[-1])
    return {"auc": auc, "eer": eer, "eer_threshold": eer_threshold, "tar_at_far": float(tpr[j]),
            "far": far, "far_threshold": float(thresholds[j]), "pairs": int(len(scores)),
            "positive_pairs": int(same.sum())}


def identification_metrics(embeddings: torch.Tensor, labels: torch.Tensor, gallery_per_class: int = 5) -> dict[str, float]:
    """Top-1 / top-5 identification: the first ``gallery_per_class`` of each class form the gallery,
    the others probe it; a probe is identified at rank k when its class is among the k gallery classes
    most similar to it (a class scored by its most similar gallery item). With 5 or fewer classes
    top-5 is 1 by construction."""
    gallery = torch.zeros(len(labels), dtype=torch.bool)
    for c in torch.unique(labels):
        gallery[(labels == c).nonzero().flatten()[:gallery_per_class]] = True
    g, p = embeddings[gallery].float(), embeddings[~gallery].float()
    gl, pl = labels[gallery], labels[~gallery]
    if len(p) == 0:
        return {"top1": float("nan"), "top5": float("nan"), "probes": 0, "gallery": int(gallery.sum())}
    # a class's score is its best gallery item's similarity; rank the classes by it
    classes = torch.unique(gl)
    sims = p @ g.T  # probes x gallery
    per_class = torch.stack([sims[:, gl == c].amax(1) for c in classes], 1)  # probes x classes
    ranked = classes[per_class.argsort(1, descending=True)]
    hit = ranked == pl[:, None]
    return {"top1": float(hit[:, :1].any(1).float().mean()), "top5": float(hit[:, :5].any(1).float().mean()),
            "probes": int(len(p)), "gallery": int(gallery.sum())}
