"""``cnnlab bench``: reproducible benchmarks that print side-by-side ratios measured in one run.

Each benchmark is a module in :mod:`cnnlab.bench` defining ``register(subparsers)``.
"""

from __future__ import annotations

import importlib
import pkgutil

from . import add_verb


def register(subparsers) -> None:
    parser = add_verb(subparsers, "bench", help="run a benchmark (prints ratios measured side by side)",
                      example="cnnlab bench infer resnet18")
    inner = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK")
    from .. import bench

    for info in sorted(pkgutil.iter_modules(bench.__path__), key=lambda m: m.name):
        if not info.name.startswith("_"):
            importlib.import_module(f"{bench.__name__}.{info.name}").register(inner)
    parser.set_defaults(func=lambda args: (parser.print_help(), 2)[1])
