"""The training loop, readable top to bottom, the same for every task.

The run's :class:`~cnnlab.tasks.Task` reads the data, builds (and augments) each batch, computes the
loss and evaluates; the trainer owns everything else: the model, the optimiser and schedule of each
optimisation phase (one, or two for a GAN), precision, EMA, data parallelism, checkpoints and resume.
After every epoch the model is evaluated and a checkpoint (weights, typed metadata and everything
needed to resume) is written atomically into the run folder, with ``history.jsonl``. Resuming from
that folder continues the very same run: on the CPU a resumed run ends bitwise equal to an
uninterrupted one.
"""

from __future__ import annotations

import dataclasses
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..errors import CnnlabError, ConfigError
from ..io import atomic_write_text
from ..registry import create_model, model_arguments
from ..system import channels_last_module, native_bf16
from ..tasks import get_task, task_for_model
from ..tasks.classify import autocast as autocast_context
from ..tasks.classify import evaluate_classifier as evaluate  # noqa: F401 - the classification evaluator, by its old name
from ..tasks.classify import make_augment  # noqa: F401 - kept importable from here
from . import distributed
from .. import weights as transfer
from .checkpoint import load_train_state, new_run_dir, read_meta, run_folder, save_checkpoint, load_state_dict_checked
from .config import TrainConfig
from .distributed import DistributedContext
from .logs import RunLog
from .meta import CheckpointMeta, Preprocessing
from .optim import make_optimizer, make_scheduler, replan

HISTORY_FILE = "history.jsonl"
CURVES_FILE = "curves.png"


class TrainingDiverged(CnnlabError):
    """The loss or the gradient stopped being a finite number."""


@dataclass
class TrainResult:
    """What a run did: its folder, one record per epoch, the last one, and the best checkpoint's figure."""

    run_dir: Path
    history: list[dict[str, Any]]
    final: dict[str, Any]
    seconds: float
    train_images_per_second: float
    best: dict[str, Any] | None = None  # {"key": "val_acc", "value": 0.91, "epoch": 7}: the best/ checkpoint
    stopped_early: bool = False

    @property
    def curves(self) -> Path:
        """The run's loss and metric curves (PNG); :meth:`plot` draws them as a figure."""
        return self.run_dir / CURVES_FILE

    def plot(self):
        from ..viz.curves import plot_curves

        return plot_curves({self.run_dir.name: self.history})


# --- set-up ------------------------------------------------------------------------------------------

def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' asked for, but this machine has no CUDA GPU (use --device cpu)")
    return torch.device(name)


def initialise(model: nn.Module, scheme: str) -> None:
    """Re-initialise conv and linear weights: ``xavier`` (Glorot & Bengio 2010) or ``kaiming`` (He et al. 2015)."""
    if scheme == "default":
        return
    for m in model.modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            if scheme == "xavier":
                nn.init.xavier_uniform_(m.weight)
            else:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)


def saved_config(meta: CheckpointMeta) -> TrainConfig:
    """The configuration a checkpoint was trained with (settings this version does not know are dropped)."""
    from .config import apply_overrides

    known = {k: v for k, v in meta.config.items() if k in TrainConfig.__dataclass_fields__}
    return apply_overrides(TrainConfig(), known, f"the saved configuration of {meta.arch}")


# --- the trainer -------------------------------------------------------------------------------------

