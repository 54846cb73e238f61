"""Semantic segmentation: one class per pixel (deck 002: FCN, DeconvNet, SegNet, U-Net).

Data are the multi-object sets (:func:`cnnlab.data.load_object_dataset`: the scene sets, COCO and
VOC folders), held as one N x C x H x W uint8 image tensor and one N x H x W class map (0
background, ``k + 1`` class ``k``, 255 ignored); the class names are ``background`` and the
dataset's. A training batch is an index into them, mirrored (where the data allow) and shifted with
its map. The loss is per-pixel cross-entropy with optional class weights (``--class-weights
median``: SegNet's median frequency balancing, or a list) and the ignore index, Dice, or their sum;
the metrics are the FCN paper's four, per-class IoU and the boundary F-score, all from one confusion
matrix over the split (:mod:`cnnlab.train.segmetrics`). A prediction is the class map with
per-class areas; the service answers it as a PNG or RLE.
"""

from __future__ import annotations

import base64
import dataclasses
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.objects import IGNORE
from ..data.transforms import normalize
from ..errors import CheckpointError, ConfigError, DataError
from ..train import segmetrics
from . import register_task
from .base import Batch, CheckpointPredictor, StepOutput, Task
from .classify import autocast

MIXED_SIZE = 256  # side that images of mixed sizes (COCO / VOC folders) are letterboxed to
AUGMENTS = ("flip", "crop", "color")


@dataclass
class SegmentationData:
    """A split as tensors: ``images`` N x C x H x W uint8, ``masks`` N x H x W uint8 (0 background,
    ``k + 1`` class ``k``, 255 ignored); ``class_names[0]`` is ``background``."""

    name: str
    split: str
    images: torch.Tensor
    masks: torch.Tensor
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    hflip: bool = True

    def __post_init__(self):
        if self.images.shape[0] != self.masks.shape[0] or self.images.shape[2:] != self.masks.shape[1:]:
            raise DataError(f"{self.name}/{self.split}: {tuple(self.images.shape)} images but "
                            f"{tuple(self.masks.shape)} masks")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def input_size(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.images.shape[1:])

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, index, split: str | None = None) -> "SegmentationData":
        return dataclasses.replace(self, images=self.images[index], masks=self.masks[index], split=split or self.split)

    def random_split(self, fraction: float, seed: int) -> tuple["SegmentationData", "SegmentationData"]:
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        cut = int(round(len(self) * fraction))
        return self.subset(order[cut:]), self.subset(order[:cut], "val")


def load_segmentation(name: str, split: str, data_dir: str | None = None) -> SegmentationData:
    """A detection / segmentation set's ``split`` as class maps (``semantic_mask``), in memory."""
    from ..data import load_object_dataset
    from ..data.object_datasets import is_object_dataset

    if not is_object_dataset(str(name)):
        from ..data.datasets import DATASETS  # noqa: F401 - only for the message

        raise DataError(f"'{name}' is not a segmentation dataset: give a scene set (fashion-scenes-mini, "
                        "fashion-scenes, mnist-scenes), a COCO .json or a COCO / VOC folder")
    ds = load_object_dataset(name, split, data_dir)
    if not ds.has_semantic:
        raise DataError(f"{ds.name}: the annotations have no masks (box-only data cannot train segmentation)")
    if len(ds.class_names) > 254:
        raise DataError(f"{ds.name}: {len(ds.class_names)} classes; class maps hold at most 254")
    n = len(ds)
    if ds.input_size is not None:
        images = torch.stack([ds.image(i) for i in range(n)]) if n else torch.zeros(0, *ds.input_size, dtype=torch.uint8)
        masks = (torch.stack([ds.semantic_mask(i) for i in range(n)]) if n
                 else torch.zeros(0, *ds.input_size[1:], dtype=torch.long))
    else:  # mixed sizes: letterbox every image (the margin is ignored in the map)
        batch = ds.batch(range(n), size=(MIXED_SIZE, MIXED_SIZE), mode="letterbox")
        images, masks = batch.images, batch.semantic
    return SegmentationData(str(name), split, images, masks.to(torch.uint8), ["background", *ds.class_names],
                            tuple(ds.mean), tuple(ds.std), bool(ds.hflip))


