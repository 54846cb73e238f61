"""Training configuration: one dataclass, filled from defaults, a named recipe, a TOML file and
``--key=value`` overrides, in that order, with every value type-checked. Nothing is ever ``exec``'d."""

from __future__ import annotations

import dataclasses
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ConfigError, unknown_name

OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULES = ("constant", "step", "cosine", "onecycle")
LOSSES = ("cross_entropy", "mse", "l1", "hinge", "dice", "cross_entropy+dice")  # the last two: segmentation
INITS = ("default", "xavier", "kaiming")
AUGMENTS = ("crop", "flip", "erase", "color", "trivial", "randaug", "mixup", "cutmix")
PRECISIONS = ("fp32", "bf16", "fp16", "auto")


@dataclass
class TrainConfig:
    """Everything that decides a training run. Field docs double as ``cnnlab train --help``."""

    model: str = field(default="lenet5_modern", metadata={"help": "registered model name"})
    task: str = field(default="auto", metadata={"help": "classify|... (auto: the task the model is made for)"})
    data: str = field(default="fashion-mnist-mini", metadata={"help": "dataset name or folder"})
    data_dir: str = field(default="", metadata={"help": "data root (default: $CNNLAB_DATA or the user cache)"})
    image_size: int = field(default=0, metadata={"help": "side an image folder's images are fitted to (0: their own "
                                                 "side if all are one square, else the median shorter side)"})
    epochs: int = field(default=10, metadata={"help": "passes over the training set"})
    batch_size: int = field(default=256, metadata={"help": "images per step"})
    optimizer: str = field(default="sgd", metadata={"help": "|".join(OPTIMIZERS)})
    lr: float = field(default=0.1, metadata={"help": "peak learning rate"})
    momentum: float = field(default=0.9, metadata={"help": "SGD momentum (Adam: beta1)"})
    nesterov: bool = field(default=False, metadata={"help": "Nesterov momentum for SGD"})
    weight_decay: float = field(default=5e-4, metadata={"help": "L2 penalty (decoupled for AdamW)"})
    schedule: str = field(default="cosine", metadata={"help": "|".join(SCHEDULES)})
    warmup_epochs: float = field(default=0.0, metadata={"help": "linear warm-up length, in epochs"})
    step_epochs: int = field(default=30, metadata={"help": "step schedule: epochs between decays"})
    step_gamma: float = field(default=0.1, metadata={"help": "step schedule: decay factor"})
    loss: str = field(default="cross_entropy", metadata={"help": "|".join(LOSSES)})
    label_smoothing: float = field(default=0.0, metadata={"help": "cross-entropy label smoothing"})
    class_weights: str = field(default="", metadata={
        "help": "segmentation: per-class loss weights, 'median' (median frequency balancing) or a comma list"})
    init_from: str = field(default="", metadata={
        "help": "a run folder whose model starts this one (a classifier's trunk starts a segmentation encoder)"})
    weights: str = field(default="", metadata={
        "help": "start from these weights: a shipped tag (fashion-mnist), a run folder or a torchvision/timm "
                "state-dict file; tensors that do not fit (a head for other classes) stay freshly initialised"})
    freeze: str = field(default="", metadata={"help": "features: train only the head (with --weights)"})
    backbone_lr: float = field(default=1.0, metadata={"help": "learning-rate multiplier of everything but the head"})
    init: str = field(default="default", metadata={"help": "weight init: " + "|".join(INITS)})
    augment: str = field(default="", metadata={"help": "comma list of " + "|".join(AUGMENTS) + " (flip only where valid)"})
    crop_padding: int = field(default=2, metadata={"help": "padding for random crops"})
    color_jitter: float = field(default=0.4, metadata={"help": "color: brightness/contrast/saturation strength"})
    randaug_ops: int = field(default=2, metadata={"help": "randaug: operations per image (RandAugment's N)"})
    randaug_magnitude: int = field(default=9, metadata={"help": "randaug: strength 0-30 (RandAugment's M)"})
    mixup_alpha: float = field(default=0.2, metadata={"help": "mixup: Beta(alpha, alpha) of the mixing weight"})
    cutmix_alpha: float = field(default=1.0, metadata={"help": "cutmix: Beta(alpha, alpha) of the kept area"})
    val_fraction: float = field(default=0.0, metadata={"help": "hold out this fraction of train for validation"})
    early_stopping: int = field(default=0, metadata={
        "help": "stop after this many epochs without a better validation figure (0: off; needs --val-fraction)"})
    grad_clip: float = field(default=0.0, metadata={"help": "clip the gradient norm to this (0: off)"})
    precision: str = field(default="fp32", metadata={
        "help": "autocast: " + "|".join(PRECISIONS) + " (auto: bf16 where native and measured faster, else fp32)"})
    channels_last: bool | None = field(default=None, metadata={
        "help": "NHWC memory layout (default: whichever layout is measured faster, see --plan)"})
    plan: bool = field(default=True, metadata={
        "help": "measure layout, threads (and precision when auto) before training; no: NCHW, all threads"})
    ema: float = field(default=0.0, metadata={"help": "weight averaging decay, e.g. 0.999 (0: off)"})
    tta_flip: bool = field(default=False, metadata={"help": "test-time augmentation: average with the mirror"})
    compile: bool = field(default=False, metadata={"help": "torch.compile the model"})
    distributed: bool = field(default=False, metadata={"help": "data-parallel over the processes torchrun starts (DDP)"})
    seed: int = field(default=0, metadata={"help": "random seed (a seeded CPU run is bitwise reproducible)"})
    device: str = field(default="auto", metadata={"help": "cpu|cuda|auto"})
    threads: int = field(default=0, metadata={"help": "CPU threads (0: measured, see --plan)"})
    out: str = field(default="", metadata={"help": "run folder (default: runs/MODEL-DATA)"})
    limit_train: int = field(default=0, metadata={"help": "use only the first N training images (0: all)"})
    limit_test: int = field(default=0, metadata={"help": "use only the first N test images (0: all)"})
    eval_batch_size: int = field(default=1024, metadata={"help": "images per evaluation step"})
    small_input: str = field(default="auto", metadata={"help": "auto|yes|no: the model's small-input form"})
    # metric learning (the metric task; docs/metric-learning.md)
    backbone: str = field(default="resnet20", metadata={"help": "metric: the zoo classifier an embedding_net embeds with"})
    embedding_dim: int = field(default=64, metadata={"help": "metric: embedding dimension"})
    metric_loss: str = field(default="triplet_hard", metadata={
        "help": "metric: contrastive|triplet_hard|triplet_semi|arcface|cosface|softmax"})
    margin: float = field(default=-1.0, metadata={"help": "metric: the loss's margin (negative: the paper's)"})
    scale: float = field(default=30.0, metadata={"help": "metric: ArcFace / CosFace logit scale s"})
    classes_per_batch: int = field(default=0, metadata={
        "help": "metric: P of P x K batches (K = batch size / P; 0: all training classes)"})
    seen_classes: str = field(default="0-4", metadata={
        "help": "metric: classes trained on (e.g. 0-4 or 0,2,4); the others are evaluated"})
    # generation (the generate task; docs/generation.md)
    feature_model: str = field(default="", metadata={
        "help": "generate: a classifier run folder whose features FID / KID use (default: raw pixels)"})
    gan_width: int = field(default=64, metadata={
        "help": "generate: DCGAN base width (the discriminator's first layer; the widest layers have 4x)"})
    tensorboard: bool = field(default=False, metadata={"help": "also write TensorBoard event files (needs tensorboard)"})

    def validate(self) -> "TrainConfig":
        checks = [
            (self.optimizer, OPTIMIZERS, "optimizer"), (self.schedule, SCHEDULES, "schedule"),
            (self.loss, LOSSES, "loss"), (self.init, INITS, "init"), (self.precision, PRECISIONS, "precision"),
            (self.device if self.device in ("cpu", "cuda", "auto") else self.device.split(":")[0],
             ("cpu", "cuda", "auto"), "device"),
            (self.small_input, ("auto", "yes", "no"), "small_input"),
        ]
        for value, allowed, name in checks:
            if value not in allowed:
                raise ConfigError(f"{name} must be one of {', '.join(allowed)}, not '{value}'")
        for item in self.augmentations():
            if item not in AUGMENTS:
                raise ConfigError(f"augment: unknown augmentation '{item}' (choose from {', '.join(AUGMENTS)})")
        positive = {"epochs": self.epochs, "batch_size": self.batch_size, "lr": self.lr, "eval_batch_size": self.eval_batch_size}
        for name, value in positive.items():
            if value <= 0:
                raise ConfigError(f"{name} must be positive, got {value}")
        if not 0 <= self.randaug_magnitude <= 30 or self.randaug_ops < 1:
            raise ConfigError("randaug_magnitude must be 0-30 and randaug_ops at least 1")
        if self.mixup_alpha <= 0 or self.cutmix_alpha <= 0 or self.color_jitter < 0:
            raise ConfigError("mixup_alpha and cutmix_alpha must be positive, color_jitter not negative")
        if self.freeze not in ("", "none", "features"):
            raise ConfigError(f"freeze must be 'features' or empty, not '{self.freeze}'")
        if self.backbone_lr < 0:
            raise ConfigError(f"backbone_lr must not be negative, got {self.backbone_lr}")
        if not 0.0 <= self.val_fraction < 1.0:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if not 0.0 <= self.label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        if not 0.0 <= self.ema < 1.0:
            raise ConfigError(f"ema must be in [0, 1), got {self.ema}")
        if self.early_stopping < 0:
            raise ConfigError(f"early_stopping must be 0 (off) or a number of epochs, got {self.early_stopping}")
        if self.early_stopping and not self.val_fraction:
            raise ConfigError("early stopping watches a validation split: give --val-fraction too (the test split "
                              "must not choose when to stop)")
        return self

    def augmentations(self) -> list[str]:
        return [a.strip() for a in self.augment.split(",") if a.strip()]

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# Named starting points. "textbook" is the recipe of Dive into Deep Learning's LeNet chapter.
RECIPES: dict[str, dict[str, Any]] = {
    "textbook": dict(model="lenet5", optimizer="sgd", lr=0.9, momentum=0.0, weight_decay=0.0, batch_size=256,
                     epochs=10, schedule="constant", init="xavier"),
    "modern": dict(model="lenet5_modern", optimizer="sgd", lr=0.1, momentum=0.9, nesterov=True, weight_decay=5e-4,
                   batch_size=128, epochs=10, schedule="onecycle", label_smoothing=0.1, augment="crop,flip"),
    # Fastest to a given accuracy on MNIST-style data on a CPU (measurements: docs/speed.md): data resident
    # as one tensor, one-cycle schedule, label smoothing, flip test-time augmentation; layout, threads and
    # precision (bf16 only where native) measured on the machine before training.
    # A short schedule; give it more epochs (--epochs 15) for a higher accuracy in a longer time.
    "fast": dict(model="lenet5_modern", optimizer="sgd", lr=0.2, momentum=0.9, nesterov=True, weight_decay=5e-4,
                 batch_size=256, epochs=4, schedule="onecycle", label_smoothing=0.1, augment="flip",
                 tta_flip=True, precision="auto"),
    # ≥ 93% on Fashion-MNIST in about 3 minutes on a 2-core CPU with native bf16: a CIFAR-style ResNet-20
    # with the same schedule, the execution plan measured likewise (docs/speed.md).
    "fast-resnet": dict(model="resnet20", optimizer="sgd", lr=0.2, momentum=0.9, nesterov=True, weight_decay=5e-4,
                        batch_size=256, epochs=5, schedule="onecycle", label_smoothing=0.1, augment="flip",
                        tta_flip=True, precision="auto"),
    # Longer schedules of the same network for the higher goals of `cnnlab bench records` (docs/speed.md):
    # random crops join the flips once there are epochs enough for them to pay.
    "record-94": dict(model="resnet20", optimizer="sgd", lr=0.2, momentum=0.9, nesterov=True, weight_decay=5e-4,
                      batch_size=256, epochs=8, schedule="onecycle", label_smoothing=0.1, augment="crop,flip",
                      tta_flip=True, precision="auto"),
    "record-95": dict(model="resnet20", optimizer="sgd", lr=0.2, momentum=0.9, nesterov=True, weight_decay=5e-4,
                      batch_size=256, epochs=24, schedule="onecycle", label_smoothing=0.1, augment="crop,flip",
                      tta_flip=True, ema=0.999, precision="auto"),
}


