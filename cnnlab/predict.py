"""Using a trained model: the top-k classes of images, with their scores.

Reading and shaping images lives in :mod:`cnnlab.data.images`; its functions are importable from here too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import torch
from PIL import Image

from .data.images import fit_to_size, image_to_uint8, open_image, to_array  # noqa: F401 (also the public names here)

__all__ = ["Prediction", "Predictor", "fit_to_size", "image_to_uint8", "open_image", "to_array"]


@dataclass
class Prediction:
    index: int
    label: str
    score: float


class Predictor:
    """Top-k classification with a loaded :class:`~cnnlab.train.checkpoint.Checkpoint`."""

    def __init__(self, checkpoint, *, device: str | torch.device = "cpu"):
        self.checkpoint = checkpoint
        self.model = checkpoint.model.to(device).eval()
        self.device = torch.device(device)
        self.preprocessing = checkpoint.preprocessing
        self.input_size = checkpoint.input_size
        self.class_names = checkpoint.class_names
        self.invert = self.preprocessing.invert
        self.channels_last, self.precision = False, "fp32"
        self.execution = None  # the inference plan in use (cnnlab.train.plan), once one is chosen

    def plan(self, batch_size: int, *, threads: int = 0, channels_last: bool | None = None, precision: str = "fp32",
             measure: bool = True):
        """Choose (by measurement, or from the plan cache) and apply the fastest layout, threads and, with
        ``precision="auto"``, precision for batches of ``batch_size``; returns the plan. Threads are
        the caller's to set (``plan.chosen.threads``): a service sets them on its inference thread."""
        from .train.plan import inference_plan

        chosen = inference_plan(self.model, self.input_size, batch_size=batch_size, device=self.device,
                                threads=threads, channels_last=channels_last, precision=precision,
                                name=self.checkpoint.arch, measure=measure)
        self.channels_last, self.precision = chosen.chosen.channels_last, chosen.chosen.precision
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.execution = chosen
        return chosen

    def prepare(self, img: Image.Image, *, invert: bool | None = None) -> torch.Tensor:
        """C x H x W uint8 input as the model will see it (before normalisation)."""
        return self.preprocessing.image(img, invert=invert)

    @torch.inference_mode()
    def predict_batch(self, batch_uint8: torch.Tensor, top_k: int = 5) -> list[list[Prediction]]:
        from .tasks.classify import autocast

        x = self.preprocessing.normalize(batch_uint8.to(self.device))  # N x C x H x W
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with autocast(self.device, self.precision):
            logits = self.model(x)
        probs = torch.softmax(logits.float(), dim=1)
        k = max(1, min(top_k, probs.shape[1]))
        scores, idx = probs.topk(k, dim=1)
        return [
            [Prediction(int(i), self.class_names[int(i)], float(s)) for s, i in zip(srow, irow)]
            for srow, irow in zip(scores.tolist(), idx.tolist())
        ]

    def predict(self, images: Sequence[Image.Image], top_k: int = 5) -> list[list[Prediction]]:
        if not images:
            return []
        return self.predict_batch(torch.stack([self.prepare(im) for im in images]), top_k)
