"""Augmentation that carries targets, on whole batches: horizontal flip, random resized crop, scale
jitter, translation and colour jitter, with boxes, masks, semantic maps and keypoints moved with the
pixels.

Every geometric operation here is an axis-aligned affine map of pixel coordinates, ``x' = ax * x + bx``
and ``y' = ay * y + by`` per image (a mirror has ``ax = -1, bx = W``), so flip, crop, zoom and shift
compose into one map and the batch is resampled once (:func:`warp`):

- images: bilinear (``grid_sample``) or nearest, pixels from outside the source take ``fill``;
- masks and the semantic map: nearest, the output pixel centre ``u + 0.5`` reads source pixel
  ``floor((u + 0.5 - bx) / ax)``; semantic pixels from outside the source are :data:`~.objects.IGNORE`;
- boxes: both corners mapped (left and right swapped under a mirror), clipped to the output, and the
  object dropped when the clipped box is narrower or lower than ``min_size`` pixels or its mask is empty;
- keypoints: mapped; those leaving the image become unlabelled (0, 0, 0); a mirror swaps each
  left/right pair (``flip_pairs``).

Randomness comes from one ``torch.Generator``, drawn in a fixed order, so a seeded run is reproducible.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..errors import ConfigError
from .objects import IGNORE, ObjectBatch, Objects, flip_permutation


def _axis_sources(a: torch.Tensor, b: torch.Tensor, size_out: int) -> torch.Tensor:
    """B x size_out: source coordinate of each output pixel centre along one axis."""
    centres = torch.arange(size_out, dtype=torch.float64, device=a.device) + 0.5
    return (centres.view(1, -1) - b.view(-1, 1)) / a.view(-1, 1)


def _nearest_index(src: torch.Tensor, size_in: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Clamped integer source pixel and whether it lies inside the source."""
    index = torch.floor(src).long()
    inside = (index >= 0) & (index < size_in)
    return index.clamp(0, max(size_in - 1, 0)), inside


def _transform_objects(target: Objects, ax: float, bx: float, ay: float, by: float, rows: torch.Tensor,
                       cols: torch.Tensor, inside: torch.Tensor, out_size: tuple[int, int], min_size: float,
                       perm: torch.Tensor | None) -> Objects:
    ho, wo = out_size
    boxes = target.boxes.double()
    x = boxes[:, [0, 2]] * ax + bx
    y = boxes[:, [1, 3]] * ay + by
    x, _ = x.sort(dim=1)  # a mirror swaps left and right
    y, _ = y.sort(dim=1)
    new_boxes = torch.stack([x[:, 0].clamp(0, wo), y[:, 0].clamp(0, ho), x[:, 1].clamp(0, wo), y[:, 1].clamp(0, ho)], 1)
    keep = ((new_boxes[:, 2] - new_boxes[:, 0]) >= min_size) & ((new_boxes[:, 3] - new_boxes[:, 1]) >= min_size)
    masks = None
    if target.masks is not None:
        dev = target.masks.device  # targets may stay on the CPU while the images move
        masks = target.masks[:, rows.to(dev)][:, :, cols.to(dev)] & inside.to(dev)  # N x Ho x Wo
        keep &= masks.flatten(1).any(1).to(keep.device)
    keypoints = None
    if target.keypoints is not None:
        kp = target.keypoints.double().clone()
        kp[..., 0] = kp[..., 0] * ax + bx
        kp[..., 1] = kp[..., 1] * ay + by
        lost = (kp[..., 0] < 0) | (kp[..., 0] >= wo) | (kp[..., 1] < 0) | (kp[..., 1] >= ho) | (kp[..., 2] <= 0)
        kp[lost] = 0.0
        if perm is not None:
            kp = kp[:, perm.to(kp.device)]
        keypoints = kp.float()
    out = Objects(new_boxes.float(), target.labels, target.iscrowd, target.ids, masks, keypoints)
    return out.select(keep)