class Trainer:
    """Train ``config.model`` on ``config.data`` for its task; ``resume`` continues a run folder where it
    stopped, and ``extend_to`` (with ``resume``) takes the run on to that many epochs in all."""

    def __init__(self, config: TrainConfig, *, resume: str | Path | None = None, extend_to: int | None = None,
                 progress: bool = True, log: Callable[[str], None] = print):
        self.log = log
        self.show_progress = progress
        self.state = None
        resumed: CheckpointMeta | None = None
        if resume is not None:
            resumed = read_meta(resume)  # the run folder is read once; its weights are loaded in _restore
            # A resumed run is the saved run, continued: its configuration (and so its learning-rate
            # schedule) comes from the checkpoint, not from the caller.
            config = dataclasses.replace(saved_config(resumed), out=str(run_folder(resume)))
            if extend_to is not None:
                if extend_to < resumed.epoch:
                    raise ConfigError(f"'{resume}' has trained {resumed.epoch} epochs already; --epochs {extend_to} "
                                      "would shorten it")
                config = dataclasses.replace(config, epochs=extend_to)
            self.state = load_train_state(resume)
            if self.state is None:
                raise ConfigError(f"'{resume}' holds no training state to resume from")
        self.config = config.validate()
        if config.threads:
            torch.set_num_threads(config.threads)
        self.dist, device_name = DistributedContext(), config.device
        if config.distributed:
            self.dist, device_name = distributed.setup(config.device)
            if not self.dist.is_main:  # one voice: rank 0 logs, evaluates and saves
                self.log, self.show_progress = (lambda s: None), False
        self.device = resolve_device(device_name)
        task_name = resumed.task if resumed is not None else task_for_model(config.model, config.task)
        if config.task != task_name:  # recorded, so that the checkpoint says which task it trained
            config = self.config = dataclasses.replace(config, task=task_name)
        self.task = get_task(task_name, config)
        if self.task.default_data and config.data == TrainConfig.data and resumed is None:
            config = self.config = dataclasses.replace(config, data=self.task.default_data)
            self.task.config = config
        kept = {k: v for k, v in self.task.defaults.items() if getattr(config, k) == getattr(TrainConfig, k)}
        if kept and resumed is None:  # the task's own recipe where the configuration kept the defaults
            config = self.config = dataclasses.replace(config, **kept).validate()
            self.task.config = config
        self.run_dir = Path(config.out or f"runs/{config.model}-{Path(config.data).name}")

        self.train_set, self.val_set, self.test_set = self._load_data()
        data = self.task.data_fields(self.train_set)
        self.arch_kwargs = (dict(resumed.arch_kwargs) if resumed is not None else model_arguments(
            config.model, input_size=data["input_size"], num_classes=len(data["class_names"]),
            small_input=config.small_input, options=self.task.model_options() or None))
        torch.manual_seed(config.seed)
        self.model = create_model(config.model, **self.arch_kwargs)
        initialise(self.model, config.init)
        if config.init_from and resumed is None:
            self.log(self.task.init_from(self.model, config.init_from))
        if config.weights and resumed is None:
            self.log(transfer.start_run(self.model, config))
        self.model.to(self.device)
        if self.dist.enabled:
            self.model = distributed.convert_batchnorm(self.model, self.device)
            self._check_shards()
        self.plan = self._plan()  # layout, threads and precision, measured where the run left them open
        config = self.config
        self.task.config = config
        if config.channels_last:
            channels_last_module(self.model)
        self.steps_per_epoch = math.ceil(len(self.train_set) / config.batch_size)
        self.optimizers = {phase: make_optimizer(self.task.phase_parameters(self.model, phase), config,
                                                 slow=transfer.slow_parameters(self.model, config))
                           for phase in self.task.phases}
        self.schedulers = {phase: make_scheduler(opt, config, self.steps_per_epoch)
                           for phase, opt in self.optimizers.items()}
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.precision == "fp16" and self.device.type == "cuda")
        self.ema = None
        if config.ema:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(config.ema), use_buffers=True)
        self.forward = self._training_forward()
        self.generator = torch.Generator().manual_seed(config.seed)
        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        self.best: dict[str, Any] | None = None  # the figure the best/ checkpoint was chosen by
        if self.state is not None:
            self._restore(self.state)
            if extend_to is not None:
                for scheduler in self.schedulers.values():
                    replan(scheduler, config, self.steps_per_epoch)

    def _plan(self):
        """Decide what the configuration leaves open (``channels_last`` None, ``threads`` 0, ``precision``
        auto) by timing a few steps of each candidate, or from the plan cache; recorded in the config,
        so that the checkpoint (and a resumed run) says what was chosen."""
        import os

        from . import plan as planning

        c = self.config
        open_settings = c.channels_last is None or c.threads == 0 or c.precision == "auto"
        measuring = (open_settings and c.plan and not self.dist.enabled
                     and os.environ.get("CNNLAB_PLAN", "") not in ("0", "off", "no"))
        if not measuring:  # the defaults: NCHW, torch's thread count, bf16 only where native and asked for
            precision = c.precision if c.precision != "auto" else ("bf16" if native_bf16(self.device) else "fp32")
            self.config = dataclasses.replace(c, channels_last=bool(c.channels_last), precision=precision)
            if c.threads:
                torch.set_num_threads(c.threads)
            return None
        settings = planning.candidates(threads=c.threads, channels_last=c.channels_last, precision=c.precision,
                                       device=self.device)
        key = planning.cache_key(model=c.model, arch_kwargs=self.arch_kwargs, task=self.task.name,
                                 input_size=self.task.data_fields(self.train_set)["input_size"],
                                 batch_size=c.batch_size, device=str(self.device), torch_threads=torch.get_num_threads(),
                                 open=[c.threads == 0, c.channels_last is None, c.precision == "auto"])
        chosen = planning.choose(settings, planning.training_step_timer(self), key=key)
        self.config = dataclasses.replace(c, channels_last=chosen.chosen.channels_last, threads=chosen.chosen.threads,
                                          precision=chosen.chosen.precision)
        torch.set_num_threads(chosen.chosen.threads)
        self.log(chosen.describe())
        return chosen

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The optimiser of the first (for most tasks the only) phase."""
        return self.optimizers[self.task.phases[0]]

    @property
    def scheduler(self):
        return self.schedulers[self.task.phases[0]]

    # -- data
    def _load_data(self):
        c = self.config
        train = self.task.load_split(c.data, "train", c.data_dir or None)
        test = self.task.load_split(c.data, "test", c.data_dir or None)
        if c.limit_train:
            train = train.subset(slice(0, c.limit_train))
        if c.limit_test:
            test = test.subset(slice(0, c.limit_test))
        val = None
        if c.val_fraction:
            train, val = train.random_split(c.val_fraction, c.seed)
        if len(train) == 0:
            raise ConfigError("the training set is empty")
        if len(test) == 0:
            raise ConfigError("the test set is empty")
        self.task.check_data(train, test)
        return train, val, test

    def _check_shards(self) -> None:
        world, n, b = self.dist.world_size, len(self.train_set), self.config.batch_size
        if b < world or 0 < n % b < world:
            raise ConfigError(f"with {world} processes every batch needs at least {world} images: batch size {b}, "
                              f"last batch {n % b or b}; change --batch-size or --limit-train")

    # -- checkpoint state
    @staticmethod
    def _key(name: str, phase: str, first: str) -> str:
        # The first phase keeps the plain names, so run folders of one-phase tasks read as they always have.
        return name if phase == first else f"{name}.{phase}"

    def _train_state(self) -> dict[str, Any]:
        first = self.task.phases[0]
        state: dict[str, Any] = {"epoch": self.epoch}
        for phase in self.task.phases:
            state[self._key("optimizer", phase, first)] = self.optimizers[phase].state_dict()
            state[self._key("scheduler", phase, first)] = self.schedulers[phase].state_dict()
        state.update(generator=self.generator.get_state(), torch_rng=torch.get_rng_state(),
                     history=json.dumps(self.history), best=json.dumps(self.best))
        if self.ema is not None:  # the checkpoint's weights are the average; keep the raw ones to resume
            state["raw_model"] = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
            state["ema_count"] = self.ema.n_averaged.detach().cpu().clone()
        if torch.cuda.is_available() and self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state()
        return state

    def _restore(self, state: dict[str, Any]) -> None:
        from .checkpoint import read_weights

        weights = read_weights(self.run_dir)
        target = self.ema.module if self.ema is not None else self.model
        load_state_dict_checked(target, {k: v.to(self.device) for k, v in weights.items()}, f"checkpoint '{self.run_dir}'")
        if self.ema is not None:
            self.ema.n_averaged.copy_(state["ema_count"])
            load_state_dict_checked(self.model, {k: v.to(self.device) for k, v in state["raw_model"].items()},
                                    "saved raw weights")
        first = self.task.phases[0]
        for phase in self.task.phases:
            self.optimizers[phase].load_state_dict(state[self._key("optimizer", phase, first)])
            self.schedulers[phase].load_state_dict(state[self._key("scheduler", phase, first)])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"])
        self.epoch = int(state["epoch"])
        self.history = json.loads(state["history"])
        self.best = json.loads(state["best"]) if "best" in state else None

    def _meta(self, metrics: dict[str, Any]) -> CheckpointMeta:
        data = self.task.data_fields(self.train_set)
        return CheckpointMeta(
            arch=self.config.model, arch_kwargs=self.arch_kwargs, class_names=list(data["class_names"]),
            preprocessing=Preprocessing(tuple(data["input_size"]), tuple(data["mean"]), tuple(data["std"]),
                                        stats=data.get("stats")),
            task=self.task.name, dataset=self.config.data, config=self.config.to_dict(), epoch=self.epoch,
            metrics=metrics, extra={**data["extra"], **({"plan": self.plan.to_dict()} if self.plan else {})})

    # -- the loop
    def train_one_epoch(self, on_step: Callable[[int, float, float], None] | None = None) -> dict[str, float]:
        c, model, task = self.config, self.model, self.task
        model.train()
        n = len(self.train_set)
        order = task.epoch_order(self.train_set, self.generator)
        sums: dict[str, torch.Tensor] = {}
        count = 0
        start = time.perf_counter()
        for step in range(self.steps_per_epoch):
            idx = order[step * c.batch_size:(step + 1) * c.batch_size]
            batch = task.make_batch(self.train_set, idx, train=True, generator=self.generator)
            scale = 1.0
            if self.dist.enabled:  # every rank augmented the same global batch; keep this rank's shard
                part = self.dist.shard(idx)
                batch = batch.select(torch.arange(len(idx))[part])
                scale = self.dist.loss_scale(len(batch), len(idx))
            batch = task.prepare(batch, self.device, channels_last=c.channels_last)
            for phase in task.phases:  # each phase logs its own sums (a GAN: the two networks' losses)
                out = self._optimise(phase, batch, scale, step)
                for name, value in out.sums.items():
                    sums[name] = sums[name] + value if name in sums else value
            count += out.count
            if self.ema is not None:
                self.ema.update_parameters(model)
            if on_step is not None:
                on_step(step + 1, float(out.loss.detach()), count / (time.perf_counter() - start))
        seconds = time.perf_counter() - start
        names = sorted(sums)
        totals = torch.stack([sums[k].detach().double().cpu() for k in names] + [torch.tensor(float(count))])
        if self.dist.enabled:  # each rank counted its own shards; the epoch's figures are their sums
            totals = self.dist.sum(totals.to(self.device if self.dist.backend == "nccl" else "cpu")).cpu()
        record = {f"train_{k}": float(totals[i]) / max(1.0, float(totals[-1])) for i, k in enumerate(names)}
        return {**record, "train_seconds": seconds, "train_images_per_second": n / seconds}

    def _optimise(self, phase: str, batch, scale: float, step: int):
        """One optimiser step of ``phase``: loss, backward, clip, step, schedule."""
        c = self.config
        optimizer, scheduler = self.optimizers[phase], self.schedulers[phase]
        with autocast_context(self.device, c.precision):
            out = self.task.training_step(self.forward, self.model, batch, phase)
        loss = out.loss
        if not torch.isfinite(loss):
            raise TrainingDiverged(f"the loss became {float(loss.detach())} at epoch {self.epoch + 1}, step {step + 1}; "
                                   f"lower the learning rate (now {scheduler.get_last_lr()[0]:.3g}) or set --grad-clip")
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss * scale if scale != 1.0 else loss).backward()
        self.scaler.unscale_(optimizer)
        params = [p for group in optimizer.param_groups for p in group["params"]]
        norm = torch.nn.utils.clip_grad_norm_(params, c.grad_clip if c.grad_clip > 0 else float("inf"))
        if not torch.isfinite(norm) and not self.scaler.is_enabled():
            raise TrainingDiverged(f"the gradient became {float(norm)} at epoch {self.epoch + 1}, step {step + 1}; "
                                   "lower the learning rate or set --grad-clip")
        self.scaler.step(optimizer)
        self.scaler.update()
        scheduler.step()
        return out

    def evaluation_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def evaluate(self, dataset) -> dict[str, Any]:
        """The task's metrics on ``dataset``, normalised with the training set's statistics, as the
        checkpoint records them and ``eval`` and ``predict`` use them."""
        c, data = self.config, self.task.data_fields(self.train_set)
        preprocessing = Preprocessing(tuple(data["input_size"]), tuple(data["mean"]), tuple(data["std"]))
        return self.task.evaluate(self.evaluation_model(), dataset, device=self.device, batch_size=c.eval_batch_size,
                                  precision=c.precision, channels_last=c.channels_last, tta_flip=c.tta_flip,
                                  preprocessing=preprocessing)

    def _training_forward(self) -> Callable:
        """The model as training calls it: wrapped in DDP on a distributed run, compiled on request."""
        forward = self.dist.wrap(self.model, self.device) if self.dist.enabled else self.model
        return torch.compile(forward) if self.config.compile else forward

    def run(self, *, stop_after: int | None = None) -> TrainResult:
        """Train to ``config.epochs``; ``stop_after`` ends early after that many epochs (as a crash would)."""
        c = self.config
        if self.dist.enabled and self.forward is self.model:  # a second run() after the first released DDP
            self.forward = self._training_forward()
        last = c.epochs if stop_after is None else min(c.epochs, stop_after)
        self._claim_run_dir()
        wall = time.perf_counter()
        before = self.history[-1].get("seconds", 0.0) if self.history else 0.0  # time spent before a resume
        self.run_log = RunLog(self.run_dir, epochs_done=self.epoch, tensorboard=c.tensorboard and self.dist.is_main)
        stopped_early = False

        def on_step(step: int, loss: float, rate: float) -> None:
            self.run_log.step(self.epoch + 1, step, loss, self.scheduler.get_last_lr()[0], rate)
            bar.step(step, loss, rate)

        with _Progress(self.show_progress) as bar:
            while self.epoch < last and not stopped_early:
                bar.start_epoch(self.epoch + 1, c.epochs, self.steps_per_epoch)
                record = {"epoch": self.epoch + 1, "lr": self.scheduler.get_last_lr()[0]}
                record.update(self.train_one_epoch(on_step))
                if self.dist.is_main:
                    if self.val_set is not None:
                        v = self.task.scalars(self.evaluate(self.val_set))
                        record.update({f"val_{k}": x for k, x in v.items()})
                    t = self.evaluate(self.test_set)
                    record.update({f"test_{k}": x for k, x in self.task.scalars(t).items()})
                    record["seconds"] = time.perf_counter() - wall + before
                self.epoch += 1
                self.history.append(record)
                if self.dist.is_main:
                    improved = self._track_best(record)
                    self._save(t, improved)
                    self.task.end_epoch(self.evaluation_model(), self.run_dir, record, self.log)
                    self.run_log.epoch(record)
                    bar.end_epoch(record)
                    self.log(_epoch_line(record, self.task.shown))
                    self._watch_throughput(record)
                    if c.early_stopping and self.best and self.epoch - self.best["epoch"] >= c.early_stopping:
                        stopped_early = True
                        self.log(f"early stopping: {self.best['key']} has not improved for {c.early_stopping} "
                                 f"epochs (best {self.best['value']:.4f} at epoch {self.best['epoch']})")
                self.dist.barrier()  # the other ranks go on only once the checkpoint is complete
                if self.dist.enabled:  # every rank stops together
                    stopped_early = bool(self.dist.sum(torch.tensor(float(stopped_early))).item())
        self.run_log.close()
        if self.dist.enabled:
            # Release DDP's reducer now: gloo work it holds must not outlive the process group, and freed
            # during interpreter shutdown it aborts the process ("terminate called without an active exception").
            self.forward = self.model
        final = dict(self.history[-1]) if self.history else {}
        if self.dist.is_main:
            self._plot()
        # Overall training throughput: images seen over seconds spent in training steps.
        seconds = sum(h["train_seconds"] for h in self.history)
        rate = len(self.train_set) * len(self.history) / seconds if seconds else 0.0
        return TrainResult(self.run_dir, self.history, final, time.perf_counter() - wall, rate, self.best,
                           stopped_early)

    def _watch_throughput(self, record: dict[str, Any]) -> None:
        """When the plan chose several threads and an epoch ran at less than 40% of the best epoch's speed
        (other work came onto the machine), time one thread against them again and keep the faster."""
        from . import plan as planning

        if self.plan is None or self.plan.chosen.threads <= 1 or self.dist.enabled:
            return
        rates = [h["train_images_per_second"] for h in self.history]
        if len(rates) < 2 or rates[-1] >= 0.4 * max(rates[:-1]):
            return
        current = self.plan.chosen
        one = planning.Setting(1, current.channels_last, current.precision)
        again = planning.choose([current, one], planning.training_step_timer(self))
        if again.chosen.threads != current.threads:
            torch.set_num_threads(again.chosen.threads)
            self.plan = planning.Plan(again.chosen, again.rates, "re-measured")
            self.config = dataclasses.replace(self.config, threads=again.chosen.threads)
            self.log(f"throughput fell to {rates[-1]:,.0f} img/s (best {max(rates[:-1]):,.0f}): the machine is busy; "
                     f"going on with {again.chosen.describe()}")

    def _track_best(self, record: dict[str, Any]) -> bool:
        """Is this epoch the best so far by the task's primary figure (on the validation split where there
        is one, else the test split)? Remembers it if so."""
        split = "val" if self.val_set is not None else "test"
        key = f"{split}_{self.task.primary}"
        value = record.get(key)
        if value is None:
            return False
        better = (self.best is None or (value > self.best["value"] if self.task.higher_is_better
                                        else value < self.best["value"]))
        if better:
            self.best = {"key": key, "value": value, "epoch": record["epoch"]}
        return better

    def _claim_run_dir(self) -> None:
        """A new run never overwrites an earlier one: it gets the next free ``NAME-2``, ``NAME-3``, ..."""
        if self.state is not None or self.epoch > 0 or not self.dist.is_main:
            self.run_dir.mkdir(parents=True, exist_ok=True)  # a resumed (or continued) run keeps its folder
            return
        claimed = new_run_dir(self.run_dir)
        if claimed != self.run_dir:
            self.log(f"{self.run_dir} holds an earlier run; this run is written to {claimed}")
            self.run_dir = claimed
            self.config = dataclasses.replace(self.config, out=str(claimed))

    def _save(self, test_metrics: dict[str, Any], improved: bool = False) -> None:
        meta = self._meta(self.task.checkpoint_metrics(test_metrics))
        if improved:  # the best epoch so far: kept beside the last, for use (it holds no training state)
            save_checkpoint(self.run_dir, self.evaluation_model(), meta, slot="best")
        save_checkpoint(self.run_dir, self.evaluation_model(), meta, self._train_state())
        atomic_write_text(self.run_dir / HISTORY_FILE, "".join(json.dumps(h) + "\n" for h in self.history))
        self.run_log.write(self.history)

    def _plot(self) -> None:
        from .curves import plot_history

        if self.history:
            plot_history({self.run_dir.name: self.history}, self.run_dir / CURVES_FILE)


def _epoch_line(r: dict[str, Any], shown: tuple[str, ...]) -> str:
    figures = "".join(f"  {split}_{name} {r[f'{split}_{name}']:.4f}" for name in shown
                      for split in ("train", "val", "test") if f"{split}_{name}" in r)
    return (f"epoch {r['epoch']:3d}  loss {r['train_loss']:.4f}{figures}  "
            f"{r['train_images_per_second']:.0f} img/s  {r['seconds']:.1f}s")


class _Progress:
    """A live rich progress bar (loss, images/s, ETA) on a terminal; silent otherwise."""

    def __init__(self, enabled: bool):
        import sys

        from rich.console import Console

        # A terminal, or a Jupyter notebook (rich draws its bar there too).
        self.enabled = enabled and (sys.stderr.isatty() or Console().is_jupyter)
        self.progress = None

    def __enter__(self):
        if self.enabled:
            from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

            self.progress = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                                     TextColumn("{task.fields[info]}"), TimeRemainingColumn(), transient=True)
            self.progress.__enter__()
        return self

    def __exit__(self, *exc):
        if self.progress:
            self.progress.__exit__(*exc)

    def start_epoch(self, epoch: int, epochs: int, steps: int) -> None:
        if self.progress:
            self.task = self.progress.add_task(f"epoch {epoch}/{epochs}", total=steps, info="")

    def step(self, step: int, loss: float, rate: float) -> None:
        if self.progress:
            self.progress.update(self.task, completed=step, info=f"loss {loss:.4f}  {rate:,.0f} img/s")

    def end_epoch(self, record: dict[str, Any]) -> None:
        if self.progress:
            self.progress.remove_task(self.task)


def train(config: TrainConfig | None = None, *, resume: str | Path | None = None, progress: bool = False,
          log: Callable[[str], None] = lambda s: None, stop_after: int | None = None, **overrides: Any) -> TrainResult:
    """Train from Python: ``cnnlab.train.train(model="lenet5", data="fashion-mnist", epochs=2)``.

    With ``resume=RUN_DIR`` the saved run continues; ``epochs=N`` then extends it to N epochs.
    """
    from .config import apply_overrides

    extend_to = None
    if resume is not None:
        extra = sorted(set(overrides) - {"epochs"})
        if extra or config is not None:
            raise ConfigError(f"a resumed run keeps its saved settings; only epochs may change (got {', '.join(extra) or 'config'})")
        extend_to = overrides.pop("epochs", None)
    config = apply_overrides(config or TrainConfig(), overrides, "train()") if overrides else (config or TrainConfig())
    return Trainer(config, resume=resume, extend_to=extend_to, progress=progress, log=log).run(stop_after=stop_after)
