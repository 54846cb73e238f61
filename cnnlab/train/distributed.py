"""Data-parallel training on PyTorch's own engine (``torch.distributed`` + DistributedDataParallel).

Launch one process per CPU socket share or GPU with ``torchrun``::

    torchrun --standalone --nproc-per-node 2 -m cnnlab.cli train lenet5 --data fashion-mnist --distributed

Every rank draws the same shuffled order and augments the same global batch of ``batch_size`` images
(one seeded generator, identical on all ranks), then trains on its own shard of it. DDP averages the
ranks' gradients; each rank's loss is scaled by ``shard / (global / world)`` so that the average equals
the gradient of the mean loss over the global batch even when the last batch does not split evenly.
A run on W processes therefore follows the single-process run with the same global batch, up to the
order of floating-point sums.

Batch norm is the exception: its statistics are those of each rank's shard. On CUDA the batch norms
become SyncBatchNorm (statistics over the global batch); PyTorch's SyncBatchNorm has no CPU kernel, so on
CPU a model with batch norm trains like one with a smaller normalisation batch (``batch_size / W``).

Rank 0 alone evaluates, writes the checkpoint and logs; the others wait for it at a barrier, so a
resumed run (``--resume RUN_DIR``, launched the same way) finds a complete checkpoint.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from ..errors import ConfigError

LAUNCH_HINT = "torchrun --standalone --nproc-per-node 2 -m cnnlab.cli train MODEL --distributed ..."


@dataclass
class DistributedContext:
    """Where this process stands in a data-parallel run (a single process: rank 0 of 1, disabled)."""

    enabled: bool = False
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def shard(self, indices: torch.Tensor) -> slice:
        """This rank's contiguous slice of a global batch of ``len(indices)`` samples."""
        n = len(indices)
        per_rank, extra = divmod(n, self.world_size)
        start = self.rank * per_rank + min(self.rank, extra)
        return slice(start, start + per_rank + (1 if self.rank < extra else 0))

    def loss_scale(self, shard_size: int, global_size: int) -> float:
        """Factor on this rank's mean loss so DDP's gradient average is the global batch's mean gradient."""
        return shard_size * self.world_size / global_size

    def wrap(self, model: nn.Module, device: torch.device) -> nn.Module:
        from torch.nn.parallel import DistributedDataParallel

        ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=ids)

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The sum of ``tensor`` over all ranks (in place; returned for convenience)."""
        if self.enabled:
            dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
        return tensor


def setup(device_name: str) -> tuple[DistributedContext, str]:
    """Join the process group that ``torchrun`` describes in the environment; returns the context and the
    device this rank should use (``cuda:LOCAL_RANK`` on GPUs)."""
    missing = [k for k in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT") if k not in os.environ]
    if missing:
        raise ConfigError(f"--distributed needs the launcher's environment ({', '.join(missing)} not set); "
                          f"start with: {LAUNCH_HINT}")
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    use_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if use_cuda:
        torch.cuda.set_device(local_rank)
        device_name = f"cuda:{local_rank}"
    backend = "nccl" if use_cuda else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistributedContext(True, rank, world, local_rank, backend), device_name


def convert_batchnorm(model: nn.Module, device: torch.device) -> nn.Module:
    """SyncBatchNorm where PyTorch has a kernel for it (CUDA); the model unchanged elsewhere."""
    return nn.SyncBatchNorm.convert_sync_batchnorm(model) if device.type == "cuda" else model


def teardown(context: DistributedContext) -> None:
    if context.enabled and dist.is_initialized():
        dist.destroy_process_group()
