"""Neural style transfer (Gatys, Ecker & Bethge, "Image Style Transfer Using Convolutional Neural
Networks", CVPR 2016).

An image is optimised, pixel by pixel, so that its VGG-19 features match those of a content image
at one layer and the Gram matrices of its features match those of a style image at five:

* content: ``conv4_2``; ``L_content = 1/2 sum (F - P)^2`` (Eq. 1);
* style: ``conv1_1, conv2_1, conv3_1, conv4_1, conv5_1`` with weights 1/5 (§2.2, Fig. 2), the Gram
  matrix ``G_ij = sum_k F_ik F_jk`` of the N_l x M_l feature matrix, and
  ``E_l = 1 / (4 N_l^2 M_l^2) sum (G - A)^2`` (Eqs. 3-5);
* ``L = alpha L_content + beta L_style`` with ``alpha / beta = 1e-3`` (Fig. 3's middle column);
* the max-pools are replaced by average pools ("improves the gradient flow", §2.1), and the
  optimiser is L-BFGS (§2.3), started from the content image (or white noise, as in the paper's figures).

"conv" layers mean their ReLU outputs, as in the paper's code. The network is cnnlab's ``vgg19`` with
torchvision's parameter names (``features.N``), so a torchvision VGG-19 weight file loads into it
(``weights``: read weights-only, or safetensors). Without ImageNet weights the features are random
projections: the result keeps the content's outline and takes the style image's colours and a
texture of random filters, not the painter's strokes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import CheckpointError, ConfigError

# torchvision's VGG-19 ``features`` indices of the ReLU after each named convolution (Table 1, column E)
LAYERS = {"conv1_1": 1, "conv1_2": 3, "conv2_1": 6, "conv2_2": 8, "conv3_1": 11, "conv3_2": 13, "conv3_3": 15,
          "conv3_4": 17, "conv4_1": 20, "conv4_2": 22, "conv4_3": 24, "conv4_4": 26, "conv5_1": 29,
          "conv5_2": 31, "conv5_3": 33, "conv5_4": 35}
CONTENT_LAYERS = ("conv4_2",)
STYLE_LAYERS = ("conv1_1", "conv2_1", "conv3_1", "conv4_1", "conv5_1")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def gram_matrix(features: torch.Tensor) -> torch.Tensor:
    """``G_ij = sum_k F_ik F_jk`` for each image's N x M feature matrix (N channels, M positions): B x N x N."""
    b, n = features.shape[:2]
    flat = features.reshape(b, n, -1)
    return flat @ flat.transpose(1, 2)


def style_layer_loss(features: torch.Tensor, target_gram: torch.Tensor) -> torch.Tensor:
    """Eq. 4: ``E_l = 1 / (4 N^2 M^2) sum (G - A)^2``."""
    n, m = features.shape[1], features.shape[2] * features.shape[3]
    return (gram_matrix(features) - target_gram).square().sum() / (4 * n * n * m * m)


def content_loss(features: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Eq. 1: ``1/2 sum (F - P)^2``."""
    return 0.5 * (features - target).square().sum()


def load_vgg19(weights: str | Path | None = None, *, average_pool: bool = True) -> nn.Sequential:
    """The ``features`` of VGG-19 (up to ``conv5_1``'s ReLU), from a torchvision weight file or random."""
    from ..models.vgg import make_features
    from ..specs.vgg import VGG_COLUMNS

    # Only the convolutional stack (the classifier's 120M parameters are not needed)
    layers = list(make_features(VGG_COLUMNS["E"], 3, False)[0].children())[:LAYERS["conv5_1"] + 1]
    stack = nn.Sequential(*layers)  # features.0 ... features.29: torchvision's names, cut after conv5_1
    if weights:
        state = read_weight_file(weights)
        own = stack.state_dict()
        missing = [k for k in own if f"features.{k}" not in state]
        if missing:
            raise CheckpointError(f"{weights} is not a VGG-19 weight file: it lacks features.{missing[0]} "
                                  f"(and {len(missing) - 1} more)")
        for k, v in own.items():
            if tuple(state[f"features.{k}"].shape) != tuple(v.shape):
                raise CheckpointError(f"{weights}: features.{k} is {tuple(state[f'features.{k}'].shape)}, "
                                      f"VGG-19 has {tuple(v.shape)}")
        stack.load_state_dict({k: state[f"features.{k}"] for k in own})
    if average_pool:  # §2.1: average pooling for synthesis
        layers = [nn.AvgPool2d(2, 2) if isinstance(m, nn.MaxPool2d) else m for m in stack]
    net = nn.Sequential(*layers).eval()
    for p in net.parameters():
        p.requires_grad_(False)
    return net


def read_weight_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from a ``.safetensors`` file or a torch file read weights-only (never unpickled)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"weight file '{path}' does not exist")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(path))
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - a pickle of objects, or not a torch file at all
        raise CheckpointError(f"{path} cannot be read weights-only (a torchvision state dict is expected): "
                              f"{str(e).splitlines()[0][:200]}") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path} does not hold a state dict of tensors")
    return state


