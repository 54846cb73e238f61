"""Heatmaps: Gaussian targets decoded back to the sub-pixel keypoint, flip testing with left/right swaps
(a mirrored figure's labels, an oracle network with a sideways bias), and training crops whose
keypoints move with the pixels."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from cnnlab.keypoints.heatmaps import decode_heatmaps, flip_heatmaps, gaussian_targets
from cnnlab.tasks.keypoints import _affine_batch, load_keypoint_split, predict_heatmaps

S, STRIDE = 64, 4  # crop side and heatmap stride: 16 x 16 maps


def _random_keypoints(n: int, k: int, seed: int = 0, side: int = S, margin: float = 8) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    kp = torch.ones(n, k, 3) * 2
    kp[..., :2] = torch.rand(n, k, 2, generator=g) * (side - 2 * margin) + margin  # away from the border
    return kp


def test_target_peaks_where_the_formula_says():
    kp = torch.tensor([[[10.0, 22.0, 2.0]]])  # heatmap coordinates (10 / 4 - 0.5, 22 / 4 - 0.5) = (2, 5)
    t, w = gaussian_targets(kp, 16, 16, STRIDE, sigma=1.5)
    assert w.tolist() == [[1.0]] and t[0, 0, 5, 2] == pytest.approx(1.0)
    assert t[0, 0, 5, 4] == pytest.approx(math.exp(-4 / (2 * 1.5 ** 2)))  # two heatmap pixels to the right
    kp = torch.tensor([[[10.0, 22.0, 0.0], [-9.0, 30.0, 2.0]]])  # unlabelled; outside the map
    t, w = gaussian_targets(kp, 16, 16, STRIDE, sigma=1.5)
    assert w.tolist() == [[0.0, 0.0]] and float(t.abs().sum()) == 0


@pytest.mark.parametrize("sigma, side", [(1.0, S), (2.0, 256)])  # the task's maps; SimpleBaseline's 64 x 64
def test_decoding_recovers_sub_pixel_keypoints(sigma, side):
    # keypoints at least 2 sigma inside the map, so that the smoothing of DARK sees the whole peak
    kp = _random_keypoints(64, 17, side=side, margin=max(8, 2 * sigma * STRIDE + 2))
    t, _ = gaussian_targets(kp, side // STRIDE, side // STRIDE, STRIDE, sigma)
    errors = {}
    for method in ("argmax", "quarter", "dark"):
        xy, score = decode_heatmaps(t, STRIDE, method=method, sigma=sigma)
        errors[method] = (xy - kp[..., :2]).abs()
        assert float(score.min()) > 0.6  # the target's peak value near the keypoint
    # arg-max is off by up to half a heatmap pixel (2 input pixels) per axis, the quarter shift by up to a
    # quarter pixel less on average; DARK inverts the Gaussian and lands within a small fraction of a pixel
    assert 0.8 < float(errors["argmax"].mean()) < 1.2 and float(errors["argmax"].max()) <= 2.0 + 1e-5
    assert float(errors["quarter"].mean()) < float(errors["argmax"].mean()) - 0.2
    assert float(errors["dark"].max()) < 0.1 * STRIDE and float(errors["dark"].mean()) < 0.01 * STRIDE


def test_a_mirrored_figure_needs_its_left_and_right_swapped():
    data = load_keypoint_split("figures-mini", "test")
    names = data.keypoint_names
    pairs = data.flip_pairs
    assert sorted(tuple(sorted((names[a], names[b]))) for a, b in pairs) == sorted(
        (f"left_{p}", f"right_{p}") for p in ("ankle", "ear", "elbow", "eye", "hip", "knee", "shoulder", "wrist"))
    ls, rs = names.index("left_shoulder"), names.index("right_shoulder")
    both = (data.keypoints[:, ls, 2] > 0) & (data.keypoints[:, rs, 2] > 0)
    # Most figures face the camera: their own left shoulder is on the image's right.
    facing = (data.keypoints[both, ls, 0] > data.keypoints[both, rs, 0]).float().mean()
    assert facing > 0.6
    # The mirror image of the crop: x -> S - x, and the figure's left is now what was its right.
    mirrored = data.keypoints.clone()
    mirrored[..., 0] = S - mirrored[..., 0]
    perm = torch.arange(len(names))
    for a, b in pairs:
        perm[a], perm[b] = b, a
    mirrored = mirrored[:, perm]
    again = (mirrored[both, ls, 0] > mirrored[both, rs, 0]).float().mean()
    assert again == pytest.approx(facing)  # the same people, facing the same way, in the mirror
    t, _ = gaussian_targets(data.keypoints, 16, 16, STRIDE, 1.0)
    t_mirror, _ = gaussian_targets(mirrored, 16, 16, STRIDE, 1.0)
    torch.testing.assert_close(flip_heatmaps(t_mirror, pairs), t, atol=1e-6, rtol=0)


BIAS = 2.0  # less than the spread (sigma 3): the two passes' average has a single peak


class _BiasedOracle(nn.Module):
    """Sees every person right, on the crop and on its mirror image, but reports each keypoint
    2 pixels too far to the image's right: the bias that flip testing cancels. Its maps have the crop's
    resolution (stride 1), so that every peak lies well inside."""

    def __init__(self, image: torch.Tensor, kp: torch.Tensor, mirrored_kp: torch.Tensor):
        super().__init__()
        self.image, self.kp, self.mirrored_kp = image, kp, mirrored_kp

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        kp = self.kp if torch.equal(x, self.image) else self.mirrored_kp
        assert torch.equal(x, self.image) or torch.equal(x, self.image.flip(-1))
        shifted = kp.clone()
        shifted[..., 0] += BIAS
        return gaussian_targets(shifted, S, S, 1, 3.0)[0]


def test_flip_testing_cancels_a_sideways_bias_only_with_the_swaps():
    data = load_keypoint_split("figures-mini", "test").subset(slice(0, 8))
    kp = data.keypoints.clone()
    kp[..., :2] = kp[..., :2].clamp(12, S - 12)  # away from the border, so no Gaussian is cut
    kp[..., 2] = 2
    mirrored = kp.clone()
    mirrored[..., 0] = S - kp[..., 0]
    perm = torch.arange(kp.shape[1])
    for a, b in data.flip_pairs:
        perm[a], perm[b] = b, a
    mirrored = mirrored[:, perm]
    x = data.images.float() / 255
    model = _BiasedOracle(x, kp, mirrored)
    single = decode_heatmaps(predict_heatmaps(model, x, flip_pairs=None), 1, sigma=3.0)[0]
    flipped = decode_heatmaps(predict_heatmaps(model, x, flip_pairs=data.flip_pairs), 1, sigma=3.0)[0]
    unswapped = decode_heatmaps(predict_heatmaps(model, x, flip_pairs=[]), 1, sigma=3.0)[0]
    err = lambda xy: (xy - kp[..., :2]).norm(dim=-1)  # noqa: E731
    assert float(err(single).mean()) == pytest.approx(BIAS, abs=0.1)
    assert float(err(flipped).mean()) < 0.1
    # without the swaps the mirrored pass puts each left keypoint on the right one's place
    paired = [a for a, _ in data.flip_pairs] + [b for _, b in data.flip_pairs]
    assert float(err(unswapped)[:, paired].mean()) > 2 * BIAS


def test_training_crops_move_their_keypoints_with_the_pixels():
    """A bright dot drawn at keypoint 0 lies, after a random scale / rotation / mirror, where the
    transformed labels put it: at keypoint 0, or at keypoint 1 (its mirror partner) when mirrored."""
    n = 32
    g = torch.Generator().manual_seed(3)
    kp = torch.zeros(n, 3, 3)
    kp[:, :, 2] = 2
    kp[:, :, :2] = torch.rand(n, 3, 2, generator=g) * 24 + 20
    images = torch.zeros(n, 1, S, S, dtype=torch.uint8)
    for i in range(n):
        x, y = kp[i, 0, :2].long()
        images[i, 0, y - 1:y + 2, x - 1:x + 2] = 255  # dot centred on pixel (x, y): continuous x + 0.5
        kp[i, 0, :2] = kp[i, 0, :2].floor() + 0.5
    out, moved = _affine_batch(images, kp, torch.Generator().manual_seed(4), [(0, 1)], flip=True)
    flat = out[:, 0].float().reshape(n, -1)
    weights = flat / flat.sum(1, keepdim=True)
    ys, xs = torch.meshgrid(torch.arange(S) + 0.5, torch.arange(S) + 0.5, indexing="ij")
    centre = torch.stack([(weights * xs.reshape(-1)).sum(1), (weights * ys.reshape(-1)).sum(1)], 1)  # N x 2
    at0 = (moved[:, 0, :2] - centre).norm(dim=1)
    at1 = (moved[:, 1, :2] - centre).norm(dim=1)
    nearest = torch.minimum(at0, at1)
    assert float(nearest.max()) < 1.0  # within a pixel
    swapped = at1 < at0
    assert 5 < int(swapped.sum()) < n - 5  # about half mirrored, their labels swapped
