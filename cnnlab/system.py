"""What the machine can do: CPU model and instruction-set flags, native bf16, a one-line description.

Benchmarks print the description beside every figure; the trainer's ``precision="auto"`` and int8
quantisation ask for the instruction sets, because bf16 autocast and int8 arithmetic are fast only where
the CPU has them (AVX-512 BF16 / AMX, VNNI) and several times slower where they are emulated.
"""

from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

import torch


@functools.lru_cache(maxsize=1)
def _cpuinfo() -> tuple[str, frozenset[str]]:
    """(model name, flags) of the first CPU in /proc/cpuinfo; the platform's name and no flags elsewhere."""
    first: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            first.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    return first.get("model name") or platform.processor() or platform.machine(), frozenset(first.get("flags", "").split())


def cpu_flags() -> frozenset[str]:
    """The CPU's instruction-set flags as Linux names them (``avx512_bf16``, ``avx512_vnni``, ...)."""
    return _cpuinfo()[1]


def cpu_has_vnni() -> bool:
    """Whether int8 dot products run natively (AVX-512 VNNI or AVX-VNNI)."""
    return bool({"avx512_vnni", "avx_vnni"} & cpu_flags())


def native_bf16(device: torch.device | str) -> bool:
    """Whether bf16 matrix arithmetic is native on ``device``: a CUDA GPU that supports it, or a CPU with
    AVX-512 BF16 or AMX (elsewhere PyTorch emulates bf16 on the CPU, 4-7x slower than fp32 as measured)."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.is_available() and torch.cuda.is_bf16_supported()
    return device.type == "cpu" and bool({"avx512_bf16", "amx_bf16"} & cpu_flags())


def hardware() -> str:
    """One line naming the machine a figure was measured on: CPU model, CPU count, torch build, SIMD level,
    and the GPU when CUDA is available."""
    text = (f"{_cpuinfo()[0]}, {os.cpu_count()} logical CPUs, torch {torch.__version__}, "
            f"capability {torch.backends.cpu.get_cpu_capability()}")
    if torch.cuda.is_available():
        text = f"{torch.cuda.get_device_name(0)}; {text}"
    return text


def channels_last_module(model: "torch.nn.Module") -> "torch.nn.Module":
    """``model`` in the channels-last layout of its weights' rank: ``channels_last`` for 2D convolutions,
    ``channels_last_3d`` for a network of 3D ones (clips), which the 2D layout refuses."""
    import torch

    three_d = any(p.dim() == 5 for p in model.parameters())
    return model.to(memory_format=torch.channels_last_3d if three_d else torch.channels_last)


def channels_last_tensor(x: "torch.Tensor") -> "torch.Tensor":
    """A batch in channels-last memory: N x H x W x C for images, N x T x H x W x C for clips (5 dimensions)."""
    import torch

    return x.contiguous(memory_format=torch.channels_last_3d if x.dim() == 5 else torch.channels_last)
