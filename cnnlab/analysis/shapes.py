"""The output-size formula of the decks, filled in, with a verdict on whether the layer fits.

For an input of ``N`` pixels, a filter of ``F``, stride ``S`` and zero padding ``P`` on each side::

    output = (N - F + 2P) / S + 1

(cs231n's "W2 = (W1 - F + 2P)/S + 1"; with dilation ``D`` the filter spans ``D(F - 1) + 1`` pixels.)
When ``N - F + 2P`` is not a multiple of ``S`` the filter does not tile the padded input: the
decks' 7x7 input with a 3x3 filter at stride 3 gives (7 - 3)/3 + 1 = 2.33. PyTorch then rounds down
(or up with ``ceil_mode``) and silently ignores the last pixels; this module says so and finds the
paddings that would make the filter fit. A chain of layers (``conv:k5,s1,p2,c10 pool:k2,s2``) is
walked layer by layer with the output size, the parameter count ``(F*F*C/groups + 1)*K`` and the
receptive field of each step. No torch here: it is arithmetic.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from fractions import Fraction

from ..errors import CnnlabError
from .receptive import AxisField


class ShapeError(CnnlabError, ValueError):
    """A layer or input size that cannot be parsed or does not fit."""


def _number(value: Fraction | int) -> str:
    """7 -> '7', 7/3 -> '2.33'."""
    if isinstance(value, Fraction) and value.denominator != 1:
        return f"{float(value):.2f}".rstrip("0").rstrip(".")
    return str(int(value))


@dataclass(frozen=True)
class OutputSize:
    """One application of ``(N - F + 2P)/S + 1`` along one axis."""

    n: int
    kernel: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    ceil_mode: bool = False

    def __post_init__(self) -> None:
        if self.n < 1 or self.kernel < 1 or self.stride < 1 or self.dilation < 1 or self.padding < 0:
            raise ShapeError(f"sizes must be positive (padding non-negative): input {self.n}, kernel {self.kernel}, "
                             f"stride {self.stride}, padding {self.padding}, dilation {self.dilation}")

    @property
    def span(self) -> int:
        """Pixels covered by one (dilated) filter: D(F - 1) + 1."""
        return self.dilation * (self.kernel - 1) + 1

    @property
    def slack(self) -> int:
        """N - F + 2P: how far the filter can slide; it must be a non-negative multiple of S to fit."""
        return self.n - self.span + 2 * self.padding

    @property
    def exact(self) -> Fraction:
        """The formula's value as a fraction, before any rounding."""
        return Fraction(self.slack, self.stride) + 1

    @property
    def fits(self) -> bool:
        """True when the filter tiles the padded input exactly (the result is a whole number)."""
        return self.slack >= 0 and self.slack % self.stride == 0

    @property
    def size(self) -> int:
        """What PyTorch produces: rounded down, or up with ``ceil_mode`` (no window starting in the right padding)."""
        if self.slack < 0:
            return 0
        if not self.ceil_mode:
            return self.slack // self.stride + 1
        size = -(-self.slack // self.stride) + 1
        if (size - 1) * self.stride >= self.n + self.padding:
            size -= 1
        return size

    @property
    def unused(self) -> int:
        """Input pixels (at the right/bottom edge) that no window reaches when the size is rounded down."""
        return 0 if self.ceil_mode or self.slack < 0 else self.slack % self.stride

    def formula(self) -> str:
        """The formula with the numbers filled in, e.g. ``(7 - 3 + 2*1)/3 + 1 = 3``."""
        f = str(self.kernel) if self.dilation == 1 else f"{self.span}"
        return f"({self.n} - {f} + 2*{self.padding})/{self.stride} + 1 = {_number(self.exact)}"

    def fitting_paddings(self, limit: int | None = None) -> list[int]:
        """Paddings ``P`` (0 <= P < limit, by default the filter span) for which the filter fits."""
        limit = self.span if limit is None else limit
        return [p for p in range(limit) if (self.n - self.span + 2 * p) >= 0 and
                (self.n - self.span + 2 * p) % self.stride == 0]

    def advice(self) -> str:
        """A sentence for a size that does not fit: what PyTorch does and which padding would fit."""
        if self.fits:
            return ""
        if self.slack < 0:
            return (f"does not fit: the {self.span}-pixel filter is larger than the padded input "
                    f"({self.n} + 2*{self.padding})")
        rounded = (f"rounds up to {self.size} (ceil mode)" if self.ceil_mode else
                   f"rounds down to {self.size}, never reading the last {self.unused} pixel(s)")
        paddings = self.fitting_paddings()
        if paddings:
            fix = "padding " + " or ".join(str(p) for p in paddings[:3]) + " would fit"
            best = OutputSize(self.n, self.kernel, self.stride, paddings[0], self.dilation)
            fix += f" ({best.formula()})"
        else:
            fix = (f"no symmetric padding fits: N - F = {self.n - self.span} is odd and 2P is even, so with stride "
                   f"{self.stride} change the stride, the filter or the input size")
        return f"does not fit: PyTorch {rounded}; {fix}"


def conv_output_size(n: int, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1,
                     ceil_mode: bool = False) -> OutputSize:
    """``(N - F + 2P)/S + 1`` along one axis.

    ``.size`` is PyTorch's integer, ``.exact`` the fraction, ``.fits`` the verdict.

    >>> conv_output_size(7, 3, 3).exact          # the decks' "does not fit" example
    Fraction(7, 3)
    """
    return OutputSize(n, kernel, stride, padding, dilation, ceil_mode)


# ----------------------------------------------------------------------------------- layer chains

@dataclass(frozen=True)
class LayerSpec:
    """One layer of a chain: ``conv``, ``pool`` (max), ``avgpool`` or ``fc``; per-axis (H, W) values."""

    kind: str
    kernel: tuple[int, int] = (1, 1)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    dilation: tuple[int, int] = (1, 1)
    filters: int | None = None  # output channels K (conv) or units (fc); None keeps the channel count
    groups: int = 1
    bias: bool = True
    ceil_mode: bool = False
    same: bool = False  # padding "same": chosen so that a stride-1 layer keeps the size

    def describe(self) -> str:
        def show(pair: tuple[int, int]) -> str:
            return str(pair[0]) if pair[0] == pair[1] else f"{pair[0]}x{pair[1]}"

        if self.kind == "fc":
            return f"fc {self.filters}"
        text = f"{self.kind} {show(self.kernel)}x{show(self.kernel)}" if self.kernel[0] == self.kernel[1] else \
            f"{self.kind} {self.kernel[0]}x{self.kernel[1]}"
        text += f" s{show(self.stride)} p{'same' if self.same else show(self.padding)}"
        if self.dilation != (1, 1):
            text += f" d{show(self.dilation)}"
        if self.kind == "conv" and self.filters:
            text += f" K={self.filters}"
        if self.groups != 1:
            text += f" g{self.groups}"
        if self.ceil_mode:
            text += " ceil"
        return text


_KINDS = {"conv": "conv", "c": "conv", "pool": "pool", "maxpool": "pool", "max": "pool", "avgpool": "avgpool",
          "avg": "avgpool", "fc": "fc", "linear": "fc", "dense": "fc"}
_KEYS = {"k": "kernel", "kernel": "kernel", "s": "stride", "stride": "stride", "p": "padding", "pad": "padding",
         "padding": "padding", "d": "dilation", "dilation": "dilation", "c": "filters", "n": "filters",
         "filters": "filters", "out": "filters", "g": "groups", "groups": "groups", "b": "bias", "bias": "bias",
         "ceil": "ceil_mode"}
LAYER_SYNTAX = ("conv:k5,s1,p2,c10 | pool:k2,s2 | avgpool:k2 | fc:1000   "
                "(k kernel, s stride, p padding or 'same', d dilation, c filters, g groups, b0 no bias, ceil; "
                "values may be 'AxB')")


def _pair(text: str, key: str, spec: str) -> tuple[int, int]:
    parts = text.lower().split("x")
    if len(parts) not in (1, 2) or not all(p.isdigit() for p in parts):
        raise ShapeError(f"bad value '{text}' for {key} in '{spec}'; expected a number or AxB")
    values = [int(p) for p in parts]
    return (values[0], values[-1])


def parse_layer(spec: str) -> LayerSpec:
    """Parse one layer written as ``KIND:key value,...``, e.g. ``conv:k5,s1,p2,c10`` or ``fc:1000``."""
    kind_text, _, rest = spec.strip().partition(":")
    kind = _KINDS.get(kind_text.lower())
    if kind is None:
        raise ShapeError(f"unknown layer kind '{kind_text}' in '{spec}'; use {LAYER_SYNTAX}")
    values: dict = {}
    for item in filter(None, (part.strip() for part in rest.split(","))):
        if kind == "fc" and item.isdigit():
            values["filters"] = int(item)
            continue
        if item.lower() == "ceil":
            values["ceil_mode"] = True
            continue
        match = re.fullmatch(r"([a-z_]+)=?(.+)", item.lower())
        if not match or match.group(1) not in _KEYS:
            raise ShapeError(f"cannot read '{item}' in '{spec}'; use {LAYER_SYNTAX}")
        key, value = _KEYS[match.group(1)], match.group(2)
        if key == "padding" and value == "same":
            values["same"] = True
        elif key in ("filters", "groups"):
            if not value.isdigit() or int(value) < 1:
                raise ShapeError(f"{key} must be a positive whole number in '{spec}'")
            values[key] = int(value)
        elif key == "bias":
            values["bias"] = value not in ("0", "no", "false")
        elif key == "ceil_mode":
            values["ceil_mode"] = value not in ("0", "no", "false")
        else:
            values[key] = _pair(value, key, spec)
    if kind == "fc":
        if "filters" not in values:
            raise ShapeError(f"'{spec}': a fully connected layer needs its size, e.g. fc:1000")
        return LayerSpec("fc", filters=values["filters"], bias=values.get("bias", True))
    if "kernel" not in values:
        raise ShapeError(f"'{spec}': give the kernel size, e.g. {kind}:k3")
    if "stride" not in values and kind != "conv":
        values["stride"] = values["kernel"]  # pooling windows do not overlap unless told (PyTorch's default)
    return LayerSpec(kind, **values)


def parse_input(text: str) -> tuple[int, int, int]:
    """An input written as the decks write it: ``7`` (7x7x1), ``32x32x3`` (HxWxC) or ``3@32x32`` (C@HxW)."""
    text = text.strip().lower().replace("*", "x").replace("×", "x")
    channels = None
    if "@" in text:
        head, _, text = text.partition("@")
        if not head.isdigit():
            raise ShapeError(f"bad channel count '{head}' in the input size")
        channels = int(head)
    parts = text.split("x")
    if not all(p.isdigit() and int(p) > 0 for p in parts) or not 1 <= len(parts) <= 3:
        raise ShapeError(f"bad input size '{text}'; write N, HxW, HxWxC (e.g. 32x32x3) or C@HxW (e.g. 3@32x32)")
    numbers = [int(p) for p in parts]
    if len(numbers) == 1:
        numbers = numbers * 2
    if len(numbers) == 3:
        if channels is not None:
            raise ShapeError("give the channels once: HxWxC or C@HxW")
        channels = numbers[2]
    return numbers[0], numbers[1], channels or 1


@dataclass
class ChainStep:
    """One layer of :func:`shape_chain`: its sizes with formulas, parameters and receptive field."""

    layer: LayerSpec
    input_shape: tuple[int, int, int]  # H, W, C
    output_shape: tuple[int, int, int]
    axes: tuple[OutputSize, OutputSize] | None  # None for fc
    params: int
    params_formula: str
    field_size: tuple[int, int]
    field_jump: tuple[int, int]
    field_start: tuple[int, int]
    notes: list[str] = field(default_factory=list)

    @property
    def fits(self) -> bool:
        return self.axes is None or all(a.fits for a in self.axes)

    def formula(self) -> str:
        if self.axes is None:
            h, w, c = self.input_shape
            return f"flatten {h}*{w}*{c} = {h * w * c} -> {self.layer.filters}"
        first, second = self.axes
        if first == second:
            return first.formula()
        return f"H: {first.formula()}; W: {second.formula()}"

    def to_dict(self) -> dict:
        return {
            "layer": self.layer.describe(),
            "input": list(self.input_shape),
            "output": list(self.output_shape),
            "formula": self.formula(),
            "exact": [float(a.exact) for a in self.axes] if self.axes else None,
            "fits": self.fits,
            "fitting_paddings": [a.fitting_paddings() for a in self.axes] if self.axes else None,
            "params": self.params,
            "params_formula": self.params_formula,
            "receptive_field": {"size": list(self.field_size), "jump": list(self.field_jump),
                                "start": list(self.field_start)},
            "notes": self.notes,
        }


def shape_chain(input_shape: tuple[int, int, int], layers: list[LayerSpec]) -> list[ChainStep]:
    """Walk ``layers`` from an ``(H, W, C)`` input: output size, parameters and receptive field of each."""
    h, w, c = input_shape
    fields = (AxisField(), AxisField())
    steps: list[ChainStep] = []
    for number, layer in enumerate(layers, 1):
        if h < 1 or w < 1:
            raise ShapeError(f"layer {number} ({layer.describe()}) gets an empty {h}x{w} input")
        notes: list[str] = []
        if layer.kind == "fc":
            k = layer.filters or 1
            inputs = h * w * c
            params = (inputs + layer.bias) * k
            formula = f"({h}*{w}*{c}{' + 1' if layer.bias else ''})*{k} = {params}"
            fields = tuple(f.whole(n) for f, n in zip(fields, (h, w)))
            steps.append(ChainStep(layer, (h, w, c), (1, 1, k), None, params, formula,
                                   tuple(f.size for f in fields), tuple(f.jump for f in fields),
                                   tuple(f.start for f in fields), notes))
            h, w, c = 1, 1, k
            continue
        padding = layer.padding
        if layer.same:
            spans = [d * (k - 1) for k, d in zip(layer.kernel, layer.dilation)]
            if any(s % 2 for s in spans):
                notes.append("an even filter cannot keep the size with equal padding on both sides")
            padding = tuple(s // 2 for s in spans)
        axes = tuple(OutputSize(n, k, s, p, d, layer.ceil_mode)
                     for n, k, s, p, d in zip((h, w), layer.kernel, layer.stride, padding, layer.dilation))
        for name, axis in zip(("height", "width"), axes):
            if not axis.fits:
                notes.append(f"{name}: {axis.advice()}")
        if axes[0] == axes[1] and len(notes) == 2:
            notes = [notes[0].replace("height: ", "")]
        out_h, out_w = axes[0].size, axes[1].size
        if layer.kind == "conv":
            k = layer.filters or c
            if c % layer.groups or k % layer.groups:
                raise ShapeError(f"layer {number} ({layer.describe()}): {c} input and {k} output channels "
                                 f"are not divisible by {layer.groups} groups")
            per_filter = layer.kernel[0] * layer.kernel[1] * c // layer.groups
            params = (per_filter + layer.bias) * k
            group_text = f"*{c}/{layer.groups}" if layer.groups != 1 else f"*{c}"
            params_formula = (f"({layer.kernel[0]}*{layer.kernel[1]}{group_text}{' + 1' if layer.bias else ''})"
                              f"*{k} = {params}")
        else:
            k, params, params_formula = c, 0, "0 (pooling has no parameters)"
        fields = tuple(f.through(a.kernel, a.stride, a.padding, a.dilation) for f, a in zip(fields, axes))
        steps.append(ChainStep(layer, (h, w, c), (out_h, out_w, k), axes, params, params_formula,
                               tuple(f.size for f in fields), tuple(f.jump for f in fields),
                               tuple(f.start for f in fields), notes))
        h, w, c = out_h, out_w, k
    return steps


def same_padding(kernel: int, dilation: int = 1) -> int:
    """The padding that keeps the size at stride 1: (F - 1)/2 (the decks' F=3 -> 1, F=5 -> 2, F=7 -> 3)."""
    return math.floor(dilation * (kernel - 1) / 2)
