"""What a run logs besides its checkpoints: every value per step and per epoch, as CSV and, where the
``tensorboard`` package is installed and asked for, as TensorBoard event files.

``steps.csv``   epoch, step (within the epoch), global step, loss, lr, images/s of each optimiser step
``epochs.csv``  one row per epoch: every figure of ``history.jsonl`` (train_*, val_*, test_*, lr, seconds)
``tensorboard/`` event files with the same values (``cnnlab train --tensorboard``; ``tensorboard --logdir runs``)

The CSV files are rewritten whole, atomically, at each checkpoint, from what the run holds, so they
always agree with the checkpoint; a resumed run reads them back and drops the rows of the epochs it is
about to train again.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..io import atomic_write_text

STEPS_FILE = "steps.csv"
EPOCHS_FILE = "epochs.csv"
TENSORBOARD_DIR = "tensorboard"
STEP_FIELDS = ("epoch", "step", "global_step", "loss", "lr", "images_per_second")


def _csv(rows: list[dict[str, Any]], fields: list[str]) -> str:
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue()


def read_csv(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV file written by :class:`RunLog`, numbers as numbers."""
    def number(text: str) -> Any:
        try:
            return int(text)
        except ValueError:
            try:
                return float(text)
            except ValueError:
                return text

    with open(path, newline="", encoding="utf-8") as f:
        return [{k: number(v) for k, v in row.items()} for row in csv.DictReader(f)]


class RunLog:
    """Per-step and per-epoch values of one run, kept in memory and written beside its checkpoints."""

    def __init__(self, run_dir: Path, *, epochs_done: int = 0, tensorboard: bool = False):
        self.run_dir = Path(run_dir)
        self.steps: list[dict[str, Any]] = []
        if epochs_done and (self.run_dir / STEPS_FILE).is_file():
            self.steps = [r for r in read_csv(self.run_dir / STEPS_FILE) if int(r["epoch"]) <= epochs_done]
        self.writer = None
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                raise ConfigError("--tensorboard needs the tensorboard package: pip install 'cnnlab[tensorboard]'") from None
            self.writer = SummaryWriter(str(self.run_dir / TENSORBOARD_DIR), purge_step=len(self.steps) or None)

    def step(self, epoch: int, step: int, loss: float, lr: float, rate: float) -> None:
        row = {"epoch": epoch, "step": step, "global_step": len(self.steps) + 1, "loss": loss, "lr": lr,
               "images_per_second": rate}
        self.steps.append(row)
        if self.writer is not None:
            self.writer.add_scalar("train/loss_step", loss, row["global_step"])
            self.writer.add_scalar("train/lr", lr, row["global_step"])

    def epoch(self, record: dict[str, Any]) -> None:
        if self.writer is not None:
            for key, value in record.items():
                if key != "epoch" and isinstance(value, (int, float)):
                    split, _, name = key.partition("_")
                    self.writer.add_scalar(f"{split}/{name}" if name else key, value, record["epoch"])
            self.writer.flush()

    def write(self, history: list[dict[str, Any]]) -> None:
        """Rewrite both CSV files from what the run holds (called with each checkpoint)."""
        fields = list(dict.fromkeys(k for record in history for k in record))
        atomic_write_text(self.run_dir / EPOCHS_FILE, _csv(history, fields))
        atomic_write_text(self.run_dir / STEPS_FILE, _csv(self.steps, list(STEP_FIELDS)))

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
