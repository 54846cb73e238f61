"""Loss and accuracy curves of one or more runs, as a PNG."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def plot_history(runs: dict[str, list[dict[str, Any]]], path: str | Path) -> Path:
    """Plot train/test loss and accuracy per epoch for each run in ``runs`` (name -> history)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4), constrained_layout=True)
    for i, (name, history) in enumerate(runs.items()):
        epochs = [h["epoch"] for h in history]
        color = f"C{i % 10}"
        ax_loss.plot(epochs, [h["train_loss"] for h in history], color=color, label=f"{name} train")
        ax_loss.plot(epochs, [h["test_loss"] for h in history], color=color, ls="--", label=f"{name} test")
        ax_acc.plot(epochs, [h["train_acc"] for h in history], color=color, label=f"{name} train")
        ax_acc.plot(epochs, [h["test_acc"] for h in history], color=color, ls="--", label=f"{name} test")
    ax_loss.set(title="loss", xlabel="epoch", ylabel="loss")
    ax_acc.set(title="accuracy", xlabel="epoch", ylabel="accuracy")
    for ax in (ax_loss, ax_acc):
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    path = Path(path)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
