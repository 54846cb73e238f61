"""An execution plan chosen by measurement: memory layout, CPU threads and (where the run allows it)
precision, timed on the run's own model, batch and machine before training starts.

The fastest setting differs by model and by machine (channels-last is faster for LeNet on one AMD
CPU and twice slower on an Intel one; two threads are ten times slower than one on a busy two-core
machine), so nothing is assumed. Every candidate trains ``steps`` steps (after one warm-up step) on a
copy of the model with its own optimiser, so the run itself, its weights and its random state are
untouched. A setting the caller gave is not a candidate: only what is left open is measured.
Numerics are kept: bf16 is a candidate only when the run asks for ``precision="auto"`` and the
device has native bf16.

The choice is cached per machine, torch build, model, input size, batch size and open settings in
``$XDG_CACHE_HOME/cnnlab/plans.json`` (``CNNLAB_PLAN_CACHE`` names another file), so later runs of the
same kind start at once; it is recorded in the run's configuration and metadata, so a resumed run
trains alike.
"""

from __future__ import annotations

import copy
import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch

from ..io import atomic_write_text
from ..system import channels_last_module, channels_last_tensor, hardware, native_bf16


@dataclass(frozen=True)
class Setting:
    threads: int
    channels_last: bool
    precision: str

    def describe(self) -> str:
        return (f"{self.threads} thread{'s' if self.threads != 1 else ''}, "
                f"{'channels-last' if self.channels_last else 'NCHW'}, {self.precision}")


@dataclass
class Plan:
    chosen: Setting
    rates: dict[str, float] = field(default_factory=dict)  # images/s of each candidate, by description
    source: str = "measured"  # measured | cache

    def to_dict(self) -> dict[str, Any]:
        return {"chosen": asdict(self.chosen), "rates": self.rates, "source": self.source}

    def describe(self) -> str:
        if len(self.rates) <= 1:
            return f"plan: {self.chosen.describe()}"
        best = self.rates.get(self.chosen.describe(), 0.0)
        others = "; ".join(f"{k} {v:,.0f}" for k, v in sorted(self.rates.items(), key=lambda kv: -kv[1])
                           if k != self.chosen.describe())
        return (f"plan ({self.source}): {self.chosen.describe()} at {best:,.0f} img/s (measured against: {others})")


def candidates(*, threads: int, channels_last: bool | None, precision: str, device: torch.device) -> list[Setting]:
    """The settings left open: threads 0 -> 1 and all; layout None -> both; precision auto -> fp32 and,
    where native, bf16 (and fp16 on a GPU)."""
    all_threads = torch.get_num_threads()
    thread_options = [threads] if threads else sorted({1, all_threads})
    if device.type != "cpu":
        thread_options = [threads or all_threads]
    layouts = [channels_last] if channels_last is not None else [False, True]
    if precision != "auto":
        precisions = [precision]
    else:  # fp16 only on a GPU (CPUs have no fast fp16 path); bf16 only where its dot products are native
        precisions = ["fp32"] + (["bf16"] if native_bf16(device) else []) + (["fp16"] if device.type == "cuda" else [])
    return [Setting(t, cl, p) for t in thread_options for cl in layouts for p in precisions]


def cache_file() -> Path:
    if os.environ.get("CNNLAB_PLAN_CACHE"):
        return Path(os.environ["CNNLAB_PLAN_CACHE"]).expanduser()
    root = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(root) / "cnnlab" / "plans.json"


def cache_key(**parts: Any) -> str:
    return json.dumps({"hardware": hardware(), **parts}, sort_keys=True, default=str)


def _read_cache() -> dict[str, Any]:
    try:
        data = json.loads(cache_file().read_text("utf-8"))
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def cached(key: str) -> Plan | None:
    entry = _read_cache().get(key)
    try:
        return Plan(Setting(**entry["chosen"]), dict(entry.get("rates", {})), "cache")
    except (TypeError, KeyError):
        return None


def remember(key: str, plan: Plan) -> None:
    data = _read_cache()
    data[key] = plan.to_dict()
    try:
        atomic_write_text(cache_file(), json.dumps(data, indent=1))
    except OSError:  # a read-only home: the plan still applies to this run
        pass


def measure(settings: list[Setting], step: Callable[[Setting], int], *, steps: int = 3) -> dict[Setting, float]:
    """Images/s of ``step(setting)`` (one training step; returns the batch size) for each setting:
    one warm-up step, then the best of ``steps`` timed ones (the least disturbed by other work)."""
    rates = {}
    previous = torch.get_num_threads()
    try:
        for setting in settings:
            torch.set_num_threads(setting.threads)
            step(setting)
            best = float("inf")
            for _ in range(steps):
                start = time.perf_counter()
                n = step(setting)
                best = min(best, time.perf_counter() - start)
            rates[setting] = n / best
    finally:
        torch.set_num_threads(previous)
    return rates


