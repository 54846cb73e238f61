"""Benchmarks, one module each; every module defines ``register(subparsers)`` for ``cnnlab bench``.

Timings are taken side by side in one process and reported as ratios, because absolute figures on a
shared machine drift from run to run.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

import torch


def hardware() -> str:
    """One line naming the machine a figure was measured on: CPU model, CPU count, torch build, SIMD level,
    and the GPU when CUDA is available."""
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    text = (f"{name}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
            f"capability {torch.backends.cpu.get_cpu_capability()}")
    if torch.cuda.is_available():
        text = f"{torch.cuda.get_device_name(0)}; {text}"
    return text
