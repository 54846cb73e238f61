"""Object detection and instance segmentation (deck 002: R-CNN -> Fast -> Faster R-CNN, SSD, Mask R-CNN).

Data are the multi-object sets (:func:`cnnlab.data.load_object_dataset`: the scene sets, COCO and VOC
folders), held as one N x C x H x W uint8 tensor and one :class:`~cnnlab.data.objects.Objects` per
image (boxes, 0-based labels, masks, crowd / difficult flags); images of mixed sizes are letterboxed to
:data:`MIXED_SIZE`. A training batch mirrors half its images with their boxes and masks (where a mirror
image is still valid). The loss is the model's own sum (Faster R-CNN: RPN objectness + RPN boxes +
classification + boxes, and masks for Mask R-CNN). Evaluation gives VOC's mAP@0.5 and COCO's AP family
for boxes (and masks) from :mod:`cnnlab.detection.evaluate`, and seconds per image. A prediction is a
list of objects, answered like the deck's recognition API: ``{keyword, score, location: {left, top,
width, height}}``, masks as COCO RLE.
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch import nn

from ..data.objects import Objects
from ..data.transforms import normalize
from ..errors import ConfigError, DataError
from . import register_task
from .base import Batch, CheckpointPredictor, StepOutput, Task

MIXED_SIZE = 256  # side that images of mixed sizes (COCO / VOC folders) are letterboxed to
THRESHOLD = 0.5  # default score a prediction shows from


@dataclass
class DetectionData:
    """A split as tensors: ``images`` N x C x H x W uint8 and one :class:`Objects` per image (``areas``:
    the annotations' areas, what COCO's size ranges read)."""

    name: str
    split: str
    images: torch.Tensor
    targets: list[Objects]
    areas: list[torch.Tensor]
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    hflip: bool = True
    image_ids: list[int] = dataclasses.field(default_factory=list)  # the COCO ids of the images
    letterboxed: bool = False  # images of mixed sizes brought to MIXED_SIZE: boxes are not in file pixels
    category_ids: list[int] = dataclasses.field(default_factory=list)  # the file's id of class k

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def input_size(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.images.shape[1:])

    @property
    def has_masks(self) -> bool:
        return bool(self.targets) and all(t.masks is not None for t in self.targets)

    def subset(self, index, split: str | None = None) -> "DetectionData":
        idx = torch.arange(len(self))[index].tolist() if not isinstance(index, list) else index
        if isinstance(idx, int):
            idx = [idx]
        return dataclasses.replace(self, images=self.images[idx], targets=[self.targets[i] for i in idx],
                                   areas=[self.areas[i] for i in idx], split=split or self.split,
                                   image_ids=[self.image_ids[i] for i in idx] if self.image_ids else [])

    def random_split(self, fraction: float, seed: int) -> tuple["DetectionData", "DetectionData"]:
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed)).tolist()
        cut = int(round(len(self) * fraction))
        return self.subset(order[cut:]), self.subset(order[:cut], "val")


def load_detection(name: str, split: str, data_dir: str | None = None) -> DetectionData:
    """A detection set's ``split`` in memory (boxes, labels, masks where the data have them)."""
    from ..data import load_object_dataset
    from ..data.object_datasets import is_object_dataset

    if not is_object_dataset(str(name)):
        raise DataError(f"'{name}' is not a detection dataset: give a scene set (fashion-scenes-mini, "
                        "fashion-scenes, mnist-scenes), a COCO .json or a COCO / VOC folder")
    ds = load_object_dataset(name, split, data_dir)
    n = len(ds)
    if n == 0:
        raise DataError(f"{ds.name}/{split}: no images")
    if ds.input_size is not None:
        images = torch.stack([ds.image(i) for i in range(n)])
        targets = [ds.target(i) for i in range(n)]
        areas = [ds.table.areas[ds.table.rows(i)].double() for i in range(n)]
    else:  # mixed sizes: letterbox every image with its targets
        batch = ds.batch(range(n), size=(MIXED_SIZE, MIXED_SIZE), mode="letterbox")
        images, targets = batch.images, batch.targets
        areas = [(t.masks.flatten(1).sum(1).double() if t.masks is not None else t.box_areas().double())
                 for t in targets]
    return DetectionData(str(name), split, images, targets, areas, list(ds.class_names), tuple(ds.mean),
                         tuple(ds.std), bool(ds.hflip), [int(ds.image_info(i).id) for i in range(n)],
                         ds.input_size is None, list(ds.category_ids))


