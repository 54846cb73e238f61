"""Segmentation metrics and losses against independent computations: scikit-learn's confusion matrix,
Jaccard score and accuracy, SciPy's distance transform for the boundary F-score, PyTorch's own
cross-entropy; the split's figures come from one confusion matrix, not a mean of batches."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cnnlab.data.objects import IGNORE
from cnnlab.tasks import get_task
from cnnlab.tasks.segment import SegmentationData, mask_png, target_like
from cnnlab.train import segmetrics
from cnnlab.train.config import TrainConfig

sklearn_metrics = pytest.importorskip("sklearn.metrics")


def random_maps(seed: int, n: int = 6, k: int = 5, size: int = 24):
    g = torch.Generator().manual_seed(seed)
    truth = torch.randint(0, k, (n, size, size), generator=g)
    pred = torch.where(torch.rand(n, size, size, generator=g) < 0.6, truth, torch.randint(0, k, (n, size, size), generator=g))
    truth[torch.rand(n, size, size, generator=g) < 0.1] = IGNORE
    truth[:, :, :3] = 0  # some structure
    return pred, truth


def test_the_four_metrics_and_per_class_iou_match_scikit_learn():
    k = 5
    pred, truth = random_maps(0, k=k)
    truth[truth == 3] = 4  # class 3 never true: counted for IoU (it is predicted), not for mean accuracy
    keep = truth != IGNORE
    t, p = truth[keep].numpy(), pred[keep].numpy()
    matrix = segmetrics.confusion(pred, truth, k)
    assert np.array_equal(matrix.numpy(), sklearn_metrics.confusion_matrix(t, p, labels=range(k)))
    s = segmetrics.scores(matrix)
    assert s["pixel_acc"] == pytest.approx(sklearn_metrics.accuracy_score(t, p))
    iou = sklearn_metrics.jaccard_score(t, p, labels=range(k), average=None, zero_division=0)
    assert s["per_class_iou"] == pytest.approx(list(iou))
    assert s["miou"] == pytest.approx(iou.mean())
    recall = sklearn_metrics.recall_score(t, p, labels=[0, 1, 2, 4], average=None)
    assert s["mean_acc"] == pytest.approx(recall.mean())  # balanced accuracy over the true classes
    support = np.bincount(t, minlength=k)
    assert s["fwiou"] == pytest.approx((support * iou).sum() / support.sum())
    assert s["per_class_acc"][3] is None


def test_a_split_is_scored_from_one_confusion_matrix_not_a_mean_of_batches():
    pred, truth = random_maps(1, n=8)
    pred[0], truth[0] = 4, 4  # one image all of one class, predicted right: its own mIoU is 1
    whole = segmetrics.scores(segmetrics.confusion(pred, truth, 5))["miou"]
    parts = segmetrics.confusion(pred[:1], truth[:1], 5) + segmetrics.confusion(pred[1:], truth[1:], 5)
    assert segmetrics.scores(parts)["miou"] == pytest.approx(whole)
    batch_means = np.mean([segmetrics.scores(segmetrics.confusion(pred[i:i + 1], truth[i:i + 1], 5))["miou"]
                           for i in range(8)])
    assert abs(batch_means - whole) > 0.02  # the two differ: averaging per batch would be wrong


class Thresholds(torch.nn.Module):
    """A fixed 'model': class c scores -|x - centre_c| per pixel (no weights to learn)."""

    def forward(self, x):
        centres = torch.tensor([-1.0, 0.0, 1.0], device=x.device).view(1, 3, 1, 1)
        return -(x[:, :1] - centres).abs()


def test_task_evaluation_does_not_depend_on_the_batch_size():
    g = torch.Generator().manual_seed(5)
    images = torch.randint(0, 256, (10, 1, 16, 16), generator=g, dtype=torch.uint8)
    masks = torch.randint(0, 3, (10, 16, 16), generator=g, dtype=torch.uint8)
    masks[masks == 2] = torch.where(torch.rand(int((masks == 2).sum()), generator=g) < 0.3, IGNORE, 2).to(torch.uint8)
    data = SegmentationData("t", "test", images, masks, ["background", "a", "b"], (0.5,), (0.25,))
    task = get_task("segment")
    one = task.evaluate(Thresholds(), data, batch_size=1)
    many = task.evaluate(Thresholds(), data, batch_size=64)
    x = (images.float() / 255 - 0.5) / 0.25
    pred = Thresholds()(x).argmax(1)
    keep = masks != IGNORE
    iou = sklearn_metrics.jaccard_score(masks[keep].long().numpy(), pred[keep].numpy(), labels=range(3), average=None)
    for result in (one, many):
        assert result["miou"] == pytest.approx(iou.mean())
        assert result["confusion"] == many["confusion"]


def reference_boundary_f(pred: np.ndarray, truth: np.ndarray, tolerance: int) -> float:
    """The boundary F-score with SciPy's chessboard distance transform (a square tolerance window)."""
    from scipy import ndimage

    def edges(m):
        e = np.zeros_like(m, bool)
        dx, dy = m[:, 1:] != m[:, :-1], m[1:, :] != m[:-1, :]
        e[:, 1:] |= dx
        e[:, :-1] |= dx
        e[1:, :] |= dy
        e[:-1, :] |= dy
        return e

    bp, bt = edges(pred), edges(truth)
    if not bp.any() and not bt.any():
        return 1.0
    dist_t = ndimage.distance_transform_cdt(~bt, metric="chessboard") if bt.any() else np.full(bt.shape, 10**6)
    dist_p = ndimage.distance_transform_cdt(~bp, metric="chessboard") if bp.any() else np.full(bp.shape, 10**6)
    precision = (dist_t[bp] <= tolerance).mean() if bp.any() else 0.0
    recall = (dist_p[bt] <= tolerance).mean() if bt.any() else 0.0
    return 2 * precision * recall / (precision + recall) if precision + recall else 0.0


