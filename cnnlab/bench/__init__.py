"""Benchmarks, one module each; every module defines ``register(subparsers)`` for ``cnnlab bench``.

Timings are taken side by side in one process and reported as ratios, because absolute figures on a
shared machine drift from run to run.
"""

from ..system import hardware

__all__ = ["add_training_bench_arguments", "hardware"]


def add_training_bench_arguments(p, *, out: str, limit_train: int = 0, seed: bool = True) -> None:
    """The arguments every benchmark that trains its models side by side shares: how much data, where
    it runs, where the runs go and how the table is printed."""
    p.add_argument("--limit-train", type=int, default=limit_train)
    p.add_argument("--limit-test", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=1)
    if seed:
        p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default=out)
    p.add_argument("--markdown", metavar="FILE", help="also write the table as Markdown")
    p.add_argument("--json", action="store_true")
