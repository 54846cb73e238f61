"""Follow one forward pass, operation by operation, to see what each layer does to the data.

How it works. Module hooks tell which module is running; a :class:`~torch.overrides.TorchFunctionMode`
sees every torch operation inside it, including the ones that are not modules: ``torch.cat`` of an
inception block or a dense block, the ``+`` of a residual block, ``torch.flatten`` before the
classifier. Each tensor produced is tagged (by identity, through a weak reference) with

- its receptive field, one :class:`~cnnlab.analysis.receptive.AxisField` per spatial axis, and
- its depth: the number of weight layers (convolution, linear, recurrent) on the longest path from
  the input to it, which is how the papers count "8 layers", "22 layers", "152 layers".

An operation's output gets its tags from its inputs: a sliding window (convolution, pooling) moves
the field on by its kernel, stride, padding and dilation; a merge (addition, concatenation,
broadcast multiplication) takes the union of its inputs' fields and the largest depth; an operation
that keeps the spatial size (activation, normalisation, channel shuffle) passes the field on; a
flatten or a global reduction gives the field of the whole input. An operation that changes the
spatial size in a way not listed here (interpolation, transposed convolution) leaves the field
unknown rather than guessed.

Multiply-accumulates are counted per operation, for convolutions, linear layers, matrix products
and recurrent layers only, and charged to the module running them; the run uses one image, so
every count is per image.
"""

from __future__ import annotations

import math
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Iterator

import torch
from torch import nn
from torch.overrides import TorchFunctionMode

from .receptive import AxisField, Field, merge

_CONV_OPS = {"conv1d": 1, "conv2d": 2, "conv3d": 3}
_CONV_T_OPS = {"conv_transpose1d": 1, "conv_transpose2d": 2, "conv_transpose3d": 3}
_UNPOOL_OPS = {"max_unpool1d": 1, "max_unpool2d": 2, "max_unpool3d": 3}
_MAX_POOL_OPS = {"max_pool1d": 1, "max_pool2d": 2, "max_pool3d": 3, "max_pool1d_with_indices": 1,
                 "max_pool2d_with_indices": 2, "max_pool3d_with_indices": 3}
_AVG_POOL_OPS = {"avg_pool1d": 1, "avg_pool2d": 2, "avg_pool3d": 3}
_LP_POOL_OPS = {"lp_pool1d": 1, "lp_pool2d": 2, "lp_pool3d": 3}
_ADAPTIVE_OPS = {"adaptive_avg_pool1d", "adaptive_avg_pool2d", "adaptive_avg_pool3d", "adaptive_max_pool1d",
                 "adaptive_max_pool2d", "adaptive_max_pool3d", "adaptive_max_pool1d_with_indices",
                 "adaptive_max_pool2d_with_indices", "adaptive_max_pool3d_with_indices"}
# Operations that gather every spatial position into each output unit when the spatial axes change.
_GLOBAL_OPS = {"flatten", "view", "reshape", "mean", "sum", "amax", "amin", "max", "min", "squeeze", "linear",
               "logsumexp", "std", "var", "norm", "matmul", "mm", "bmm", "addmm", "permute", "transpose",
               "unflatten", "contiguous", "__getitem__"}
_MERGE_OPS = {"cat", "concat", "concatenate", "stack", "add", "add_", "__add__", "__iadd__", "__radd__", "sub",
              "sub_", "__sub__", "__rsub__", "mul", "mul_", "__mul__", "__imul__", "__rmul__", "div", "div_",
              "__truediv__", "maximum", "minimum", "where", "addcmul"}
_IGNORED = {"size", "dim", "numel", "__get__", "__len__", "__format__", "__repr__", "__bool__", "item", "tolist",
            "__iter__", "__index__", "is_floating_point", "data_ptr", "element_size", "__eq__", "__ne__", "stride"}


@dataclass
class Record:
    """One row of the trace: a module call, or an operation written directly in a container's forward."""

    name: str
    type: str
    module: nn.Module | None  # None for an operation
    nesting: int  # how many modules deep (top-level children are 1)
    is_leaf: bool
    parent: "Record | None" = None
    macs: int = 0
    spec: dict[str, Any] | None = None  # kernel / stride / padding / dilation / groups of its window, if any
    output_shape: tuple[int, ...] | None = None  # without the batch axis
    output_bytes: int = 0
    rf: Field | None = None
    depth: int | None = None  # weight layers on the longest path from the input
    kinds: set[str] = field(default_factory=set)  # "conv", "linear", "pool" operations seen inside
    inplace: bool = False  # the output is the input tensor itself (ReLU(inplace=True)): no new memory
    repeat: int = 0  # 0 for the first call of a module, 1, 2, ... for later calls of the same module
    children_macs: int = 0

    @property
    def total_macs(self) -> int:
        return self.macs + self.children_macs


