"""Read and set how many threads NumPy's BLAS uses, so the engine can be timed like for like with torch.

NumPy's wheels bundle OpenBLAS, whose thread count is fixed when it loads unless changed through its C
function ``openblas_set_num_threads`` (exported under a prefixed name in NumPy's build). This finds the
loaded library in the process's memory map (Linux) and calls it; elsewhere it reports that it cannot.
"""

from __future__ import annotations

import ctypes
from functools import lru_cache

import numpy as np  # noqa: F401  (importing numpy loads its BLAS)

_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads", "openblas_set_num_threads64_",
            "openblas_set_num_threads")
_GETTERS = tuple(name.replace("set_", "get_") for name in _SETTERS)


@lru_cache(maxsize=1)
def _openblas():
    try:
        with open("/proc/self/maps") as maps:
            paths = sorted({line.split()[-1] for line in maps if "openblas" in line.lower() and "/" in line})
    except OSError:
        return None
    for path in paths:
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        setter = next((getattr(library, n) for n in _SETTERS if hasattr(library, n)), None)
        getter = next((getattr(library, n) for n in _GETTERS if hasattr(library, n)), None)
        if setter is not None and getter is not None:
            return setter, getter
    return None


def blas_threads() -> int | None:
    """Threads NumPy's OpenBLAS uses now, or None if it cannot be told."""
    functions = _openblas()
    return int(functions[1]()) if functions else None


def set_blas_threads(count: int) -> bool:
    """Ask NumPy's OpenBLAS to use ``count`` threads; False if this BLAS cannot be reached."""
    if count < 1:
        raise ValueError(f"thread count must be at least 1, got {count}")
    functions = _openblas()
    if not functions:
        return False
    functions[0](ctypes.c_int(count))
    return blas_threads() == count
