"""The per-layer table the decks compute by hand, for any model.

>>> import cnnlab
>>> s = cnnlab.summarize("lenet5")                       # doctest: +SKIP
>>> s.layers[0].output_shape, s.layers[0].params          # C1: 6@28x28, (5*5*1 + 1)*6
((6, 28, 28), 156)

One row per layer (leaf module, or an operation such as a residual ``+`` or an inception
``torch.cat`` written in a block's forward): kernel, stride, padding and groups; output shape;
parameters, trainable and frozen; multiply-accumulates; neurons (output values per image);
receptive field (size, jump, start; see :mod:`cnnlab.analysis.receptive`); activation memory.

Conventions, stated once:

- **MACs** count multiply-accumulates of convolutions (``C_out*H_out*W_out*(C_in/groups)*k_h*k_w``),
  linear layers (``in*out``), matrix products and recurrent layers, per image. 1 MAC = 2 FLOPs.
  Not counted: biases, batch normalisation, activations, pooling, element-wise additions and LRN
  (they are a few percent of a convolutional network's arithmetic at most). This is the "ops" of
  GoogLeNet's Table 1 and the "MACs" of ptflops and fvcore.
- **Neurons** of a layer are its output values for one image; the total counts weight layers only,
  as the AlexNet deck does (290,400 for C1 and so on).
- **Memory** is the size of a layer's output for one image in its dtype (float32: 4 bytes a value);
  the total leaves out in-place layers (``ReLU(inplace=True)``) but counts views such as
  ``Flatten`` again, so it is a slight upper bound of what a forward pass keeps.
- **Depth** is the number of weight layers (convolution, linear, recurrent) on the longest path
  from the input to the output: 8 for AlexNet, 16 for VGG-16, 22 for GoogLeNet, 152 for ResNet-152.

The model runs once on a single image, on PyTorch's ``meta`` device when built by name (no memory,
no arithmetic: a ResNet-152 summary takes about a second) and on the model's own device otherwise.
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import asdict, dataclass, field
from typing import Any, Sequence

import torch
from torch import nn

from ..console import human_count
from ..errors import CnnlabError
from .receptive import Field
from .shapes import ShapeError
from .tracer import Record, trace

_NORM = (nn.modules.batchnorm._BatchNorm, nn.LayerNorm, nn.GroupNorm, nn.LocalResponseNorm, nn.CrossMapLRN2d,
         nn.modules.instancenorm._InstanceNorm)
_POOL = (nn.modules.pooling._MaxPoolNd, nn.modules.pooling._AvgPoolNd, nn.modules.pooling._AdaptiveAvgPoolNd,
         nn.modules.pooling._AdaptiveMaxPoolNd, nn.modules.pooling._LPPoolNd)
_WEIGHT_KINDS = ("conv", "linear", "recurrent")


@dataclass
class LayerRow:
    """One row of a :class:`Summary`. Shapes exclude the batch axis; spatial values are per axis (H, W)."""

    name: str
    type: str
    kind: str  # conv, linear, recurrent, norm, pool, activation, dropout, merge, block, other
    nesting: int
    output_shape: tuple[int, ...] | None
    params: int  # trainable
    params_frozen: int
    macs: int
    neurons: int
    memory_bytes: int
    kernel: tuple[int, ...] | None = None
    stride: tuple[int, ...] | None = None
    padding: tuple[int, ...] | None = None
    dilation: tuple[int, ...] | None = None
    groups: int | None = None
    rf_size: tuple[int, ...] | None = None
    rf_jump: tuple[int, ...] | None = None
    rf_start: tuple[int, ...] | None = None
    rf_exact: bool = True
    depth: int | None = None
    inplace: bool = False  # the output overwrites the input: it takes no memory of its own
    shared: bool = False  # a later call of a module already listed: its parameters are counted there

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def total_params(self) -> int:
        return self.params + self.params_frozen

    def to_dict(self) -> dict[str, Any]:
        values = asdict(self)
        values["flops"] = self.flops
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in values.items()}


@dataclass
class Summary:
    """The table of :func:`summarize`: ``.layers``, totals and shares, ``.to_dict()`` and text renderings."""

    model: str
    input_size: tuple[int, ...]
    layers: list[LayerRow]
    total_params: int
    trainable_params: int
    total_buffers: int
    used_params: int  # parameters of the layers that ran: no auxiliary heads, which only train
    total_macs: int
    depth: int
    output_shape: tuple[int, ...] | None
    rf_size: tuple[int, ...] | None  # of the output: for a classifier, the union over the whole image
    feature_rf_size: tuple[int, ...] | None  # of one unit of the last feature map that still has a grid
    feature_shape: tuple[int, ...] | None  # that feature map's shape (C, H, W)
    total_neurons: int  # outputs of the weight layers (conv, linear, recurrent), per image
    activation_bytes: int
    param_bytes: int
    params_by_kind: dict[str, int] = field(default_factory=dict)
    macs_by_kind: dict[str, int] = field(default_factory=dict)

    @property
    def total_flops(self) -> int:
        """2 x MACs: one multiply and one add each."""
        return 2 * self.total_macs

    def share(self, what: str = "params") -> dict[str, float]:
        """Fractions of the parameters (or ``"macs"``) held by convolution, fully connected and other layers.

        Of the layers that ran: an auxiliary head used only in training is not part of the shares.
        """
        counts = self.params_by_kind if what == "params" else self.macs_by_kind
        total = sum(counts.values()) or 1
        return {kind: counts.get(kind, 0) / total for kind in ("conv", "linear", "other")}

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "input_size": list(self.input_size),
            "output_shape": list(self.output_shape) if self.output_shape else None,
            "total_params": self.total_params,
            "trainable_params": self.trainable_params,
            "used_params": self.used_params,
            "total_buffers": self.total_buffers,
            "total_macs": self.total_macs,
            "total_flops": self.total_flops,
            "depth": self.depth,
            "receptive_field": list(self.rf_size) if self.rf_size else None,
            "feature_receptive_field": list(self.feature_rf_size) if self.feature_rf_size else None,
            "feature_shape": list(self.feature_shape) if self.feature_shape else None,
            "total_neurons": self.total_neurons,
            "activation_bytes": self.activation_bytes,
            "param_bytes": self.param_bytes,
            "params_by_kind": self.params_by_kind,
            "macs_by_kind": self.macs_by_kind,
            "param_share": self.share("params"),
            "mac_share": self.share("macs"),
            "conventions": "1 MAC = 2 FLOPs; MACs of conv, linear, matmul and recurrent layers only, per image",
            "layers": [row.to_dict() for row in self.layers],
        }

    # ------------------------------------------------------------------ renderings
    COLUMNS = ("layer", "type", "kernel/stride/pad", "output", "params", "MACs", "neurons", "RF size/jump/start",
               "memory")

    def table_rows(self) -> list[list[str]]:
        """The rows as text, in :attr:`COLUMNS` order."""
        return [[row.name, row.type, _window(row), _shape(row.output_shape),
                 ("(shared)" if row.shared else _count(row.total_params)), _count(row.macs, human=True),
                 _count(row.neurons), _field(row), _bytes(row.memory_bytes)] for row in self.layers]

    def footer(self) -> list[str]:
        """The totals as lines of text."""
        params, macs = self.share("params"), self.share("macs")
        frozen = self.total_params - self.trainable_params
        return [
            f"input {'x'.join(map(str, self.input_size))} -> output {_shape(self.output_shape)}; "
            f"depth {self.depth} weight layers"
            + (f"; receptive field of one unit of the last feature map ({_shape(self.feature_shape)}) "
               f"{_axes(self.feature_rf_size)} pixels" if self.feature_rf_size else "")
            + (f"; of the output {_axes(self.rf_size)}"
               if self.rf_size and self.rf_size != self.feature_rf_size else ""),
            f"parameters {self.total_params:,} ({human_count(self.total_params)}"
            + (f", {frozen:,} frozen" if frozen else "") + f"; {_bytes(self.param_bytes)} as stored)"
            + (f"; {self.used_params:,} in layers that ran, the rest in heads used only in training"
               if self.used_params != self.total_params else ""),
            f"MACs {self.total_macs:,} ({human_count(self.total_macs)}) = {human_count(self.total_flops)} FLOPs "
            f"per image (1 MAC = 2 FLOPs)",
            f"share of parameters: conv {params['conv']:.1%}, fully connected {params['linear']:.1%}, "
            f"other {params['other']:.1%}; of MACs: conv {macs['conv']:.1%}, fully connected {macs['linear']:.1%}, "
            f"other {macs['other']:.1%}",
            f"neurons in weight layers {self.total_neurons:,}; activations {_bytes(self.activation_bytes)} per image",
        ]

    def to_csv(self) -> str:
        buffer = io.StringIO()
        dicts = [row.to_dict() for row in self.layers]
        keys = list(dicts[0]) if dicts else list(LayerRow.__dataclass_fields__)
        writer = csv.DictWriter(buffer, fieldnames=keys, lineterminator="\n")
        writer.writeheader()
        for values in dicts:
            writer.writerow({k: ("x".join(map(str, v)) if isinstance(v, list) else v) for k, v in values.items()})
        return buffer.getvalue()

    def to_markdown(self) -> str:
        lines = ["| " + " | ".join(self.COLUMNS) + " |", "|" + "---|" * len(self.COLUMNS)]
        lines += ["| " + " | ".join(cell.replace("|", "/") for cell in row) + " |" for row in self.table_rows()]
        lines += [""] + [f"- {line}" for line in self.footer()]
        return "\n".join(lines) + "\n"

    def __str__(self) -> str:
        return self.to_markdown()


# ------------------------------------------------------------------------------------ formatting

def _axes(values: Sequence[int] | None) -> str:
    if values is None:
        return "?"
    if len(values) == 0:
        return "-"
    return str(values[0]) if len(set(values)) == 1 else "x".join(map(str, values))


def _shape(shape: Sequence[int] | None) -> str:
    return "x".join(map(str, shape)) if shape else "-"


def _count(n: int, human: bool = False) -> str:
    if not n:
        return ""
    return human_count(n) if human else f"{n:,}"


def _bytes(n: int) -> str:
    for unit, size in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{n} B" if n else ""


def _window(row: LayerRow) -> str:
    if row.kernel is None:
        return ""
    text = f"{'x'.join(map(str, row.kernel))}/{_axes(row.stride)}/{_axes(row.padding)}"
    if row.dilation and any(d != 1 for d in row.dilation):
        text += f" d{_axes(row.dilation)}"
    if row.groups and row.groups != 1:
        text += f" g{row.groups}"
    return text


def _field(row: LayerRow) -> str:
    if row.rf_size is None:
        return "?"
    if len(row.rf_size) == 0:
        return ""
    mark = "" if row.rf_exact else "~"
    return f"{mark}{_axes(row.rf_size)}/{_axes(row.rf_jump)}/{_axes(row.rf_start)}"


# ------------------------------------------------------------------------------------ building rows

def _kind(record: Record) -> str:
    module = record.module
    if module is None:
        for kind in ("conv", "linear", "pool", "merge"):
            if kind in record.kinds:
                return kind
        return "other"
    if not record.is_leaf:
        return "block"
    if isinstance(module, nn.modules.conv._ConvNd):
        return "conv"
    if isinstance(module, (nn.Linear, nn.Bilinear)):
        return "linear"
    if isinstance(module, nn.RNNBase):
        return "recurrent"
    if isinstance(module, _NORM):
        return "norm"
    if isinstance(module, _POOL):
        return "pool"
    if isinstance(module, nn.modules.dropout._DropoutNd):
        return "dropout"
    if type(module).__module__ == nn.modules.activation.__name__:
        return "activation"
    for kind in ("conv", "linear", "pool"):  # a custom leaf module: judge by what it computed
        if kind in record.kinds:
            return kind
    return "other"


def _row(record: Record) -> LayerRow:
    trainable = frozen = 0
    if record.module is not None and record.repeat == 0:
        for p in record.module.parameters():
            if p.requires_grad:
                trainable += p.numel()
            else:
                frozen += p.numel()
    spec = record.spec or {}
    shape = record.output_shape
    f: Field | None = record.rf
    return LayerRow(
        name=record.name + (f" (call {record.repeat + 1})" if record.repeat else ""),
        type=record.type, kind=_kind(record), nesting=record.nesting, output_shape=shape,
        params=trainable, params_frozen=frozen, macs=record.total_macs,
        neurons=math.prod(shape) if shape is not None else 0, memory_bytes=record.output_bytes,
        kernel=tuple(spec["kernel"]) if spec else None, stride=tuple(spec["stride"]) if spec else None,
        padding=tuple(spec["padding"]) if spec else None, dilation=tuple(spec["dilation"]) if spec else None,
        groups=spec.get("groups") if spec else None,
        rf_size=tuple(a.size for a in f) if f is not None else None,
        rf_jump=tuple(a.jump for a in f) if f is not None else None,
        rf_start=tuple(a.start for a in f) if f is not None else None,
        rf_exact=all(a.exact for a in f) if f is not None else False,
        depth=record.depth, inplace=record.inplace, shared=record.repeat > 0 and record.module is not None and
        any(True for _ in record.module.parameters()),
    )


def _blocks(records: list[Record], depth: int, model: nn.Module) -> list[LayerRow]:
    """Rows for the modules ``depth`` names deep, each summing everything inside it.

    Grouping goes by qualified name, not by call, so a container whose children its parent calls one
    by one (``for layer in self.features: ...``) still gets its row.
    """
    groups: dict[str, list[Record]] = {}
    for record in records:
        if record.is_leaf:
            key = ".".join(record.name.split(".")[:depth])
            groups.setdefault(key, []).append(record)
    calls = {r.name: r for r in records if r.repeat == 0}
    modules = dict(model.named_modules())
    rows = []
    for key, members in groups.items():
        if len(members) == 1 and members[0].name == key:
            rows.append(_row(members[0]))
            continue
        whole = calls.get(key)
        last = whole if whole is not None and whole.output_shape is not None else members[-1]
        module = modules.get(key)
        row = _row(last)
        trainable = frozen = 0
        for p in (module.parameters() if module is not None else ()):
            trainable += p.numel() if p.requires_grad else 0
            frozen += 0 if p.requires_grad else p.numel()
        row.name, row.kind = key, "block"
        row.type = type(module).__name__ if module is not None else "block"
        row.nesting = depth
        row.params, row.params_frozen = trainable, frozen
        row.macs = sum(m.macs for m in members)
        row.kernel = row.stride = row.padding = row.dilation = row.groups = None
        row.inplace = row.shared = False
        rows.append(row)
    return rows


# ------------------------------------------------------------------------------------ entry point

def parse_input_size(text: str | Sequence[int]) -> tuple[int, ...]:
    """``"3x224x224"`` or ``(3, 224, 224)`` -> ``(3, 224, 224)``; also ``CxL`` for sequences."""
    if isinstance(text, str):
        parts = text.lower().replace("*", "x").replace(",", "x").split("x")
        if not all(p.strip().isdigit() for p in parts):
            raise ShapeError(f"bad input size '{text}'; write CxHxW, e.g. 3x224x224")
        values = tuple(int(p) for p in parts)
    else:
        values = tuple(int(v) for v in text)
    if not 1 <= len(values) <= 4 or any(v < 1 for v in values):
        raise ShapeError(f"bad input size {values}; expected CxHxW with positive sizes, e.g. 3x224x224")
    return values


def _build(name: str, input_size: tuple[int, ...] | None, device: str,
           kwargs: dict) -> tuple[nn.Module, tuple[int, ...]]:
    from ..registry import create_model, model_arguments, model_info

    info = model_info(name)
    if input_size is None:
        input_size = tuple(info.input_size)
    if tuple(input_size) != tuple(info.input_size) and len(input_size) == 3:
        # The size asked for picks the channels, and the small-input form for small images.
        standard = {k: kwargs.pop(k) for k in ("num_classes", "small_input") if k in kwargs}
        kwargs = {**model_arguments(name, input_size=input_size, num_classes=standard.get("num_classes"),
                                    small_input=standard.get("small_input", "auto")), **kwargs}
    with torch.device(device):
        return create_model(name, **kwargs), input_size


def summarize(model_or_name: nn.Module | str, input_size: Sequence[int] | str | None = None, *,
              depth: int | None = None, device: str | torch.device | None = None,
              **model_kwargs: Any) -> Summary:
    """The per-layer table of a model (an ``nn.Module`` or a registered name) for one input of ``input_size``.

    ``input_size`` is ``(C, H, W)`` (or ``"CxHxW"``); a registered model defaults to its own.
    ``depth`` limits the nesting shown: ``depth=1`` gives one row per top-level child (for example
    ``features`` and ``classifier``), each standing for everything inside it. A name is built on the
    ``meta`` device (no memory, no arithmetic); keyword arguments go to its builder.
    """
    if depth is not None and depth < 1:
        raise ShapeError(f"depth must be 1 or more, got {depth}")
    size = parse_input_size(input_size) if input_size is not None else None
    if isinstance(model_or_name, str):
        label = model_or_name
        try:
            model, size = _build(model_or_name, size, str(device or "meta"), model_kwargs)
            return _summarize_module(model, size, label, depth)
        except CnnlabError:
            raise
        except Exception as error:  # noqa: BLE001 - any failure on meta earns one real try
            if device is not None:
                raise _shape_error(label, size, error) from None
            # Some forward passes need real values (data-dependent control flow): run one real image.
            model, size = _build(model_or_name, size, "cpu", model_kwargs)
            return _summarize_module(model, size, label, depth)
    if not isinstance(model_or_name, nn.Module):
        raise ShapeError(f"summarize() takes an nn.Module or a model name, not {type(model_or_name).__name__}")
    if size is None:
        raise ShapeError("give the input size of the model, e.g. input_size=(3, 224, 224)")
    return _summarize_module(model_or_name, size, type(model_or_name).__name__, depth, device)


def _shape_error(label: str, size: tuple[int, ...] | None, error: Exception) -> ShapeError:
    first = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    shown = "x".join(map(str, size)) if size else "?"
    return ShapeError(f"{label} cannot take a {shown} input: {first}")


def _summarize_module(model: nn.Module, size: tuple[int, ...], label: str, depth: int | None,
                      device: str | torch.device | None = None) -> Summary:
    first = next(iter(model.parameters()), None)
    if device is None:
        device = first.device if first is not None else torch.device("cpu")
    dtype = first.dtype if first is not None and first.is_floating_point() else torch.float32
    example = torch.zeros((1, *size), device=device, dtype=dtype)
    was_training = model.training
    model.eval()  # batch norm on one image, dropout off: shapes do not depend on it
    try:
        with torch.no_grad():
            records, out_field, out_depth, out_shape = trace(model, example)
    except (RuntimeError, ValueError, IndexError, TypeError) as error:
        if isinstance(error, CnnlabError):
            raise
        if str(device) == "meta":
            raise
        raise _shape_error(label, size, error) from None
    finally:
        model.train(was_training)
    rows = [_row(r) for r in records if r.is_leaf] if depth is None else _blocks(records, depth, model)
    leaves = [_row(r) for r in records if r.is_leaf]
    params = list(model.parameters())
    total = sum(p.numel() for p in params)
    trainable = sum(p.numel() for p in params if p.requires_grad)
    by_kind_params: dict[str, int] = {"conv": 0, "linear": 0, "other": 0}
    by_kind_macs: dict[str, int] = {"conv": 0, "linear": 0, "other": 0}
    for row in leaves:
        bucket = row.kind if row.kind in ("conv", "linear") else "other"
        by_kind_params[bucket] += row.total_params
        by_kind_macs[bucket] += row.macs
    # Shares are of the layers that ran: an auxiliary head that only trains is left out.
    model_level_macs = sum(r.macs for r in records) - sum(row.macs for row in leaves)
    by_kind_macs["other"] += max(model_level_macs, 0)
    feature = None
    for row in reversed(leaves):
        shape = row.output_shape or ()
        if row.rf_size and len(shape) == len(size) and len(shape) >= 2 and any(n > 1 for n in shape[1:]):
            feature = row
            break
    return Summary(
        model=label, input_size=tuple(size), layers=rows, total_params=total, trainable_params=trainable,
        total_buffers=sum(b.numel() for b in model.buffers()),
        used_params=sum({id(p): p.numel() for r in records if r.is_leaf and r.module is not None
                         for p in r.module.parameters()}.values()),
        total_macs=sum(r.macs for r in records),
        depth=out_depth, output_shape=out_shape,
        rf_size=tuple(a.size for a in out_field) if out_field is not None else None,
        feature_rf_size=feature.rf_size if feature else None, feature_shape=feature.output_shape if feature else None,
        total_neurons=sum(row.neurons for row in leaves if row.kind in _WEIGHT_KINDS),
        activation_bytes=sum(row.memory_bytes for row in leaves if not row.inplace),
        param_bytes=sum(p.numel() * p.element_size() for p in params),
        params_by_kind=by_kind_params, macs_by_kind=by_kind_macs,
    )
