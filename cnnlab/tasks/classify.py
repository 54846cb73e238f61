"""Image classification: one label per image (the decks' first task, and the zoo's).

Data are :class:`~cnnlab.data.ImageDataset` tensors; a training batch is an index into them, cropped,
flipped and erased as a whole; the loss is one of the decks' four (cross-entropy, MSE, L1, hinge) on
the logits, plus the weighted auxiliary losses of GoogLeNet and Inception v3; the metrics are top-1,
top-5 and per-class accuracy with the confusion matrix; a prediction is the top-k classes, answered
by the service in the decks' recognition JSON.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
from torch import nn

from ..backbone import main_logits
from ..data import ImageDataset, load_dataset
from ..data.transforms import normalize, random_crop, random_erasing, random_hflip
from ..errors import CheckpointError, ConfigError, DataError
from ..train.losses import auxiliary_loss, make_criterion
from ..train.metrics import confusion_matrix, per_class_accuracy, topk_correct
from . import register_task
from .base import Batch, StepOutput, Task


def autocast(device: torch.device, precision: str):
    """bf16 / fp16 autocast on ``device``, or nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=torch.bfloat16 if precision == "bf16" else torch.float16)


@torch.no_grad()
def evaluate_classifier(model: nn.Module, dataset: ImageDataset, *, device: torch.device | str = "cpu",
                        batch_size: int = 1024, precision: str = "fp32", channels_last: bool = False,
                        tta_flip: bool = False, criterion: nn.Module | None = None,
                        mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> dict[str, Any]:
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
        with autocast(device, precision):
            scores = model(x).float()
            if tta_flip:
                scores = (scores.softmax(1) + model(x.flip(-1)).float().softmax(1)).log()
        loss_sum += float(criterion(scores, y)) * len(y)
        for kk, v in topk_correct(scores, y).items():
            correct[kk] += v
        confusion += confusion_matrix(scores.argmax(1).cpu(), y.cpu(), k)
    return {"loss": loss_sum / max(1, n), "top1": correct[1] / max(1, n), "top5": correct[5] / max(1, n),
            "per_class": per_class_accuracy(confusion), "confusion": confusion.tolist(), "images": n}


def make_augment(config, dataset: ImageDataset) -> Callable[[torch.Tensor, torch.Generator], torch.Tensor]:
    """The per-image batch augmentation ``config.augment`` asks for, in the order crop, flip, policy
    (trivial / randaug), color, erase; mixup and cutmix mix labels too and are applied by the task."""
    from ..data import augment as policies

    chosen = config.augmentations()
    if "flip" in chosen and not dataset.hflip:
        raise ConfigError(f"a horizontal flip changes the meaning of {dataset.name} images (e.g. digits); drop 'flip'")
    if "trivial" in chosen and "randaug" in chosen:
        raise ConfigError("choose one augmentation policy: trivial or randaug")

    def augment(batch: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        if "crop" in chosen:
            batch = random_crop(batch, config.crop_padding, generator)
        if "flip" in chosen:
            batch = random_hflip(batch, 0.5, generator)
        if "trivial" in chosen:
            batch = policies.trivial_augment(batch, generator)
        if "randaug" in chosen:
            batch = policies.rand_augment(batch, config.randaug_ops, config.randaug_magnitude, generator)
        if "color" in chosen:
            batch = policies.color_jitter(batch, config.color_jitter, generator)
        if "erase" in chosen:
            batch = random_erasing(batch, 0.5, generator=generator)
        return batch

    return augment


@register_task
class ClassificationTask(Task):
    """Classify whole images."""

    name = "classify"
    description = "image classification: the top-k classes of an image"
    shown = ("acc",)
    primary = "acc"
    higher_is_better = True

    def __init__(self, config=None):
        super().__init__(config)
        self.criterion = make_criterion(self.config.loss, label_smoothing=self.config.label_smoothing)
        self._augment: Callable | None = None

    # --- data
    def load_split(self, name: str, split: str, data_dir: str | None = None) -> ImageDataset:
        return load_dataset(name, split, data_dir, image_size=self.config.image_size or None)

    def check_data(self, train_set: ImageDataset, test_set: ImageDataset) -> None:
        k = train_set.num_classes
        for data in (train_set, test_set):
            if len(data) and (int(data.labels.min()) < 0 or int(data.labels.max()) >= k):
                raise DataError(f"{data.name}/{data.split}: labels run from {int(data.labels.min())} to "
                                f"{int(data.labels.max())}, but there are {k} classes")
        test_names = list(test_set.class_names)
        if test_names != list(train_set.class_names)[:len(test_names)]:
            raise DataError(f"{test_set.name}: the test classes {test_names} differ from the training classes "
                            f"{train_set.class_names}")
        if tuple(test_set.input_size) != tuple(train_set.input_size):
            raise DataError(f"{test_set.name}: test images are {test_set.input_size}, training images "
                            f"{train_set.input_size}")
        if self.config.tta_flip and not train_set.hflip:  # a mirrored digit is another symbol, or none
            raise ConfigError(f"test-time flipping averages with mirrored images, which changes the meaning of "
                              f"{train_set.name} images (e.g. digits); pass --tta-flip false")

    def data_fields(self, train_set: ImageDataset) -> dict[str, Any]:
        from ..train.meta import InputStats

        return {**super().data_fields(train_set), "stats": InputStats.of(train_set.images)}

    def for_checkpoint(self, dataset: ImageDataset, checkpoint, name: str) -> ImageDataset:
        """``dataset`` labelled with the model's classes, refusing one whose classes are not the model's.

        A dataset may lack the model's last classes (a test split without them: their labels simply
        never occur), but its classes must be the model's, in the model's order."""
        import dataclasses

        ours, theirs = list(dataset.class_names), list(checkpoint.class_names)
        if len(ours) > len(theirs):
            raise DataError(f"{name} has {len(ours)} classes, the model {len(theirs)}")
        for i, (a, b) in enumerate(zip(ours, theirs)):
            if a != b:
                raise DataError(f"{name} does not have the model's classes: class {i} is {a!r} there and {b!r} "
                                "in the model")
        return dataclasses.replace(dataset, class_names=theirs)

    def check_meta(self, model: nn.Module, meta, what: str) -> None:
        try:  # a forward pass on the meta device gives the output shape without computing anything
            with torch.no_grad():
                outputs = model.eval()(torch.zeros(1, *meta.input_size, device="meta")).shape[-1]
        except Exception as e:  # noqa: BLE001 - a model that cannot take its own input size
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CheckpointError(f"{what}: a {meta.arch} with these arguments cannot take "
                                  f"{'x'.join(map(str, meta.input_size))} inputs: {first}") from None
        if int(outputs) != len(meta.class_names):
            raise CheckpointError(f"{what}: the model has {outputs} outputs but class_names names "
                                  f"{len(meta.class_names)} classes")

    # --- batches
    def make_batch(self, dataset: ImageDataset, indices: torch.Tensor, *, train: bool,
                   generator: torch.Generator | None = None) -> Batch:
        images, labels = dataset.images[indices], dataset.labels[indices]  # B x C x H x W uint8, B
        targets: torch.Tensor | dict[str, torch.Tensor] = labels
        if train:
            if self._augment is None:
                self._augment = make_augment(self.config, dataset)
            images = self._augment(images, generator)
            chosen = self.config.augmentations()
            if "mixup" in chosen or "cutmix" in chosen:
                from ..data.augment import mix

                images, partner, lam = mix(images, labels, generator=generator,
                                           mixup_alpha=self.config.mixup_alpha if "mixup" in chosen else 0.0,
                                           cutmix_alpha=self.config.cutmix_alpha if "cutmix" in chosen else 0.0)
                targets = {"y": labels, "partner": partner, "lam": lam}
        return Batch(images, targets, {"mean": dataset.mean, "std": dataset.std})

    def prepare(self, batch: Batch, device: torch.device, *, channels_last: bool = False) -> Batch:
        x = normalize(batch.inputs.to(device, non_blocking=True), batch.extra["mean"], batch.extra["std"])
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        targets = batch.targets
        targets = ({k: v.to(device, non_blocking=True) for k, v in targets.items()} if isinstance(targets, dict)
                   else targets.to(device, non_blocking=True))
        return Batch(x, targets, batch.extra)

    # --- training
    def training_step(self, forward, model: nn.Module, batch: Batch, phase: str) -> StepOutput:
        outputs = forward(batch.inputs)
        targets = batch.targets
        if isinstance(targets, dict):  # mixup / CutMix: the loss of each image's two labels, weighed by lam
            lam = targets["lam"].mean()  # one lam per batch
            y = targets["y"]
            loss = (lam * auxiliary_loss(outputs, y, self.criterion)
                    + (1 - lam) * auxiliary_loss(outputs, targets["partner"], self.criterion))
        else:
            y = targets
            loss = auxiliary_loss(outputs, y, self.criterion)
        correct = (main_logits(outputs).detach().argmax(1) == y).sum()
        n = len(y)
        return StepOutput(loss, {"loss": loss.detach().double() * n, "acc": correct}, n)

    # --- evaluation
    def evaluate(self, model: nn.Module, dataset: ImageDataset, *, device: torch.device | str = "cpu",
                 batch_size: int = 1024, precision: str = "fp32", channels_last: bool = False,
                 preprocessing=None, tta_flip: bool = False, **options: Any) -> dict[str, Any]:
        mean = preprocessing.mean if preprocessing is not None else None
        std = preprocessing.std if preprocessing is not None else None
        return evaluate_classifier(model, dataset, device=device, batch_size=batch_size, precision=precision,
                                   channels_last=channels_last, tta_flip=tta_flip, mean=mean, std=std)

    def scalars(self, metrics: dict[str, Any]) -> dict[str, float]:
        return {"loss": metrics["loss"], "acc": metrics["top1"], "top5": metrics["top5"]}

    def checkpoint_metrics(self, metrics: dict[str, Any]) -> dict[str, Any]:
        return {"test_loss": metrics["loss"], "test_acc": metrics["top1"], "test_top5": metrics["top5"],
                "per_class": metrics["per_class"]}

    def report(self, metrics: dict[str, Any], checkpoint, *, dataset: str, split: str) -> None:
        from ..console import print_table

        print(f"{checkpoint.arch} on {dataset}/{split} ({metrics['images']} images): top-1 {metrics['top1']:.4f}  "
              f"top-5 {metrics['top5']:.4f}  loss {metrics['loss']:.4f}")
        names = checkpoint.class_names
        print_table([(c, f"{a:.4f}") for c, a in zip(names, metrics["per_class"])], ["class", "accuracy"],
                    title="per-class accuracy", justify_right=["accuracy"])
        print_table([[names[i]] + row for i, row in enumerate(metrics["confusion"])], ["true \\ pred"] + names,
                    title="confusion matrix", justify_right=names)

    # --- pictures
    pictures_kinds = ("mistakes",)

    def pictures(self, checkpoint, dataset: ImageDataset, out_dir: Path, *, kind: str, limit: int) -> list[dict[str, Any]]:
        from ..viz import style
        from ..viz.confusion import plot_mistakes, predict_probabilities, worst_mistakes

        data = dataset.subset(slice(0, limit)) if limit else dataset
        probs = predict_probabilities(checkpoint.model, data.images, preprocessing=checkpoint.preprocessing)
        worst = worst_mistakes(probs, data.labels, 24)
        path = style.save(plot_mistakes(data.images, data.labels, probs, worst, checkpoint.class_names,
                                        title=f"{checkpoint.arch}: most confident mistakes"),
                          out_dir / f"mistakes-{Path(checkpoint.path).name or checkpoint.arch}.png")
        return [{"kind": kind, "path": str(path), "indices": worst}]

    # --- using a trained model
    def predictor(self, checkpoint, *, device: str | torch.device = "cpu"):
        from ..predict import Predictor

        return Predictor(checkpoint, device=device)

    def describe(self, prediction) -> list[dict[str, Any]]:
        return [{"class": p.label, "index": p.index, "score": round(p.score, 6)} for p in prediction]

    def print_predictions(self, paths: Sequence[str], predictions, *, out_dir: Path | None = None,
                          images: Sequence[Any] = ()) -> list[str]:
        for path, preds in zip(paths, predictions):
            print(path)
            for p in preds:
                print(f"  {p.score:7.2%}  {p.label}")
        return []
