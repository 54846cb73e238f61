"""The models a service answers with: a loaded checkpoint, its predictor, batcher and category paths."""

from __future__ import annotations

import copy
import logging
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image

from ..errors import ConfigError
from ..predict import Predictor
from ..tasks import get_task
from ..train.checkpoint import Checkpoint, load_checkpoint
from .batcher import MicroBatcher
from .config import ServeConfig
from .errors import ServeError
from .taxonomy import class_roots


@dataclass
class ServedModel:
    """One checkpoint being served under ``name``."""

    name: str
    checkpoint: Checkpoint
    predictor: Predictor
    roots: list[str]
    batcher: MicroBatcher
    _cam_model: torch.nn.Module | None = field(default=None, repr=False)
    _cam_lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def input_size(self) -> tuple[int, int, int]:
        return self.predictor.input_size

    @property
    def class_names(self) -> list[str]:
        return self.predictor.class_names

    def prepare(self, img: Image.Image, *, invert: bool | None = None) -> torch.Tensor:
        """Decoded image -> C x H x W uint8 of the model's input size (the model's view of it).

        ``invert`` (grey levels flipped, for dark-on-light photos shown to a model trained on
        light-on-dark data) defaults to the checkpoint's ``invert_photos`` setting."""
        return self.checkpoint.preprocessing.image(img, invert=invert)

    def cam(self, image: torch.Tensor, class_index: int | None) -> dict[str, Any]:
        """Feature maps and Grad-CAM of one C x H x W uint8 image (blocking; call from a thread).

        Grad-CAM attaches hooks and needs gradients, so it runs on a private copy of the model that
        the inference thread never touches, one image at a time.
        """
        from .cam import cam_view

        with self._cam_lock:
            if self._cam_model is None:
                self._cam_model = copy.deepcopy(self.predictor.model).eval()
            try:
                return cam_view(self._cam_model, image, self.checkpoint.preprocessing, class_index)
            except ValueError as e:  # e.g. a network without a convolution to attach Grad-CAM to
                raise ServeError(422, "cam_failed", f"no Grad-CAM for this model: {e}") from None

    def info(self) -> dict[str, Any]:
        meta = self.checkpoint.meta
        metrics = meta.metrics
        return {
            "name": self.name,
            "task": meta.task,
            "architecture": self.checkpoint.arch,
            "arch_kwargs": meta.arch_kwargs,
            "classes": self.class_names,
            "roots": self.roots,
            "num_classes": len(self.class_names),
            "conditional": bool(getattr(self.predictor, "conditional", False)),  # a GAN drawing a chosen class
            "input_size": list(self.input_size),
            "accuracy": metrics.get("test_acc"),
            "top5_accuracy": metrics.get("test_top5"),
            "dataset": meta.dataset,
            "epoch": meta.epoch,
            "parameters": sum(p.numel() for p in self.predictor.model.parameters()),
            "execution": (self.predictor.execution.to_dict()
                          if getattr(self.predictor, "execution", None) is not None else None),
        }


def split_name(spec: str | Path) -> tuple[str | None, str]:
    """``"NAME=PATH"`` -> (NAME, PATH); a plain path (or one that exists with '=' in it) -> (None, PATH)."""
    text = str(spec)
    if "=" in text and not Path(text).exists():
        name, path = text.split("=", 1)
        if name and all(c.isalnum() or c in "-_." for c in name):
            return name, path
    return None, text


def load_models(specs: Sequence[str | Path | Checkpoint], config: ServeConfig, *,
                device: str = "cpu") -> dict[str, ServedModel]:
    """Load every checkpoint (``PATH`` or ``NAME=PATH``, or an already loaded Checkpoint)."""
    if not specs:
        raise ConfigError("serve needs at least one checkpoint")
    served: dict[str, ServedModel] = {}
    for spec in specs:
        if isinstance(spec, Checkpoint):
            name, ckpt = None, spec
        else:
            name, path = split_name(spec)
            ckpt = load_checkpoint(path, device=device)
        name = name or ckpt.run_dir.name or ckpt.arch
        if name in served:
            base, n = name, 2
            while f"{base}-{n}" in served:
                n += 1
            name = f"{base}-{n}"
        predictor = get_task(ckpt.task).predictor(ckpt, device=device)
        threads = config.threads
        if hasattr(predictor, "plan"):  # a predictor that can take an execution plan gets one
            plan = predictor.plan(config.max_batch, threads=config.threads, channels_last=config.channels_last,
                                  precision=config.precision, measure=config.plan)
            threads = plan.chosen.threads
            logging.getLogger("uvicorn.error").info("%s: %s", name, plan.describe())
        # The batcher's thread calls predict_batch(N x C x H x W uint8, top_k) -> top-k per image.
        batcher = MicroBatcher(predictor.predict_batch, max_batch=config.max_batch,
                               max_wait_s=config.max_wait_ms / 1000.0, queue_size=config.queue_size, name=name,
                               threads=threads)
        served[name] = ServedModel(name=name, checkpoint=ckpt, predictor=predictor,
                                   roots=class_roots(predictor.class_names, ckpt.meta.to_dict()), batcher=batcher)
    return served
