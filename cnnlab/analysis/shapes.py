"""The output-size formula of the decks, filled in, with a verdict on whether the layer fits.

For an input of ``N`` pixels, a filter of ``F``, stride ``S`` and zero padding ``P`` on each side::

    output = (N - F + 2P) / S + 1

(cs231n's "W2 = (W1 - F + 2P)/S + 1"; with dilation ``D`` the filter spans ``D(F - 1) + 1`` pixels.)
When ``N - F + 2P`` is not a multiple of ``S`` the filter does not tile the padded input: the
decks' 7x7 input with a 3x3 filter at stride 3 gives (7 - 3)/3 + 1 = 2.33. PyTorch then rounds down
(or up with ``ceil_mode``) and silently ignores the last pixels; this module says so and finds the
paddings that would make the filter fit (the formula itself is :mod:`cnnlab.output_size`, shared with
the reference engine). A chain of layers (``conv:k5,s1,p2,c10 pool:k2,s2``) is walked layer by layer
from a C x H x W input with the output size, the parameter count ``(F*F*C/groups + 1)*K`` and the
receptive field of each step. No torch here: it is arithmetic.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

from ..output_size import OutputSize, ShapeError, conv_output_size
from .receptive import AxisField

__all__ = ["ChainStep", "LayerSpec", "OutputSize", "ShapeError", "conv_output_size", "parse_input", "parse_layer",
           "same_padding", "shape_chain"]


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


INPUT_SYNTAX = "CxHxW (e.g. 3x32x32, as summary --input), C@HxW (e.g. 3@32x32) or N (a 1xNxN image)"


def parse_input(text: str) -> tuple[int, int, int]:
    """An input size as ``(C, H, W)``: ``3x32x32`` (CxHxW), ``3@32x32`` (C@HxW) or ``7`` (1x7x7).

    Channels come first, as in ``cnnlab summary --input`` and PyTorch. The decks write sizes the other
    way round (``32x32x3``, H x W x C); such an input, square only when read that way (``AxAxB``), is
    refused as ambiguous rather than silently read as B columns of A channels.
    """
    original = text
    text = text.strip().lower().replace("*", "x").replace("×", "x").replace(" ", "")
    channels_text, at, spatial = text.rpartition("@") if "@" in text else ("", "", text)
    parts = spatial.split("x")
    if not all(p.isdigit() and int(p) > 0 for p in parts) or (at and not channels_text.isdigit()) \
            or (at and (len(parts) != 2 or int(channels_text) < 1)) or len(parts) > 3:
        raise ShapeError(f"bad input size '{original}'; write {INPUT_SYNTAX}")
    numbers = [int(p) for p in parts]
    if at:
        return int(channels_text), numbers[0], numbers[1]
    if len(numbers) == 1:
        return 1, numbers[0], numbers[0]
    if len(numbers) == 2:
        h, w = numbers
        raise ShapeError(f"input '{original}' gives no channel count; write 1x{h}x{w} for one channel, or CxHxW")
    c, h, w = numbers
    if c == h != w:
        raise ShapeError(f"input '{original}' is ambiguous: read CxHxW (channels first, as summary --input) it is "
                         f"{c} channels of {h}x{w} pixels; write {w}x{c}x{h} for a {c}x{h} image with {w} "
                         f"channel(s), or {c}@{h}x{w} to keep the channels-first reading")
    return c, h, w


@dataclass
class ChainStep:
    """One layer of :func:`shape_chain`: its sizes with formulas, parameters and receptive field."""

    layer: LayerSpec
    input_shape: tuple[int, int, int]  # C, H, W
    output_shape: tuple[int, int, int]  # C, H, W
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
            # The flattened feature map is a vector of activations, not of parameters (a slip of one deck).
            c, h, w = self.input_shape
            return f"flatten {c}*{h}*{w} = {c * h * w:,} values -> {self.layer.filters}"
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
    """Walk ``layers`` from a ``(C, H, W)`` input: output size, parameters and receptive field of each."""
    c, h, w = input_shape
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
            formula = f"({c}*{h}*{w}{' + 1' if layer.bias else ''})*{k} = {params}"
            fields = tuple(f.whole(n) for f, n in zip(fields, (h, w)))
            steps.append(ChainStep(layer, (c, h, w), (k, 1, 1), None, params, formula,
                                   tuple(f.size for f in fields), tuple(f.jump for f in fields),
                                   tuple(f.start for f in fields), notes))
            c, h, w = k, 1, 1
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
            if any(s < f for s, f in zip(layer.stride, layer.kernel)):
                # Overlapping pooling (Krizhevsky et al. 2012, section 3.4): the stride is smaller than the window.
                stride, window = layer.stride[0], layer.kernel[0]
                if stride >= window:
                    stride, window = layer.stride[1], layer.kernel[1]
                notes.append(f"overlapping pooling: stride {stride} < window {window}, so neighbouring windows "
                             f"share pixels")
        fields = tuple(f.through(a.kernel, a.stride, a.padding, a.dilation) for f, a in zip(fields, axes))
        steps.append(ChainStep(layer, (c, h, w), (k, out_h, out_w), axes, params, params_formula,
                               tuple(f.size for f in fields), tuple(f.jump for f in fields),
                               tuple(f.start for f in fields), notes))
        c, h, w = k, out_h, out_w
    return steps


def same_padding(kernel: int, dilation: int = 1) -> int:
    """The padding that keeps the size at stride 1: (F - 1)/2 (the decks' F=3 -> 1, F=5 -> 2, F=7 -> 3)."""
    return math.floor(dilation * (kernel - 1) / 2)
