"""Video classification: a clip in, its class out (C3D, R(2+1)D, LRCN, and a single-frame baseline).

Data are clip sets (:mod:`cnnlab.data.moving_items`): ``moving-items-mini`` (bundled: real
Fashion-MNIST items moving on a canvas, the class is the motion), ``moving-items`` (generated on
first use, ``cnnlab data make moving-items``), or a folder ``<split>/<class>/<clip>`` of frame folders,
GIFs or video files. Inputs are N x C x T x H x W. The loss is cross-entropy, the metrics accuracy,
per-class accuracy and the confusion matrix. A prediction is the class with every class's
probability; ``POST /v1/classify-clip`` answers it for an uploaded GIF.

No augmentation is applied in training: a mirror image or a reversed clip changes the class of a
motion (``left`` becomes ``right``, ``zoom_in`` becomes ``zoom_out``).
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..data.moving_items import Clips, MovingItemsConfig, clip_array, load_clips
from ..data.transforms import normalize
from ..errors import ConfigError, DataError
from . import register_task
from .base import Batch, CheckpointPredictor, StepOutput, Task

# name -> (train clips, test clips, canvas side, item source)
CLIP_SETS = {"moving-items-mini": (216, 72, 32, "fashion-mnist-mini"), "moving-items": (2700, 540, 32, "fashion-mnist")}


def clip_folder(name: str, data_dir: str | None = None) -> Path:
    from ..data.datasets import BUNDLED_DIR, data_root

    return BUNDLED_DIR / name if name == "moving-items-mini" else data_root(data_dir) / name


def make_moving_items(name: str = "moving-items", *, data_dir: str | None = None, out: str | None = None,
                      count: int | None = None, test_count: int | None = None, seed: int = 0, force: bool = False,
                      source: str | None = None, layout: str = "npz", progress=None, **settings) -> Path:
    """Write the clip set ``name`` (``moving-items`` or ``moving-items-mini``) into ``out`` (default its folder)."""
    from ..data.moving_items import write_moving_items

    if name not in CLIP_SETS:
        raise DataError(f"unknown clip set '{name}' (known: {', '.join(CLIP_SETS)})")
    train, test, size, own_source = CLIP_SETS[name]
    settings.setdefault("size", size)
    counts = {"train": train if count is None else count, "test": test if test_count is None else test_count}
    if min(counts.values()) < 1:
        raise DataError(f"clip counts must be positive, got {counts}")
    folder = Path(out) if out else clip_folder(name, data_dir)
    return write_moving_items(folder, counts=counts, seed=seed, config=MovingItemsConfig(**settings),
                              source=source or own_source, data_dir=data_dir, force=force, layout=layout,
                              progress=progress)


def load_clip_split(name: str, split: str, data_dir: str | None = None) -> Clips:
    """The ``split`` of a named clip set (made on first use) or of a folder; a folder's test split is read
    with its training split's classes, frame count, frame size and statistics."""
    if name in CLIP_SETS:
        folder = clip_folder(name, data_dir)
        if not (folder / "train.npz").is_file():
            import logging

            logging.getLogger("cnnlab.data").warning("drawing the %s set into %s (first use)", name, folder)
            make_moving_items(name, data_dir=data_dir)
        train = load_clips(folder, "train", name=name)
        return train if split == "train" else load_clips(folder, split, name=name, class_names=train.class_names,
                                                         stats=(train.mean, train.std))
    path = Path(name).expanduser()
    if not path.is_dir():
        raise DataError(f"{name}: no such clip set or folder (known sets: {', '.join(CLIP_SETS)})")
    train = load_clips(path, "train")
    if split == "train":
        return train
    c, t, h, w = train.input_size
    return load_clips(path, split, frames=t, size=(h, w), channels=c, class_names=train.class_names,
                      stats=(train.mean, train.std))


def _logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    out = model(x)
    if out.dim() != 2:
        raise ConfigError(f"a clip classifier gives N x classes scores, this model gives {tuple(out.shape)}")
    return out.float()