@dataclass
class _Tag:
    ref: Any  # weakref to the tensor, to tell a reused id from the same tensor
    field: Field | None
    depth: int


def _tensors(value: Any) -> Iterator[torch.Tensor]:
    """Every tensor in an argument, looking inside lists, tuples and dicts (``torch.cat([a, b])``)."""
    if isinstance(value, torch.Tensor):
        yield value
    elif isinstance(value, (list, tuple)):
        for item in value:
            yield from _tensors(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _tensors(item)


def _tuple(value: Any, count: int) -> tuple[int, ...]:
    if isinstance(value, (list, tuple)):
        values = tuple(int(v) for v in value)
        return values * count if len(values) == 1 else values
    return (int(value),) * count


def _argument(args: tuple, kwargs: dict, position: int, name: str, default: Any) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[position] if len(args) > position else default


def _op_name(func: Callable) -> str:
    return getattr(func, "__name__", "") or str(func)


class Tracer(TorchFunctionMode):
    """Run a model once under this mode (see the module docstring); ``records`` lists what happened."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        self.records: list[Record] = []
        self._tags: dict[int, _Tag] = {}
        self._stack: list[Record] = []
        self._calls: dict[int, int] = {}
        self._op_counts: dict[tuple[str, str], int] = {}
        self._handles: list[Any] = []
        self._names = {id(m): n for n, m in model.named_modules()}
        self.extent: tuple[int, ...] = ()  # the input's spatial size, to clip broadcast fields to the image

    # ------------------------------------------------------------------ tags
    def tag(self, tensor: torch.Tensor, field_: Field | None, depth: int) -> None:
        self._tags[id(tensor)] = _Tag(weakref.ref(tensor), field_, depth)

    def lookup(self, tensor: torch.Tensor) -> _Tag | None:
        tag = self._tags.get(id(tensor))
        return tag if tag is not None and tag.ref() is tensor else None

    # ------------------------------------------------------------------ module hooks
    def __enter__(self):
        for module in self.model.modules():
            self._handles.append(module.register_forward_pre_hook(self._before))
            self._handles.append(module.register_forward_hook(self._after))
        return super().__enter__()

    def __exit__(self, *exc):
        for handle in self._handles:
            handle.remove()
        self._handles.clear()
        return super().__exit__(*exc)

    def _before(self, module: nn.Module, inputs: tuple) -> None:
        name = self._names.get(id(module), type(module).__name__)
        repeat = self._calls.get(id(module), 0)
        self._calls[id(module)] = repeat + 1
        is_leaf = not any(True for _ in module.children())
        if module is self.model:
            # The model itself gets a row only when it is a single layer (an nn.LSTM, an nn.Conv2d).
            name, nesting = (type(module).__name__, 1) if is_leaf else ("", 0)
        else:
            nesting = name.count(".") + 1
        record = Record(name=name, type=type(module).__name__, module=module, nesting=nesting, is_leaf=is_leaf,
                        parent=self._stack[-1] if self._stack else None, repeat=repeat)
        if module is not self.model or is_leaf:
            self.records.append(record)
        self._stack.append(record)

    def _after(self, module: nn.Module, inputs: tuple, output: Any) -> None:
        record = self._stack.pop()
        if isinstance(module, nn.RNNBase):
            record.macs += _recurrent_macs(module, inputs)
            self._retag_recurrent(module, inputs, output)
        first = next(_tensors(output), None)
        if first is not None:
            record.output_shape = tuple(first.shape[1:])
            record.inplace = any(first is t for t in _tensors(inputs))
            # shape arithmetic only: tensor operations here would be traced as part of the model
            record.output_bytes = sum(math.prod(t.shape[1:]) * t.element_size()
                                      for t in _tensors(output) if t.dim() > 0)
            tag = self.lookup(first)
            if tag is not None:
                record.rf, record.depth = tag.field, tag.depth
        if record.parent is not None:
            record.parent.children_macs += record.total_macs

    def _retag_recurrent(self, module: nn.RNNBase, inputs: tuple, output: Any) -> None:
        source = [self.lookup(t) for t in _tensors(inputs)]
        depth = max((t.depth for t in source if t is not None), default=0) + module.num_layers
        for tensor in _tensors(output):
            self.tag(tensor, None, depth)

    # ------------------------------------------------------------------ operations
    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        output = func(*args, **kwargs)
        name = _op_name(func)
        if name in _IGNORED or not self._stack:
            return output
        outputs = list(_tensors(output))
        if not outputs:
            return output
        inputs = [t for t in _tensors((args, kwargs))]
        tags = [(t, self.lookup(t)) for t in inputs]
        tagged = [(t, tag) for t, tag in tags if tag is not None]
        macs = _op_macs(name, args, kwargs, outputs[0], inputs)
        spec = _op_spec(name, args, kwargs)
        weighted = name in _CONV_OPS or name in _CONV_T_OPS or name in ("linear", "bilinear")
        depth = max((tag.depth for _, tag in tagged), default=0) + (1 if weighted else 0)
        for out in outputs:
            if tagged:
                self.tag(out, _output_field(name, args, kwargs, spec, tagged, out, self.extent), depth)
        if name in _ADAPTIVE_OPS and inputs:
            spec = _adaptive_spec(inputs[0], outputs[0])  # for display; the field was set exactly above
        owner = self._stack[-1]
        kind = _op_kind(name)
        if owner.is_leaf:
            owner.macs += macs
            if kind:
                owner.kinds.add(kind)
            if spec is not None and owner.spec is None:
                owner.spec = spec
            return output
        if tagged and self._visible(name, macs, tagged, outputs[0]):
            key = (owner.name, name)  # by name, so a block called twice numbers its operations on
            count = self._op_counts.get(key, 0) + 1
            self._op_counts[key] = count
            label = name.strip("_").rstrip("_")
            prefix = f"{owner.name}." if owner.module is not self.model else ""
            out_tag = self.lookup(outputs[0])
            record = Record(
                name=f"{prefix}<{label}>" + (f"#{count}" if count > 1 else ""), type=label, module=None,
                nesting=owner.nesting + 1, is_leaf=True, parent=owner, macs=macs, spec=spec,
                output_shape=tuple(outputs[0].shape[1:]),
                output_bytes=math.prod(outputs[0].shape[1:]) * outputs[0].element_size() if outputs[0].dim() else 0,
                rf=out_tag.field if out_tag else None, depth=out_tag.depth if out_tag else None,
                kinds={kind} if kind else set())
            self.records.append(record)
            owner.children_macs += macs
        else:
            owner.macs += macs
        return output

    @staticmethod
    def _visible(name: str, macs: int, tagged: list, out: torch.Tensor) -> bool:
        """Operations in a container's own forward worth a row: merges, weighted ops, spatial changes."""
        if macs:
            return True
        if name in _MERGE_OPS and len(tagged) >= 2:
            return True
        # a change of a real spatial grid: pooling, flatten of a feature map, interpolation
        source = tagged[0][0]
        if source.dim() < 3 or all(n == 1 for n in source.shape[2:]):
            return False
        return out.dim() != source.dim() or out.shape[2:] != source.shape[2:]


# ---------------------------------------------------------------------------------------- helpers

def _op_kind(name: str) -> str | None:
    """The family of an operation: "conv", "linear", "pool", "merge", or None."""
    if name in _CONV_OPS or name in _CONV_T_OPS:
        return "conv"
    if name in ("linear", "bilinear", "matmul", "mm", "bmm", "addmm", "__matmul__", "baddbmm", "addbmm"):
        return "linear"
    if name in _MAX_POOL_OPS or name in _AVG_POOL_OPS or name in _LP_POOL_OPS or name in _ADAPTIVE_OPS:
        return "pool"
    if name in _MERGE_OPS:
        return "merge"
    return None


def _op_spec(name: str, args: tuple, kwargs: dict) -> dict[str, Any] | None:
    """Kernel, stride, padding, dilation and groups of a sliding-window operation, per spatial axis."""
    if name in _CONV_OPS or name in _CONV_T_OPS:
        axes = _CONV_OPS.get(name) or _CONV_T_OPS[name]
        weight = _argument(args, kwargs, 1, "weight", None)
        kernel = tuple(weight.shape[2:])
        if name in _CONV_OPS:
            stride = _tuple(_argument(args, kwargs, 3, "stride", 1), axes)
            padding = _argument(args, kwargs, 4, "padding", 0)
            dilation = _tuple(_argument(args, kwargs, 5, "dilation", 1), axes)
            groups = int(_argument(args, kwargs, 6, "groups", 1))
        else:
            stride = _tuple(_argument(args, kwargs, 3, "stride", 1), axes)
            padding = _argument(args, kwargs, 4, "padding", 0)
            dilation = _tuple(_argument(args, kwargs, 7, "dilation", 1), axes)
            groups = int(_argument(args, kwargs, 6, "groups", 1))
        if isinstance(padding, str):
            padding = tuple(d * (k - 1) // 2 for k, d in zip(kernel, dilation)) if padding == "same" else (0,) * axes
        return {"kernel": kernel, "stride": stride, "padding": _tuple(padding, axes), "dilation": dilation,
                "groups": groups}
    if name in _MAX_POOL_OPS:
        axes = _MAX_POOL_OPS[name]
        kernel = _tuple(_argument(args, kwargs, 1, "kernel_size", 1), axes)
        stride = _argument(args, kwargs, 2, "stride", None)
        return {"kernel": kernel, "stride": _tuple(stride, axes) if stride not in (None, [], ()) else kernel,
                "padding": _tuple(_argument(args, kwargs, 3, "padding", 0), axes),
                "dilation": _tuple(_argument(args, kwargs, 4, "dilation", 1), axes), "groups": None}
    if name in _AVG_POOL_OPS:
        axes = _AVG_POOL_OPS[name]
        kernel = _tuple(_argument(args, kwargs, 1, "kernel_size", 1), axes)
        stride = _argument(args, kwargs, 2, "stride", None)
        return {"kernel": kernel, "stride": _tuple(stride, axes) if stride not in (None, [], ()) else kernel,
                "padding": _tuple(_argument(args, kwargs, 3, "padding", 0), axes), "dilation": (1,) * axes,
                "groups": None}
    if name in _LP_POOL_OPS:
        axes = _LP_POOL_OPS[name]
        kernel = _tuple(_argument(args, kwargs, 2, "kernel_size", 1), axes)
        stride = _argument(args, kwargs, 3, "stride", None)
        return {"kernel": kernel, "stride": _tuple(stride, axes) if stride is not None else kernel,
                "padding": (0,) * axes, "dilation": (1,) * axes, "groups": None}
    return None


def _adaptive_spec(source: torch.Tensor, out: torch.Tensor) -> dict[str, Any] | None:
    axes = out.dim() - 2
    if axes < 1 or source.dim() != out.dim():
        return None
    windows = [_adaptive_window(int(n), int(o)) for n, o in zip(source.shape[2:], out.shape[2:])]
    return {"kernel": tuple(w[0] for w in windows), "stride": tuple(w[1] for w in windows),
            "padding": (0,) * axes, "dilation": (1,) * axes, "groups": None}


def _adaptive_window(n: int, out: int) -> tuple[int, int, bool]:
    """Largest window and stride of adaptive pooling from ``n`` to ``out`` positions; exact when out divides n."""
    if n % out == 0:
        return n // out, n // out, True
    largest = max(math.ceil((i + 1) * n / out) - (i * n) // out for i in range(out))
    return largest, max(1, n // out), False


def _output_field(name: str, args: tuple, kwargs: dict, spec: dict | None, tagged: list,
                  out: torch.Tensor, extent: tuple[int, ...] = ()) -> Field | None:
    """The receptive field of an operation's output from those of its tagged inputs."""
    source, tag = tagged[0]
    field_ = tag.field
    if spec is not None:
        if field_ is None or len(field_) != len(spec["kernel"]):
            return None
        if name in _CONV_T_OPS:  # a decoder's learnt upsampling: the jump shrinks by the stride
            moved = [f.spread(k, s, p, d) for f, k, s, p, d in
                     zip(field_, spec["kernel"], spec["stride"], spec["padding"], spec["dilation"])]
            return None if any(m is None for m in moved) else tuple(moved)
        return tuple(f.through(k, s, p, d) for f, k, s, p, d in
                     zip(field_, spec["kernel"], spec["stride"], spec["padding"], spec["dilation"]))
    if name in _UNPOOL_OPS:  # each output unit holds at most one pooled value: a transposed window of ones
        if field_ is None or len(field_) != _UNPOOL_OPS[name]:
            return None
        axes = _UNPOOL_OPS[name]
        kernel = _tuple(_argument(args, kwargs, 2, "kernel_size", 1), axes)
        stride = _argument(args, kwargs, 3, "stride", None)
        stride = _tuple(stride, axes) if stride not in (None, [], ()) else kernel
        padding = _tuple(_argument(args, kwargs, 4, "padding", 0), axes)
        moved = [f.spread(k, s, p) for f, k, s, p in zip(field_, kernel, stride, padding)]
        return None if any(m is None for m in moved) else tuple(moved)
    if name in _ADAPTIVE_OPS:
        if field_ is None or len(field_) > source.dim():
            return None
        axes = len(field_)
        result = []
        for f, n, o in zip(field_, source.shape[-axes:], out.shape[-axes:]):
            kernel, stride, exact = _adaptive_window(int(n), int(o))
            moved = f.through(kernel, stride)
            result.append(moved if exact else AxisField(moved.size, moved.jump, moved.start, False))
        return tuple(result)
    if name == "__getitem__":
        return _sliced_field(args, source, out, field_)
    if name == "pad":
        pads = list(_argument(args, kwargs, 1, "pad", ()))
        if field_ is None:
            return None
        axes = len(field_)
        # F.pad lists (left, right) pairs from the last axis backwards; only the leading pad moves the start.
        lefts = [pads[2 * i] if 2 * i < len(pads) else 0 for i in range(axes)][::-1]
        return tuple(AxisField(f.size, f.jump, f.start - left * f.jump, f.exact) for f, left in zip(field_, lefts))
    fields = [(t, g.field) for t, g in tagged if g.field is not None]
    if len(fields) < len(tagged):
        return None
    if not fields:
        return None
    axes = len(fields[0][1])
    if axes == 0:
        return ()

    def spatial(t: torch.Tensor) -> tuple[int, ...] | None:
        return tuple(t.shape[-axes:]) if t.dim() >= axes + 1 else None

    if any(len(f) != axes for _, f in fields):
        return None
    out_spatial = tuple(out.shape[-axes:]) if out.dim() >= axes + 1 else None
    flat = [f for t, f in fields if spatial(t) is None]  # spatial axes already folded away: a global field
    if out_spatial is None:
        if len(flat) == len(fields):
            return tuple(merge([f[i] for f in flat]) for i in range(axes))
        if name not in _GLOBAL_OPS:
            return None
        return _wholes(fields, spatial, axes)
    same = [f for t, f in fields if spatial(t) == out_spatial]
    broadcast = [f for t, f in fields if spatial(t) is not None and spatial(t) != out_spatial
                 and all(s == 1 for s in spatial(t))]
    if len(same) + len(broadcast) + len(flat) == len(fields):
        if not same:
            return tuple(merge([f[i] for f in broadcast + flat]) for i in range(axes))
        # A broadcast input (a squeeze-and-excitation gate) feeds every position with the same field,
        # which does not move from unit to unit: stretch it so that the field of every unit, shifted
        # by the grid's jump, still contains it. The result is a bound, exact once clipped to the image.
        spread = [tuple(_stretch(f[i], same[0][i].jump, out_spatial[i], extent[i] if i < len(extent) else None)
                        for i in range(axes)) for f in broadcast + flat]
        return tuple(merge([f[i] for f in same + spread], [f[i] for f in same]) for i in range(axes))
    if name in _GLOBAL_OPS and all(s == 1 for s in out_spatial):
        return _wholes(fields, spatial, axes)  # a reduction with keepdim, e.g. x.mean((2, 3), keepdim=True)
    return None


def _sliced_field(args: tuple, source: torch.Tensor, out: torch.Tensor, field_: Field | None) -> Field | None:
    """``x[:, :, ::2, ::2]`` (ResNet's option-A shortcut): a slice of a spatial axis is a 1-pixel window
    with the slice's step as stride, starting at the slice's start. Other indexing of a spatial axis
    (an integer, a tensor, a new axis) leaves the field unknown."""
    if field_ is None or len(args) < 2:
        return None
    index = args[1] if isinstance(args[1], tuple) else (args[1],)
    if any(i is None or isinstance(i, torch.Tensor) or isinstance(i, list) for i in index):
        return None
    if sum(i is Ellipsis for i in index) > 1:
        return None
    if Ellipsis in index:
        at = index.index(Ellipsis)
        index = index[:at] + (slice(None),) * (source.dim() - len(index) + 1) + index[at + 1:]
    index = index + (slice(None),) * (source.dim() - len(index))
    axes = len(field_)
    spatial = index[source.dim() - axes:]
    if not all(isinstance(i, slice) for i in spatial) or out.dim() != source.dim():
        return None
    result = []
    for f, part, n in zip(field_, spatial, source.shape[-axes:]):
        start, _, step = part.indices(int(n))
        result.append(AxisField(f.size, f.jump * step, f.start + start * f.jump, f.exact))
    return tuple(result)


def _stretch(field_: AxisField, jump: int, positions: int, extent: int | None) -> AxisField:
    """A field shared by all ``positions`` units, widened so that every unit's shifted field contains it.

    It is clipped to the image first (``extent`` pixels): only real pixels need covering, and
    otherwise each gate of a squeeze-and-excitation network would widen the bound again.
    """
    first, last = field_.start, field_.start + field_.size - 1
    if extent is not None:
        first, last = max(first, 0), min(last, extent - 1)
    reach = (positions - 1) * jump
    return AxisField(last - first + 1 + reach, jump, first - reach, False)


def _wholes(fields: list, spatial: Callable, axes: int) -> Field:
    """The union of the whole-input fields: each output unit sees every position of every input."""
    wholes = []
    for t, f in fields:
        sizes = spatial(t) or (1,) * axes
        wholes.append(tuple(a.whole(int(n)) for a, n in zip(f, sizes)))
    return tuple(merge([w[i] for w in wholes]) for i in range(axes))


def _op_macs(name: str, args: tuple, kwargs: dict, out: torch.Tensor, inputs: list[torch.Tensor]) -> int:
    """Multiply-accumulates of one operation for the whole (one-image) batch; 0 for the uncounted kinds."""
    if name in _CONV_OPS:
        weight = _argument(args, kwargs, 1, "weight", None)
        # each output value is a dot product over (C_in / groups) * kH * kW inputs
        return out.numel() * math.prod(weight.shape[1:])
    if name in _CONV_T_OPS:
        source = _argument(args, kwargs, 0, "input", None)
        weight = _argument(args, kwargs, 1, "weight", None)
        # each input value is scattered into (C_out / groups) * kH * kW outputs
        return source.numel() * math.prod(weight.shape[1:])
    if name == "linear":
        weight = _argument(args, kwargs, 1, "weight", None)
        return out.numel() * int(weight.shape[-1])
    if name == "bilinear":
        weight = _argument(args, kwargs, 2, "weight", None)
        return out.numel() * int(weight.shape[1]) * int(weight.shape[2])
    if name in ("matmul", "mm", "bmm", "addmm", "__matmul__", "baddbmm", "addbmm") and len(inputs) >= 2:
        first = inputs[-2] if name in ("addmm", "baddbmm", "addbmm") else inputs[0]
        return out.numel() * int(first.shape[-1])
    return 0


def _recurrent_macs(module: nn.RNNBase, inputs: tuple) -> int:
    """Per sequence: steps * gates * (input + hidden) * hidden, per layer and direction (gates: LSTM 4, GRU 3)."""
    source = inputs[0]
    if isinstance(source, nn.utils.rnn.PackedSequence):
        steps = int(source.data.shape[0])
        batch = 1
    else:
        steps = int(source.shape[1] if module.batch_first and source.dim() == 3 else source.shape[0])
        batch = int(source.shape[0] if module.batch_first and source.dim() == 3 else
                    (source.shape[1] if source.dim() == 3 else 1))
    gates = {"LSTM": 4, "GRU": 3}.get(module.mode, 1)
    directions = 2 if module.bidirectional else 1
    hidden = module.hidden_size
    out_size = module.proj_size or hidden
    total = 0
    for layer in range(module.num_layers):
        width = module.input_size if layer == 0 else out_size * directions
        per_step = gates * hidden * (width + out_size)
        if module.proj_size:
            per_step += hidden * module.proj_size
        total += per_step * directions
    return total * steps * batch


def trace(model: nn.Module, example: torch.Tensor) -> tuple[list[Record], Field | None, int, tuple[int, ...] | None]:
    """Run ``model`` on ``example`` (one image): the records, and the output's field, depth and shape."""
    tracer = Tracer(model)
    spatial = max(example.dim() - 2, 0)
    with tracer:
        tracer.tag(example, tuple(AxisField() for _ in range(spatial)), 0)
        tracer.extent = tuple(int(n) for n in example.shape[2:])
        output = model(example)
    first = next(_tensors(output), None)
    tag = tracer.lookup(first) if first is not None else None
    shape = tuple(first.shape[1:]) if first is not None else None
    return tracer.records, (tag.field if tag else None), (tag.depth if tag else 0), shape
