"""The training loop, readable top to bottom.

Data stays in memory as one uint8 tensor; each step indexes a batch, augments it as a whole,
normalises it and takes an optimiser step. After every epoch the model is evaluated and a checkpoint
(weights, metadata and everything needed to resume) is written atomically into the run folder,
together with ``history.jsonl``. Resuming from that folder continues the very same run: on the CPU a
resumed run ends bitwise equal to an uninterrupted one.
"""

from __future__ import annotations

import contextlib
import dataclasses
import inspect
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ..data import ImageDataset, load_dataset
from ..data.transforms import normalize, random_crop, random_erasing, random_hflip
from ..errors import CnnlabError, ConfigError
from ..io import atomic_write_text
from ..registry import model_info
from ..system import native_bf16
from .checkpoint import load_train_state, new_run_dir, read_meta, run_folder, save_checkpoint, load_state_dict_checked
from . import distributed
from .config import TrainConfig
from .distributed import DistributedContext
from .losses import make_criterion
from .metrics import confusion_matrix, per_class_accuracy, topk_correct
from .optim import make_optimizer, make_scheduler

HISTORY_FILE = "history.jsonl"
CURVES_FILE = "curves.png"


class TrainingDiverged(CnnlabError):
    """The loss or the gradient stopped being a finite number."""


@dataclass
class TrainResult:
    run_dir: Path
    history: list[dict[str, Any]]
    final: dict[str, Any]
    seconds: float
    train_images_per_second: float


# --- set-up ------------------------------------------------------------------------------------------

def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("device 'cuda' asked for, but this machine has no CUDA GPU (use --device cpu)")
    return torch.device(name)


