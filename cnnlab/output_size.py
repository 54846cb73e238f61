"""The output-size formula ``(N - F + 2P)/S + 1`` along one axis, with a verdict on whether it fits.

One implementation for the whole package: the shape calculator (:mod:`cnnlab.analysis.shapes`,
``cnnlab shape``) and the NumPy reference engine (:mod:`cnnlab.reference`) both size their outputs with
:func:`conv_output_size`. It is plain integer and fraction arithmetic, with no NumPy and no torch, so
the reference engine can import it and stay independent of the framework it checks.

With dilation ``D`` a filter of ``F`` taps spans ``D(F - 1) + 1`` pixels. When ``N - F + 2P`` is not a
multiple of ``S`` the filter does not tile the padded input (the decks' 7x7 input with a 3x3 filter at
stride 3 gives (7 - 3)/3 + 1 = 2.33); PyTorch then rounds down, or up with ``ceil_mode``.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

from .errors import CnnlabError


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

    def checked_size(self) -> int:
        """:attr:`size`, or a :class:`ShapeError` when not one window fits (the filter outspans the padded input)."""
        if self.slack < 0:
            raise ShapeError(f"kernel {self.kernel} (dilation {self.dilation}) does not fit an input of {self.n} "
                             f"with padding {self.padding}")
        return self.size

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


def output_hw(size: tuple[int, int], kernel: tuple[int, int], stride: tuple[int, int] = (1, 1),
              padding: tuple[int, int] = (0, 0), dilation: tuple[int, int] = (1, 1)) -> tuple[int, int]:
    """PyTorch's (rounded-down) output height and width; a :class:`ShapeError` if a filter outspans its axis.

    >>> output_hw((227, 227), (11, 11), (4, 4))      # AlexNet's conv1
    (55, 55)
    """
    return tuple(conv_output_size(n, k, s, p, d).checked_size()
                 for n, k, s, p, d in zip(size, kernel, stride, padding, dilation))  # type: ignore[return-value]
