"""Where a classifier looks: Grad-CAM, Grad-CAM++ and gradient saliency.

- Grad-CAM: Selvaraju et al., "Grad-CAM: Visual Explanations from Deep Networks via Gradient-based
  Localization", ICCV 2017, Eq. 1-2: channel weights are the spatially averaged gradients of the
  class score, the map is ``ReLU(sum_k w_k A^k)``.
- Grad-CAM++: Chattopadhay et al., "Grad-CAM++: Generalized Gradient-Based Visual Explanations for
  Deep Convolutional Networks", WACV 2018, Eq. 19 (exponential of the score, so only first-order
  gradients are needed): pixel weights ``a = g^2 / (2 g^2 + sum(A) g^3)``, channel weights
  ``w_k = sum a * ReLU(g)``.
- Saliency: Simonyan, Vedaldi, Zisserman, "Deep Inside Convolutional Networks", ICLR 2014 workshop,
  Sec. 3.1: the largest absolute input gradient over the colour channels.

All three return H x W float arrays in [0, 1] at the input's resolution.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .stages import OutputRecorder, feature_stages, find_module


MIN_CAM_SIDE = 3  # smallest map side the default target layer may have


def default_target_layer(model: nn.Module, x: torch.Tensor | None = None) -> nn.Module:
    """The module Grad-CAM reads by default: the output of the last feature stage that convolves.

    That is the last convolutional map before the head, the choice of the Grad-CAM paper (Sec. 3:
    "the last convolutional layer"). When an input ``x`` is given, stages whose map on it is smaller
    than 3 x 3 are passed over (a 1 x 1 or 2 x 2 map can hardly say *where*), so 28 x 28 forms of
    deep networks still give a spatial map: ResNet-18's ``layer3`` (4 x 4) rather than ``layer4``.
    """
    stages = [s for s in feature_stages(model) if s.has_conv]
    if not stages:
        raise ValueError(f"{type(model).__name__} has no convolutional stage to attach Grad-CAM to")
    if x is None:
        return stages[-1].output_module
    sizes = _stage_sizes(model, x, [s.output_module for s in stages])
    for stage, size in zip(reversed(stages), reversed(sizes)):
        if size is not None and min(size) >= MIN_CAM_SIDE:
            return stage.output_module
    return stages[-1].output_module


@torch.no_grad()
def _stage_sizes(model: nn.Module, x: torch.Tensor, modules: list[nn.Module]) -> list[tuple[int, int] | None]:
    was_training = model.training
    model.eval()
    try:
        with OutputRecorder(modules) as rec:
            model(_batch(x))
    finally:
        model.train(was_training)
    return [tuple(rec.outputs[i].shape[-2:]) if i in rec.outputs and rec.outputs[i].dim() == 4 else None
            for i in range(len(modules))]


def _batch(x: torch.Tensor) -> torch.Tensor:
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[0] != 1:
        raise ValueError(f"expected one image, 1 x C x H x W; got shape {tuple(x.shape)}")
    return x


@dataclass
class _Pass:
    """One forward/backward pass: the target layer's map, its gradient, the input gradient."""

    activation: torch.Tensor  # C x h x w
    gradient: torch.Tensor  # C x h x w
    input_gradient: torch.Tensor  # C_in x H x W
    class_index: int
    scores: torch.Tensor  # num_classes, softmax probabilities


def _forward_backward(model: nn.Module, x: torch.Tensor, class_index: int | None,
                      target_layer: nn.Module | str | None) -> _Pass:
    x = _batch(x).detach().float().clone().requires_grad_(True)
    layer = find_module(model, target_layer) if target_layer is not None else default_target_layer(model, x.detach())
    was_training = model.training
    model.eval()
    try:
        with torch.enable_grad(), OutputRecorder([layer], keep_graph=True) as rec:
            logits = model(x)  # 1 x num_classes
            if 0 not in rec.outputs:
                raise ValueError("the target layer was not run by the model's forward pass")
            activation = rec.outputs[0]
            if activation.dim() != 4:
                raise ValueError(f"the target layer's output must be N x C x h x w, got shape {tuple(activation.shape)}")
            num_classes = logits.shape[1]
            index = int(logits.argmax(1)) if class_index is None else int(class_index)
            if not 0 <= index < num_classes:
                raise ValueError(f"class index {index} is out of range: the model has {num_classes} classes")
            grad_act, grad_x = torch.autograd.grad(logits[0, index], [activation, x])
    finally:
        model.train(was_training)
    return _Pass(activation[0].detach().cpu(), grad_act[0].detach().cpu(), grad_x[0].detach().cpu(), index,
                 torch.softmax(logits.detach()[0].float(), 0).cpu())


def _to_input_size(cam: torch.Tensor, size: tuple[int, int]) -> np.ndarray:
    """h x w map -> H x W in [0, 1]: bilinear upsampling, then divide by the maximum."""
    cam = F.interpolate(cam[None, None].float(), size=size, mode="bilinear", align_corners=False)[0, 0]
    cam = cam.clamp_min(0)
    top = float(cam.max())
    return (cam / top).numpy() if top > 0 else torch.zeros_like(cam).numpy()


def _grad_cam_map(p: _Pass) -> torch.Tensor:
    weights = p.gradient.mean(dim=(1, 2))  # C: alpha_k^c, Eq. 1
    return torch.relu((weights[:, None, None] * p.activation).sum(0))  # h x w, Eq. 2


