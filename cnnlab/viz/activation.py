"""What drives one channel: the dataset images (and patches) that excite it most, and an input
optimised to excite it.

- Top images and patches: Zeiler & Fergus, "Visualizing and Understanding Convolutional Networks",
  ECCV 2014, Fig. 2 (the top-9 activations of a feature map and the image patches behind them).
  The patch is the part of the input that can influence the strongest unit: the support of that
  unit's input gradient, which is its receptive field clipped to the image.
- Activation maximisation: Erhan, Bengio, Courville, Vincent, "Visualizing Higher-Layer Features of a
  Deep Network", 2009; with the regularisers of Yosinski et al., "Understanding Neural Networks
  Through Deep Visualization", ICML 2015 workshop (L2 decay, small random shifts, periodic blur).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from . import style
from .stages import find_module, forward_until


@dataclass
class TopActivations:
    indices: list[int]  # positions in the image batch, strongest first
    scores: list[float]  # the channel's largest activation in each image
    boxes: list[tuple[int, int, int, int]]  # (top, left, bottom, right) of each patch, exclusive ends


def _channel_maps(model: nn.Module, layer: nn.Module, x: torch.Tensor, channel: int) -> torch.Tensor:
    with torch.no_grad():
        out = forward_until(model, layer, x)
    _check_channel(out, channel)
    return out[:, channel]  # N x h x w


def _check_channel(out: torch.Tensor, channel: int) -> None:
    if out.dim() != 4:
        raise ValueError(f"the chosen layer's output must be N x C x h x w, got shape {tuple(out.shape)}")
    if not 0 <= channel < out.shape[1]:
        raise ValueError(f"channel {channel} is out of range: the layer has {out.shape[1]} channels")


def top_activations(model: nn.Module, layer: nn.Module | str, images: torch.Tensor, channel: int, *,
                    preprocessing, k: int = 9, batch_size: int = 256) -> TopActivations:
    """The ``k`` images of ``images`` (uint8 N x C x H x W) with the largest activation of ``channel``."""
    layer = find_module(model, layer)
    model.eval()
    peaks, where = [], []
    for start in range(0, len(images), batch_size):
        x = preprocessing.normalize(images[start:start + batch_size])
        maps = _channel_maps(model, layer, x, channel)  # n x h x w
        flat = maps.flatten(1)
        value, position = flat.max(1)
        peaks.append(value)
        where.append(torch.stack([position // maps.shape[2], position % maps.shape[2]], 1))
    peaks_t, where_t = torch.cat(peaks), torch.cat(where)
    order = peaks_t.argsort(descending=True)[:k].tolist()
    boxes = [_support_box(model, layer, preprocessing.normalize(images[i:i + 1]), channel, tuple(where_t[i].tolist()))
             for i in order]
    return TopActivations(order, [float(peaks_t[i]) for i in order], boxes)


def _support_box(model: nn.Module, layer: nn.Module, x: torch.Tensor, channel: int,
                 position: tuple[int, int]) -> tuple[int, int, int, int]:
    """Bounding box of the input pixels whose gradient reaches unit (channel, position)."""
    x = x.clone().requires_grad_(True)
    with torch.enable_grad():
        unit = forward_until(model, layer, x)[0, channel, position[0], position[1]]
        (grad,) = torch.autograd.grad(unit, x, allow_unused=True)
    h, w = x.shape[-2:]
    if grad is None:
        return 0, 0, h, w
    mask = grad[0].abs().amax(0) > 0  # H x W
    if not mask.any():
        return 0, 0, h, w
    rows, cols = torch.nonzero(mask.any(1)).flatten(), torch.nonzero(mask.any(0)).flatten()
    return int(rows[0]), int(cols[0]), int(rows[-1]) + 1, int(cols[-1]) + 1


@dataclass
class OptimisedInput:
    image: np.ndarray  # C x H x W float in [0, 1]
    start: str  # "noise", or "top image" when the channel was silent on noise
    initial: float  # the channel's mean activation at the start ...
    final: float  # ... and at the end


def maximize_channel(model: nn.Module, layer: nn.Module | str, channel: int, input_size, *, preprocessing,
                     steps: int = 160, lr: float = 0.05, weight_decay: float = 1e-3, blur_every: int = 4,
                     blur: float = 0.15, seed: int = 0, fallback_start: torch.Tensor | np.ndarray | None = None) -> OptimisedInput:
    """An input that maximises the mean activation of ``channel``.

    Gradient ascent (Adam) on pixel logits ``p`` with image ``sigmoid(p)``, starting from faint noise
    around mid-grey; each step shifts the image by up to ``H / 14`` pixels, and every ``blur_every``
    steps the logits are smoothed with a 3 x 3 binomial filter, which keeps high-frequency noise out of
    the result; the blur is mixed in with weight ``blur``, as a full 3 x 3 blur wipes out the detail a
    28 x 28 input has. A channel behind a ReLU may be silent on grey noise, where its gradient is exactly zero;
    then the ascent starts from ``fallback_start`` (C x H x W in [0, 1], e.g. the top image) instead.
    """
    layer = find_module(model, layer)
    model.eval()
    c, h, w = (int(v) for v in input_size)
    generator = torch.Generator().manual_seed(seed)
    logits = (0.1 * torch.randn(1, c, h, w, generator=generator)).requires_grad_(True)
    start = "noise"
    if fallback_start is not None and _channel_gradient(model, layer, channel, logits, preprocessing)[1].eq(0).all():
        image = torch.as_tensor(np.asarray(fallback_start), dtype=torch.float32).reshape(1, c, h, w)
        logits = torch.logit(image.clamp(0.05, 0.95)).requires_grad_(True)
        start = "top image"
    initial = _channel_gradient(model, layer, channel, logits, preprocessing)[0]
    # Adam (Kingma & Ba, ICLR 2015) written out: torch.optim would import its compiler stack, seconds
    # of start-up for a one-tensor problem.
    beta1, beta2, eps = 0.9, 0.999, 1e-8
    first, second = torch.zeros_like(logits), torch.zeros_like(logits)
    binomial = torch.tensor([1.0, 2.0, 1.0])
    smooth = (binomial[:, None] * binomial[None, :] / 16).expand(c, 1, 3, 3)
    jitter = max(1, min(h, w) // 14)
    for step in range(steps):
        dy, dx = (int(v) for v in torch.randint(-jitter, jitter + 1, (2,), generator=generator))
        _, grad = _channel_gradient(model, layer, channel, logits, preprocessing, shift=(dy, dx),
                                    weight_decay=weight_decay)
        with torch.no_grad():
            first.mul_(beta1).add_(grad, alpha=1 - beta1)
            second.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
            step_size = lr / (1 - beta1 ** (step + 1))
            denominator = (second / (1 - beta2 ** (step + 1))).sqrt_().add_(eps)
            logits.addcdiv_(first, denominator, value=step_size)  # ascent: the objective goes up
            if blur_every and blur > 0 and (step + 1) % blur_every == 0:
                blurred = F.conv2d(F.pad(logits, (1, 1, 1, 1), mode="replicate"), smooth, groups=c)
                logits.mul_(1 - blur).add_(blurred, alpha=blur)
    final = _channel_gradient(model, layer, channel, logits, preprocessing)[0]
    return OptimisedInput(torch.sigmoid(logits).detach()[0].numpy(), start, initial, final)


def _channel_gradient(model, layer, channel, logits, preprocessing, *, shift=(0, 0), weight_decay=0.0):
    """(mean activation of ``channel`` on ``sigmoid(logits)``, its gradient with respect to the logits).

    Only the image gets a gradient; the model's own parameters are left untouched.
    """
    with torch.enable_grad():
        image = torch.roll(torch.sigmoid(logits), shifts=shift, dims=(2, 3))
        out = forward_until(model, layer, preprocessing.normalize(image * 255.0))
        _check_channel(out, channel)
        activation = out[0, channel].mean()
        objective = activation - weight_decay * (logits ** 2).mean()
        (grad,) = torch.autograd.grad(objective, [logits])
    return float(activation.detach()), grad


def plot_activation(images: torch.Tensor, top: TopActivations, optimised: OptimisedInput, *, title: str):
    """Top images with the strongest unit's patch outlined (score above each), the patches enlarged, and
    beside them the optimised input."""
    from matplotlib.patches import Rectangle

    k = len(top.indices)
    cols = max(k, 1)
    fig = style.figure(1.15 * cols + 2.8, 2.9)
    fig.suptitle(title)
    grid = fig.add_gridspec(2, cols + 2, width_ratios=[1] * cols + [0.25, 2.2])
    for j, (i, score, box) in enumerate(zip(top.indices, top.scores, top.boxes)):
        img = style.chw_to_display(images[i].numpy())
        ax = fig.add_subplot(grid[0, j])
        style.show_image(ax, img)
        t, l, b, r = box
        ax.add_patch(Rectangle((l - 0.5, t - 0.5), r - l, b - t, fill=False, edgecolor="#ffcc00", linewidth=1.2))
        ax.set_title(f"#{i}\n{score:.3g}", fontsize=7)
        if j == 0:
            ax.set_ylabel("top images", fontsize=8)
        ax = fig.add_subplot(grid[1, j])
        style.show_image(ax, img[t:b, l:r])
        if j == 0:
            ax.set_ylabel("patches", fontsize=8)
    ax = fig.add_subplot(grid[:, cols + 1])
    style.show_image(ax, style.rescale(style.chw_to_display(optimised.image)))  # contrast stretched
    ax.set_title(f"optimised input (from {optimised.start},\ncontrast stretched); mean activation\n"
                 f"{optimised.initial:.3g} -> {optimised.final:.3g}", fontsize=8)
    return fig
