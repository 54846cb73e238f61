"""Models side by side: the decks' "revolution of depth" (8 layers in 2012, 152 in 2015) as numbers.

Parameters, MACs and depth are measured here (see :mod:`cnnlab.analysis.summary` for the
conventions); year, paper and ImageNet top-1 / top-5 accuracy are the published figures the
registry stores with each model (single-crop validation accuracy as each paper or its reference
implementation reports it; ``None`` where a model has none).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Sequence

from .summary import parse_input_size, summarize


@dataclass
class ComparisonRow:
    """One model in :func:`compare_models`."""

    name: str
    family: str
    year: int
    paper: str
    input_size: tuple[int, ...]
    params: int  # of the layers used in evaluation (GoogLeNet's auxiliary heads only train)
    params_total: int
    macs: int
    depth: int
    top1: float | None
    top5: float | None

    @property
    def flops(self) -> int:
        return 2 * self.macs

    def to_dict(self) -> dict:
        values = asdict(self)
        values["input_size"] = list(self.input_size)
        values["flops"] = self.flops
        return values


def compare_models(names: Sequence[str], input_size: Sequence[int] | str | None = None,
                   sort: str | None = None) -> list[ComparisonRow]:
    """Measure each registered model at its own input size (or ``input_size``) and list them.

    ``sort`` orders the rows by ``"year"``, ``"params"``, ``"macs"``, ``"depth"`` or ``"top1"``;
    by default they keep the order given.
    """
    from ..registry import model_info

    size = parse_input_size(input_size) if input_size is not None else None
    rows = []
    for name in names:
        info = model_info(name)
        summary = summarize(name, size)
        rows.append(ComparisonRow(name, info.family, info.year, info.paper, summary.input_size,
                                  summary.used_params, summary.total_params, summary.total_macs, summary.depth,
                                  info.top1, info.top5))
    if sort:
        keys = {"year": lambda r: r.year, "params": lambda r: r.params, "macs": lambda r: r.macs,
                "depth": lambda r: r.depth, "top1": lambda r: -1.0 if r.top1 is None else r.top1,
                "name": lambda r: r.name}
        if sort not in keys:
            from ..errors import unknown_name

            raise unknown_name("sort key", sort, list(keys))
        rows.sort(key=keys[sort])
    return rows
