"""The metric-learning losses against hand computations (loops over pairs and triplets, written out)
and against pytorch-metric-learning's losses and miners; the P x K sampler's batches."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from cnnlab.errors import ConfigError
from cnnlab.metric.losses import (contrastive_loss, margin_logits, metric_loss, pairwise_distances,
                                  triplet_batch_hard, triplet_semi_hard)
from cnnlab.metric.sampler import pk_order


def batch(n_classes: int = 4, per_class: int = 3, dim: int = 8, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(n_classes).repeat_interleave(per_class)
    centres = torch.randn(n_classes, dim, generator=g)
    x = F.normalize(centres[labels] * 0.6 + torch.randn(len(labels), dim, generator=g), dim=1)
    return x.double(), labels


def test_pairwise_distances_are_euclidean():
    x, _ = batch()
    want = torch.cdist(x, x)
    assert torch.allclose(pairwise_distances(x), want, atol=1e-7)
    assert torch.allclose(pairwise_distances(x, squared=True), want ** 2, atol=1e-7)
    # the gradient at a zero distance is finite (a duplicated row)
    y = torch.cat([x[:1], x]).requires_grad_()
    pairwise_distances(y).sum().backward()
    assert torch.isfinite(y.grad).all()


def test_contrastive_is_hadsell_eq4_over_all_pairs():
    x, labels = batch()
    m = 1.0
    terms = []
    for i in range(len(x)):
        for j in range(i + 1, len(x)):
            d = float((x[i] - x[j]).norm())
            terms.append(d * d / 2 if labels[i] == labels[j] else max(0.0, m - d) ** 2 / 2)
    assert float(contrastive_loss(x, labels, m)) == pytest.approx(sum(terms) / len(terms), rel=1e-9)


def test_batch_hard_by_hand_and_against_pytorch_metric_learning():
    x, labels = batch()
    margin = 0.2
    per_anchor = []
    for a in range(len(x)):
        d = [float(((x[a] - x[j]) ** 2).sum()) for j in range(len(x))]
        hp = max(d[j] for j in range(len(x)) if j != a and labels[j] == labels[a])
        hn = min(d[j] for j in range(len(x)) if labels[j] != labels[a])
        per_anchor.append(max(0.0, hp - hn + margin))
    ours = float(triplet_batch_hard(x, labels, margin))
    assert ours == pytest.approx(sum(per_anchor) / len(per_anchor), rel=1e-9)
    assert ours > 0  # the batch is not trivially separated, so the check above is not 0 == 0

    pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning import distances, losses, miners, reducers

    squared = distances.LpDistance(power=2)
    loss = losses.TripletMarginLoss(margin=margin, distance=squared, reducer=reducers.MeanReducer())
    theirs = loss(x.float(), labels, miners.BatchHardMiner(distance=squared)(x.float(), labels))
    assert float(theirs) == pytest.approx(ours, abs=1e-5)


def test_semi_hard_is_facenets_choice_of_negative():
    x, labels = batch(seed=1)
    margin = 0.2
    losses = []
    for a in range(len(x)):
        d = [float(((x[a] - x[j]) ** 2).sum()) for j in range(len(x))]
        negatives = [d[j] for j in range(len(x)) if labels[j] != labels[a]]
        for p in range(len(x)):
            if p == a or labels[p] != labels[a]:
                continue
            farther = [v for v in negatives if v > d[p]]
            chosen = min(farther) if farther else max(negatives)  # semi-hard, else the farthest negative
            losses.append(max(0.0, d[p] - chosen + margin))
    assert float(triplet_semi_hard(x, labels, margin)) == pytest.approx(sum(losses) / len(losses), rel=1e-9)


def test_triplet_losses_vanish_on_separated_classes():
    labels = torch.arange(3).repeat_interleave(4)
    x = F.one_hot(labels, 3).double()  # one point per class: positives at 0, negatives at squared distance 2
    assert float(triplet_batch_hard(x, labels, 0.2)) == 0.0
    assert float(triplet_semi_hard(x, labels, 0.2)) == 0.0
    assert float(contrastive_loss(x, labels, 1.0)) == 0.0  # every negative farther than the margin


@pytest.mark.parametrize("kind, margin", [("arcface", 0.5), ("cosface", 0.35)])
def test_margin_losses_against_pytorch_metric_learning(kind, margin):
    pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning import losses

    x, labels = batch(dim=16)
    weights = torch.randn(4, 16, generator=torch.Generator().manual_seed(3))
    scale = 30.0
    if kind == "arcface":
        theirs = losses.ArcFaceLoss(4, 16, margin=math.degrees(margin), scale=scale)
    else:
        theirs = losses.CosFaceLoss(4, 16, margin=margin, scale=scale)
    with torch.no_grad():
        theirs.W.copy_(weights.T)  # theirs is D x classes
    ours = metric_loss(kind, x.float(), labels, margin=margin, scale=scale, weights=weights)
    assert float(ours) == pytest.approx(float(theirs(x.float(), labels).detach()), rel=1e-4)


def test_arcface_target_logit_keeps_falling_past_pi_minus_m():
    m = 0.5
    theta = torch.linspace(0.1, math.pi - 0.01, 200)
    x = torch.stack([torch.cos(theta), torch.sin(theta)], 1)
    w = torch.tensor([[1.0, 0.0]])
    target = margin_logits(x, w, torch.zeros(200, dtype=torch.long), "arcface", m, 1.0)[:, 0]
    assert (target.diff() < 0).all()  # cos(theta + m) alone would rise again beyond pi - m
    inside = theta + m < math.pi
    assert torch.allclose(target[inside], torch.cos(theta[inside] + m), atol=1e-5)


def test_softmax_baseline_is_cross_entropy_of_a_linear_layer():
    x, labels = batch()
    w, b = torch.randn(4, 8).double(), torch.randn(4).double()
    logits = x @ w.T + b
    want = -(logits.log_softmax(1)[torch.arange(len(labels)), labels]).mean()
    assert float(metric_loss("softmax", x, labels, weights=w, bias=b)) == pytest.approx(float(want), rel=1e-9)


def test_default_margins_and_bad_names():
    x, labels = batch()
    assert float(metric_loss("triplet_hard", x, labels)) == pytest.approx(float(triplet_batch_hard(x, labels, 0.2)))
    with pytest.raises(ConfigError, match="metric loss must be one of"):
        metric_loss("lifted", x, labels)
    with pytest.raises(ConfigError, match="class weights"):
        metric_loss("arcface", x, labels)


def test_pk_batches_hold_p_classes_of_k_images():
    labels = torch.tensor([0] * 30 + [1] * 7 + [2] * 12 + [3] * 20 + [4] * 3)
    p, k = 3, 4
    order = pk_order(labels, p, k, torch.Generator().manual_seed(0))
    assert len(order) % (p * k) == 0 and len(order) >= len(labels)
    for b in order.view(-1, p * k):
        counts = torch.bincount(labels[b], minlength=5)
        assert sorted(counts[counts > 0].tolist()) == [k] * p  # P distinct classes, K of each
    # a class's images are dealt without repeats until it runs out: the first pass over class 0 is a permutation
    zeros = [i for i in order.tolist() if labels[i] == 0][:30]
    assert len(zeros) < 30 or sorted(zeros) == list(range(30))
    again = pk_order(labels, p, k, torch.Generator().manual_seed(0))
    assert torch.equal(order, again)  # seeded


def test_pk_batches_of_a_size_that_is_not_a_multiple_of_p():
    labels = torch.arange(5).repeat_interleave(40)
    order = pk_order(labels, 5, 51 // 5, torch.Generator().manual_seed(0), batch_size=51)
    assert len(order) % 51 == 0 and len(order) >= len(labels)
    for b in order.view(-1, 51):
        assert sorted(torch.bincount(labels[b], minlength=5).tolist()) == [10, 10, 10, 10, 11]
    with pytest.raises(ConfigError, match="not 5 classes x 10 images"):
        pk_order(labels, 5, 10, torch.Generator(), batch_size=56)


def test_pk_rejects_impossible_batches():
    labels = torch.arange(3).repeat_interleave(5)
    with pytest.raises(ConfigError, match="needs 4 classes"):
        pk_order(labels, 4, 2, torch.Generator())
    with pytest.raises(ConfigError, match="at least 2"):
        pk_order(labels, 3, 1, torch.Generator())
