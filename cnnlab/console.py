"""Output for people and for programs: rich tables in a terminal, plain text when piped, JSON on request."""

from __future__ import annotations

import json
import math
import sys
from typing import Any, Iterable, Sequence


def _jsonable(value: Any) -> Any:
    """Turn numpy / torch scalars, tuples and paths into plain JSON values."""
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if hasattr(value, "tolist"):  # numpy arrays and scalars, torch tensors
        return _jsonable(value.tolist())
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def print_json(obj: Any) -> None:
    """Print ``obj`` as indented JSON on stdout."""
    sys.stdout.write(json.dumps(_jsonable(obj), indent=2, ensure_ascii=False) + "\n")


def print_table(
    rows: Iterable[Sequence[Any]],
    columns: Sequence[str],
    *,
    title: str | None = None,
    justify_right: Sequence[str] = (),
) -> None:
    """Print a table: a rich table on a terminal, tab-separated plain text when piped."""
    rows = [[("" if c is None else str(c)) for c in row] for row in rows]
    if sys.stdout.isatty():
        from rich.console import Console
        from rich.table import Table

        table = Table(title=title)
        for name in columns:
            table.add_column(name, justify="right" if name in justify_right else "left")
        for row in rows:
            table.add_row(*row)
        Console().print(table)
        return
    if title:
        print(title)
    widths = [max([len(c)] + [len(r[i]) for r in rows]) for i, c in enumerate(columns)]
    print("  ".join(c.ljust(w) for c, w in zip(columns, widths)).rstrip())
    for row in rows:
        print("  ".join(v.rjust(w) if col in justify_right else v.ljust(w)
                        for v, w, col in zip(row, widths, columns)).rstrip())


def human_count(n: float) -> str:
    """12_345_678 -> '12.35M'."""
    for unit, size in (("G", 1e9), ("M", 1e6), ("K", 1e3)):
        if abs(n) >= size:
            return f"{n / size:.2f}{unit}"
    return f"{n:.0f}" if float(n).is_integer() else f"{n:.3g}"