class Features(nn.Module):
    """The named layers' outputs of a VGG ``features`` stack for an image in [0, 1] (normalised with
    ImageNet's statistics, as the weights were trained)."""

    def __init__(self, vgg: nn.Sequential, names: tuple[str, ...]):
        super().__init__()
        self.vgg, self.names = vgg, names
        self.index = {LAYERS[n]: n for n in names}
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1))

    def forward(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        h = (x - self.mean) / self.std
        out = {}
        last = max(self.index)
        for i, layer in enumerate(self.vgg):
            h = layer(h)
            if i in self.index:
                out[self.index[i]] = h
            if i == last:
                break
        return out


@dataclass
class StyleResult:
    image: torch.Tensor  # uint8 3 x H x W
    losses: list[float] = field(default_factory=list)  # total loss per step
    content: float = 0.0
    style: float = 0.0


def to_float(image: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 C x H x W (grey or RGB) -> float 1 x 3 x H' x W' in [0, 1], the shorter side ``size``."""
    x = image.float().unsqueeze(0) / 255.0
    if x.shape[1] == 1:
        x = x.expand(-1, 3, -1, -1)
    h, w = x.shape[2:]
    scale = size / min(h, w)
    return F.interpolate(x, size=(max(16, round(h * scale)), max(16, round(w * scale))), mode="bilinear",
                         align_corners=False, antialias=True)


def stylize(content: torch.Tensor, style: torch.Tensor, *, weights: str | Path | None = None,
            vgg: nn.Sequential | None = None, size: int = 256, steps: int = 200, ratio: float = 1e-3,
            optimizer: str = "lbfgs", init: str = "content", seed: int = 0,
            log: Callable[[str], None] | None = None) -> StyleResult:
    """The content image painted in the style image's style (both uint8 C x H x W)."""
    if optimizer not in ("lbfgs", "adam"):
        raise ConfigError(f"optimizer must be lbfgs or adam, not '{optimizer}'")
    if init not in ("content", "noise"):
        raise ConfigError(f"init must be content or noise, not '{init}'")
    if steps < 1 or size < 16 or ratio <= 0:
        raise ConfigError("steps must be at least 1, size at least 16 and ratio positive")
    net = vgg if vgg is not None else load_vgg19(weights)
    extract = Features(net, CONTENT_LAYERS + STYLE_LAYERS)
    c, s = to_float(content, size), to_float(style, size)
    with torch.no_grad():
        targets_c = {k: v for k, v in extract(c).items() if k in CONTENT_LAYERS}
        targets_s = {k: gram_matrix(v) for k, v in extract(s).items() if k in STYLE_LAYERS}
    g = torch.Generator().manual_seed(seed)
    x = (c.clone() if init == "content" else torch.rand(c.shape, generator=g)).requires_grad_(True)
    alpha, beta = ratio, 1.0  # alpha / beta = ratio
    w = 1.0 / len(STYLE_LAYERS)
    losses: list[float] = []
    parts = {"content": 0.0, "style": 0.0}

    def objective() -> torch.Tensor:
        feats = extract(x)
        lc = sum(content_loss(feats[k], targets_c[k]) for k in CONTENT_LAYERS)
        ls = sum(w * style_layer_loss(feats[k], targets_s[k]) for k in STYLE_LAYERS)
        parts["content"], parts["style"] = float(lc.detach()), float(ls.detach())
        return alpha * lc + beta * ls

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = objective()
        loss.backward()
        losses.append(float(loss.detach()))
        if log and len(losses) % max(1, steps // 10) == 0:
            log(f"step {len(losses)}/{steps}: loss {losses[-1]:.4g} (content {parts['content']:.4g}, "
                f"style {parts['style']:.4g})")
        return loss

    if optimizer == "lbfgs":  # rounds of up to 20 iterations (one evaluation each), pixels clamped between
        opt = torch.optim.LBFGS([x], lr=1.0, max_iter=20, max_eval=20, history_size=50,
                                tolerance_grad=0.0, tolerance_change=0.0, line_search_fn="strong_wolfe")
    else:
        opt = torch.optim.Adam([x], lr=0.02)
    while len(losses) < steps:
        if optimizer == "lbfgs":
            opt.param_groups[0]["max_iter"] = opt.param_groups[0]["max_eval"] = min(20, steps - len(losses))
        opt.step(closure)
        with torch.no_grad():
            x.clamp_(0, 1)
    losses = losses[:steps]
    image = (x.detach()[0].clamp(0, 1) * 255).round().to(torch.uint8)
    return StyleResult(image, losses, parts["content"], parts["style"])