def _field_types() -> dict[str, type]:
    hints = typing.get_type_hints(TrainConfig)
    return {f.name: hints[f.name] for f in dataclasses.fields(TrainConfig)}


def coerce(name: str, value: Any, target: type) -> Any:
    """Check (and, for strings from the command line, convert) ``value`` for field ``name``."""
    if isinstance(target, types.UnionType):
        target = next(t for t in typing.get_args(target) if t is not type(None))
    if isinstance(value, str) and target is not str:
        text = value.strip()
        try:
            if target is bool:
                if text.lower() not in ("1", "0", "true", "false", "yes", "no", "on", "off"):
                    raise ValueError
                return text.lower() in ("1", "true", "yes", "on")
            return target(text)
        except ValueError:
            raise ConfigError(f"{name} expects {target.__name__}, got '{value}'") from None
    if target is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if not isinstance(value, target) or (target is int and isinstance(value, bool)):
        raise ConfigError(f"{name} expects {target.__name__}, got {type(value).__name__} {value!r}")
    return value


def apply_overrides(config: TrainConfig, overrides: dict[str, Any], source: str) -> TrainConfig:
    types_ = _field_types()
    changes = {}
    for key, value in overrides.items():
        name = key.replace("-", "_")
        if name not in types_:
            raise ConfigError(f"{source}: {unknown_name('setting', key, list(types_))}")
        changes[name] = coerce(name, value, types_[name])
    return dataclasses.replace(config, **changes)


def load_toml(path: str | Path) -> dict[str, Any]:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text("utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"config file '{path}' does not exist") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None
    # Allow either top-level keys or a [train] table.
    return data.get("train", data)


def build_config(*, recipe: str | None = None, file: str | Path | None = None,
                 overrides: dict[str, Any] | None = None) -> TrainConfig:
    """Defaults, then ``recipe``, then the TOML ``file``, then ``overrides``; validated."""
    config = TrainConfig()
    if recipe:
        if recipe not in RECIPES:
            raise unknown_name("recipe", recipe, list(RECIPES))
        config = apply_overrides(config, RECIPES[recipe], f"recipe {recipe}")
    if file:
        config = apply_overrides(config, load_toml(file), str(file))
    if overrides:
        config = apply_overrides(config, overrides, "command line")
    return config.validate()
