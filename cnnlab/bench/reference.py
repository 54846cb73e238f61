"""``cnnlab bench reference``: training throughput of the NumPy engine as a ratio to PyTorch on the CPU.

Both engines train the same LeNet-5 (same weights, same batch, float32, Adam, softmax cross-entropy)
in one process. Rounds alternate between the engines so that a shared machine's load falls on both
alike; the per-step time is each engine's median over its rounds. Both use the same thread count.
"""

from __future__ import annotations

import statistics
import time

import numpy as np

from ..commands import add_verb
from ..console import print_json, print_table


def register(subparsers) -> None:
    parser = add_verb(subparsers, "reference", help="NumPy reference engine vs PyTorch: LeNet-5 training throughput",
                      example="cnnlab bench reference --batch-size 64 --rounds 5")
    parser.add_argument("--arch", default="lenet5", choices=["lenet5", "lenet5_modern"])
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=10, help="training steps per round")
    parser.add_argument("--rounds", type=int, default=5, help="alternating rounds per engine")
    parser.add_argument("--threads", type=int, default=1, help="threads for both torch and NumPy's BLAS")
    parser.add_argument("--json", action="store_true")
    parser.set_defaults(func=run)


def measure(arch: str = "lenet5", batch_size: int = 64, steps: int = 10, rounds: int = 5, threads: int = 1,
            seed: int = 0) -> dict:
    """Median seconds per training step of each engine and their ratio (reference / torch)."""
    import torch

    from ..reference import functional as F
    from ..reference import nn as rnn
    from ..reference.optim import Adam
    from ..reference.threads import blas_threads, set_blas_threads
    from ..registry import create_model

    if min(batch_size, steps, rounds, threads) < 1:
        raise ValueError("batch size, steps, rounds and threads must all be at least 1")
    previous_torch_threads = torch.get_num_threads()
    torch.set_num_threads(threads)
    blas_set = set_blas_threads(threads)
    try:
        rng = np.random.default_rng(seed)
        images = rng.standard_normal((batch_size, 1, 28, 28)).astype(np.float32)
        labels = rng.integers(0, 10, batch_size)
        torch.manual_seed(seed)
        twin = create_model(arch).train()
        model = getattr(rnn, arch)().astype(np.float32)
        model.load_state_dict(twin.state_dict())
        model.features[0].needs_input_grad = False  # as torch: the input batch does not require a gradient
        opt_ref, opt_torch = Adam(model.parameters(), 1e-3), torch.optim.Adam(twin.parameters(), 1e-3)
        x_t, y_t = torch.from_numpy(images), torch.from_numpy(labels)

        def reference_step() -> None:
            opt_ref.zero_grad()
            logits = model(images)
            model.backward(F.cross_entropy_backward(logits, labels).astype(np.float32))
            opt_ref.step()

        def torch_step() -> None:
            opt_torch.zero_grad()
            torch.nn.functional.cross_entropy(twin(x_t), y_t).backward()
            opt_torch.step()

        def timed(step) -> float:
            started = time.perf_counter()
            for _ in range(steps):
                step()
            return (time.perf_counter() - started) / steps

        timed(reference_step), timed(torch_step)  # warm-up: allocations, caches, lazy initialisation
        ref_times, torch_times = [], []
        for _ in range(rounds):
            ref_times.append(timed(reference_step))
            torch_times.append(timed(torch_step))
    finally:
        torch.set_num_threads(previous_torch_threads)
    ref, tch = statistics.median(ref_times), statistics.median(torch_times)
    return {"arch": arch, "batch_size": batch_size, "threads": threads, "numpy_blas_threads": blas_threads(),
            "blas_threads_set": blas_set, "steps_per_round": steps, "rounds": rounds,
            "reference_seconds_per_step": ref, "torch_seconds_per_step": tch,
            "reference_images_per_second": batch_size / ref, "torch_images_per_second": batch_size / tch,
            "ratio": ref / tch}


def run(args) -> int:
    result = measure(args.arch, args.batch_size, args.steps, args.rounds, args.threads)
    if args.json:
        print_json(result)
        return 0
    print_table([("cnnlab.reference (NumPy)", f"{result['reference_seconds_per_step'] * 1e3:.1f}",
                  f"{result['reference_images_per_second']:.0f}"),
                 ("PyTorch (CPU)", f"{result['torch_seconds_per_step'] * 1e3:.1f}",
                  f"{result['torch_images_per_second']:.0f}")],
                ["engine", "ms / step", "images / s"],
                title=f"{result['arch']} training, batch {result['batch_size']}, {result['threads']} thread(s), float32",
                justify_right=["ms / step", "images / s"])
    print(f"ratio: the reference engine takes {result['ratio']:.2f}x PyTorch's time per training step")
    return 0