def choose(settings: list[Setting], step: Callable[[Setting], int], *, key: str | None = None,
           steps: int = 3) -> Plan:
    """The fastest of ``settings`` (from the cache when ``key`` is there), remembered under ``key``."""
    if len(settings) == 1:
        return Plan(settings[0], {}, "given")
    if key is not None:
        hit = cached(key)
        if hit is not None and hit.chosen in settings:
            return hit
    rates = measure(settings, step, steps=steps)
    best = max(rates, key=rates.get)
    plan = Plan(best, {s.describe(): round(r, 1) for s, r in rates.items()}, "measured")
    if key is not None:
        remember(key, plan)
    return plan


def training_step_timer(trainer) -> Callable[[Setting], int]:
    """A function that runs one training step of ``trainer``'s task on a copy of its model under a
    setting, without touching the run's model, optimiser or random state."""
    from .optim import make_optimizer
    from ..tasks.classify import autocast

    task, config, device = trainer.task, trainer.config, trainer.device
    generator = torch.Generator().manual_seed(12345)
    count = min(config.batch_size, len(trainer.train_set))
    index = torch.randperm(len(trainer.train_set), generator=generator)[:count]
    batch = task.make_batch(trainer.train_set, index, train=True, generator=generator)
    copies: dict[bool, tuple[torch.nn.Module, torch.optim.Optimizer]] = {}

    def step(setting: Setting) -> int:
        if setting.channels_last not in copies:
            model = copy.deepcopy(trainer.model)
            if setting.channels_last:
                model = channels_last_module(model)
            copies[setting.channels_last] = (model, make_optimizer(task.phase_parameters(model, task.phases[0]),
                                                                   config))
        model, optimizer = copies[setting.channels_last]
        model.train()
        prepared = task.prepare(batch, device, channels_last=setting.channels_last)
        with autocast(device, setting.precision):
            out = task.training_step(model, model, prepared, task.phases[0])
        optimizer.zero_grad(set_to_none=True)
        out.loss.backward()
        optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
        return len(prepared)

    def guarded(setting: Setting) -> int:
        state = torch.get_rng_state()  # dropout draws from the global generator: leave it as it was
        try:
            return step(setting)
        finally:
            torch.set_rng_state(state)

    return guarded


# --- inference (predict, serve, bench infer) -------------------------------------------------------------

def planning_enabled() -> bool:
    """False when ``CNNLAB_PLAN`` is 0/off/no: every caller then keeps the defaults and measures nothing."""
    return os.environ.get("CNNLAB_PLAN", "") not in ("0", "off", "no")


def inference_step_timer(model: torch.nn.Module, input_size: tuple[int, int, int], batch_size: int,
                         device: torch.device) -> Callable[[Setting], int]:
    """A function that runs one forward pass of ``batch_size`` random inputs under a setting, on copies
    of ``model`` (one per layout), leaving ``model`` itself as it is."""
    from ..tasks.classify import autocast

    x = torch.randn(batch_size, *input_size, generator=torch.Generator().manual_seed(0)).to(device)  # B x C x H x W
    copies: dict[bool, torch.nn.Module] = {}

    @torch.inference_mode()
    def step(setting: Setting) -> int:
        if setting.channels_last not in copies:
            m = copy.deepcopy(model).eval()
            copies[setting.channels_last] = channels_last_module(m) if setting.channels_last else m
        inputs = channels_last_tensor(x) if setting.channels_last else x
        with autocast(device, setting.precision):
            copies[setting.channels_last](inputs)
        if device.type == "cuda":
            torch.cuda.synchronize()
        return batch_size

    return step


def inference_plan(model: torch.nn.Module, input_size: tuple[int, int, int], *, batch_size: int,
                   device: torch.device | str = "cpu", threads: int = 0, channels_last: bool | None = None,
                   precision: str = "fp32", name: str = "", measure: bool = True, steps: int = 3) -> Plan:
    """The fastest forward-pass setting of ``model`` at ``batch_size`` among those left open (``threads``
    0, ``channels_last`` None, ``precision`` auto: fp32 or, where native, bf16).

    A cached choice is used when there is one; otherwise the candidates are timed, unless ``measure``
    is False (a run too short to pay the measurement back) or planning is switched off, when the
    defaults (torch's threads, NCHW, fp32 unless asked otherwise) are returned as the "default" plan.
    """
    device = torch.device(device)
    settings = candidates(threads=threads, channels_last=channels_last, precision=precision, device=device)
    if len(settings) == 1:
        return Plan(settings[0], {}, "given")
    key = cache_key(kind="infer", model=name or type(model).__name__,
                    parameters=sum(p.numel() for p in model.parameters()), input_size=list(input_size),
                    batch_size=batch_size, device=device.type, threads=threads, channels_last=channels_last,
                    precision=precision)
    hit = cached(key)
    if hit is not None and hit.chosen in settings:
        return hit
    if not (measure and planning_enabled()):
        default = Setting(threads or torch.get_num_threads(), bool(channels_last),
                          precision if precision != "auto" else "fp32")
        return Plan(default, {}, "default")
    return choose(settings, inference_step_timer(model, input_size, batch_size, device), key=key, steps=steps)
