"""Analysis: the per-layer tables the decks compute by hand.

- :func:`summarize` -> :class:`Summary`: output shapes, parameters, MACs, neurons, receptive fields
  and activation memory, layer by layer, for any model (``cnnlab summary``).
- :func:`conv_output_size` and :func:`shape_chain`: the ``(N - F + 2P)/S + 1`` calculator that says
  when a layer does not fit (``cnnlab shape``).
- :func:`compare_models`: parameters, MACs, depth and published accuracy side by side
  (``cnnlab compare``).
"""

from .compare import ComparisonRow, compare_models
from .receptive import AxisField
from .shapes import OutputSize, ShapeError, conv_output_size, parse_input, parse_layer, shape_chain
from .summary import LayerRow, Summary, summarize

__all__ = [
    "AxisField", "ComparisonRow", "LayerRow", "OutputSize", "ShapeError", "Summary", "compare_models",
    "conv_output_size", "parse_input", "parse_layer", "shape_chain", "summarize",
]