@dataclass
class SegmentationPrediction:
    """One image's class map (H x W int64, indices into ``class_names``) and class probabilities' confidence."""

    mask: torch.Tensor
    class_names: list[str]
    confidence: torch.Tensor  # H x W float: the winning class's probability

    def areas(self) -> dict[str, int]:
        counts = torch.bincount(self.mask.flatten(), minlength=len(self.class_names))
        return {name: int(counts[i]) for i, name in enumerate(self.class_names) if counts[i] > 0}


# A fixed palette: background black, then distinct colours (VOC's bit pattern palette).
def palette(n: int = 256) -> np.ndarray:
    """``n x 3`` uint8 colours, PASCAL VOC's palette (class 0 black, 255 the ignore colour)."""
    colours = np.zeros((n, 3), np.uint8)
    for i in range(n):
        c, r, g, b = i, 0, 0, 0
        for j in range(8):
            r |= ((c >> 0) & 1) << (7 - j)
            g |= ((c >> 1) & 1) << (7 - j)
            b |= ((c >> 2) & 1) << (7 - j)
            c >>= 3
        colours[i] = (r, g, b)
    return colours


def mask_png(mask: torch.Tensor) -> bytes:
    """An H x W class map as a palette PNG (pixel value = class index, so it reads back exactly)."""
    from PIL import Image

    img = Image.fromarray(mask.to(torch.uint8).cpu().numpy(), mode="P")
    img.putpalette(palette().flatten().tolist())
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def overlay(image: torch.Tensor, mask: torch.Tensor, class_names: Sequence[str], *, alpha: float = 0.5,
            legend: bool = True):
    """A Pillow RGB image: ``image`` (C x H x W uint8) with its class map painted over it and, below, a legend
    of the classes present."""
    from PIL import Image, ImageDraw

    base = image.expand(3, -1, -1) if image.shape[0] == 1 else image[:3]
    rgb = base.permute(1, 2, 0).cpu().numpy().astype(np.float32)
    colours = palette()[mask.cpu().numpy().astype(np.int64).clip(0, 255)].astype(np.float32)
    painted = np.where((mask.cpu().numpy() > 0)[..., None], (1 - alpha) * rgb + alpha * colours, rgb)
    picture = Image.fromarray(painted.clip(0, 255).astype(np.uint8))
    scale = max(1, 256 // max(picture.size))
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    if not legend:
        return picture
    present = [int(i) for i in torch.unique(mask).tolist() if 0 < int(i) < len(class_names)]
    row = 16
    canvas = Image.new("RGB", (max(picture.width, 160), picture.height + row * max(1, len(present)) + 4), "white")
    canvas.paste(picture, (0, 0))
    draw = ImageDraw.Draw(canvas)
    for j, k in enumerate(present or [0]):
        y = picture.height + 2 + j * row
        draw.rectangle([4, y + 2, 16, y + 14], fill=tuple(int(v) for v in palette()[k]), outline="black")
        draw.text((22, y + 2), class_names[k] if present else "(background only)", fill="black")
    return canvas


def _check_augment(config) -> list[str]:
    chosen = config.augmentations()
    wrong = [a for a in chosen if a not in AUGMENTS]
    if wrong:
        raise ConfigError(f"the segment task augments with {', '.join(AUGMENTS)}, not {', '.join(wrong)}")
    return chosen


def target_like(logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The target map centre-cropped to the logits' size (U-Net's valid form predicts the centre of its tile)."""
    h, w = logits.shape[-2:]
    if target.shape[-2:] == (h, w):
        return target
    th, tw = target.shape[-2:]
    if h > th or w > tw:
        raise ConfigError(f"the model's output ({h}x{w}) is larger than its input ({th}x{tw})")
    oy, ox = (th - h) // 2, (tw - w) // 2
    return target[..., oy:oy + h, ox:ox + w]


@register_task
class SegmentationTask(Task):
    """Classify every pixel."""

    name = "segment"
    description = "semantic segmentation: a class for every pixel"
    shown = ("miou", "pixel_acc")
    primary = "miou"
    higher_is_better = True
    endpoint = "segment"
    default_data = "fashion-scenes-mini"

    def __init__(self, config=None):
        super().__init__(config)
        self.weights: torch.Tensor | None = None
        if self.config.loss not in ("cross_entropy", "dice", "cross_entropy+dice"):
            raise ConfigError(f"the segment task's losses are cross_entropy, dice and cross_entropy+dice, "
                              f"not {self.config.loss}")

    # --- data
    def load_split(self, name: str, split: str, data_dir: str | None = None) -> SegmentationData:
        return load_segmentation(name, split, data_dir)

    def check_data(self, train_set: SegmentationData, test_set: SegmentationData) -> None:
        if list(test_set.class_names) != list(train_set.class_names):
            raise DataError(f"{test_set.name}: the test classes {test_set.class_names[1:]} differ from the training "
                            f"classes {train_set.class_names[1:]}")
        if test_set.input_size != train_set.input_size:
            raise DataError(f"{test_set.name}: test images are {test_set.input_size}, training images "
                            f"{train_set.input_size}")
        _check_augment(self.config)
        if "flip" in self.config.augmentations() and not train_set.hflip:
            raise ConfigError(f"a horizontal flip changes the meaning of {train_set.name} images (e.g. digits); drop 'flip'")
        self.weights = segmetrics.parse_weights(getattr(self.config, "class_weights", ""), train_set.num_classes,
                                                train_set.masks)

    def data_fields(self, train_set: SegmentationData) -> dict[str, Any]:
        return {**super().data_fields(train_set), "extra": {"ignore_index": IGNORE}}

    def for_checkpoint(self, dataset: SegmentationData, checkpoint, name: str) -> SegmentationData:
        if list(dataset.class_names) != list(checkpoint.class_names):
            raise DataError(f"{name} does not have the model's classes: {dataset.class_names[1:]} there, "
                            f"{checkpoint.class_names[1:]} in the model")
        return dataset

    def check_meta(self, model: nn.Module, meta, what: str) -> None:
        try:
            with torch.no_grad():
                shape = model.eval()(torch.zeros(1, *meta.input_size, device="meta")).shape
        except Exception as e:  # noqa: BLE001 - a model that cannot take its own input size
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            raise CheckpointError(f"{what}: a {meta.arch} with these arguments cannot take "
                                  f"{'x'.join(map(str, meta.input_size))} inputs: {first}") from None
        if len(shape) != 4 or int(shape[1]) != len(meta.class_names):
            raise CheckpointError(f"{what}: the model gives {tuple(shape)} maps but class_names names "
                                  f"{len(meta.class_names)} classes")

    # --- batches
    def make_batch(self, dataset: SegmentationData, indices: torch.Tensor, *, train: bool,
                   generator: torch.Generator | None = None) -> Batch:
        images, masks = dataset.images[indices], dataset.masks[indices]  # B x C x H x W, B x H x W uint8
        if train:
            chosen = _check_augment(self.config)
            if "flip" in chosen and dataset.hflip:  # mirror half the images with their maps
                flip = torch.rand(len(images), generator=generator) < 0.5
                images = torch.where(flip[:, None, None, None], images.flip(-1), images)
                masks = torch.where(flip[:, None, None], masks.flip(-1), masks)
            if "crop" in chosen:  # shift by up to crop_padding pixels: image padded with its mean, map with IGNORE
                p = int(self.config.crop_padding)
                if p > 0:
                    h, w = images.shape[-2:]
                    fill = [int(round(255 * m)) for m in dataset.mean]
                    padded = torch.stack([F.pad(images[:, c], (p, p, p, p), value=fill[min(c, len(fill) - 1)])
                                          for c in range(images.shape[1])], 1)
                    pmasks = F.pad(masks, (p, p, p, p), value=IGNORE)
                    dy = torch.randint(0, 2 * p + 1, (len(images),), generator=generator)
                    dx = torch.randint(0, 2 * p + 1, (len(images),), generator=generator)
                    images = torch.stack([padded[i, :, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(len(images))])
                    masks = torch.stack([pmasks[i, dy[i]:dy[i] + h, dx[i]:dx[i] + w] for i in range(len(images))])
            if "color" in chosen:  # brightness and contrast; the map does not move
                s = float(self.config.color_jitter)
                b = 1 + (torch.rand(len(images), 1, 1, 1, generator=generator) * 2 - 1) * s
                c = 1 + (torch.rand(len(images), 1, 1, 1, generator=generator) * 2 - 1) * s
                x = images.float()
                m = x.mean((1, 2, 3), keepdim=True)
                images = ((x - m) * c + m * b).clamp(0, 255).round().to(torch.uint8)
        return Batch(images, masks, {"mean": dataset.mean, "std": dataset.std})

    def prepare(self, batch: Batch, device: torch.device, *, channels_last: bool = False) -> Batch:
        x = normalize(batch.inputs.to(device, non_blocking=True), batch.extra["mean"], batch.extra["std"])
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return Batch(x, batch.targets.to(device, non_blocking=True).long(), batch.extra)

    # --- training
    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        kind = self.config.loss
        target = target_like(logits, target)
        total = logits.new_zeros(())
        if kind in ("cross_entropy", "cross_entropy+dice"):
            weight = None if self.weights is None else self.weights.to(logits.device, logits.dtype)
            if bool((target != IGNORE).any()):
                total = total + F.cross_entropy(logits.float(), target, weight=weight if weight is None else weight.float(),
                                                ignore_index=IGNORE)
        if kind in ("dice", "cross_entropy+dice"):
            total = total + segmetrics.dice_loss(logits, target)
        return total

    def training_step(self, forward, model: nn.Module, batch: Batch, phase: str) -> StepOutput:
        logits = forward(batch.inputs)
        loss = self.loss(logits, batch.targets)
        target = target_like(logits, batch.targets)
        valid = target != IGNORE
        correct = ((logits.detach().argmax(1) == target) & valid).sum().double()
        n = len(target)
        # pixel accuracy per image, summed, so the epoch's figure is a mean over images
        acc = correct / valid.sum().clamp(min=1) * n
        return StepOutput(loss, {"loss": loss.detach().double() * n, "pixel_acc": acc.detach()}, n)

    # --- evaluation
    @torch.no_grad()
    def evaluate(self, model: nn.Module, dataset: SegmentationData, *, device: torch.device | str = "cpu",
                 batch_size: int = 256, precision: str = "fp32", channels_last: bool = False,
                 preprocessing=None, tta_flip: bool = False, tolerance: int = 2, per_image: bool = False,
                 **options: Any) -> dict[str, Any]:
        device = torch.device(device)
        model.eval()
        mean = preprocessing.mean if preprocessing is not None else dataset.mean
        std = preprocessing.std if preprocessing is not None else dataset.std
        k = len(preprocessing_names(dataset))
        matrix = torch.zeros(k, k, dtype=torch.long)
        loss_sum, bf, images_iou = 0.0, [], []
        batch_size = max(1, min(batch_size, 64))
        for start in range(0, len(dataset), batch_size):
            x = normalize(dataset.images[start:start + batch_size].to(device), mean, std)
            y = dataset.masks[start:start + batch_size].to(device).long()
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            with autocast(device, precision):
                logits = model(x).float()
                if tta_flip:
                    logits = (logits.softmax(1) + model(x.flip(-1)).float().flip(-1).softmax(1)).log()
            y = target_like(logits, y)
            loss_sum += float(self.loss(logits, y)) * len(y)
            pred = logits.argmax(1)
            matrix += segmetrics.confusion(pred, y, k)
            bf += segmetrics.boundary_f(pred.cpu(), y.cpu(), tolerance)
            if per_image:
                images_iou += [segmetrics.scores(segmetrics.confusion(p, t, k))["miou"] for p, t in zip(pred, y)]
        n = len(dataset)
        out = {"loss": loss_sum / max(1, n), **segmetrics.scores(matrix), "boundary_f": segmetrics.mean_or_zero(bf),
               "confusion": matrix.tolist(), "images": n, "boundary_tolerance": tolerance}
        if per_image:
            out["image_miou"] = images_iou
        return out

    def scalars(self, metrics: dict[str, Any]) -> dict[str, float]:
        return {k: float(metrics[k]) for k in ("loss", "pixel_acc", "mean_acc", "miou", "fwiou", "boundary_f")}

    def checkpoint_metrics(self, metrics: dict[str, Any]) -> dict[str, Any]:
        return {**{f"test_{k}": v for k, v in self.scalars(metrics).items()}, "per_class_iou": metrics["per_class_iou"]}

    def report(self, metrics: dict[str, Any], checkpoint, *, dataset: str, split: str) -> None:
        from ..console import print_table

        print(f"{checkpoint.arch} on {dataset}/{split} ({metrics['images']} images, {metrics['pixels']:,} pixels): "
              f"mIoU {metrics['miou']:.4f}  pixel acc {metrics['pixel_acc']:.4f}  mean acc {metrics['mean_acc']:.4f}  "
              f"fwIoU {metrics['fwiou']:.4f}  boundary F {metrics['boundary_f']:.4f}  loss {metrics['loss']:.4f}")
        rows = [(name, "-" if iou is None else f"{iou:.4f}", "-" if acc is None else f"{acc:.4f}")
                for name, iou, acc in zip(checkpoint.class_names, metrics["per_class_iou"], metrics["per_class_acc"])]
        print_table(rows, ["class", "IoU", "accuracy"], title="per class", justify_right=["IoU", "accuracy"])

    # --- using a trained model
    def predictor(self, checkpoint, *, device: str | torch.device = "cpu"):
        return SegmentationPredictor(checkpoint, device=device)

    def describe(self, prediction: SegmentationPrediction) -> dict[str, Any]:
        total = int(prediction.mask.numel())
        return {"size": list(prediction.mask.shape),
                "areas": {name: {"pixels": v, "fraction": round(v / total, 6)} for name, v in prediction.areas().items()}}

    def print_predictions(self, paths: Sequence[str], predictions, *, out_dir: Path | None = None,
                          images: Sequence[Any] = ()) -> list[str]:
        written: list[str] = []
        stems: dict[str, int] = {}
        for i, (path, pred) in enumerate(zip(paths, predictions)):
            areas = pred.areas()
            total = max(1, int(pred.mask.numel()))
            print(path)
            for name, v in sorted(areas.items(), key=lambda kv: -kv[1]):
                print(f"  {v / total:7.2%}  {name}")
            if out_dir is not None:
                out_dir.mkdir(parents=True, exist_ok=True)
                stem = Path(path).stem
                stems[stem] = stems.get(stem, 0) + 1
                if stems[stem] > 1:
                    stem = f"{stem}-{stems[stem]}"
                mask_file = out_dir / f"{stem}-mask.png"
                mask_file.write_bytes(mask_png(pred.mask))
                written.append(str(mask_file))
                if i < len(images):
                    over = out_dir / f"{stem}-overlay.png"
                    overlay(images[i], pred.mask, pred.class_names).save(over)
                    written.append(str(over))
                    print(f"  wrote {mask_file} and {over}")
        return written

    # --- the service
    def request_options(self, fields: dict[str, str], served) -> dict[str, Any]:
        from ..serve.errors import bad_request

        fmt = (fields.get("format") or "png").lower()
        if fmt not in ("png", "rle"):
            raise bad_request(f"format must be png or rle, not '{fields.get('format')}'")
        return {"format": fmt}

    def response(self, served, prediction: SegmentationPrediction, options: dict[str, Any]) -> dict[str, Any]:
        from ..data import rle

        result = self.describe(prediction)
        result["classes"] = list(prediction.class_names)
        if options.get("format", "png") == "rle":
            mask = prediction.mask.cpu().numpy()
            result["rle"] = {prediction.class_names[k]: rle.encode(mask == k) for k in np.unique(mask).tolist()}
        else:
            result["mask_png"] = base64.b64encode(mask_png(prediction.mask)).decode("ascii")
        return {"result": result}

    # --- pictures
    pictures_kinds = ("predictions", "worst")

    def pictures(self, checkpoint, dataset: SegmentationData, out_dir: Path, *, kind: str, limit: int) -> list[dict[str, Any]]:
        from ..viz import style

        data = self.for_checkpoint(dataset, checkpoint, dataset.name)
        data = data.subset(slice(0, limit)) if limit else data
        metrics = self.evaluate(checkpoint.model, data, preprocessing=checkpoint.preprocessing, per_image=True)
        scores = metrics["image_miou"]
        if kind == "worst":
            order = sorted(range(len(data)), key=lambda i: scores[i])[:8]
        else:
            order = list(range(min(8, len(data))))
        predictor = SegmentationPredictor(checkpoint)
        preds = predictor.predict_batch(data.images[order])
        plt = style.pyplot()
        fig = style.figure(7.5, 2.4 * len(order))
        axes = fig.subplots(len(order), 3, squeeze=False)
        for row, (i, pred) in enumerate(zip(order, preds)):
            truth = data.masks[i].long()
            shown = torch.where(truth == IGNORE, torch.zeros_like(truth), truth)
            style.show_image(axes[row][0], style.chw_to_display(data.images[i].numpy()), f"image {i}")
            axes[row][1].imshow(np.asarray(overlay(data.images[i], shown, data.class_names, legend=False)))
            axes[row][1].set_title("ground truth")
            axes[row][2].imshow(np.asarray(overlay(data.images[i], pred.mask, data.class_names, legend=False)))
            axes[row][2].set_title(f"prediction (mIoU {scores[i]:.2f})")
            for ax in axes[row][1:]:
                style.bare(ax)
        present = sorted({int(v) for i in order for v in torch.unique(data.masks[i]).tolist() if 0 < v < len(data.class_names)})
        from matplotlib.patches import Patch

        fig.legend(handles=[Patch(color=palette()[k] / 255, label=data.class_names[k]) for k in present],
                   loc="outside lower center", ncols=min(5, max(1, len(present))))
        fig.suptitle(f"{checkpoint.arch}: {'worst images' if kind == 'worst' else 'predictions'} "
                     f"(split mIoU {metrics['miou']:.3f})")
        path = style.save(fig, out_dir / f"{kind}-{Path(checkpoint.path).name or checkpoint.arch}.png")
        plt.close("all")
        return [{"kind": kind, "path": str(path), "indices": order, "image_miou": [scores[i] for i in order]}]


def preprocessing_names(dataset: SegmentationData) -> list[str]:
    return list(dataset.class_names)


class SegmentationPredictor(CheckpointPredictor):
    """``predict_batch(uint8 N x C x H x W)`` -> one :class:`SegmentationPrediction` per image."""

    def __init__(self, checkpoint, *, device: str | torch.device = "cpu"):
        super().__init__(checkpoint, device=device)

    @torch.no_grad()
    def predict_batch(self, images: torch.Tensor, top_k: int | None = None, **options: Any) -> list[SegmentationPrediction]:
        x = self.checkpoint.preprocessing.normalize(images.to(self.device))
        probs = self.model(x).float().softmax(1)
        conf, mask = probs.max(1)
        return [SegmentationPrediction(mask[i].cpu(), self.class_names, conf[i].cpu()) for i in range(len(images))]
