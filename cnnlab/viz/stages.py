"""The stages of a network's feature extractor: where feature maps are read and CAM is attached.

Every cnnlab classifier has a trunk (:meth:`cnnlab.backbone.Backbone.trunk`) and a head. The trunk is
walked in order; a *stage* begins at each module that convolves or pools (a ``Conv2d``, a pooling layer, or a
composite block such as an Inception module, a residual block or a dense block) and takes in the
normalisation, activation and dropout layers that follow it, so a stage's output is what the next
stage sees: ``conv -> bn -> relu`` is one stage whose output is the rectified map.

Plain ``nn.Sequential`` containers that hold several convolutions or pools directly (a VGG block, a
DenseNet transition) are opened up so each of their convolutions is its own stage; a conv-bn-relu
unit stays one stage, and so do containers of composite blocks (a ResNet ``layer1``, a dense block),
which keeps deep networks readable. Stages are named by their attribute path inside ``features``
(``conv1``, ``inception4a``, ``transition1.pool``) where it has no numbers, else by kind and count
(``conv3``, ``pool2``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from ..errors import unknown_name

_POOLS = (nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d, nn.LPPool2d)


def is_conv(module: nn.Module) -> bool:
    return isinstance(module, nn.Conv2d)


def is_pool(module: nn.Module) -> bool:
    return isinstance(module, _POOLS)


def _contains_conv(module: nn.Module) -> bool:
    return any(is_conv(m) for m in module.modules())


def _is_active(module: nn.Module) -> bool:
    """Does this module change the spatial content (convolve or pool), directly or inside it?"""
    return any(is_conv(m) or is_pool(m) for m in module.modules())


def _opens_up(module: nn.Module) -> bool:
    """A plain Sequential holding convolutions or pools directly, more than one active module in all, is
    walked into (a VGG block); one with a single convolution (a conv-bn-relu unit) stays whole."""
    if type(module) is not nn.Sequential:
        return False
    children = list(module.children())
    return any(is_conv(c) or is_pool(c) for c in children) and sum(_is_active(c) for c in children) > 1


@dataclass
class Stage:
    """One stage: a name for people, the module path in ``model.named_modules()``, and its modules."""

    name: str
    path: str
    kind: str  # "conv", "pool" or "block"
    modules: list[nn.Module] = field(default_factory=list)
    paths: list[str] = field(default_factory=list)

    @property
    def output_module(self) -> nn.Module:
        """The module whose output is the stage's output (its last one)."""
        return self.modules[-1]

    @property
    def has_conv(self) -> bool:
        return any(_contains_conv(m) for m in self.modules)


def _kind(module: nn.Module) -> str:
    """conv / pool for a layer, or a Sequential unit holding just one of them; block otherwise."""
    if type(module) is nn.Sequential:
        active = [c for c in module.children() if _is_active(c)]
        if len(active) == 1 and (is_conv(active[0]) or is_pool(active[0])):
            module = active[0]
    return "conv" if is_conv(module) else "pool" if is_pool(module) else "block"


def feature_body(model: nn.Module) -> tuple[nn.Module, str]:
    """The convolutional body of a model that is not a cnnlab backbone, and its attribute path."""
    body = getattr(model, "features", None)
    if isinstance(body, nn.Module):
        return body, "features"
    return model, ""


def body_chain(model: nn.Module) -> tuple[list[tuple[str, str, nn.Module]], str]:
    """(attribute name, path, module) of the modules that make ``model``'s features, in order, with
    plain Sequentials opened up; and the path prefix the stage names leave out (``features`` or none).

    A cnnlab backbone gives its trunk; another model its ``features``, or its own children less any
    that hold a fully connected layer (its head)."""
    from ..backbone import Backbone

    if isinstance(model, Backbone):
        trunk = model.trunk()
        prefix = "features" if all(path.startswith("features.") for path, _ in trunk) else ""
        chain = []
        for path, module in trunk:
            chain.extend(_walk(module, path) if _opens_up(module) else [(path.rsplit(".", 1)[-1], path, module)])
        return chain, prefix
    body, prefix = feature_body(model)
    chain = _walk(body, prefix)
    if body is model:
        chain = [c for c in chain if not any(isinstance(m, nn.Linear) for m in c[2].modules())]
    return chain, prefix


