"""Policy augmentations, batched on uint8 tensors: colour jitter, TrivialAugment, RandAugment, and the
label-mixing mixup and CutMix. Like :mod:`.transforms`, each takes a whole N x C x H x W batch and a
``torch.Generator``, draws one choice per image, and applies each operation once to the images that drew
it (no per-image Python loop over pixels).

- Colour jitter: brightness, contrast, saturation (colour images) as torchvision's ``ColorJitter``
  defines them (blends with black, with the mean grey level, with the grey image).
- TrivialAugment (Müller & Hutter, ICCV 2021): one operation per image, uniformly from the
  "wide" set below, at a uniformly random strength.
- RandAugment (Cubuk et al., CVPR workshops 2020): ``n`` operations per image, each uniformly from the
  set, all at strength ``m`` out of 30 (RandAugment's scale; TrivialAugment draws 0-30 too).
- mixup (Zhang et al., ICLR 2018): x = lam * x_i + (1 - lam) * x_j with lam ~ Beta(alpha, alpha).
- CutMix (Yun et al., ICCV 2019): a box of x_j pasted into x_i, lam = 1 - box area / image area.

The pixel operations follow PIL's ``ImageOps`` / ``ImageEnhance`` definitions (tests compare them).
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F

MAX_STRENGTH = 30  # the scale of RandAugment's magnitude


def _rand(n: int, generator: torch.Generator | None, device) -> torch.Tensor:
    return torch.rand(n, generator=generator, device=device)


def _grey(x: torch.Tensor) -> torch.Tensor:
    """N x 1 x H x W luma (ITU-R 601-2, PIL's ``convert("L")``) of float images."""
    if x.shape[1] == 1:
        return x
    r, g, b = x[:, 0:1], x[:, 1:2], x[:, 2:3]
    return r * 0.299 + g * 0.587 + b * 0.114


def _blend(a: torch.Tensor, b: torch.Tensor, factor: torch.Tensor) -> torch.Tensor:
    """PIL's ``ImageEnhance``: b + factor * (a - b), clipped to [0, 255]; ``factor`` per image."""
    return (b + factor.view(-1, 1, 1, 1) * (a - b)).clamp(0, 255)


# --- the operations: (float N x C x H x W in [0, 255], per-image strength in [0, 1], signs) -> images ---

def brightness(x, s, sign):
    return _blend(x, torch.zeros_like(x), 1 + 0.9 * s * sign)


def contrast(x, s, sign):
    mean = _grey(x).round().mean((1, 2, 3), keepdim=True).expand_as(x)
    return _blend(x, mean, 1 + 0.9 * s * sign)


def color(x, s, sign):
    return _blend(x, _grey(x).expand_as(x), 1 + 0.9 * s * sign) if x.shape[1] == 3 else x


def sharpness(x, s, sign):
    """PIL's SMOOTH-filtered image (13-weight 3x3 kernel) blended; the border keeps its pixels."""
    c = x.shape[1]
    kernel = torch.tensor([[1.0, 1.0, 1.0], [1.0, 5.0, 1.0], [1.0, 1.0, 1.0]], device=x.device) / 13
    smooth = F.conv2d(x, kernel.expand(c, 1, 3, 3), padding=1, groups=c).round()
    smooth[..., 0, :], smooth[..., -1, :] = x[..., 0, :], x[..., -1, :]
    smooth[..., :, 0], smooth[..., :, -1] = x[..., :, 0], x[..., :, -1]
    return _blend(x, smooth, 1 + 0.9 * s * sign)


def posterize(x, s, sign):
    bits = (8 - (s * 4).round()).clamp(4, 8).view(-1, 1, 1, 1)  # keep 8 down to 4 bits
    step = 2 ** (8 - bits)
    return (x / step).floor() * step


def solarize(x, s, sign):
    threshold = (256 - s * 256).view(-1, 1, 1, 1)  # strength 0: nothing inverted
    return torch.where(x >= threshold, 255 - x, x)


def autocontrast(x, s, sign):
    low = x.amin((2, 3), keepdim=True)
    high = x.amax((2, 3), keepdim=True)
    scale = torch.where(high > low, 255 / (high - low).clamp_min(1e-6), torch.ones_like(high))
    return torch.where(high > low, ((x - low) * scale).floor().clamp(0, 255), x)


def equalize(x, s, sign):
    """PIL's ``ImageOps.equalize``, per image and channel: a lookup table from the cumulative histogram
    that leaves out the last non-empty bin."""
    n, c, h, w = x.shape
    v = x.round().long().view(n * c, h * w)
    hist = torch.zeros(n * c, 256, device=x.device, dtype=torch.long).scatter_add_(1, v, torch.ones_like(v))
    last = 255 - hist.flip(1).ne(0).long().argmax(1)  # index of the last non-empty bin
    step = (h * w - hist.gather(1, last[:, None])[:, 0]) // 255
    cumulative = torch.cumsum(hist, 1) - hist  # pixels below each level
    lut = ((cumulative + (step // 2)[:, None]) // step.clamp_min(1)[:, None]).clamp(0, 255)
    out = lut.gather(1, v).float().view(n, c, h, w)
    return torch.where((step > 0).view(n, c, 1, 1), out, x)


def _affine(x, matrices, fill: float = 0.0):
    """Warp each image by its 2 x 3 matrix (output -> input, in normalised coordinates), nearest pixel."""
    grid = F.affine_grid(matrices, list(x.shape), align_corners=False)
    out = F.grid_sample(x - fill, grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return out + fill


def _eye(n, device):
    return torch.eye(2, 3, device=device).repeat(n, 1, 1)


def rotate(x, s, sign):
    angle = torch.deg2rad(30 * s * sign)  # up to 30 degrees either way
    m = _eye(len(x), x.device)
    m[:, 0, 0], m[:, 0, 1], m[:, 1, 0], m[:, 1, 1] = angle.cos(), -angle.sin(), angle.sin(), angle.cos()
    return _affine(x, m)


def shear_x(x, s, sign):
    m = _eye(len(x), x.device)
    m[:, 0, 1] = 0.3 * s * sign
    return _affine(x, m)


def shear_y(x, s, sign):
    m = _eye(len(x), x.device)
    m[:, 1, 0] = 0.3 * s * sign
    return _affine(x, m)


def translate_x(x, s, sign):
    m = _eye(len(x), x.device)
    m[:, 0, 2] = 2 * 0.3 * s * sign  # up to 30% of the width (normalised coordinates span 2)
    return _affine(x, m)


def translate_y(x, s, sign):
    m = _eye(len(x), x.device)
    m[:, 1, 2] = 2 * 0.3 * s * sign
    return _affine(x, m)


def identity(x, s, sign):
    return x


OPERATIONS = {f.__name__: f for f in (identity, brightness, contrast, color, sharpness, posterize, solarize,
                                      autocontrast, equalize, rotate, shear_x, shear_y, translate_x, translate_y)}


def apply_operations(batch: torch.Tensor, ops: torch.Tensor, strength: torch.Tensor,
                     generator: torch.Generator | None = None) -> torch.Tensor:
    """Apply operation ``ops[i]`` (index into :data:`OPERATIONS`) at ``strength[i]`` in [0, 1] to image i;
    signed operations (rotate, shear, ...) pick their direction at random."""
    x = batch.float()
    sign = torch.where(_rand(len(x), generator, x.device) < 0.5, -1.0, 1.0)
    out = x.clone()
    for index, op in enumerate(OPERATIONS.values()):
        chosen = (ops == index).nonzero().flatten()
        if len(chosen):
            out[chosen] = op(x[chosen], strength[chosen], sign[chosen])
    return out.round().clamp(0, 255).to(batch.dtype) if batch.dtype == torch.uint8 else out


def trivial_augment(batch: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """TrivialAugment Wide: one operation per image, uniformly chosen, at a uniform strength."""
    n = len(batch)
    ops = torch.randint(0, len(OPERATIONS), (n,), generator=generator, device=batch.device)
    strength = torch.randint(0, MAX_STRENGTH + 1, (n,), generator=generator, device=batch.device) / MAX_STRENGTH
    return apply_operations(batch, ops, strength.float(), generator)


def rand_augment(batch: torch.Tensor, n_ops: int = 2, magnitude: int = 9,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """RandAugment: ``n_ops`` uniformly chosen operations per image, each at ``magnitude`` / 30."""
    strength = torch.full((len(batch),), magnitude / MAX_STRENGTH, device=batch.device)
    for _ in range(n_ops):
        ops = torch.randint(0, len(OPERATIONS), (len(batch),), generator=generator, device=batch.device)
        batch = apply_operations(batch, ops, strength, generator)
    return batch


def color_jitter(batch: torch.Tensor, strength: float = 0.4, generator: torch.Generator | None = None) -> torch.Tensor:
    """Brightness, contrast and (colour images) saturation each scaled by a factor from
    [1 - strength, 1 + strength], in that order, as torchvision's ``ColorJitter(b, c, s)`` with b = c = s."""
    x = batch.float()
    n = len(x)

    def factor():
        return 1 + strength * (2 * _rand(n, generator, x.device) - 1)

    x = _blend(x, torch.zeros_like(x), factor())
    x = _blend(x, _grey(x).mean((1, 2, 3), keepdim=True).expand_as(x), factor())
    if x.shape[1] == 3:
        x = _blend(x, _grey(x).expand_as(x), factor())
    return x.round().to(batch.dtype) if batch.dtype == torch.uint8 else x


# --- label mixing ------------------------------------------------------------------------------------

def mix(batch: torch.Tensor, labels: torch.Tensor, *, mixup_alpha: float = 0.0, cutmix_alpha: float = 0.0,
        generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """mixup or CutMix (one of them per batch, each with probability 1/2 when both are on).

    Returns (mixed float images in [0, 255], the partners' labels, per-image lam): the loss is
    ``lam * loss(y) + (1 - lam) * loss(partner)``.
    """
    n = len(batch)
    partner = torch.randperm(n, generator=generator, device=batch.device)
    use_cutmix = cutmix_alpha > 0 and (mixup_alpha <= 0 or bool(_rand(1, generator, batch.device) < 0.5))
    alpha = cutmix_alpha if use_cutmix else mixup_alpha
    # torch's Beta sampler takes no generator: seed NumPy's from the run's generator, so a run repeats.
    seed = int(torch.randint(0, 2 ** 31 - 1, (1,), generator=generator))
    lam = float(np.random.default_rng(seed).beta(alpha, alpha))
    x = batch.float()
    if not use_cutmix:
        mixed = lam * x + (1 - lam) * x[partner]
        return mixed, labels[partner], torch.full((n,), lam, device=batch.device)
    h, w = x.shape[-2:]
    cut = math.sqrt(1 - lam)
    ch, cw = int(h * cut), int(w * cut)
    cy = int(torch.randint(0, h, (1,), generator=generator))
    cx = int(torch.randint(0, w, (1,), generator=generator))
    top, bottom = max(cy - ch // 2, 0), min(cy + ch // 2, h)
    left, right = max(cx - cw // 2, 0), min(cx + cw // 2, w)
    mixed = x.clone()
    mixed[..., top:bottom, left:right] = x[partner][..., top:bottom, left:right]
    kept = 1 - (bottom - top) * (right - left) / (h * w)  # lam of the box actually pasted (clipped at edges)
    return mixed, labels[partner], torch.full((n,), kept, device=batch.device)
