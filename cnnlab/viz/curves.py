"""Training curves: loss and accuracy per epoch for one or more runs, overlaid.

A run's history is ``history.jsonl`` in its run folder, one JSON object per epoch with ``epoch``,
``train_loss``, ``train_acc``, ``test_loss``, ``test_acc``, ``lr`` and ``seconds`` (``val_loss`` /
``val_acc`` when a validation split was held out).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..errors import DataError
from . import style

HISTORY_FILE = "history.jsonl"


def read_history(path: str | Path) -> list[dict[str, Any]]:
    """The per-epoch records of a run folder or a ``history.jsonl`` file."""
    path = Path(path)
    file = path / HISTORY_FILE if path.is_dir() else path
    if not file.is_file():
        raise DataError(f"no training history at '{path}' (expected a run folder with {HISTORY_FILE}, or the file)")
    records = []
    for number, line in enumerate(file.read_text("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            raise DataError(f"{file}: line {number} is not JSON") from None
        if not isinstance(record, dict) or "epoch" not in record:
            raise DataError(f"{file}: line {number} is not an epoch record (no 'epoch')")
        records.append(record)
    if not records:
        raise DataError(f"{file} holds no epochs")
    return records


def run_label(path: str | Path) -> str:
    """A short name for a run: its folder's name."""
    path = Path(path).resolve()
    return path.parent.name if path.is_file() else path.name


def main_metric(runs: dict[str, list[dict[str, Any]]]) -> str:
    """The figure the second panel shows: accuracy where the runs log it, else the first test figure
    other than the loss (a task's own: ``miou``, ``map``, ``cer`` ...)."""
    keys = [k for history in runs.values() for r in history for k in r]
    if "test_acc" in keys or "train_acc" in keys:
        return "acc"
    return next((k[5:] for k in keys if k.startswith("test_") and k != "test_loss"), "acc")


def plot_curves(runs: dict[str, list[dict[str, Any]]], *, title: str = "Training curves"):
    """Loss and the task's main figure (accuracy for classification) against epoch, and the learning
    rate when it changes.

    Each run has its own colour; solid lines are training, dashed test, dotted validation.
    """
    metric = main_metric(runs)
    has_lr = any(len({r.get("lr") for r in h if r.get("lr") is not None}) > 1 for h in runs.values())
    panels = 3 if has_lr else 2
    fig = style.figure(4.2 * panels, 3.6)
    fig.suptitle(title)
    axes = fig.subplots(1, panels)
    ax_loss, ax_acc = axes[0], axes[1]
    for i, (name, history) in enumerate(runs.items()):
        colour = f"C{i % 10}"
        for split, line in (("train", "-"), ("test", "--"), ("val", ":")):
            for ax, key in ((ax_loss, f"{split}_loss"), (ax_acc, f"{split}_{metric}")):
                points = [(r["epoch"], r[key]) for r in history if r.get(key) is not None]
                if points:
                    xs, ys = zip(*points)
                    ys = [100 * y for y in ys] if key.endswith("acc") else ys
                    ax.plot(xs, ys, line, color=colour, marker="o" if len(xs) < 12 else None, markersize=3,
                            label=f"{name} {split}")
        # A task with several losses (a GAN's generator and discriminator) logs the others as
        # train_<name>_loss: drawn beside the main one, one marker style each.
        others = sorted({k for r in history for k in r if k.startswith("train_") and k.endswith("_loss")
                         and k not in ("train_loss", "train_g_loss")})
        for j, key in enumerate(others):
            points = [(r["epoch"], r[key]) for r in history if r.get(key) is not None]
            xs, ys = zip(*points)
            ax_loss.plot(xs, ys, "-.", color=colour, marker="sx^v"[j % 4], markersize=3, label=f"{name} {key[6:]}")
        if others:
            ax_loss.legend(loc="best")
        if has_lr:
            points = [(r["epoch"], r["lr"]) for r in history if r.get("lr") is not None]
            if points:
                xs, ys = zip(*points)
                axes[2].plot(xs, ys, "-", color=colour, label=name)
    ax_loss.set(title="loss", xlabel="epoch", ylabel="cross-entropy" if metric == "acc" else "loss")
    if metric == "acc":
        ax_acc.set(title="accuracy", xlabel="epoch", ylabel="top-1 accuracy (%)")
    else:
        ax_acc.set(title=metric, xlabel="epoch", ylabel=metric)
    if has_lr:
        axes[2].set(title="learning rate", xlabel="epoch", ylabel="lr", yscale="log")
    for ax in axes:
        ax.grid(alpha=0.3)
        ax.xaxis.get_major_locator().set_params(integer=True)
    if ax_acc.get_lines():
        ax_acc.legend(loc="best")
    return fig
