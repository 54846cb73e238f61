"""Retrieval, verification and identification figures against independent implementations:
pytorch-metric-learning's AccuracyCalculator (precision@1, R-precision, MAP@R), scikit-learn's
roc_curve / roc_auc_score (ROC, AUC), SciPy's root finder on the interpolated ROC (EER), and small
cases worked by hand (Recall@K, identification)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnnlab.metric.metrics import (identification_metrics, pair_scores, retrieval_metrics, roc,
                                   verification_metrics)


def embeddings(n: int = 300, classes: int = 5, dim: int = 16, spread: float = 1.2, seed: int = 0):
    """Clusters of uneven size that overlap (so no figure is 0 or 1)."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, classes, (n,), generator=g)
    centres = torch.randn(classes, dim, generator=g)
    x = F.normalize(centres[labels] + spread * torch.randn(n, dim, generator=g), dim=1)
    return x, labels


def test_retrieval_against_pytorch_metric_learning():
    pytest.importorskip("pytorch_metric_learning")
    from pytorch_metric_learning.utils.accuracy_calculator import AccuracyCalculator

    x, labels = embeddings()
    ours = retrieval_metrics(x, labels)
    calc = AccuracyCalculator(include=("precision_at_1", "r_precision", "mean_average_precision_at_r"),
                              k="max_bin_count", device=torch.device("cpu"))
    theirs = calc.get_accuracy(x, labels)  # the query set is its own reference, itself excluded
    assert 0.2 < ours["map_at_r"] < 0.9  # not a degenerate case
    assert ours["precision_at_1"] == pytest.approx(theirs["precision_at_1"], abs=1e-6)
    assert ours["r_precision"] == pytest.approx(theirs["r_precision"], abs=1e-6)
    assert ours["map_at_r"] == pytest.approx(theirs["mean_average_precision_at_r"], abs=1e-6)


def test_map_at_r_and_recall_by_hand():
    # four points on a line; cosine similarity falls with the distance along a quarter circle
    angles = torch.tensor([0.0, 0.1, 0.3, 0.35])
    x = torch.stack([torch.cos(angles), torch.sin(angles)], 1)
    labels = torch.tensor([0, 1, 0, 1])
    # neighbours: 0 -> 1, 2, 3 ; 1 -> 0, 2, 3 ; 2 -> 3, 1, 0 ; 3 -> 2, 1, 0 ; R = 1 for everyone
    # hits in first place: 0:no 1:no 2:no 3:no -> P@1 = MAP@R = 0; Recall@2: 0 (2 yes) 1 (3 no) 2 (1 no) 3 (1 yes)
    r = retrieval_metrics(x, labels, ks=(1, 2, 3))
    assert r["precision_at_1"] == 0.0 and r["map_at_r"] == 0.0 and r["r_precision"] == 0.0
    assert r["recall_at_2"] == pytest.approx(0.5) and r["recall_at_3"] == 1.0
    # class 0 gets a third member far away: R = 2 for class 0
    angles = torch.tensor([0.0, 0.1, 0.3, 0.35, 1.2])
    x = torch.stack([torch.cos(angles), torch.sin(angles)], 1)
    labels = torch.tensor([0, 1, 0, 1, 0])
    # query 0 (R=2): neighbours 1(no), 2(yes) -> AP@R = (1/2)(0 + 1/2) = 0.25; query 4 (R=2): 3 no, 2 yes -> 0.25
    # query 2 (R=2): 3 no, 1 no -> 0; queries 1 and 3 (R=1): 1 -> 0 (nearest 2? no: 0.1->0.0 is 0.1, ->0.3 is 0.2) -> 0; 3 -> 2 -> 0
    want = (0.25 + 0.25 + 0 + 0 + 0) / 5
    assert retrieval_metrics(x, labels)["map_at_r"] == pytest.approx(want)


def test_roc_and_auc_against_scikit_learn():
    from sklearn.metrics import roc_auc_score, roc_curve

    x, labels = embeddings(n=200)
    scores, same = pair_scores(x, labels)
    assert len(scores) == 200 * 199 // 2
    fpr, tpr, thresholds = roc(scores, same)
    f, t, th = roc_curve(same.numpy(), scores.double().numpy(), drop_intermediate=False)
    assert np.allclose(fpr.numpy(), f) and np.allclose(tpr.numpy(), t) and np.allclose(thresholds.numpy()[1:], th[1:])
    v = verification_metrics(scores, same)
    assert v["auc"] == pytest.approx(roc_auc_score(same.numpy(), scores.double().numpy()), abs=1e-9)
    assert 0.6 < v["auc"] < 0.99


def test_eer_and_tar_at_far_from_the_scikit_learn_curve():
    from scipy.interpolate import interp1d
    from scipy.optimize import brentq
    from sklearn.metrics import roc_curve

    x, labels = embeddings(n=250, seed=2)
    scores, same = pair_scores(x, labels)
    f, t, _ = roc_curve(same.numpy(), scores.double().numpy())
    eer = brentq(lambda a: 1.0 - a - interp1d(f, t)(a), 0.0, 1.0)  # where FAR = 1 - TAR on the curve
    v = verification_metrics(scores, same, far=1e-3)
    assert v["eer"] == pytest.approx(eer, abs=1e-6)
    assert v["tar_at_far"] == pytest.approx(float(t[f <= 1e-3].max()), abs=1e-12)
    # the threshold reproduces the rates it reports
    accepted = scores.double() >= v["far_threshold"]
    assert float((accepted & ~same).sum() / (~same).sum()) <= 1e-3
    assert float((accepted & same).sum() / same.sum()) == pytest.approx(v["tar_at_far"])


def test_perfect_separation_has_zero_eer_and_unit_auc():
    scores = torch.tensor([0.9, 0.8, 0.7, 0.2, 0.1])
    same = torch.tensor([True, True, True, False, False])
    v = verification_metrics(scores, same)
    assert v["auc"] == 1.0 and v["eer"] == 0.0 and v["tar_at_far"] == 1.0


def test_identification_by_hand():
    # gallery: first 1 of each class; class 0 at angle 0, class 1 at angle 1.0, class 2 at angle 2.0
    angles = torch.tensor([0.0, 1.0, 2.0, 0.4, 0.6, 1.9, 1.4])
    labels = torch.tensor([0, 1, 2, 0, 0, 2, 2])
    x = torch.stack([torch.cos(angles), torch.sin(angles)], 1)
    r = identification_metrics(x, labels, gallery_per_class=1)
    # probes: 0.4 -> class 0 (yes), 0.6 -> class 1 (no; 0 second), 1.9 -> 2 (yes), 1.4 -> 1 (no; 2 second)
    assert r["gallery"] == 3 and r["probes"] == 4
    assert r["top1"] == pytest.approx(0.5) and r["top5"] == 1.0