def warp(batch: ObjectBatch, ax: torch.Tensor, bx: torch.Tensor, ay: torch.Tensor, by: torch.Tensor,
         out_size: tuple[int, int] | None = None, *, fill: float | tuple[float, ...] = 0.0,
         interpolation: str = "bilinear", min_size: float = 1.0,
         flip_pairs: list[tuple[int, int]] | None = None) -> ObjectBatch:
    """Apply ``x' = ax * x + bx, y' = ay * y + by`` (one value per image) to a batch and its targets."""
    images = batch.images
    b, c, h, w = images.shape
    ho, wo = out_size or (h, w)
    dev = images.device
    ax, bx, ay, by = (torch.as_tensor(v, dtype=torch.float64, device=dev).reshape(-1).expand(b) for v in (ax, bx, ay, by))
    if bool(((ax == 0) | (ay == 0)).any()):
        raise ValueError("a warp needs non-zero scales")
    src_x, src_y = _axis_sources(ax, bx, wo), _axis_sources(ay, by, ho)  # B x Wo, B x Ho
    cols, col_in = _nearest_index(src_x, w)
    rows, row_in = _nearest_index(src_y, h)
    inside = row_in.unsqueeze(2) & col_in.unsqueeze(1)  # B x Ho x Wo
    fill_t = torch.as_tensor(fill, dtype=torch.float32, device=dev).reshape(-1).expand(c).view(1, c, 1, 1)
    if interpolation == "nearest":
        bi = torch.arange(b, device=dev).view(b, 1, 1)
        picked = images[bi, :, rows.unsqueeze(2), cols.unsqueeze(1)].permute(0, 3, 1, 2).float()  # B x C x Ho x Wo
        out = torch.where(inside.unsqueeze(1), picked, fill_t).round_().clamp_(0, 255).to(torch.uint8)
    elif interpolation == "bilinear":
        gx = (2.0 * src_x / w - 1.0).float()
        gy = (2.0 * src_y / h - 1.0).float()
        grid = torch.stack([gx.unsqueeze(1).expand(b, ho, wo), gy.unsqueeze(2).expand(b, ho, wo)], dim=-1)
        source = torch.cat([images.float(), torch.ones(b, 1, h, w, device=dev)], 1)  # last channel: coverage
        sampled = F.grid_sample(source, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
        out = (sampled[:, :c] + (1.0 - sampled[:, c:]) * fill_t).round_().clamp_(0, 255).to(torch.uint8)
    else:
        raise ValueError(f"interpolation must be 'bilinear' or 'nearest', not {interpolation!r}")
    semantic = None
    if batch.semantic is not None:
        bi = torch.arange(b, device=dev).view(b, 1, 1)
        semantic = batch.semantic[bi, rows.unsqueeze(2), cols.unsqueeze(1)]
        semantic = torch.where(inside, semantic, torch.full_like(semantic, IGNORE))
    targets = []
    for i, target in enumerate(batch.targets):
        a_x, b_x, a_y, b_y = float(ax[i]), float(bx[i]), float(ay[i]), float(by[i])
        perm = None
        if a_x < 0 and target.keypoints is not None:
            perm = flip_permutation(target.keypoints.shape[1], flip_pairs).to(dev)
        targets.append(_transform_objects(target, a_x, b_x, a_y, b_y, rows[i], cols[i], inside[i], (ho, wo),
                                          min_size, perm))
    old = batch.affine.to(torch.float64)
    new = torch.stack([ax.cpu() * old[:, 0], ax.cpu() * old[:, 1] + bx.cpu(),
                       ay.cpu() * old[:, 2], ay.cpu() * old[:, 3] + by.cpu()], 1)
    return ObjectBatch(out, targets, semantic, batch.indices, new)


def color_jitter(images: torch.Tensor, strength: float, generator: torch.Generator | None = None) -> torch.Tensor:
    """Per image: brightness, contrast and (colour images) saturation factors drawn from 1 ± ``strength``."""
    if strength <= 0:
        return images
    b, c = images.shape[:2]
    dev = images.device
    lo, hi = max(0.0, 1.0 - strength), 1.0 + strength
    draw = lambda: (torch.rand(b, generator=generator) * (hi - lo) + lo).to(dev).view(b, 1, 1, 1)  # noqa: E731
    brightness, contrast, saturation = draw(), draw(), draw()
    x = images.float() * brightness
    if c == 3:
        grey = (0.299 * x[:, 0:1] + 0.587 * x[:, 1:2] + 0.114 * x[:, 2:3])  # ITU-R 601 luma
        x = grey + (x - grey) * saturation
        level = grey.mean(dim=(2, 3), keepdim=True)
    else:
        level = x.mean(dim=(1, 2, 3), keepdim=True)
    x = level + (x - level) * contrast
    return x.round_().clamp_(0, 255).to(torch.uint8)


@dataclass
class ObjectAugment:
    """Random geometric and colour changes for a batch; each field off by default.

    ``crop``: random resized crop (Szegedy et al. 2015, "Going deeper with convolutions", section 6: patches
    of 8% to 100% of the image, aspect ratio 3/4 to 4/3), the kept area as a fraction of the image (e.g.
    ``(0.3, 1.0)``), aspect ratio in ``ratio``; ``scale``: zoom factor range about the centre (log-uniform); ``translate``: shift
    by up to this fraction of the size; ``flip``: mirror half the images, where the data allows it;
    ``color``: brightness / contrast / saturation strength; ``min_size``: smallest box side kept.
    """

    flip: bool = False
    crop: tuple[float, float] | None = None
    ratio: tuple[float, float] = (3 / 4, 4 / 3)
    scale: tuple[float, float] | None = None
    translate: float = 0.0
    color: float = 0.0
    min_size: float = 2.0
    interpolation: str = "bilinear"

    def __post_init__(self):
        for name, top in (("crop", 1.0), ("scale", math.inf)):
            rng = getattr(self, name)
            if rng is not None and not 0 < rng[0] <= rng[1] <= top:
                bound = " <= 1" if name == "crop" else ""
                raise ConfigError(f"augment {name} range must satisfy 0 < low <= high{bound}, got {rng}")
        if not 0 <= self.translate < 1:
            raise ConfigError(f"augment translate must be in [0, 1), got {self.translate}")
        if self.color < 0:
            raise ConfigError(f"augment color must be non-negative, got {self.color}")

    @property
    def geometric(self) -> bool:
        return self.flip or self.crop is not None or self.scale is not None or self.translate > 0

    def __call__(self, batch: ObjectBatch, generator: torch.Generator | None = None, *, hflip: bool = True,
                 flip_pairs: list[tuple[int, int]] | None = None, fill: float | tuple[float, ...] = 0.0) -> ObjectBatch:
        """Augment ``batch``; ``hflip`` says whether the data allows mirrors (``dataset.hflip``)."""
        b, _, h, w = batch.images.shape
        ax, bx = torch.ones(b, dtype=torch.float64), torch.zeros(b, dtype=torch.float64)
        ay, by = ax.clone(), bx.clone()
        uniform = lambda: torch.rand(b, generator=generator, dtype=torch.float64)  # noqa: E731
        if self.crop is not None:
            area = (self.crop[0] + uniform() * (self.crop[1] - self.crop[0])) * h * w
            log_lo, log_hi = math.log(self.ratio[0]), math.log(self.ratio[1])
            aspect = torch.exp(log_lo + uniform() * (log_hi - log_lo))
            cw = torch.sqrt(area * aspect).clamp(1, w)
            ch = torch.sqrt(area / aspect).clamp(1, h)
            x0, y0 = uniform() * (w - cw), uniform() * (h - ch)
            ax, ay = w / cw, h / ch  # the window [x0, x0 + cw) fills the output
            bx, by = -x0 * ax, -y0 * ay
        if self.scale is not None or self.translate > 0:
            lo, hi = self.scale or (1.0, 1.0)
            s = torch.exp(math.log(lo) + uniform() * (math.log(hi) - math.log(lo)))
            tx = (uniform() * 2 - 1) * self.translate * w
            ty = (uniform() * 2 - 1) * self.translate * h
            # zoom by s about the centre, then shift: x'' = s * (x' - c) + c + t
            ax, bx = s * ax, s * (bx - w / 2) + w / 2 + tx
            ay, by = s * ay, s * (by - h / 2) + h / 2 + ty
        if self.flip and hflip:
            mirror = uniform() < 0.5
            ax = torch.where(mirror, -ax, ax)
            bx = torch.where(mirror, w - bx, bx)
        if self.geometric:
            batch = warp(batch, ax, bx, ay, by, fill=fill, interpolation=self.interpolation, min_size=self.min_size,
                         flip_pairs=flip_pairs)
        if self.color > 0:
            batch = ObjectBatch(color_jitter(batch.images, self.color, generator), batch.targets, batch.semantic,
                                batch.indices, batch.affine)
        return batch


def _range(text: str, name: str) -> tuple[float, float]:
    try:
        parts = [float(v) for v in text.split(":")]
    except ValueError:
        raise ConfigError(f"augment {name}: '{text}' is not a number or LOW:HIGH range") from None
    return (parts[0], parts[0]) if len(parts) == 1 else (parts[0], parts[1])


def parse_object_augment(text: str | None) -> ObjectAugment:
    """``"flip,crop=0.3:1,scale=0.5:1.5,translate=0.1,color=0.4,min-size=2"`` -> :class:`ObjectAugment`.

    Bare ``crop``, ``scale``, ``translate`` and ``color`` take the defaults 0.3:1, 0.5:1.5, 0.1 and 0.3.
    """
    aug = {}
    for item in filter(None, (p.strip() for p in (text or "").split(","))):
        key, _, value = item.partition("=")
        key = key.strip().replace("-", "_")
        if key == "flip":
            aug["flip"] = True
        elif key in ("crop", "scale"):
            aug[key] = _range(value or ("0.3:1" if key == "crop" else "0.5:1.5"), key)
        elif key in ("translate", "color", "min_size"):
            aug[key] = _range(value or {"translate": "0.1", "color": "0.3", "min_size": "2"}[key], key)[0]
        elif key == "nearest":
            aug["interpolation"] = "nearest"
        else:
            raise ConfigError(f"unknown augmentation '{key}' (known: flip, crop, scale, translate, color, min-size, nearest)")
    return ObjectAugment(**aug)
