"""Benchmarks, one module each; every module defines ``register(subparsers)`` for ``cnnlab bench``.

Timings are taken side by side in one process and reported as ratios, because absolute figures on a
shared machine drift from run to run.
"""

from ..system import hardware

__all__ = ["hardware"]