def _walk(container: nn.Module, prefix: str) -> list[tuple[str, str, nn.Module]]:
    """(attribute name, path, module) of the chain of modules in ``container``, opening plain Sequentials."""
    out = []
    for name, child in container.named_children():
        path = f"{prefix}.{name}" if prefix else name
        if _opens_up(child):
            out.extend(_walk(child, path))
        else:
            out.append((name, path, child))
    return out


def feature_stages(model: nn.Module) -> list[Stage]:
    """The stages of ``model``'s feature body, in forward order.

    A model without a ``features`` attribute is walked from its own children, skipping any that
    hold a fully connected layer (its head).
    """
    chain, prefix = body_chain(model)
    stages: list[Stage] = []
    counters = {"conv": 0, "pool": 0, "block": 0}
    pending: list[tuple[str, nn.Module]] = []  # passive layers seen before the first stage
    used: set[str] = set()
    for name, path, module in chain:
        if not _is_active(module):
            if stages:
                stages[-1].modules.append(module)
                stages[-1].paths.append(path)
            else:
                pending.append((path, module))
            continue
        kind = _kind(module)
        counters[kind] += 1
        relative = path[len(prefix) + 1:] if prefix else path  # "conv1", "transition1.pool", "0.2"
        if any(part.isdigit() for part in relative.split(".")):
            label = f"{kind}{counters[kind]}" if kind != "block" else f"{type(module).__name__.lower()}{counters[kind]}"
        else:
            label = relative
        while label in used:  # an attribute name may collide with a generated one
            label += "'"
        used.add(label)
        stage = Stage(label, path, kind, [m for _, m in pending] + [module], [p for p, _ in pending] + [path])
        pending.clear()
        stages.append(stage)
    return stages


def find_stage(model: nn.Module, key: str) -> Stage:
    """A stage by its name (``conv2``, ``layer3``, ``inception4a``) or module path (``features.3``)."""
    stages = feature_stages(model)
    for stage in stages:
        if key == stage.name or key in stage.paths:
            return stage
    raise unknown_name("layer", key, [s.name for s in stages])


def find_module(model: nn.Module, key: str | nn.Module) -> nn.Module:
    """A module given itself, a stage name (its output module), or a path in ``model.named_modules()``."""
    if isinstance(key, nn.Module):
        return key
    stages = feature_stages(model)
    for stage in stages:
        if key == stage.name:
            return stage.output_module
    modules = dict(model.named_modules())
    if key in modules and key:
        return modules[key]
    raise unknown_name("layer", key, [s.name for s in stages] + [p for p in modules if p])


class OutputRecorder:
    """Forward hooks that keep the first output of each watched module during one forward pass.

    ``keep_graph`` keeps the output attached to autograd (for CAM); the module's successors then
    receive a copy, so an in-place operation after the hook (``ReLU(inplace=True)``, ``out += x``)
    cannot overwrite the recorded tensor.
    """

    def __init__(self, modules: list[nn.Module], *, keep_graph: bool = False):
        self.outputs: dict[int, torch.Tensor] = {}
        self.keep_graph = keep_graph
        self._handles = [m.register_forward_hook(self._hook_for(i)) for i, m in enumerate(modules)]

    def _hook_for(self, index: int):
        def hook(module, inputs, output):
            if not isinstance(output, torch.Tensor) or index in self.outputs:
                return None
            if self.keep_graph:
                self.outputs[index] = output
                return output.clone()
            self.outputs[index] = output.detach().cpu().clone()
            return None

        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()

    def __enter__(self) -> "OutputRecorder":
        return self

    def __exit__(self, *exc) -> None:
        self.remove()


class _Reached(Exception):
    """Raised inside a forward hook once the wanted output is recorded: the rest of the network is skipped."""


def forward_until(model: nn.Module, layer: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The output of ``layer`` when ``model`` runs on ``x``, without running the layers after it.

    Autograd is kept if it is enabled, so the result can be differentiated with respect to ``x``.
    """
    captured: list[torch.Tensor] = []

    def hook(module, inputs, output):
        captured.append(output)
        raise _Reached

    handle = layer.register_forward_hook(hook)
    try:
        model(x)
    except _Reached:
        pass
    finally:
        handle.remove()
    if not captured:
        raise ValueError("the chosen layer was not run by the model's forward pass")
    return captured[0]
