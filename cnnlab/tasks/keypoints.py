"""Keypoint detection, top-down: each person's box is cropped and a network predicts one heatmap per keypoint.

Data are COCO person-keypoint files (a user's ``person_keypoints_val2017.json`` works unchanged) or the
stick-figure sets of :mod:`cnnlab.data.figures` (``figures-mini`` bundled, ``figures`` generated on first
use); every person with a labelled keypoint becomes a square crop of the model's input side
(:mod:`cnnlab.keypoints.crops`). Training augments crops by a random scale (0.75-1.25), rotation
(+-30 degrees) and mirror with left/right keypoints swapped (SimpleBaseline §4.1's settings, rotation
reduced from 40), with keypoints moved alike. The loss is the mean squared error between the predicted
and Gaussian target heatmaps over labelled keypoints (SimpleBaseline §2; every stack's output for an
hourglass: intermediate supervision). Metrics are PCK@0.1/0.2 of the box size and COCO's keypoint AP by
OKS (:mod:`cnnlab.keypoints.metrics`), each without and with flip testing (``_flip``).

A prediction is a person crop in, keypoints out: the image given to ``predict`` or ``POST /v1/keypoints``
is taken as one person's box (fitted to the model's input, as every checkpoint's preprocessing does), and
the keypoints are in that fitted image's pixels; ``viz predictions`` draws whole test images from their
ground-truth boxes.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..data.transforms import normalize
from ..errors import ConfigError, DataError
from ..keypoints.crops import PersonCrops, crop_people, read_detection_boxes
from ..keypoints.heatmaps import decode_heatmaps, flip_heatmaps, gaussian_targets
from ..keypoints.metrics import keypoint_ap, pck
from . import register_task
from .base import Batch, CheckpointPredictor, StepOutput, Task

SIGMA = 1.0  # target Gaussian, in heatmap pixels (SimpleBaseline: 2 on 64 x 48 maps; these are 16 x 16)
CROP = 64  # the crop side (input of the zoo's keypoint models)
FIGURE_SETS = {"figures-mini": (160, 40), "figures": (2000, 400)}
DECODE = "dark"


def figure_folder(name: str, data_dir: str | None = None) -> Path:
    from ..data.datasets import BUNDLED_DIR, data_root

    return BUNDLED_DIR / "figures-mini" if name == "figures-mini" else data_root(data_dir) / name


def make_figures(name: str = "figures", *, data_dir: str | None = None, out: str | None = None, count: int | None = None,
                 test_count: int | None = None, seed: int = 0, force: bool = False, progress=None, **settings) -> Path:
    """Draw the figure set ``name`` (``figures`` or ``figures-mini``) into ``out`` (default its folder)."""
    from ..data.figures import FigureConfig, write_figure_set

    if name not in FIGURE_SETS:
        raise DataError(f"unknown figure set '{name}' (known: {', '.join(FIGURE_SETS)})")
    train, test = FIGURE_SETS[name]
    counts = {"train": train if count is None else count, "test": test if test_count is None else test_count}
    if min(counts.values()) < 1:
        raise DataError(f"figure counts must be positive, got {counts}")
    folder = Path(out) if out else figure_folder(name, data_dir)
    return write_figure_set(folder, counts=counts, seed=seed, config=FigureConfig(**settings), force=force,
                            progress=progress)


def keypoint_json(source: str | os.PathLike, split: str) -> Path:
    """The person-keypoints file of ``split`` in a folder (``annotations/person_keypoints_<split>*.json``,
    ``test`` falling back to ``val``), or the file itself."""
    path = Path(source).expanduser()
    if path.is_file():
        return path
    if not path.is_dir():
        raise DataError(f"{source}: no such keypoint set, COCO file or folder (known sets: {', '.join(FIGURE_SETS)})")
    for name in ([split, "val"] if split == "test" else [split]):
        for pattern in (f"annotations/person_keypoints_{name}*.json", f"person_keypoints_{name}*.json"):
            hits = sorted(path.glob(pattern))
            if hits:
                return hits[0]
    from ..data.coco import find_coco_json

    found = find_coco_json(path, split)
    if found is None:
        raise DataError(f"{source}: no annotations/person_keypoints_{split}*.json (or other COCO file) for split {split}")
    return found


def load_keypoint_split(name: str, split: str, data_dir: str | None = None, *, size: int = CROP,
                        boxes: str | None = None, box_score: float = 0.0) -> PersonCrops:
    """The person crops of ``split`` of a figure set or COCO person-keypoints file / folder: of the
    ground-truth boxes, or of the detected ones in ``boxes`` (a COCO detection results file, those
    scoring at least ``box_score``)."""
    from ..data.coco import load_coco

    if name in FIGURE_SETS:
        folder = figure_folder(name, data_dir)
        if not (folder / "annotations").is_dir():
            import logging

            logging.getLogger("cnnlab.data").warning("drawing the %s set into %s (first use)", name, folder)
            make_figures(name, data_dir=data_dir)
        path = folder / "annotations" / f"person_keypoints_{split}.json"
    else:
        path = keypoint_json(name, split)
    dataset = load_coco(path, split, name=name if name in FIGURE_SETS else None)
    detected = read_detection_boxes(boxes, dataset, min_score=box_score) if boxes else None
    return crop_people(dataset, size=size, boxes=detected)


def _affine_batch(images: torch.Tensor, keypoints: torch.Tensor, generator: torch.Generator | None,
                  pairs: Sequence[tuple[int, int]], flip: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Random scale, rotation and mirror of B crops (B x C x S x S uint8) and their keypoints (B x K x 3)."""
    b, _, s, _ = images.shape
    scale = torch.empty(b).uniform_(0.75, 1.25, generator=generator)
    angle = torch.empty(b).uniform_(-30, 30, generator=generator) * math.pi / 180
    mirror = (torch.rand(b, generator=generator) < 0.5) if flip else torch.zeros(b, dtype=torch.bool)
    # output (normalised) -> input (normalised): in = A @ out, A = rotation / scale, x negated when mirrored
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    a = torch.stack([torch.stack([cos, -sin], -1), torch.stack([sin, cos], -1)], -2)  # B x 2 x 2
    a[:, :, 0] *= torch.where(mirror, -1.0, 1.0)[:, None]  # A @ diag(-1, 1): x mirrored first
    theta = torch.cat([a, torch.zeros(b, 2, 1)], 2)
    grid = F.affine_grid(theta, (b, images.shape[1], s, s), align_corners=False)
    out = F.grid_sample(images.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    kp = keypoints.clone()
    u = kp[..., :2] / s * 2 - 1  # B x K x 2 normalised input coordinates
    u = torch.linalg.solve(a[:, None], u[..., None])[..., 0]  # out = A^-1 in
    kp[..., :2] = (u + 1) / 2 * s
    perm = torch.arange(kp.shape[1])
    for p, q in pairs:
        perm[p], perm[q] = q, p
    kp = torch.where(mirror[:, None, None], kp[:, perm], kp)
    kp[kp[..., 2] == 0, :2] = 0
    return out.round().clamp(0, 255).to(torch.uint8), kp


@torch.no_grad()
def predict_heatmaps(model: nn.Module, x: torch.Tensor, *, flip_pairs: Sequence[tuple[int, int]] | None) -> torch.Tensor:
    """The model's heatmaps (the last stack's) of normalised crops ``x``; with ``flip_pairs`` (not None)
    averaged with those of the mirrored crops, turned back (flip testing)."""
    heatmaps = model(x)
    heatmaps = heatmaps[-1] if isinstance(heatmaps, (list, tuple)) else heatmaps
    if flip_pairs is not None:
        mirrored = model(x.flip(-1))
        mirrored = mirrored[-1] if isinstance(mirrored, (list, tuple)) else mirrored
        heatmaps = (heatmaps + flip_heatmaps(mirrored, flip_pairs)) / 2
    return heatmaps.float()


def coco_results(data: PersonCrops, keypoints: torch.Tensor, scores: torch.Tensor) -> list[dict]:
    """COCO keypoint results (file coordinates: continuous - 0.5) of N x K x 2 original-image keypoints."""
    out = []
    for i in range(len(data)):
        flat = []
        for (x, y), s in zip(keypoints[i].tolist(), scores[i].tolist()):
            flat += [round(x - 0.5, 3), round(y - 0.5, 3), 1]
        out.append({"image_id": int(data.image_ids[i]), "category_id": _person_category(data.coco),
                    "keypoints": flat, "score": round(float(scores[i].mean()) * float(data.box_scores[i]), 6)})
    return out


def _person_category(coco: dict) -> int:
    return next((c["id"] for c in coco["categories"] if c.get("keypoints")), coco["categories"][0]["id"])


def oks_sigmas(names: Sequence[str]) -> list[float]:
    """COCO's per-keypoint OKS constants for COCO's keypoints; 0.07 (about their mean) for any other name."""
    from ..data.figures import COCO_SIGMAS, KEYPOINT_NAMES

    table = dict(zip(KEYPOINT_NAMES, COCO_SIGMAS))
    return [table.get(n, 0.07) for n in names]


@torch.no_grad()
def evaluate_keypoints(model: nn.Module, data: PersonCrops, *, device: torch.device | str = "cpu", batch_size: int = 128,
                       mean: Sequence[float] | None = None, std: Sequence[float] | None = None, decode: str = DECODE,
                       flips: Sequence[bool] = (False, True), sigma: float = SIGMA) -> dict[str, Any]:
    """Loss, PCK@0.1/0.2 and COCO keypoint AP of ``model`` on ``data``; figures with flip testing carry ``_flip``.
    Crops of detected boxes (``data.detected``) have no keypoints to compare one by one: AP and AR only,
    the people matched to the ground truth by OKS as COCOeval does."""
    device = torch.device(device)
    model.eval()
    mean, std = mean or data.mean, std or data.std
    results: dict[str, Any] = {"images": int(len(torch.unique(data.image_ids))), "people": len(data)}
    for flip in flips:
        points, scores, loss_sum = [], [], 0.0
        for start in range(0, len(data), batch_size):
            x = normalize(data.images[start:start + batch_size].to(device), mean, std)
            heatmaps = predict_heatmaps(model, x, flip_pairs=data.flip_pairs if flip else None)
            stride = x.shape[-1] / heatmaps.shape[-1]
            if not data.detected:
                targets, weights = gaussian_targets(data.keypoints[start:start + batch_size].to(device),
                                                    heatmaps.shape[-2], heatmaps.shape[-1], stride, sigma)
                loss_sum += float(heatmap_loss(heatmaps, targets, weights)) * len(x)
            xy, s = decode_heatmaps(heatmaps, stride, method=decode, sigma=sigma)
            points.append(xy.cpu())
            scores.append(s.cpu())
        xy = data.to_original(torch.cat(points))
        s = torch.cat(scores)
        truth = data.keypoints.clone()
        truth[..., :2] = data.to_original(truth[..., :2])
        ap = keypoint_ap(data.coco, coco_results(data, xy, s), oks_sigmas(data.keypoint_names))
        suffix = "_flip" if flip else ""
        if not data.detected:
            results.update({f"loss{suffix}": loss_sum / len(data), f"pck10{suffix}": pck(xy, truth, data.boxes, 0.1),
                            f"pck20{suffix}": pck(xy, truth, data.boxes, 0.2)})
        results.update({f"{k}{suffix}": v for k, v in ap.items()})
    if data.detected:
        results["boxes"] = "detected"
    return results


def heatmap_loss(heatmaps: torch.Tensor, targets: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the labelled keypoints' heatmaps (SimpleBaseline's loss)."""
    per_map = (heatmaps.float() - targets).pow(2).mean((2, 3))  # N x K
    return (per_map * weights).sum() / weights.sum().clamp(min=1)


@register_task
class KeypointTask(Task):
    """Top-down keypoint detection on person boxes."""

    name = "keypoints"
    description = "keypoint detection: each person's keypoints (COCO's 17 joints) from a heatmap per keypoint"
    shown = ("pck20", "ap")
    primary = "ap"
    higher_is_better = True
    endpoint = "keypoints"
    default_data = "figures-mini"

    # --- data
    def load_split(self, name: str, split: str, data_dir: str | None = None) -> PersonCrops:
        return load_keypoint_split(name, split, data_dir)

    def load_eval_split(self, name: str, split: str, data_dir: str | None = None, *, boxes: str | None = None,
                        box_score: float = 0.0) -> PersonCrops:
        return load_keypoint_split(name, split, data_dir, boxes=boxes, box_score=box_score)

    def data_fields(self, train_set: PersonCrops) -> dict[str, Any]:
        return {**super().data_fields(train_set),
                "extra": {"skeleton": [list(e) for e in train_set.skeleton],
                          "flip_pairs": [list(p) for p in train_set.flip_pairs], "sigma": SIGMA, "decode": DECODE}}

    def check_data(self, train_set: PersonCrops, test_set: PersonCrops) -> None:
        if train_set.keypoint_names != test_set.keypoint_names:
            raise DataError(f"{test_set.name}: test keypoints {test_set.keypoint_names} differ from the training "
                            f"keypoints {train_set.keypoint_names}")

    def for_checkpoint(self, dataset: PersonCrops, checkpoint, name: str) -> PersonCrops:
        if list(dataset.keypoint_names) != list(checkpoint.class_names):
            raise DataError(f"{name} has keypoints {dataset.keypoint_names}, the model {checkpoint.class_names}")
        return dataset

    # --- batches
    def make_batch(self, dataset: PersonCrops, indices: torch.Tensor, *, train: bool,
                   generator: torch.Generator | None = None) -> Batch:
        images, keypoints = dataset.images[indices], dataset.keypoints[indices]
        if train:
            if "flip" in self.config.augmentations() and not dataset.flip_pairs:
                raise ConfigError(f"{dataset.name}: no left/right keypoint pairs, so a mirror cannot be labelled; "
                                  "drop 'flip'")
            images, keypoints = _affine_batch(images, keypoints, generator, dataset.flip_pairs,
                                              "flip" in self.config.augmentations())
        return Batch(images, keypoints, {"mean": dataset.mean, "std": dataset.std})

    def prepare(self, batch: Batch, device: torch.device, *, channels_last: bool = False) -> Batch:
        x = normalize(batch.inputs.to(device, non_blocking=True), batch.extra["mean"], batch.extra["std"])
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return Batch(x, batch.targets.to(device, non_blocking=True), batch.extra)

    # --- training
    def training_step(self, forward, model: nn.Module, batch: Batch, phase: str) -> StepOutput:
        outputs = forward(batch.inputs)
        stacks = list(outputs) if isinstance(outputs, (list, tuple)) else [outputs]
        h, w = stacks[-1].shape[-2:]
        targets, weights = gaussian_targets(batch.targets, h, w, batch.inputs.shape[-1] / w, SIGMA)
        # intermediate supervision: the same target for every stack's heatmaps (Newell et al. §3.4)
        loss = sum(heatmap_loss(s, targets, weights) for s in stacks)
        n = len(batch.inputs)
        with torch.no_grad():  # training PCK@0.2 of the crop side (the box is 1 / 1.25 of it)
            xy, _ = decode_heatmaps(stacks[-1].detach(), batch.inputs.shape[-1] / w, method="argmax")
            labelled = batch.targets[..., 2] > 0
            near = (xy - batch.targets[..., :2]).norm(dim=-1) <= 0.2 * batch.inputs.shape[-1] / 1.25
            hits = (near & labelled).sum().double() / labelled.sum().clamp(min=1) * n
        return StepOutput(loss, {"loss": loss.detach().double() * n, "pck20": hits}, n)

    # --- evaluation
    def evaluate(self, model: nn.Module, dataset: PersonCrops, *, device: torch.device | str = "cpu",
                 batch_size: int = 128, precision: str = "fp32", channels_last: bool = False,
                 preprocessing=None, decode: str = DECODE, flips: Sequence[bool] = (False, True),
                 **options: Any) -> dict[str, Any]:
        mean = preprocessing.mean if preprocessing is not None else None
        std = preprocessing.std if preprocessing is not None else None
        return evaluate_keypoints(model, dataset, device=device, batch_size=batch_size, mean=mean, std=std,
                                  decode=decode, flips=flips)

    def scalars(self, metrics: dict[str, Any]) -> dict[str, float]:
        keys = ("loss", "pck10", "pck20", "ap", "ap50", "ap75", "ar")
        return {f"{k}{s}": float(metrics[f"{k}{s}"]) for s in ("", "_flip") for k in keys if f"{k}{s}" in metrics}

    def report(self, metrics: dict[str, Any], checkpoint, *, dataset: str, split: str) -> None:
        from ..console import print_table

        boxes = "detected" if metrics.get("boxes") == "detected" else "ground-truth"
        crops = "boxes" if boxes == "detected" else "people"
        print(f"{checkpoint.arch} on {dataset}/{split} ({metrics['people']} {crops} in {metrics['images']} images, "
              f"{boxes} boxes)")
        rows = []
        for suffix, label in (("", "single"), ("_flip", "flip test")):
            if f"ap{suffix}" in metrics:  # PCK needs the box's own person: "-" on detected boxes
                rows.append([label] + [f"{metrics[k + suffix]:.4f}" if k + suffix in metrics else "-"
                                       for k in ("pck10", "pck20", "ap", "ap50", "ap75", "ar")])
        names = ["PCK@0.1", "PCK@0.2", "AP", "AP50", "AP75", "AR"]
        print_table(rows, ["testing"] + names, justify_right=names)

    # --- using a trained model
    def predictor(self, checkpoint, *, device: str | torch.device = "cpu"):
        return KeypointPredictor(checkpoint, device=device)

    def describe(self, prediction: dict[str, Any]) -> dict[str, Any]:
        return prediction

    def print_predictions(self, paths: Sequence[str], predictions, *, out_dir: Path | None = None,
                          images: Sequence[Any] = ()) -> list[str]:
        written = []
        for n, (path, pred) in enumerate(zip(paths, predictions)):
            print(f"{path}  (score {pred['score']:.3f})")
            for kp in pred["keypoints"]:
                print(f"  {kp['name']:<16} x {kp['x']:7.2f}  y {kp['y']:7.2f}  score {kp['score']:.3f}")
            if out_dir is not None and n < len(images):
                from ..keypoints.draw import draw_people

                out_dir.mkdir(parents=True, exist_ok=True)
                file = out_dir / f"{Path(path).stem}-keypoints.png"
                xy = torch.tensor([[k["x"], k["y"]] for k in pred["keypoints"]])[None]
                sc = torch.tensor([k["score"] for k in pred["keypoints"]])[None]
                draw_people(images[n], xy, sc, pred["skeleton"], scale=4).save(file)
                written.append(str(file))
                record = out_dir / f"{Path(path).stem}-keypoints.json"
                import json

                record.write_text(json.dumps({"image": str(path), **pred}, indent=1))
                written.append(str(record))
                print(f"  drawn: {file}")
        return written

    def request_options(self, fields: dict[str, str], served) -> dict[str, Any]:
        from ..serve.errors import bad_request

        raw = fields.get("min_score", "0")
        try:
            value = float(raw)
        except ValueError:
            raise bad_request(f"min_score must be a number, not {raw!r}") from None
        if not 0 <= value <= 1:
            raise bad_request(f"min_score must lie in [0, 1], got {value}")
        return {"min_score": value}

    def response(self, served, prediction: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
        keep = options.get("min_score", 0.0)
        points = [{**k, "visible": k["score"] >= keep} for k in prediction["keypoints"]]
        return {"result": {**prediction, "keypoints": points}}

    # --- pictures
    pictures_kinds = ("predictions", "heatmaps")

    def pictures(self, checkpoint, dataset: PersonCrops, out_dir: Path, *, kind: str, limit: int) -> list[dict[str, Any]]:
        from ..keypoints.draw import heatmap_grid, prediction_grid

        data = dataset.subset(slice(0, limit)) if limit else dataset
        mean, std = checkpoint.mean, checkpoint.std
        pairs = [tuple(p) for p in checkpoint.meta.extra.get("flip_pairs", data.flip_pairs)]
        name = Path(checkpoint.path).name or checkpoint.arch
        if kind == "heatmaps":
            x = normalize(data.images[:4], mean, std)
            heatmaps = predict_heatmaps(checkpoint.model, x, flip_pairs=pairs)
            path = heatmap_grid(data.images[:4], heatmaps, data.keypoint_names,
                                out_dir / f"heatmaps-{name}.png", title=f"{checkpoint.arch}: heatmap per keypoint")
            return [{"kind": kind, "path": str(path), "people": int(min(4, len(data)))}]
        x = normalize(data.images[:16], mean, std)
        heatmaps = predict_heatmaps(checkpoint.model, x, flip_pairs=pairs)
        xy, scores = decode_heatmaps(heatmaps, x.shape[-1] / heatmaps.shape[-1],
                                     method=checkpoint.meta.extra.get("decode", DECODE))
        path = prediction_grid(data.images[:16], xy, scores, data.keypoints[:16], data.skeleton,
                               out_dir / f"keypoints-{name}.png",
                               title=f"{checkpoint.arch}: predicted (left) and true (right) skeletons")
        return [{"kind": kind, "path": str(path), "people": int(min(16, len(data)))}]


class KeypointPredictor(CheckpointPredictor):
    """Keypoints of person crops: ``predict_batch(uint8 N x C x H x W)`` -> one dict per crop."""

    def __init__(self, checkpoint, *, device: str | torch.device = "cpu", flip: bool = True):
        super().__init__(checkpoint, device=device)
        extra = checkpoint.meta.extra
        self.pairs = [tuple(p) for p in extra.get("flip_pairs", [])]
        self.skeleton = [list(e) for e in extra.get("skeleton", [])]
        self.decode = extra.get("decode", DECODE)
        self.sigma = float(extra.get("sigma", SIGMA))
        self.flip = flip and bool(self.pairs)

    @torch.no_grad()
    def predict_batch(self, images: torch.Tensor, *_: Any, **__: Any) -> list[dict[str, Any]]:
        x = self.checkpoint.preprocessing.normalize(images.to(self.device))
        heatmaps = predict_heatmaps(self.model, x, flip_pairs=self.pairs if self.flip else None)
        xy, scores = decode_heatmaps(heatmaps, x.shape[-1] / heatmaps.shape[-1], method=self.decode, sigma=self.sigma)
        names = self.checkpoint.class_names
        out = []
        for i in range(len(images)):
            points = [{"name": names[k], "x": round(float(xy[i, k, 0]), 2), "y": round(float(xy[i, k, 1]), 2),
                       "score": round(float(scores[i, k]), 4)} for k in range(len(names))]
            out.append({"keypoints": points, "score": round(float(scores[i].mean()), 4), "skeleton": self.skeleton,
                        "width": int(images.shape[-1]), "height": int(images.shape[-2])})
        return out
