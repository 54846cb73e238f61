"""Receptive fields, one spatial axis at a time.

The field of a unit is described, per axis, by three integers in input-pixel coordinates
(Araujo, Norris, Sim, "Computing receptive fields of convolutional neural networks", Distill 2019):

- ``size``: how many input pixels the field of one unit spans;
- ``jump``: how far apart, in input pixels, the fields of two neighbouring units are (the product
  of all strides so far, the "effective stride");
- ``start``: the input coordinate where the field of unit 0 begins; negative when it begins in the
  zero padding. Unit ``i`` sees input pixels ``start + i*jump`` to ``start + i*jump + size - 1``.

A layer with kernel ``k``, stride ``s``, padding ``p`` and dilation ``d`` maps (size, jump, start) to
``(size + (d*(k-1)) * jump, jump * s, start - p * jump)``. Where two paths meet (a residual addition,
an inception or dense concatenation) the field of the merged unit is the union of the fields of its
inputs, that is the largest one when they share a centre. A transposed convolution or an unpooling
(a decoder's upsampling) divides the jump by its stride (:meth:`AxisField.spread`). Fields are not clipped to the image: like
the decks say, a deep unit's field may be larger than the input itself.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class AxisField:
    """The receptive field along one spatial axis (see the module docstring)."""

    size: int = 1
    jump: int = 1
    start: int = 0
    exact: bool = True  # False after an operation whose field we can only bound (uneven adaptive pooling)

    def through(self, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> "AxisField":
        """The field after a sliding window (convolution or pooling) applied to units with this field."""
        span = dilation * (kernel - 1) + 1  # a dilated kernel covers this many positions
        return AxisField(self.size + (span - 1) * self.jump, self.jump * stride, self.start - padding * self.jump,
                         self.exact)

    def spread(self, kernel: int, stride: int = 1, padding: int = 0, dilation: int = 1) -> "AxisField | None":
        """The field after a transposed convolution (or an unpooling, a transposed window of ones).

        Output unit ``o`` gathers the input units ``i`` with ``o = i*stride - padding + j*dilation`` for a
        tap ``j``: those from ``(o + padding - dilation*(kernel-1)) / stride`` to ``(o + padding) / stride``.
        The jump shrinks to ``jump / stride`` (None when that is not a whole pixel). With a stride the set
        moves in steps, one input unit every ``stride`` outputs, so the field returned is the smallest one
        that moves evenly and holds every unit's field (a bound, marked inexact); with stride 1 it is the
        convolution's own rule.
        """
        if self.jump % stride:
            return None
        jump = self.jump // stride
        reach = dilation * (kernel - 1)
        return AxisField(self.size + reach * jump, jump, self.start + (padding - reach) * jump,
                         self.exact and stride == 1)

    def whole(self, positions: int) -> "AxisField":
        """The field of a unit that sees all ``positions`` units of this axis (flatten, global pooling)."""
        return self.through(positions, positions)

    def covers(self, index: int) -> tuple[int, int]:
        """First and last input coordinate seen by unit ``index`` (not clipped to the image)."""
        first = self.start + index * self.jump
        return first, first + self.size - 1


def merge(fields: list[AxisField], grid: list[AxisField] | None = None) -> AxisField:
    """The field of a unit fed by units with these fields (addition, concatenation, broadcasting).

    The union of the fields of unit 0. The jump is that of ``grid``, the inputs that have the
    output's own spatial size (a broadcast 1x1 input, as in squeeze-and-excitation, widens the field
    but does not set the grid); where their jumps differ the largest is kept and the result is
    marked inexact.
    """
    if len(fields) == 1:
        return fields[0]
    grid = grid or fields
    first = min(f.start for f in fields)
    last = max(f.start + f.size - 1 for f in fields)
    jumps = {f.jump for f in grid}
    return AxisField(last - first + 1, max(jumps), first, all(f.exact for f in fields) and len(jumps) == 1)


Field = tuple[AxisField, ...]  # one AxisField per spatial axis: (H, W) for images, (L,) for sequences
