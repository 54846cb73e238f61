"""Metric learning: an embedding where distance means similarity, judged on classes never trained on.

The protocol of the metric-learning literature (Musgrave et al. 2020, Sec. 3): the training split
holds only the *seen* classes (``--seen-classes``, default 0-4), the test split only the others (5-9),
so every figure is about unseen classes. The loss is one of :mod:`cnnlab.metric.losses` on P x K
batches (:mod:`cnnlab.metric.sampler`); the metrics are retrieval (precision@1, R-precision, MAP@R,
Recall@K), verification (ROC AUC, EER, TAR at FAR 1e-3) and identification (gallery / probe top-1,
top-5), :mod:`cnnlab.metric.metrics`. A prediction is an image's embedding and, where an index is
at hand, its nearest indexed images.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..data import ImageDataset, load_dataset
from ..data.transforms import normalize
from ..errors import ConfigError, DataError
from ..metric.losses import CLASSIFYING, LOSSES, metric_loss
from ..metric.metrics import identification_metrics, pair_scores, retrieval_metrics, verification_metrics
from ..metric.sampler import pk_order
from . import register_task
from .base import Batch, StepOutput, Task


def parse_classes(text: str, count: int) -> list[int]:
    """``"0-4"`` or ``"0,2,4"`` -> sorted class indices, each below ``count``."""
    chosen: set[int] = set()
    try:
        for part in (p.strip() for p in str(text).split(",") if p.strip()):
            if "-" in part:
                a, b = (int(v) for v in part.split("-", 1))
                chosen.update(range(a, b + 1))
            else:
                chosen.add(int(part))
    except ValueError:
        raise ConfigError(f"seen_classes: '{text}' is not a list of classes like 0-4 or 0,2,4") from None
    if not chosen or min(chosen) < 0 or max(chosen) >= count:
        raise ConfigError(f"seen_classes: '{text}' must name classes among 0-{count - 1}")
    if len(chosen) >= count:
        raise ConfigError(f"seen_classes: '{text}' leaves no class unseen to evaluate on")
    return sorted(chosen)


def class_split(data: ImageDataset, keep: Sequence[int]) -> ImageDataset:
    """The examples of classes ``keep``, relabelled 0..len(keep)-1 in that order."""
    keep = list(keep)
    lookup = torch.full((data.num_classes,), -1, dtype=torch.long)
    lookup[torch.tensor(keep)] = torch.arange(len(keep))
    rows = (lookup[data.labels] >= 0).nonzero().flatten()
    part = data.subset(rows)
    return dataclasses.replace(part, labels=lookup[part.labels], class_names=[data.class_names[i] for i in keep])


@torch.no_grad()
def embed(model: nn.Module, images: torch.Tensor, mean: Sequence[float], std: Sequence[float], *,
          device: torch.device | str = "cpu", batch_size: int = 512) -> torch.Tensor:
    """Embeddings (N x D, float32 on the CPU) of uint8 images N x C x H x W."""
    model.eval()
    out = []
    for start in range(0, len(images), batch_size):
        x = normalize(images[start:start + batch_size].to(device), mean, std)
        out.append(model(x).float().cpu())
    return torch.cat(out) if out else torch.zeros(0, 0)


def index_path(checkpoint) -> Path | None:
    """The index a checkpoint searches: ``$CNNLAB_INDEX``, else ``index.safetensors`` in its run folder."""
    chosen = os.environ.get("CNNLAB_INDEX")
    if chosen:
        return Path(chosen)
    own = Path(checkpoint.run_dir or checkpoint.path) / "index.safetensors"
    return own if own.is_file() else None


class EmbeddingPredictor:
    """``predict_batch(uint8 N x C x H x W, top_k)``: per image its embedding and, with an index, the
    ``top_k`` nearest indexed images."""

    def __init__(self, checkpoint, *, device: str | torch.device = "cpu", index=None):
        self.checkpoint = checkpoint
        self.model = checkpoint.model.to(device).eval()
        self.device = torch.device(device)
        self.input_size = checkpoint.input_size
        self.class_names = checkpoint.class_names
        self.mean, self.std = checkpoint.preprocessing.mean, checkpoint.preprocessing.std
        if index is None:
            from ..metric.index import EmbeddingIndex

            path = index_path(checkpoint)
            index = EmbeddingIndex.load(path) if path is not None else None
        self.index = index or None  # False: embed only, look for no index
        dim = getattr(self.model, "embedding_dim", None)
        if self.index is not None and len(self.index) and dim is not None and self.index.dim != dim:
            raise ConfigError(f"the index holds {self.index.dim}-D embeddings, the model gives {dim}-D: "
                              "another model built it (cnnlab index build with this checkpoint makes one)")

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        return embed(self.model, images, self.mean, self.std, device=self.device)

    def predict_batch(self, images: torch.Tensor, top_k: int = 5) -> list[dict[str, Any]]:
        vectors = self.embed(images)
        out = [{"embedding": v} for v in vectors]
        if self.index is not None and len(self.index):
            index, distance = self.index.search(vectors, top_k)
            for item, row, dist in zip(out, index.tolist(), distance.tolist()):
                item["neighbours"] = [{"name": self.index.names[i], "distance": d} for i, d in zip(row, dist)]
        return out


@register_task
class MetricTask(Task):
    """Learn embeddings on the seen classes; retrieve, verify and identify the unseen ones."""

    name = "metric"
    description = "metric learning: embeddings for retrieval, verification and identification of unseen classes"
    shown = ("map_at_r", "precision_at_1")
    primary = "map_at_r"
    higher_is_better = True
    endpoint = "embed"

    def __init__(self, config=None):
        super().__init__(config)
        if self.config.metric_loss not in LOSSES:
            raise ConfigError(f"metric_loss must be one of {', '.join(LOSSES)}, not '{self.config.metric_loss}'")

    # --- data
    def load_split(self, name: str, split: str, data_dir: str | None = None) -> ImageDataset:
        self._data_dir = data_dir
        data = load_dataset(name, split, data_dir, image_size=self.config.image_size or None)
        seen = parse_classes(self.config.seen_classes, data.num_classes)
        unseen = [c for c in range(data.num_classes) if c not in seen]
        return class_split(data, seen if split == "train" else unseen)

    def check_data(self, train_set: ImageDataset, test_set: ImageDataset) -> None:
        shared = set(train_set.class_names) & set(test_set.class_names)
        if shared:
            raise DataError(f"classes {sorted(shared)} are both trained on and evaluated: the protocol needs them apart")
        if tuple(test_set.input_size) != tuple(train_set.input_size):
            raise DataError(f"test images are {test_set.input_size}, training images {train_set.input_size}")
        p = self.config.classes_per_batch or train_set.num_classes
        if p > train_set.num_classes:
            raise ConfigError(f"classes_per_batch {p} is more than the {train_set.num_classes} training classes")
        if self.config.batch_size < 2 * p:
            raise ConfigError(f"batch size {self.config.batch_size} leaves fewer than 2 images of each of the "
                              f"{p} classes of a batch (classes_per_batch)")

    def data_fields(self, train_set: ImageDataset) -> dict[str, Any]:
        fields = super().data_fields(train_set)
        fields["extra"] = {"seen_classes": self.config.seen_classes}
        return fields

    def for_checkpoint(self, dataset: ImageDataset, checkpoint, name: str) -> ImageDataset:
        """The split again, with the classes ``checkpoint`` was trained on kept apart as it recorded them."""
        seen = (checkpoint.meta.extra or {}).get("seen_classes", self.config.seen_classes)
        if seen == self.config.seen_classes:
            return dataset
        data_dir = getattr(self, "_data_dir", None) or self.config.data_dir or None
        other = MetricTask(dataclasses.replace(self.config, seen_classes=seen)).load_split(name, dataset.split, data_dir)
        if len(dataset) < len(self.load_split(name, dataset.split, data_dir)):  # a limited split: as many, from the start
            other = other.subset(slice(0, len(dataset)))
        return other

    def model_options(self) -> dict[str, Any]:
        return {"backbone": self.config.backbone, "embedding_dim": self.config.embedding_dim}

    # --- batches
    def epoch_order(self, dataset: ImageDataset, generator: torch.Generator) -> torch.Tensor:
        p = self.config.classes_per_batch or dataset.num_classes
        return pk_order(dataset.labels, p, self.config.batch_size // p, generator, self.config.batch_size)

    def make_batch(self, dataset: ImageDataset, indices: torch.Tensor, *, train: bool,
                   generator: torch.Generator | None = None) -> Batch:
        images = dataset.images[indices]
        if train and self.config.augmentations():
            from .classify import make_augment

            images = make_augment(self.config, dataset)(images, generator)
        return Batch(images, dataset.labels[indices], {"mean": dataset.mean, "std": dataset.std})

    def prepare(self, batch: Batch, device: torch.device, *, channels_last: bool = False) -> Batch:
        x = normalize(batch.inputs.to(device, non_blocking=True), batch.extra["mean"], batch.extra["std"])
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return Batch(x, batch.targets.to(device, non_blocking=True), batch.extra)

    # --- training
    def training_step(self, forward, model: nn.Module, batch: Batch, phase: str) -> StepOutput:
        embeddings = forward(batch.inputs).float()  # N x D, unit rows
        kind = self.config.metric_loss
        net = getattr(model, "module", model)
        weights = getattr(net, "class_weights", None) if kind in CLASSIFYING else None
        bias = getattr(net, "class_bias", None) if kind == "softmax" else None
        loss = metric_loss(kind, embeddings, batch.targets, margin=self.config.margin, scale=self.config.scale,
                           weights=weights, bias=bias)
        n = len(batch.targets)
        return StepOutput(loss, {"loss": loss.detach().double() * n}, n)

    # --- evaluation
    def evaluate(self, model: nn.Module, dataset: ImageDataset, *, device: torch.device | str = "cpu",
                 batch_size: int = 512, precision: str = "fp32", channels_last: bool = False,
                 preprocessing=None, **options: Any) -> dict[str, Any]:
        mean = preprocessing.mean if preprocessing is not None else dataset.mean
        std = preprocessing.std if preprocessing is not None else dataset.std
        vectors = embed(model, dataset.images, mean, std, device=device, batch_size=batch_size)
        labels = dataset.labels
        # "unseen_classes": the classes evaluated (a verb may report the model's own, trained-on, classes as "classes")
        out: dict[str, Any] = {"images": len(dataset), "classes": list(dataset.class_names),
                               "unseen_classes": list(dataset.class_names)}
        out.update(retrieval_metrics(vectors, labels))
        out.update(verification_metrics(*pair_scores(vectors, labels)))
        ident = identification_metrics(vectors, labels)
        out.update({"ident_top1": ident["top1"], "ident_top5": ident["top5"], "gallery": ident["gallery"]})
        return out

    def scalars(self, metrics: dict[str, Any]) -> dict[str, float]:
        keys = ("map_at_r", "precision_at_1", "r_precision", "recall_at_1", "recall_at_2", "recall_at_4",
                "recall_at_8", "auc", "eer", "tar_at_far", "ident_top1", "ident_top5")
        return {k: float(metrics[k]) for k in keys if k in metrics}

    def checkpoint_metrics(self, metrics: dict[str, Any]) -> dict[str, Any]:
        return {**{f"test_{k}": v for k, v in self.scalars(metrics).items()},
                "eer_threshold": metrics.get("eer_threshold"), "evaluated_classes": metrics.get("unseen_classes")}

    def report(self, metrics: dict[str, Any], checkpoint, *, dataset: str, split: str) -> None:
        print(f"{checkpoint.arch} on {dataset}/{split}, {'seen' if split == 'train' else 'unseen'} classes {', '.join(metrics['unseen_classes'])} "
              f"({metrics['images']} images)")
        print(f"  retrieval       MAP@R {metrics['map_at_r']:.4f}  P@1 {metrics['precision_at_1']:.4f}  "
              f"R-precision {metrics['r_precision']:.4f}  Recall@1/2/4/8 "
              + "/".join(f"{metrics[f'recall_at_{k}']:.3f}" for k in (1, 2, 4, 8)))
        print(f"  verification    AUC {metrics['auc']:.4f}  EER {metrics['eer']:.4f} (cosine >= "
              f"{metrics['eer_threshold']:.3f})  TAR@FAR=1e-3 {metrics['tar_at_far']:.4f}  ({metrics['pairs']} pairs)")
        print(f"  identification  top-1 {metrics['ident_top1']:.4f}  top-5 {metrics['ident_top5']:.4f}  "
              f"(gallery {metrics['gallery']})")

    # --- using a trained model
    def predictor(self, checkpoint, *, device: str | torch.device = "cpu") -> EmbeddingPredictor:
        return EmbeddingPredictor(checkpoint, device=device)

    def describe(self, prediction: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {"embedding": [round(float(v), 6) for v in prediction["embedding"]]}
        if "neighbours" in prediction:
            out["neighbours"] = [{"name": n["name"], "distance": round(n["distance"], 6)} for n in prediction["neighbours"]]
        return out

    def output_description(self, shape: Sequence[int]) -> str:
        return (f"embeddings N x {shape[1]}, each of unit length: cosine similarity (or the distance "
                "sqrt(2 - 2 cos)) says how alike two images are")

    def print_predictions(self, paths: Sequence[str], predictions, *, out_dir: Path | None = None,
                          images: Sequence[Any] = ()) -> list[str]:
        for path, p in zip(paths, predictions):
            v = p["embedding"]
            print(f"{path}: {len(v)}-D embedding [{', '.join(f'{x:.3f}' for x in v[:4])}, ...]")
            for n in p.get("neighbours", []):
                print(f"  {n['distance']:.4f}  {n['name']}")
        return []

    # --- pictures
    pictures_kinds = ("embedding",)

    def pictures(self, checkpoint, dataset: ImageDataset, out_dir: Path, *, kind: str, limit: int) -> list[dict[str, Any]]:
        from ..metric.pictures import plot_embeddings

        dataset = self.for_checkpoint(dataset, checkpoint, checkpoint.meta.dataset)
        data = dataset.subset(slice(0, limit or 2000))
        vectors = embed(checkpoint.model, data.images, checkpoint.mean, checkpoint.std)
        return plot_embeddings(vectors, data.labels, data.class_names, out_dir,
                               title=f"{checkpoint.arch}: unseen classes", stem=Path(checkpoint.run_dir or checkpoint.path).name)

    # --- the service: POST /v1/embed (the task endpoint), /v1/search and /v1/verify
    def response(self, served, prediction: Any, options: dict[str, Any]) -> dict[str, Any]:
        return {"result": self.describe(prediction)}

    def add_routes(self, app, service) -> None:
        from ..metric.service import add_metric_routes

        add_metric_routes(app, service, self)