@torch.no_grad()
def evaluate_clips(model: nn.Module, data: Clips, *, device: torch.device | str = "cpu", batch_size: int = 64,
                   mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> dict[str, Any]:
    """Loss, accuracy, per-class accuracy and the confusion matrix (rows: truth, columns: prediction)."""
    model.eval()
    mean, std = mean or data.mean, std or data.std
    k = len(data.class_names)
    confusion = torch.zeros(k, k, dtype=torch.long)
    loss_sum = 0.0
    for start in range(0, len(data), batch_size):
        x = normalize(data.clips[start:start + batch_size].to(device), mean, std)
        y = data.labels[start:start + batch_size]
        logits = _logits(model, x).cpu()
        loss_sum += float(F.cross_entropy(logits, y, reduction="sum"))
        pred = logits.argmax(1)
        confusion += torch.bincount(y * k + pred, minlength=k * k).view(k, k)
    n = max(1, len(data))
    per_class = {name: (float(confusion[i, i] / confusion[i].sum()) if confusion[i].sum() else None)
                 for i, name in enumerate(data.class_names)}
    return {"clips": len(data), "loss": loss_sum / n, "acc": float(confusion.diag().sum()) / n,
            "chance": 1.0 / k, "per_class": per_class, "confusion": confusion.tolist()}


@register_task
class VideoTask(Task):
    """Clip classification with cross-entropy."""

    name = "video"
    description = "video classification: the class of a clip (C3D, R(2+1)D, LRCN; a single-frame baseline)"
    shown = ("acc",)
    primary = "acc"
    higher_is_better = True
    endpoint = ""  # POST /v1/classify-clip takes a clip, not an image: added by add_routes
    class_dim = 1  # N x K
    default_data = "moving-items-mini"
    # Adam, small batches: a few hundred clips give few steps per epoch
    defaults = {"optimizer": "adam", "lr": 1e-3, "weight_decay": 0.0, "batch_size": 16, "eval_batch_size": 64}

    # --- data
    def load_split(self, name: str, split: str, data_dir: str | None = None) -> Clips:
        return load_clip_split(name, split, data_dir)

    def check_data(self, train_set: Clips, test_set: Clips) -> None:
        if len(train_set.class_names) < 2:
            raise DataError(f"{train_set.name}: a classifier needs at least two classes, got {train_set.class_names}")
        if test_set.input_size != train_set.input_size:
            raise DataError(f"{test_set.name}: test clips are {test_set.input_size}, training clips {train_set.input_size}")

    def for_checkpoint(self, dataset: Clips, checkpoint, name: str) -> Clips:
        if list(dataset.class_names) != list(checkpoint.class_names):
            raise DataError(f"{name}: its classes {dataset.class_names} are not the model's {checkpoint.class_names}")
        if tuple(dataset.input_size) != tuple(checkpoint.input_size):
            raise DataError(f"{name}: its clips are {dataset.input_size}, the model takes {tuple(checkpoint.input_size)}")
        return dataset

    # --- batches
    def make_batch(self, dataset: Clips, indices: torch.Tensor, *, train: bool,
                   generator: torch.Generator | None = None) -> Batch:
        return Batch(dataset.clips[indices], dataset.labels[indices], {"mean": dataset.mean, "std": dataset.std})

    def prepare(self, batch: Batch, device: torch.device, *, channels_last: bool = False) -> Batch:
        x = normalize(batch.inputs.to(device, non_blocking=True), batch.extra["mean"], batch.extra["std"])
        if channels_last:  # N x T x H x W x C in memory, the 3D counterpart of channels_last
            x = x.contiguous(memory_format=torch.channels_last_3d)
        return Batch(x, batch.targets.to(device), batch.extra)

    # --- training
    def training_step(self, forward, model: nn.Module, batch: Batch, phase: str) -> StepOutput:
        logits = forward(batch.inputs)
        loss = F.cross_entropy(logits.float(), batch.targets, label_smoothing=self.config.label_smoothing)
        n = len(batch.inputs)
        with torch.no_grad():
            right = (logits.argmax(1) == batch.targets).sum().double()
        return StepOutput(loss, {"loss": loss.detach().double() * n, "acc": right}, n)

    # --- evaluation
    def evaluate(self, model: nn.Module, dataset: Clips, *, device: torch.device | str = "cpu",
                 batch_size: int = 64, precision: str = "fp32", channels_last: bool = False,
                 preprocessing=None, **options: Any) -> dict[str, Any]:
        mean = preprocessing.mean if preprocessing is not None else None
        std = preprocessing.std if preprocessing is not None else None
        return evaluate_clips(model, dataset, device=device, batch_size=min(batch_size, 64), mean=mean, std=std)

    def scalars(self, metrics: dict[str, Any]) -> dict[str, float]:
        return {k: float(metrics[k]) for k in ("loss", "acc") if k in metrics}

    def report(self, metrics: dict[str, Any], checkpoint, *, dataset: str, split: str) -> None:
        from ..console import print_table

        print(f"{checkpoint.arch} on {dataset}/{split} ({metrics['clips']} clips): accuracy {metrics['acc']:.4f} "
              f"(chance {metrics['chance']:.4f}), loss {metrics['loss']:.4f}")
        rows = [[name, "-" if acc is None else f"{acc:.4f}"] for name, acc in metrics["per_class"].items()]
        print_table(rows, ["class", "accuracy"], justify_right=["accuracy"])

    # --- using a trained model
    def predictor(self, checkpoint, *, device: str | torch.device = "cpu") -> "VideoPredictor":
        return VideoPredictor(checkpoint, device=device)

    def read_input(self, checkpoint, path: str, *, invert: bool | None = None):
        from ..train.meta import InputView

        size = tuple(checkpoint.input_size)
        if len(size) != 4:
            raise ConfigError(f"{checkpoint.arch}'s checkpoint records an input of {size}, not a clip C x T x H x W")
        c, t, h, w = size
        clip = torch.from_numpy(clip_array(path, t, h, w, c))  # C x T x H x W uint8
        return InputView(255 - clip if invert else clip, bool(invert), [])

    def output_description(self, shape: Sequence[int]) -> str:
        return f"logits N x {' x '.join(map(str, shape[1:]))} per clip, in class_names order"

    def print_predictions(self, paths: Sequence[str], predictions, *, out_dir: Path | None = None,
                          images: Sequence[Any] = ()) -> list[str]:
        written = []
        for path, pred in zip(paths, predictions):
            print(f"{path}  {pred['label']}  ({pred['score']:.3f})")
            ranked = sorted(pred["probabilities"].items(), key=lambda kv: -kv[1])
            print("  " + "  ".join(f"{name} {p:.3f}" for name, p in ranked))
        if out_dir is not None and len(images):
            from ..viz.clips import clip_strip

            out_dir.mkdir(parents=True, exist_ok=True)
            for path, pred, clip in zip(paths, predictions, images):
                file = out_dir / f"{Path(path).stem or 'clip'}-prediction.png"
                clip_strip([clip], [pred["probabilities"]], [None], file)
                written.append(str(file))
                print(f"  drawn: {file}")
        return written

    # --- the service: POST /v1/classify-clip
    def request_options(self, fields: dict[str, str], served) -> dict[str, Any]:
        from ..serve.images import parse_int

        return {"top_k": parse_int(fields.get("top_k"), "top_k", 1, len(served.class_names), 3)}

    def response(self, served, prediction: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
        top = sorted(prediction["probabilities"].items(), key=lambda kv: -kv[1])[:options.get("top_k", 3)]
        return {"result": {**prediction, "top": [{"label": k, "score": v} for k, v in top]}}

    def add_routes(self, app, service) -> None:
        from ..serve.clips import add_clip_routes

        add_clip_routes(app, service, self)

    # --- pictures
    pictures_kinds = ("predictions",)

    def pictures(self, checkpoint, dataset: Clips, out_dir: Path, *, kind: str, limit: int) -> list[dict[str, Any]]:
        from ..viz.clips import clip_strip

        data = dataset.subset(slice(0, min(limit or 6, 12)))
        preds = VideoPredictor(checkpoint).predict_batch(data.clips)
        where = Path(checkpoint.path)
        name = (where.parent.name if where.name in ("last", "best") else where.name) or checkpoint.arch
        truth = [data.class_names[int(i)] for i in data.labels]
        path = clip_strip(list(data.clips), [p["probabilities"] for p in preds], truth, out_dir / f"clips-{name}.png")
        return [{"kind": kind, "path": str(path), "clips": len(data), "predicted": [p["label"] for p in preds],
                 "truth": truth}]


class VideoPredictor(CheckpointPredictor):
    """``predict_batch(uint8 N x C x T x H x W)`` -> per clip: ``label``, its ``score`` and ``index``, and
    ``probabilities`` (every class, in class order)."""

    def __init__(self, checkpoint, *, device: str | torch.device = "cpu"):
        super().__init__(checkpoint, device=device)

    @torch.no_grad()
    def predict_batch(self, clips: torch.Tensor, *_: Any, **__: Any) -> list[dict[str, Any]]:
        if clips.dim() != 5 or tuple(clips.shape[1:]) != self.input_size:
            raise DataError(f"the model takes clips N x {' x '.join(map(str, self.input_size))}, got {tuple(clips.shape)}")
        x = self.checkpoint.preprocessing.normalize(clips.to(self.device))
        probs = _logits(self.model, x).softmax(1).cpu()
        out = []
        for row in probs:
            index = int(row.argmax())
            out.append({"label": self.class_names[index], "index": index, "score": round(float(row[index]), 4),
                        "probabilities": {n: round(float(p), 4) for n, p in zip(self.class_names, row)}})
        return out


def clip_from_upload(data: bytes, size: Sequence[int]) -> torch.Tensor:
    """An uploaded GIF (or other multi-frame image) as a C x T x H x W uint8 clip, or a one-line DataError."""
    from PIL import Image

    from ..data.moving_items import frames_to_clip, image_frames

    c, t, h, w = size
    try:
        with Image.open(io.BytesIO(data)) as img:
            frames = image_frames(img)
    except Image.DecompressionBombError as err:
        raise DataError(f"the uploaded clip is too large: {err}") from None
    except (OSError, ValueError, EOFError):
        raise DataError("the uploaded clip is not an image Pillow can open: send an animated GIF") from None
    return torch.from_numpy(frames_to_clip(frames, t, h, w, c, "the uploaded clip"))
