"""The run's ``curves.png``: drawn by :func:`cnnlab.viz.curves.plot_curves`, the same figure as
``cnnlab viz curves``."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_history(runs: dict[str, list[dict[str, Any]]], path: str | Path) -> Path:
    """Plot loss and accuracy per epoch for each run in ``runs`` (name -> history) into ``path``."""
    from ..viz import style
    from ..viz.curves import plot_curves

    return style.save(plot_curves(runs), path)