def model_arguments(config: TrainConfig, dataset: ImageDataset, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The builder arguments that fit ``dataset``: classes, channels and, where the builder takes them,
    the image size and its small-input form."""
    info = model_info(config.model)
    accepted = inspect.signature(info.builder).parameters
    channels, height, _ = dataset.input_size
    kwargs: dict[str, Any] = {"num_classes": dataset.num_classes, "in_channels": channels}
    if "image_size" in accepted:
        kwargs["image_size"] = height
    if "small_input" in accepted:
        small = {"yes": True, "no": False}.get(config.small_input, height * 2 <= info.input_size[1])
        kwargs["small_input"] = small
    kwargs.update(extra or {})
    return {k: v for k, v in kwargs.items() if k in accepted or any(
        p.kind is inspect.Parameter.VAR_KEYWORD for p in accepted.values())}


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


def make_augment(config: TrainConfig, dataset: ImageDataset) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    chosen = config.augmentations()
    if "flip" in chosen and not dataset.hflip:
        raise ConfigError(f"a horizontal flip changes the meaning of {dataset.name} images (e.g. digits); drop 'flip'")

    def augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if "crop" in chosen:
            batch = random_crop(batch, config.crop_padding, generator)
        if "flip" in chosen:
            batch = random_hflip(batch, 0.5, generator)
        if "erase" in chosen:
            batch = random_erasing(batch, 0.5, generator=generator)
        return batch

    return augment


def autocast_context(device: torch.device, precision: str):
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


# --- evaluation --------------------------------------------------------------------------------------

@torch.no_grad()
def evaluate(model: nn.Module, dataset: ImageDataset, *, device: torch.device | str = "cpu", batch_size: int = 1024,
             precision: str = "fp32", channels_last: bool = False, tta_flip: bool = False,
             criterion: nn.Module | None = None, mean=None, std=None) -> dict[str, Any]:
    """Loss, top-1/top-5 accuracy, per-class accuracy and confusion matrix of ``model`` on ``dataset``."""
    device = torch.device(device)
    model.eval()
    criterion = criterion or nn.CrossEntropyLoss()
    mean, std = mean or dataset.mean, std or dataset.std
    n, k = len(dataset), dataset.num_classes
    loss_sum, correct = 0.0, {1: 0, 5: 0}
    confusion = torch.zeros(k, k, dtype=torch.long)
    for start in range(0, n, batch_size):
        x = normalize(dataset.images[start:start + batch_size].to(device), mean, std)
        y = dataset.labels[start:start + batch_size].to(device)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast_context(device, precision):
            scores = model(x).float()
            if tta_flip:
                scores = (scores.softmax(1) + model(x.flip(-1)).float().softmax(1)).log()
        loss_sum += float(criterion(scores, y)) * len(y)
        for kk, v in topk_correct(scores, y).items():
            correct[kk] += v
        confusion += confusion_matrix(scores.argmax(1).cpu(), y.cpu(), k)
    return {"loss": loss_sum / max(1, n), "top1": correct[1] / max(1, n), "top5": correct[5] / max(1, n),
            "per_class": per_class_accuracy(confusion), "confusion": confusion.tolist(), "images": n}


# --- the trainer -------------------------------------------------------------------------------------

class Trainer:
    """Train ``config.model`` on ``config.data``; ``resume`` continues a run folder where it stopped."""

    def __init__(self, config: TrainConfig, *, resume: str | Path | None = None,
                 progress: bool = True, log: Callable[[str], None] = print):
        self.log = log
        self.show_progress = progress
        self.state = None
        if resume is not None:
            meta = read_meta(resume)
            saved = TrainConfig(**{k: v for k, v in meta["config"].items() if k in TrainConfig.__dataclass_fields__})
            # A resumed run is the saved run, continued: its configuration (and so its learning-rate
            # schedule) comes from the checkpoint, not from the caller.
            config = dataclasses.replace(saved, out=str(run_folder(resume)))
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
        if config.precision == "auto":  # decided once, here, and recorded so that a resumed run trains alike
            config = self.config = dataclasses.replace(config, precision="bf16" if native_bf16(self.device) else "fp32")
        self.run_dir = Path(config.out or f"runs/{config.model}-{Path(config.data).name}")

        self.train_set, self.val_set, self.test_set = self._load_data()
        self.arch_kwargs = (dict(read_meta(resume)["arch_kwargs"]) if resume is not None
                            else model_arguments(config, self.train_set))
        torch.manual_seed(config.seed)
        from ..registry import create_model

        self.model = create_model(config.model, **self.arch_kwargs)
        initialise(self.model, config.init)
        self.model.to(self.device)
        if self.dist.enabled:
            self.model = distributed.convert_batchnorm(self.model, self.device)
            self._check_shards()
        if config.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.steps_per_epoch = math.ceil(len(self.train_set) / config.batch_size)
        self.optimizer = make_optimizer(self.model, config)
        self.scheduler = make_scheduler(self.optimizer, config, self.steps_per_epoch)
        self.criterion = make_criterion(config.loss, label_smoothing=config.label_smoothing)
        self.eval_criterion = nn.CrossEntropyLoss()
        self.scaler = torch.amp.GradScaler(self.device.type, enabled=config.precision == "fp16" and self.device.type == "cuda")
        self.ema = None
        if config.ema:
            from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

            self.ema = AveragedModel(self.model, multi_avg_fn=get_ema_multi_avg_fn(config.ema), use_buffers=True)
        self.forward = self.dist.wrap(self.model, self.device) if self.dist.enabled else self.model
        if config.compile:
            self.forward = torch.compile(self.forward)
        self.augment = make_augment(config, self.train_set)
        self.generator = torch.Generator().manual_seed(config.seed)
        self.epoch = 0
        self.history: list[dict[str, Any]] = []
        if self.state is not None:
            self._restore(self.state)

    # -- data
    def _load_data(self) -> tuple[ImageDataset, ImageDataset | None, ImageDataset]:
        c = self.config
        train = load_dataset(c.data, "train", c.data_dir or None)
        test = load_dataset(c.data, "test", c.data_dir or None)
        if c.limit_train:
            train = train.subset(slice(0, c.limit_train))
        if c.limit_test:
            test = test.subset(slice(0, c.limit_test))
        val = None
        if c.val_fraction:
            train, val = train.random_split(c.val_fraction, c.seed)
        if len(train) == 0:
            raise ConfigError("the training set is empty")
        return train, val, test

    def _check_shards(self) -> None:
        world, n, b = self.dist.world_size, len(self.train_set), self.config.batch_size
        if b < world or 0 < n % b < world:
            raise ConfigError(f"with {world} processes every batch needs at least {world} images: batch size {b}, "
                              f"last batch {n % b or b}; change --batch-size or --limit-train")

    # -- checkpoint state
    def _train_state(self) -> dict[str, Any]:
        state = {
            "epoch": self.epoch,
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "history": json.dumps(self.history),
        }
        if self.ema is not None:  # the checkpoint's weights are the average; keep the raw ones to resume
            state["raw_model"] = {k: v.detach().cpu().clone() for k, v in self.model.state_dict().items()}
            state["ema_count"] = self.ema.n_averaged.detach().cpu().clone()
        if torch.cuda.is_available() and self.device.type == "cuda":
            state["cuda_rng"] = torch.cuda.get_rng_state()
        return state

    def _restore(self, state: dict[str, Any]) -> None:
        from .checkpoint import load_checkpoint

        saved = load_checkpoint(self.run_dir, device=self.device)
        if self.ema is not None:
            self.ema.module.load_state_dict(saved.model.state_dict())
            self.ema.n_averaged.copy_(state["ema_count"])
            load_state_dict_checked(self.model, {k: v.to(self.device) for k, v in state["raw_model"].items()}, "saved raw weights")
        else:
            self.model.load_state_dict(saved.model.state_dict())
        self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.generator.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        if "cuda_rng" in state and self.device.type == "cuda":
            torch.cuda.set_rng_state(state["cuda_rng"])
        self.epoch = int(state["epoch"])
        self.history = json.loads(state["history"])

    def _meta(self, metrics: dict[str, Any]) -> dict[str, Any]:
        return {
            "arch": self.config.model, "arch_kwargs": self.arch_kwargs,
            "class_names": self.train_set.class_names, "num_classes": self.train_set.num_classes,
            "input_size": list(self.train_set.input_size), "mean": list(self.train_set.mean),
            "std": list(self.train_set.std), "dataset": self.config.data, "epoch": self.epoch,
            "metrics": metrics, "config": self.config.to_dict(), "torch": torch.__version__,
        }

    # -- the loop
    def train_one_epoch(self, on_step: Callable[[int, float, float], None] | None = None) -> dict[str, float]:
        c, model = self.config, self.model
        model.train()
        n = len(self.train_set)
        order = torch.randperm(n, generator=self.generator)
        loss_sum = torch.zeros((), dtype=torch.float64)
        correct = torch.zeros((), dtype=torch.long)
        start = time.perf_counter()
        for step in range(self.steps_per_epoch):
            idx = order[step * c.batch_size:(step + 1) * c.batch_size]
            x = self.augment(self.train_set.images[idx], self.generator)  # B x C x H x W uint8
            y = self.train_set.labels[idx]
            scale = 1.0
            if self.dist.enabled:  # every rank augmented the same global batch; keep this rank's shard
                part = self.dist.shard(idx)
                x, y, scale = x[part], y[part], self.dist.loss_scale(len(idx[part]), len(idx))
            x = normalize(x.to(self.device, non_blocking=True), self.train_set.mean, self.train_set.std)
            y = y.to(self.device, non_blocking=True)
            if c.channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast_context(self.device, c.precision):
                outputs = self.forward(x)
                if hasattr(model, "training_loss"):
                    loss = model.training_loss(outputs, y, self.criterion)
                    scores = outputs[0] if isinstance(outputs, tuple) else outputs
                else:
                    loss, scores = self.criterion(outputs, y), outputs
            if not torch.isfinite(loss):
                raise TrainingDiverged(f"the loss became {float(loss.detach())} at epoch {self.epoch + 1}, step {step + 1}; "
                                       f"lower the learning rate (now {self.scheduler.get_last_lr()[0]:.3g}) or set --grad-clip")
            self.optimizer.zero_grad(set_to_none=True)
            self.scaler.scale(loss * scale if scale != 1.0 else loss).backward()
            self.scaler.unscale_(self.optimizer)
            norm = torch.nn.utils.clip_grad_norm_(model.parameters(), c.grad_clip if c.grad_clip > 0 else float("inf"))
            if not torch.isfinite(norm) and not self.scaler.is_enabled():
                raise TrainingDiverged(f"the gradient became {float(norm)} at epoch {self.epoch + 1}, step {step + 1}; "
                                       "lower the learning rate or set --grad-clip")
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.scheduler.step()
            if self.ema is not None:
                self.ema.update_parameters(model)
            loss_sum += loss.detach().double() * len(y)
            correct += (scores.detach().argmax(1) == y).sum()
            if on_step is not None:
                on_step(step + 1, float(loss.detach()), len(y) * (step + 1) / (time.perf_counter() - start))
        seconds = time.perf_counter() - start
        if self.dist.enabled:  # each rank counted its own shards; the epoch's figures are their sums
            totals = self.dist.sum(torch.stack([loss_sum, correct.double()]).to(
                self.device if self.dist.backend == "nccl" else "cpu"))
            loss_sum, correct = totals[0].cpu(), totals[1].cpu().long()
        return {"train_loss": float(loss_sum) / n, "train_acc": int(correct) / n,
                "train_seconds": seconds, "train_images_per_second": n / seconds}

    def evaluation_model(self) -> nn.Module:
        return self.ema.module if self.ema is not None else self.model

    def run(self, *, stop_after: int | None = None) -> TrainResult:
        """Train to ``config.epochs``; ``stop_after`` ends early after that many epochs (as a crash would)."""
        c = self.config
        last = c.epochs if stop_after is None else min(c.epochs, stop_after)
        self._claim_run_dir()
        wall = time.perf_counter()
        before = self.history[-1].get("seconds", 0.0) if self.history else 0.0  # time spent before a resume
        train_seconds = 0.0
        with _Progress(self.show_progress) as bar:
            while self.epoch < last:
                bar.start_epoch(self.epoch + 1, c.epochs, self.steps_per_epoch)
                record = {"epoch": self.epoch + 1, "lr": self.scheduler.get_last_lr()[0]}
                record.update(self.train_one_epoch(bar.step if bar.progress else None))
                train_seconds += record["train_seconds"]
                if self.dist.is_main:
                    # Every split is normalised with the training set's statistics, as eval and predict do.
                    eval_kwargs = dict(device=self.device, batch_size=c.eval_batch_size, precision=c.precision,
                                       channels_last=c.channels_last, tta_flip=c.tta_flip, criterion=self.eval_criterion,
                                       mean=self.train_set.mean, std=self.train_set.std)
                    if self.val_set is not None:
                        v = evaluate(self.evaluation_model(), self.val_set, **eval_kwargs)
                        record.update(val_loss=v["loss"], val_acc=v["top1"])
                    t = evaluate(self.evaluation_model(), self.test_set, **eval_kwargs)
                    record.update(test_loss=t["loss"], test_acc=t["top1"], test_top5=t["top5"],
                                  seconds=time.perf_counter() - wall + before)
                self.epoch += 1
                self.history.append(record)
                if self.dist.is_main:
                    self._save(t)
                    bar.end_epoch(record)
                    self.log(_epoch_line(record))
                self.dist.barrier()  # the other ranks go on only once the checkpoint is complete
        final = dict(self.history[-1]) if self.history else {}
        if self.dist.is_main:
            self._plot()
        # Overall training throughput: images seen over seconds spent in training steps.
        seconds = sum(h["train_seconds"] for h in self.history)
        rate = len(self.train_set) * len(self.history) / seconds if seconds else 0.0
        return TrainResult(self.run_dir, self.history, final, time.perf_counter() - wall, rate)

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

    def _save(self, test_metrics: dict[str, Any]) -> None:
        metrics = {"test_loss": test_metrics["loss"], "test_acc": test_metrics["top1"], "test_top5": test_metrics["top5"],
                   "per_class": test_metrics["per_class"]}
        save_checkpoint(self.run_dir, self.evaluation_model(), self._meta(metrics), self._train_state())
        atomic_write_text(self.run_dir / HISTORY_FILE, "".join(json.dumps(h) + "\n" for h in self.history))

    def _plot(self) -> None:
        from .curves import plot_history

        if self.history:
            plot_history({self.run_dir.name: self.history}, self.run_dir / CURVES_FILE)


def _epoch_line(r: dict[str, Any]) -> str:
    val = f" val_acc {r['val_acc']:.4f}" if "val_acc" in r else ""
    return (f"epoch {r['epoch']:3d}  loss {r['train_loss']:.4f}  train_acc {r['train_acc']:.4f}{val}  "
            f"test_acc {r['test_acc']:.4f}  {r['train_images_per_second']:.0f} img/s  {r['seconds']:.1f}s")


class _Progress:
    """A live rich progress bar (loss, images/s, ETA) on a terminal; silent otherwise."""

    def __init__(self, enabled: bool):
        import sys

        self.enabled = enabled and sys.stderr.isatty()
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
    """Train from Python: ``cnnlab.train.train(model="lenet5", data="fashion-mnist", epochs=2)``."""
    from .config import apply_overrides

    config = apply_overrides(config or TrainConfig(), overrides, "train()") if overrides else (config or TrainConfig())
    return Trainer(config, resume=resume, progress=progress, log=log).run(stop_after=stop_after)