def test_boundary_f_matches_a_distance_transform():
    g = torch.Generator().manual_seed(3)
    truth = torch.zeros(4, 32, 32, dtype=torch.long)
    pred = torch.zeros_like(truth)
    for i in range(4):  # squares, the predicted one shifted by i pixels
        truth[i, 8:20, 6:18] = 1
        pred[i, 8 + i:20 + i, 6:18 + i] = 2 if i == 3 else 1
    pred[0, 0, 0] = 1  # a stray pixel
    got = segmetrics.boundary_f(pred, truth, tolerance=2)
    want = [reference_boundary_f(pred[i].numpy(), truth[i].numpy(), 2) for i in range(4)]
    assert got == pytest.approx(want)
    assert got[1] == pytest.approx(1.0) and got[3] < 1.0  # a 1-pixel shift is within the tolerance
    assert segmetrics.boundary_f(truth[:1] * 0, truth[:1] * 0) == [1.0]
    del g


def test_weighted_cross_entropy_with_ignore_is_pytorchs_and_dice_is_one_minus_overlap():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 8, 8, generator=g)
    target = torch.randint(0, 3, (2, 8, 8), generator=g)
    target[0, :2] = IGNORE
    task = get_task("segment", TrainConfig(class_weights="1,2,0.5"))
    data = SegmentationData("t", "train", torch.zeros(2, 1, 8, 8, dtype=torch.uint8), target.to(torch.uint8),
                            ["background", "a", "b"], (0.5,), (0.5,))
    task.check_data(data, data)
    weight = torch.tensor([1.0, 2.0, 0.5])
    keep = target != IGNORE
    nll = -logits.log_softmax(1).gather(1, target.clamp(max=2).unsqueeze(1))[:, 0]
    by_hand = (weight[target.clamp(max=2)] * nll)[keep].sum() / weight[target.clamp(max=2)][keep].sum()
    assert float(task.loss(logits, target)) == pytest.approx(float(by_hand), rel=1e-5)
    # A perfect, confident prediction has Dice loss near 0; the uniform one near 1 - 2/(1 + K) per class.
    onehot = F.one_hot(target.clamp(max=2), 3).permute(0, 3, 1, 2).float() * 50
    assert float(segmetrics.dice_loss(onehot, target)) < 1e-3
    assert float(segmetrics.dice_loss(torch.zeros(2, 3, 8, 8), target)) > 0.3


def test_median_frequency_balancing_weights_rare_classes_up():
    masks = torch.zeros(2, 10, 10, dtype=torch.uint8)
    masks[0, :5] = 1  # class 1: 50 of the 100 pixels of image 0
    masks[1, :1] = 2  # class 2: 10 of the 100 pixels of image 1
    w = segmetrics.median_frequency_weights(masks, 3)
    freq = torch.tensor([140 / 200, 50 / 100, 10 / 100])  # pixels of c / pixels of the images holding c
    torch.testing.assert_close(w, freq.median() / freq)


def test_a_valid_form_output_is_scored_against_the_centre_of_its_target_and_masks_read_back():
    target = torch.arange(36).view(1, 6, 6)
    assert torch.equal(target_like(torch.zeros(1, 2, 2, 2), target), target[:, 2:4, 2:4])
    from PIL import Image
    import io

    mask = torch.tensor([[0, 1], [7, 3]])
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(mask_png(mask)))), mask.numpy())


def test_bad_settings_are_clear_errors():
    from cnnlab.errors import CnnlabError

    with pytest.raises(CnnlabError, match="class_weights"):
        segmetrics.parse_weights("1,2", 3)
    with pytest.raises(CnnlabError, match="segment task"):
        get_task("segment", TrainConfig(loss="hinge"))
    with pytest.raises(CnnlabError, match="not a segmentation dataset"):
        get_task("segment").load_split("fashion-mnist-mini", "train")