def _grad_cam_pp_map(p: _Pass) -> torch.Tensor:
    g, a = p.gradient.double(), p.activation.double()
    g2, g3 = g * g, g * g * g
    denominator = 2 * g2 + a.sum(dim=(1, 2), keepdim=True) * g3  # C x h x w
    alpha = g2 / torch.where(denominator != 0, denominator, torch.ones_like(denominator))
    weights = (alpha * torch.relu(g)).sum(dim=(1, 2))  # C
    return torch.relu((weights[:, None, None] * a).sum(0)).float()


def _saliency_map(p: _Pass) -> torch.Tensor:
    return p.input_gradient.abs().amax(0)  # H x W


def grad_cam(model: nn.Module, x: torch.Tensor, class_index: int | None = None,
             target_layer: nn.Module | str | None = None) -> np.ndarray:
    """Grad-CAM of ``class_index`` (default: the predicted class) for one input ``x``.

    ``x``: 1 x C x H x W or C x H x W, normalised as the model expects. ``target_layer``: a module of
    ``model``, a stage name (``conv2``, ``layer4``) or a module path; default
    :func:`default_target_layer`. Returns H x W float32 in [0, 1] (all zeros if no evidence).
    """
    p = _forward_backward(model, x, class_index, target_layer)
    return _to_input_size(_grad_cam_map(p), tuple(_batch(x).shape[-2:]))


def grad_cam_pp(model: nn.Module, x: torch.Tensor, class_index: int | None = None,
                target_layer: nn.Module | str | None = None) -> np.ndarray:
    """Grad-CAM++ (arguments and result as :func:`grad_cam`)."""
    p = _forward_backward(model, x, class_index, target_layer)
    return _to_input_size(_grad_cam_pp_map(p), tuple(_batch(x).shape[-2:]))


def saliency(model: nn.Module, x: torch.Tensor, class_index: int | None = None) -> np.ndarray:
    """Gradient saliency |d score / d x|, max over channels, scaled to [0, 1]; H x W."""
    p = _forward_backward(model, x, class_index, None)
    s = _saliency_map(p)
    top = float(s.max())
    return (s / top).numpy() if top > 0 else s.numpy()


@dataclass
class CamMaps:
    """The three maps of one image and the class they explain."""

    class_index: int
    probabilities: np.ndarray  # num_classes
    grad_cam: np.ndarray  # H x W in [0, 1]
    grad_cam_pp: np.ndarray
    saliency: np.ndarray
    target_layer: str


def cam_maps(model: nn.Module, x: torch.Tensor, class_index: int | None = None,
            target_layer: nn.Module | str | None = None) -> CamMaps:
    """Grad-CAM, Grad-CAM++ and saliency from one forward/backward pass."""
    x = _batch(x)
    layer = find_module(model, target_layer) if target_layer is not None else default_target_layer(model, x)
    p = _forward_backward(model, x, class_index, layer)
    size = tuple(x.shape[-2:])
    sal = _saliency_map(p)
    top = float(sal.max())
    return CamMaps(
        class_index=p.class_index,
        probabilities=p.scores.numpy(),
        grad_cam=_to_input_size(_grad_cam_map(p), size),
        grad_cam_pp=_to_input_size(_grad_cam_pp_map(p), size),
        saliency=(sal / top).numpy() if top > 0 else sal.numpy(),
        target_layer=layer_name(model, layer),
    )


def layer_name(model: nn.Module, layer: nn.Module) -> str:
    """The stage name of ``layer`` if it ends a stage, else its module path."""
    for stage in feature_stages(model):
        if stage.output_module is layer:
            return stage.name
    for path, module in model.named_modules():
        if module is layer:
            return path
    return type(layer).__name__


def plot_cam(image: np.ndarray, e: CamMaps, class_names: list[str], *, title: str = "Where the model looks"):
    """Input, Grad-CAM and Grad-CAM++ over the input, and the saliency map, side by side.

    ``image``: the input as the model sees it, uint8 H x W x C (C = 1 or 3).
    """
    from . import style

    name = class_names[e.class_index] if e.class_index < len(class_names) else str(e.class_index)
    top = int(np.argmax(e.probabilities))
    top_name = class_names[top] if top < len(class_names) else str(top)
    fig = style.figure(10.4, 3.3)
    fig.suptitle(f"{title}: class '{name}' (p = {e.probabilities[e.class_index]:.1%}); "
                 f"predicted '{top_name}' ({e.probabilities[top]:.1%})")
    axes = fig.subplots(1, 4)
    style.show_image(axes[0], image, "input")
    for ax, heat, label in ((axes[1], e.grad_cam, f"Grad-CAM @ {e.target_layer}"),
                            (axes[2], e.grad_cam_pp, f"Grad-CAM++ @ {e.target_layer}")):
        ax.imshow(style.overlay_heatmap(image, heat))
        style.bare(ax)
        ax.set_title(label)
        if not np.any(heat > 0):  # ReLU(sum w_k A^k) <= 0 everywhere: the layer holds no evidence for the class
            ax.text(0.5, 0.5, "no positive evidence\nat this layer", transform=ax.transAxes, ha="center",
                    va="center", color="white", fontsize=9)
    shown = axes[3].imshow(e.saliency, cmap=style.HEAT_CMAP, vmin=0, vmax=1)
    style.bare(axes[3])
    axes[3].set_title("saliency |d score / d x|")
    import matplotlib

    jet = matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(0, 1), cmap="jet")
    style.colorbar(fig, jet, list(axes[1:3]), "CAM (relative)", shrink=0.8)
    style.colorbar(fig, shown, axes[3], "relative", shrink=0.8)
    return fig
