"""Batch-norm folding: merge an inference-mode batch norm into the convolution or linear layer before it.

At inference a batch norm is a fixed per-channel affine map (Ioffe & Szegedy 2015, Algorithm 2, step 11):
``y = gamma * (z - mean) / sqrt(var + eps) + beta``. When ``z = W x + b`` comes straight from a
convolution or linear layer, the map folds into that layer's weights:

    scale = gamma / sqrt(var + eps)          # one number per output channel
    W'    = W * scale   (per output channel)
    b'    = (b - mean) * scale + beta

so the network computes the same function with one layer and one memory pass fewer.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

_PAIRS = ((nn.Conv2d, nn.BatchNorm2d), (nn.Conv1d, nn.BatchNorm1d), (nn.Linear, nn.BatchNorm1d))


def fold_into(layer: nn.Conv2d | nn.Conv1d | nn.Linear, bn: nn.modules.batchnorm._BatchNorm) -> nn.Module:
    """A new layer equal to ``bn(layer(x))`` for an inference-mode ``bn``."""
    if bn.running_mean is None or bn.running_var is None:
        raise ValueError("a batch norm without running statistics cannot be folded")
    fused = copy.deepcopy(layer)
    with torch.no_grad():
        scale = bn.running_var.add(bn.eps).rsqrt()  # C_out
        if bn.weight is not None:
            scale = scale * bn.weight
        shift = -bn.running_mean * scale
        if bn.bias is not None:
            shift = shift + bn.bias
        bias = layer.bias if layer.bias is not None else torch.zeros_like(bn.running_mean)
        # W: C_out x C_in x kH x kW (conv) or C_out x C_in (linear); scale each output channel's row.
        fused.weight = nn.Parameter(layer.weight * scale.view(-1, *([1] * (layer.weight.ndim - 1))))
        fused.bias = nn.Parameter(bias * scale + shift)
    return fused


def _foldable(layer: nn.Module, bn: nn.Module) -> bool:
    return any(type(layer) is a and type(bn) is b for a, b in _PAIRS) and bn.track_running_stats


def fold_batchnorm(model: nn.Module) -> nn.Module:
    """A copy of ``model`` (in eval mode) with every batch norm that directly follows a conv or linear
    layer folded into it.

    The graph is found by ``torch.fx`` tracing, so it works for layers held as attributes (ResNet's
    ``conv1``/``bn1``) as well as inside ``nn.Sequential``; a model that cannot be traced falls back to
    folding adjacent pairs inside its ``nn.Sequential`` containers.
    """
    model = copy.deepcopy(model).eval()
    try:
        return _fold_traced(model)
    except Exception:  # noqa: BLE001 - tracing fails on data-dependent control flow; fall back
        _fold_sequentials(model)
        return model


def _fold_traced(model: nn.Module) -> nn.Module:
    import torch.fx as fx

    graph_module = fx.symbolic_trace(model)
    modules = dict(graph_module.named_modules())
    for node in list(graph_module.graph.nodes):
        if node.op != "call_module" or not node.args or not isinstance(node.args[0], fx.Node):
            continue
        source = node.args[0]
        if source.op != "call_module" or len(source.users) != 1:
            continue  # the conv output is also used un-normalised elsewhere: folding would change that use
        layer, bn = modules[source.target], modules[node.target]
        if not _foldable(layer, bn):
            continue
        _set_submodule(graph_module, source.target, fold_into(layer, bn))
        node.replace_all_uses_with(source)
        graph_module.graph.erase_node(node)
    graph_module.graph.lint()
    graph_module.delete_all_unused_submodules()
    graph_module.recompile()
    return graph_module


def _set_submodule(root: nn.Module, target: str, module: nn.Module) -> None:
    parent_name, _, name = target.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, name, module)


def _fold_sequentials(model: nn.Module) -> None:
    for seq in [m for m in model.modules() if isinstance(m, nn.Sequential)]:
        names = list(seq._modules)
        i = 0
        while i < len(names) - 1:
            layer, bn = seq._modules[names[i]], seq._modules[names[i + 1]]
            if _foldable(layer, bn):
                seq._modules[names[i]] = fold_into(layer, bn)
                seq._modules[names[i + 1]] = nn.Identity()
                i += 2
            else:
                i += 1


def count_batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())
