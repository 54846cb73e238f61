"""The P x K sampler (Hermans et al. 2017, Sec. 3; FaceNet's batches hold about 40 faces per identity):
each batch draws P classes and K images of each, so that every anchor has positives and negatives."""

from __future__ import annotations

import torch

from ..errors import ConfigError


def pk_order(labels: torch.Tensor, classes_per_batch: int, per_class: int, generator: torch.Generator,
             batch_size: int | None = None) -> torch.Tensor:
    """One epoch's order of example indices (whole batches of ``batch_size``, by default ``P * K``, enough
    to cover ``len(labels)``): consecutive runs of ``batch_size`` are batches of P distinct classes x K
    images each; a batch size that is not a multiple of P gives its first ``batch_size - P * K`` classes
    one image more.

    Every class's examples are shuffled and dealt out K at a time (drawn again, reshuffled, once a class
    runs out), and each batch takes P classes at random among those present.
    """
    classes = torch.unique(labels)
    p, k = classes_per_batch, per_class
    if p > len(classes):
        raise ConfigError(f"a batch of {p} classes x {k} images needs {p} classes; the training set has {len(classes)}")
    if p < 2 or k < 2:
        raise ConfigError(f"P x K batches need at least 2 classes and 2 images of each, got {p} x {k}")
    pools = {int(c): (labels == c).nonzero().flatten() for c in classes}
    queues: dict[int, list[int]] = {c: [] for c in pools}
    size = p * k if batch_size is None else int(batch_size)
    if not p * k <= size < p * (k + 1):
        raise ConfigError(f"a batch of {size} images is not {p} classes x {k} images (and fewer than {p} more)")
    batches = -(-len(labels) // size)  # as many batches as the trainer takes of an epoch
    out = []
    for _ in range(batches):
        chosen = classes[torch.randperm(len(classes), generator=generator)[:p]]
        for rank, c in enumerate(chosen.tolist()):
            take = k + (rank < size - p * k)
            while len(queues[c]) < take:  # refill from a fresh shuffle of the class
                pool = pools[c]
                queues[c].extend(pool[torch.randperm(len(pool), generator=generator)].tolist())
            out.extend(queues[c][:take])
            del queues[c][:take]
    return torch.tensor(out, dtype=torch.long)