def coco_detections(dataset: DetectionData, detections: Sequence[dict[str, torch.Tensor]]) -> list[dict[str, Any]]:
    """Detections of every image of ``dataset`` as a COCO results list (``image_id``, ``category_id``,
    ``bbox`` [x, y, w, h] in the file's pixels, ``score``): what COCOeval and ``cnnlab eval --boxes`` read."""
    if dataset.letterboxed:
        raise DataError(f"{dataset.name}: its images have mixed sizes and are letterboxed to {MIXED_SIZE} pixels, so "
                        "the boxes are not in the file's pixels; write results for a set of one image size")
    if len(dataset.image_ids) != len(detections):
        raise DataError(f"{dataset.name}: {len(detections)} detection lists for {len(dataset.image_ids)} images")
    out = []
    for image_id, d in zip(dataset.image_ids, detections):
        for (x1, y1, x2, y2), score, label in zip(d["boxes"].tolist(), d["scores"].tolist(), d["labels"].tolist()):
            category = dataset.category_ids[int(label)] if dataset.category_ids else int(label) + 1
            out.append({"image_id": int(image_id), "category_id": int(category),
                        "bbox": [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                        "score": round(float(score), 5)})
    return out


def flip_objects(t: Objects, width: int) -> Objects:
    """A target mirrored left-right: ``x' = W - x`` for both box edges, masks flipped."""
    boxes = torch.stack([width - t.boxes[:, 2], t.boxes[:, 1], width - t.boxes[:, 0], t.boxes[:, 3]], 1)
    return dataclasses.replace(t, boxes=boxes, masks=None if t.masks is None else t.masks.flip(-1))


@dataclass
class Detection:
    """One image's detections (in the model input's pixels): boxes x1 y1 x2 y2, scores, 0-based labels,
    masks (D x H x W bool or None), and the RPN's proposals for pictures."""

    boxes: torch.Tensor
    scores: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    size: tuple[int, int]
    masks: torch.Tensor | None = None
    proposals: torch.Tensor | None = None

    def above(self, threshold: float) -> "Detection":
        keep = self.scores >= threshold
        return dataclasses.replace(self, boxes=self.boxes[keep], scores=self.scores[keep], labels=self.labels[keep],
                                   masks=None if self.masks is None else self.masks[keep])


def run_detector(model: nn.Module, x: torch.Tensor) -> list[dict[str, torch.Tensor]]:
    """The model's detections for a normalised batch (evaluation mode, no gradients)."""
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            return model(x)
    finally:
        model.train(was)


def describe_detection(d: Detection, *, masks: bool = False) -> dict[str, Any]:
    """The deck's recognition-API fields per object: keyword, score, location (left, top, width, height)."""
    from ..data import rle

    objects = []
    for j in range(len(d.boxes)):
        x1, y1, x2, y2 = (float(v) for v in d.boxes[j])
        item = {"keyword": d.class_names[int(d.labels[j])], "score": round(float(d.scores[j]), 4),
                "location": {"left": round(x1, 1), "top": round(y1, 1), "width": round(x2 - x1, 1),
                             "height": round(y2 - y1, 1)}}
        if masks and d.masks is not None:
            item["mask"] = rle.encode(d.masks[j].cpu().numpy())
        objects.append(item)
    return {"size": list(d.size), "objects": objects}


def colour(k: int) -> tuple[int, int, int]:
    from .segment import palette

    return tuple(int(v) for v in palette()[k + 1])


def draw_detection(image: torch.Tensor, d: Detection, *, scale: int = 3, truth: Objects | None = None):
    """A Pillow RGB picture: the image enlarged, masks tinted, boxes with ``label score`` (ground truth dashed-white)."""
    from PIL import Image, ImageDraw

    base = image.expand(3, -1, -1) if image.shape[0] == 1 else image[:3]
    rgb = base.permute(1, 2, 0).cpu().numpy().astype(np.float32)
    if d.masks is not None:
        for j in range(len(d.masks)):
            m = d.masks[j].cpu().numpy()
            rgb[m] = 0.5 * rgb[m] + 0.5 * np.asarray(colour(int(d.labels[j])), np.float32)
    picture = Image.fromarray(rgb.clip(0, 255).astype(np.uint8))
    picture = picture.resize((picture.width * scale, picture.height * scale), Image.NEAREST)
    draw = ImageDraw.Draw(picture)
    if truth is not None:
        for b in truth.boxes.tolist():
            draw.rectangle([v * scale for v in b], outline=(255, 255, 255), width=1)
    for j in range(len(d.boxes)):
        x1, y1, x2, y2 = (float(v) * scale for v in d.boxes[j])
        c = colour(int(d.labels[j]))
        draw.rectangle([x1, y1, x2, y2], outline=c, width=2)
        draw.text((x1 + 2, max(0.0, y1 - 11)), f"{d.class_names[int(d.labels[j])]} {float(d.scores[j]):.2f}", fill=c)
    return picture


@register_task
class DetectionTask(Task):
    """Find the objects: a box, class and score each (and a mask for instance segmentation)."""

    name = "detect"
    description = "object detection and instance segmentation: boxes, classes, scores (and masks)"
    shown = ("map", "map50_voc")
    primary = "map"
    higher_is_better = True
    endpoint = "detect"
    default_data = "fashion-scenes-mini"

    def __init__(self, config=None):
        super().__init__(config)
        wrong = [a for a in self.config.augmentations() if a != "flip"]
        if wrong:
            raise ConfigError(f"the detect task augments with flip only, not {', '.join(wrong)}")

    # --- data
    def load_split(self, name: str, split: str, data_dir: str | None = None) -> DetectionData:
        return load_detection(name, split, data_dir)

    def check_data(self, train_set: DetectionData, test_set: DetectionData) -> None:
        if list(test_set.class_names) != list(train_set.class_names):
            raise DataError(f"{test_set.name}: the test classes {test_set.class_names} differ from the training "
                            f"classes {train_set.class_names}")
        if test_set.input_size != train_set.input_size:
            raise DataError(f"{test_set.name}: test images are {test_set.input_size}, training images "
                            f"{train_set.input_size}")

    def model_options(self) -> dict[str, Any]:
        from ..train.config import TrainConfig

        # --backbone chooses the zoo network under the detector (the configuration's default belongs to
        # metric learning; each detector registers its own default backbone)
        backbone = getattr(self.config, "backbone", TrainConfig.backbone)
        return {"backbone": backbone} if backbone and backbone != TrainConfig.backbone else {}

    def for_checkpoint(self, dataset: DetectionData, checkpoint, name: str) -> DetectionData:
        if list(dataset.class_names) != list(checkpoint.class_names):
            raise DataError(f"{name} does not have the model's classes: {dataset.class_names} there, "
                            f"{checkpoint.class_names} in the model")
        return dataset

    # --- batches
    def make_batch(self, dataset: DetectionData, indices: torch.Tensor, *, train: bool,
                   generator: torch.Generator | None = None) -> Batch:
        idx = [int(i) for i in indices]
        images = dataset.images[idx]
        targets = [dataset.targets[i] for i in idx]
        if train and "flip" in self.config.augmentations() and dataset.hflip:
            flip = (torch.rand(len(idx), generator=generator) < 0.5).tolist()
            w = images.shape[-1]
            images = torch.stack([im.flip(-1) if f else im for im, f in zip(images, flip)])
            targets = [flip_objects(t, w) if f else t for t, f in zip(targets, flip)]
        return Batch(images, targets, {"mean": dataset.mean, "std": dataset.std})

    def prepare(self, batch: Batch, device: torch.device, *, channels_last: bool = False) -> Batch:
        x = normalize(batch.inputs.to(device, non_blocking=True), batch.extra["mean"], batch.extra["std"])
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return Batch(x, [t.to(device) for t in batch.targets], batch.extra)

    # --- training
    def training_step(self, forward, model: nn.Module, batch: Batch, phase: str) -> StepOutput:
        losses = forward(batch.inputs, batch.targets)
        loss = sum(losses.values())
        n = len(batch.inputs)
        sums = {"loss": loss.detach().double() * n, **{k: v.detach().double() * n for k, v in losses.items()}}
        return StepOutput(loss, sums, n)

    # --- evaluation
    def evaluate(self, model: nn.Module, dataset: DetectionData, *, device: torch.device | str = "cpu",
                 batch_size: int = 256, precision: str = "fp32", channels_last: bool = False,
                 preprocessing=None, per_image: bool = False, **options: Any) -> dict[str, Any]:
        from ..detection.evaluate import DetectionEvaluator, summary

        mean = preprocessing.mean if preprocessing is not None else dataset.mean
        std = preprocessing.std if preprocessing is not None else dataset.std
        evaluator = DetectionEvaluator(len(dataset.class_names))
        batch_size = max(1, min(batch_size, 16))
        seconds, images = 0.0, []
        model = model.to(device)
        for start in range(0, len(dataset), batch_size):
            x = normalize(dataset.images[start:start + batch_size].to(device), mean, std)
            began = time.perf_counter()
            outputs = run_detector(model, x)
            seconds += time.perf_counter() - began
            for j, d in enumerate(outputs):
                i = start + j
                t = dataset.targets[i]
                masks = dataset.has_masks and "masks" in d
                evaluator.add(t.boxes, t.labels, d["boxes"], d["scores"], d["labels"], gt_crowd=t.iscrowd,
                              gt_areas=dataset.areas[i], gt_masks=t.masks if masks else None,
                              dt_masks=d["masks"] if masks else None)
                if per_image:
                    images.append({k: v.cpu() for k, v in d.items()})
        n = len(dataset)
        out = {**summary(evaluator), "images": n, "seconds_per_image": seconds / max(1, n)}
        if per_image:
            out["detections"] = images
        return out

    results_options = {"per_image": True}

    def deploy_form(self, checkpoint):
        raise ConfigError(f"{checkpoint.arch} is a detector: it answers a variable number of boxes per image "
                          "(region proposals, per-class non-maximum suppression), which export and bench infer "
                          "do not ship as one tensor; serve it with cnnlab serve, time it with cnnlab bench detect")

    def write_results(self, metrics: dict[str, Any], dataset: DetectionData, path: Path) -> int:
        import json

        from ..io import atomic_write_text

        results = coco_detections(dataset, metrics.pop("detections"))
        atomic_write_text(Path(path), json.dumps(results, separators=(",", ":")))
        return len(results)

    def scalars(self, metrics: dict[str, Any]) -> dict[str, float]:
        names = ["map", "map50_voc", "ap50", "ap75", "ap_small", "ap_medium", "ap_large", "ar100"]
        if "mask_map" in metrics:
            names += ["mask_map", "mask_ap50"]
        return {k: float(metrics[k]) for k in names + ["seconds_per_image"]}

    def checkpoint_metrics(self, metrics: dict[str, Any]) -> dict[str, Any]:
        return {**{f"test_{k}": v for k, v in self.scalars(metrics).items()},
                "per_class_ap": metrics["per_class_ap"], "per_class_ap50": metrics["per_class_ap50"]}

    def report(self, metrics: dict[str, Any], checkpoint, *, dataset: str, split: str) -> None:
        from ..console import print_table

        def f(v):
            return "-" if v is None or v < 0 else f"{v:.4f}"

        print(f"{checkpoint.arch} on {dataset}/{split} ({metrics['images']} images, "
              f"{metrics['seconds_per_image'] * 1000:.1f} ms per image): VOC mAP@0.5 {metrics['map50_voc']:.4f}  "
              f"COCO mAP {metrics['map']:.4f}  AP50 {metrics['ap50']:.4f}  AP75 {metrics['ap75']:.4f}  "
              f"AP S/M/L {f(metrics['ap_small'])}/{f(metrics['ap_medium'])}/{f(metrics['ap_large'])}  "
              f"AR100 {metrics['ar100']:.4f}")
        if "mask_map" in metrics:
            print(f"masks: COCO mAP {metrics['mask_map']:.4f}  AP50 {metrics['mask_ap50']:.4f}  "
                  f"AP75 {metrics['mask_ap75']:.4f}")
        rows = [(name, f(a50), f(a)) for name, a50, a in zip(checkpoint.class_names, metrics["per_class_ap50"],
                                                             metrics["per_class_ap"])]
        print_table(rows, ["class", "AP@0.5 (VOC)", "AP@[.5:.95]"], title="per class",
                    justify_right=["AP@0.5 (VOC)", "AP@[.5:.95]"])

    # --- using a trained model
    def predictor(self, checkpoint, *, device: str | torch.device = "cpu"):
        return DetectionPredictor(checkpoint, device=device)

    def describe(self, prediction: Detection) -> dict[str, Any]:
        return describe_detection(prediction.above(THRESHOLD))

    def print_predictions(self, paths: Sequence[str], predictions, *, out_dir: Path | None = None,
                          images: Sequence[Any] = ()) -> list[str]:
        written: list[str] = []
        stems: dict[str, int] = {}
        for i, (path, pred) in enumerate(zip(paths, predictions)):
            shown = pred.above(THRESHOLD)
            print(f"{path}: {len(shown.boxes)} objects")
            for obj in describe_detection(shown)["objects"]:
                loc = obj["location"]
                print(f"  {obj['score']:.3f}  {obj['keyword']:<12} left {loc['left']:.0f} top {loc['top']:.0f} "
                      f"width {loc['width']:.0f} height {loc['height']:.0f}")
            if out_dir is not None and i < len(images):
                out_dir.mkdir(parents=True, exist_ok=True)
                stem = Path(path).stem
                stems[stem] = stems.get(stem, 0) + 1
                if stems[stem] > 1:
                    stem = f"{stem}-{stems[stem]}"
                file = out_dir / f"{stem}-detections.png"
                draw_detection(images[i], shown).save(file)
                written.append(str(file))
                print(f"  wrote {file}")
        return written

    # --- the service
    def request_options(self, fields: dict[str, str], served) -> dict[str, Any]:
        from ..serve.errors import bad_request

        raw = fields.get("threshold") or str(THRESHOLD)
        try:
            threshold = float(raw)
        except ValueError:
            raise bad_request(f"threshold must be a number in [0, 1], not '{raw}'") from None
        if not 0 <= threshold <= 1:
            raise bad_request(f"threshold must be in [0, 1], not {threshold}")
        return {"threshold": threshold}

    def response(self, served, prediction: Detection, options: dict[str, Any]) -> dict[str, Any]:
        shown = prediction.above(options.get("threshold", THRESHOLD))
        result = describe_detection(shown, masks=True)
        result["classes"] = list(prediction.class_names)
        return {"result": result}

    # --- pictures
    pictures_kinds = ("predictions", "proposals", "anchors", "objectness")

    def pictures(self, checkpoint, dataset: DetectionData, out_dir: Path, *, kind: str, limit: int) -> list[dict[str, Any]]:
        from ..viz import style

        data = self.for_checkpoint(dataset, checkpoint, dataset.name)
        data = data.subset(slice(0, min(limit or 6, 6)))
        model = checkpoint.model.eval()
        x = checkpoint.preprocessing.normalize(data.images)
        plt = style.pyplot()
        fig = style.figure(3.0 * len(data), 3.4)
        axes = fig.subplots(1, len(data), squeeze=False)[0]
        if kind in ("predictions", "proposals"):
            outputs = run_detector(model, x)
            if kind == "proposals" and outputs and "proposals" not in outputs[0]:
                raise ConfigError(f"{checkpoint.arch} is a single-shot detector: it has no region proposals to draw "
                                  "(kinds for it: predictions)")
            for ax, i, d in zip(axes, range(len(data)), outputs):
                det = Detection(d["boxes"], d["scores"], d["labels"], data.class_names, data.input_size[1:],
                                d.get("masks"))
                if kind == "proposals":
                    props = d["proposals"][:30]
                    det = Detection(props, torch.ones(len(props)), torch.zeros(len(props), dtype=torch.long),
                                    ["proposal"] * 1, data.input_size[1:])
                    ax.imshow(np.asarray(draw_detection(data.images[i], det, scale=2)))
                    ax.set_title(f"top {len(props)} of {len(d['proposals'])} proposals")
                else:
                    ax.imshow(np.asarray(draw_detection(data.images[i], det.above(THRESHOLD), scale=2,
                                                        truth=data.targets[i])))
                    ax.set_title(f"image {i}: {int((det.scores >= THRESHOLD).sum())} found, {len(data.targets[i])} true")
                style.bare(ax)
        elif kind in ("anchors", "objectness"):
            if getattr(model, "rpn", None) is None:
                raise ConfigError(f"{checkpoint.arch} has no region proposal network: no anchors or objectness to draw")
            with torch.no_grad():
                feats = model.features(x)
                _, _, raw = model.rpn(feats, tuple(data.input_size[1:]))
            anchors, objectness = raw["anchors"], raw["objectness"]  # (H W A) x 4, N x H x W x A
            fh, fw, a = objectness.shape[1:]
            for ax, i in zip(axes, range(len(data))):
                if kind == "anchors":  # every anchor of the cell nearest each object's centre
                    centres = (data.targets[i].boxes[:, :2] + data.targets[i].boxes[:, 2:]) / 2
                    cells = ((centres[:, 1] // model.stride).clamp(max=fh - 1) * fw
                             + (centres[:, 0] // model.stride).clamp(max=fw - 1)).long()
                    chosen = torch.cat([anchors[c * a:(c + 1) * a] for c in cells.tolist()]) if len(cells) else anchors[:0]
                    det = Detection(chosen, torch.ones(len(chosen)), torch.zeros(len(chosen), dtype=torch.long),
                                    ["anchor"], data.input_size[1:])
                    ax.imshow(np.asarray(draw_detection(data.images[i], det, scale=2, truth=data.targets[i])))
                    ax.set_title(f"{a} anchors at each object's cell")
                else:
                    ax.imshow(style.chw_to_display(data.images[i].numpy()), cmap="gray")
                    score = objectness[i].sigmoid().amax(-1).numpy()  # H x W: the cell's best anchor
                    h, w = data.input_size[1:]
                    ax.imshow(score, cmap="magma", alpha=0.55, extent=(0, w, h, 0), vmin=0, vmax=1)
                    ax.set_title("RPN objectness (best anchor per cell)")
                style.bare(ax)
        else:
            raise ConfigError(f"the detect task draws {', '.join(self.pictures_kinds)}, not '{kind}'")
        fig.suptitle(f"{checkpoint.arch}: {kind}")
        path = style.save(fig, out_dir / f"{kind}-{Path(checkpoint.path).name or checkpoint.arch}.png")
        plt.close("all")
        return [{"kind": kind, "path": str(path), "indices": list(range(len(data)))}]


class DetectionPredictor(CheckpointPredictor):
    """``predict_batch(uint8 N x C x H x W)`` -> one :class:`Detection` per image (every detection above the
    model's own score floor; :attr:`Detection.above` filters)."""

    def __init__(self, checkpoint, *, device: str | torch.device = "cpu"):
        super().__init__(checkpoint, device=device)

    @torch.no_grad()
    def predict_batch(self, images: torch.Tensor, top_k: int | None = None, **options: Any) -> list[Detection]:
        x = self.checkpoint.preprocessing.normalize(images.to(self.device))
        size = (int(images.shape[-2]), int(images.shape[-1]))
        return [Detection(d["boxes"].cpu(), d["scores"].cpu(), d["labels"].cpu(), self.class_names, size,
                          d["masks"].cpu() if "masks" in d else None,
                          d["proposals"].cpu() if "proposals" in d else None)  # a single-shot detector has none
                for d in run_detector(self.model, x)]
