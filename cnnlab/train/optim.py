"""Optimisers and learning-rate schedules, chosen by name from the configuration."""

from __future__ import annotations

import math
from typing import Iterable

import torch
from torch import nn

from .config import TrainConfig


def parameter_groups(parameters: nn.Module | Iterable[nn.Parameter], weight_decay: float,
                     slow: set[int] | None = None, slow_lr: float | None = None) -> list[dict]:
    """No weight decay on biases and normalisation parameters (1-D tensors), as is standard practice.
    Parameters whose ``id`` is in ``slow`` (a pretrained trunk) get their own groups at ``slow_lr``."""
    slow = slow or set()
    buckets: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for p in (parameters.parameters() if isinstance(parameters, nn.Module) else parameters):
        if p.requires_grad:
            buckets.setdefault((id(p) in slow, p.ndim <= 1), []).append(p)
    groups = [{"params": buckets.get((False, False), []), "weight_decay": weight_decay}]
    if buckets.get((False, True)):
        groups.append({"params": buckets[(False, True)], "weight_decay": 0.0})
    for is_bias in (False, True):
        if buckets.get((True, is_bias)):
            groups.append({"params": buckets[(True, is_bias)], "weight_decay": 0.0 if is_bias else weight_decay,
                           "lr": slow_lr})
    return groups


def make_optimizer(parameters: nn.Module | Iterable[nn.Parameter], config: TrainConfig,
                   slow: set[int] | None = None) -> torch.optim.Optimizer:
    """The optimiser ``config.optimizer`` over ``parameters`` (a model's, or one training phase's);
    the parameters in ``slow`` learn at ``config.lr * config.backbone_lr``."""
    groups = parameter_groups(parameters, config.weight_decay, slow, config.lr * config.backbone_lr)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum,
                               nesterov=config.nesterov and config.momentum > 0)
    betas = (config.momentum if config.momentum > 0 else 0.9, 0.999)
    if config.optimizer == "adam":
        return torch.optim.Adam(groups, lr=config.lr, betas=betas)
    return torch.optim.AdamW(groups, lr=config.lr, betas=betas)


class LRMultiplier:
    """The learning-rate multiplier at optimiser step ``t``: linear warm-up, then the schedule.

    ``onecycle`` follows Smith & Topin (2017): warm up over 25% of training (unless a warm-up is
    given), then anneal on a cosine to 1/1000 of the peak.
    """

    def __init__(self, config: TrainConfig, steps_per_epoch: int):
        self.schedule = config.schedule
        self.total = max(1, config.epochs * steps_per_epoch)
        warmup = config.warmup_epochs * steps_per_epoch
        if self.schedule == "onecycle" and warmup == 0:
            warmup = 0.25 * self.total
        self.warmup = int(warmup)
        self.steps_per_epoch = steps_per_epoch
        self.step_epochs = config.step_epochs
        self.gamma = config.step_gamma

    def __call__(self, t: int) -> float:
        if t < self.warmup:
            return (t + 1) / (self.warmup + 1)
        if self.schedule == "constant":
            return 1.0
        if self.schedule == "step":
            return self.gamma ** ((t // self.steps_per_epoch) // max(1, self.step_epochs))
        progress = min(1.0, (t - self.warmup) / max(1, self.total - self.warmup))
        floor = 1e-3 if self.schedule == "onecycle" else 0.0
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def make_scheduler(optimizer: torch.optim.Optimizer, config: TrainConfig, steps_per_epoch: int):
    return torch.optim.lr_scheduler.LambdaLR(optimizer, LRMultiplier(config, steps_per_epoch))


def replan(scheduler: torch.optim.lr_scheduler.LambdaLR, config: TrainConfig, steps_per_epoch: int) -> None:
    """Make a (restored) schedule follow ``config.epochs`` from the step it has reached: how a run
    that is extended to more epochs continues."""
    scheduler.lr_lambdas = [LRMultiplier(config, steps_per_epoch) for _ in scheduler.lr_lambdas]
