"""Image-to-image translation with pix2pix (deck 000: image-to-image translation among what CNNs do).

Paired data are made from cnnlab's sets:

* a scene set (``fashion-scenes-mini``, any segmentation set): **semantic mask -> image**; the
  condition is one channel of class indices (0 background; ignored pixels count as background),
  expanded to one-hot inside the model;
* a classification set (``fashion-mnist-mini``, the default ...): **edges -> item**; the condition is the item's
  Sobel edge map (gradient magnitude above a quarter of its maximum), 0 / 255.

Training is the conditional GAN of Isola et al. (2017) as two optimisation phases: the PatchGAN
discriminator on (condition, real) against (condition, generated), its objective halved (§3.3),
then the generator on ``-log D(x, G(x)) + 100 |y - G(x)|_1`` (Eq. 4). Adam 2e-4, beta1 0.5 (§3.3);
the paper's batch size 1 is replaced by 16 for speed on CPUs. The metrics are the L1 error in [0, 1]
pixel units and the PSNR of the generated test images; each epoch writes condition | generated |
real for the first test examples to ``RUN/samples/epoch-NNN.png``.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from ..data.transforms import normalize
from ..errors import DataError
from . import register_task
from .base import Batch, CheckpointPredictor, StepOutput, Task

LAMBDA_L1 = 100.0  # Eq. 4's lambda
HALF = 0.5


@dataclass
class PairData:
    """A split of pairs: ``conditions`` N x 1 x H x W uint8 (class indices, or a 0 / 255 edge map) and
    ``images`` N x C x H x W uint8; ``kind`` is ``labels`` or ``edges``."""

    name: str
    split: str
    conditions: torch.Tensor
    images: torch.Tensor
    kind: str
    class_names: list[str]

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def input_size(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.conditions.shape[1:])

    def subset(self, index, split: str | None = None) -> "PairData":
        return dataclasses.replace(self, conditions=self.conditions[index], images=self.images[index],
                                   split=split or self.split)

    def random_split(self, fraction: float, seed: int) -> tuple["PairData", "PairData"]:
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        cut = int(round(len(self) * fraction))
        return self.subset(order[cut:]), self.subset(order[:cut], "val")


def edge_map(images: torch.Tensor) -> torch.Tensor:
    """Sobel gradient magnitude of uint8 N x C x H x W images (their channel mean), 255 where it is above
    a quarter of each image's maximum: N x 1 x H x W uint8."""
    x = images.float().mean(1, keepdim=True) / 255.0
    kx = torch.tensor([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]).view(1, 1, 3, 3)
    gx, gy = F.conv2d(x, kx, padding=1), F.conv2d(x, kx.transpose(2, 3), padding=1)
    magnitude = (gx.square() + gy.square()).sqrt()
    peak = magnitude.flatten(1).amax(1).clamp(min=1e-6).view(-1, 1, 1, 1)
    return ((magnitude > 0.25 * peak).to(torch.uint8) * 255)


def load_pairs(name: str, split: str, data_dir: str | None = None) -> PairData:
    from ..data.object_datasets import is_object_dataset

    if is_object_dataset(str(name)):
        from .segment import load_segmentation

        seg = load_segmentation(name, split, data_dir)
        masks = seg.masks.clone()
        masks[masks == 255] = 0  # ignored pixels: background
        return PairData(str(name), split, masks.unsqueeze(1), seg.images, "labels", list(seg.class_names))
    from ..data import load_dataset

    data = load_dataset(name, split, data_dir)
    return PairData(str(name), split, edge_map(data.images), data.images, "edges", ["edge"])


def to_uint8(x: torch.Tensor) -> torch.Tensor:
    return ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8).cpu()


class TranslationPredictor(CheckpointPredictor):
    """``predict_batch(uint8 conditions N x 1 x H x W)``: the generated uint8 image for each."""

    def __init__(self, checkpoint, *, device: str | torch.device = "cpu"):
        super().__init__(checkpoint, device=device)

    @torch.no_grad()
    def predict_batch(self, conditions: torch.Tensor, *_: Any) -> list[torch.Tensor]:
        pre = self.checkpoint.preprocessing
        x = normalize(conditions.to(self.device), pre.mean, pre.std)
        return list(to_uint8(self.model.translate(x)))


def png_base64(image: torch.Tensor) -> str:
    from PIL import Image

    array = image.permute(1, 2, 0).numpy()
    buffer = io.BytesIO()
    Image.fromarray(array[:, :, 0] if array.shape[2] == 1 else array).save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


@register_task
class TranslationTask(Task):
    """Translate a condition image (label map, edges) into an image: pix2pix."""

    name = "translate"
    description = "image-to-image translation (pix2pix): label map or edges -> image"
    phases = ("discriminator", "generator")
    shown = ("d_loss", "l1", "psnr")
    primary = "l1"
    higher_is_better = False
    endpoint = "translate"
    defaults = {"optimizer": "adam", "lr": 2e-4, "momentum": 0.5, "weight_decay": 0.0, "batch_size": 16,
                "schedule": "constant", "epochs": 5}

    def __init__(self, config=None):
        super().__init__(config)
        self._info: dict[str, Any] = {}
        self._pending: tuple[int, torch.Tensor] | None = None
        self._preview: tuple[torch.Tensor, torch.Tensor, torch.Tensor] | None = None

    # --- data
    def load_split(self, name: str, split: str, data_dir: str | None = None) -> PairData:
        data = load_pairs(name, split, data_dir)
        self._info = {"kind": data.kind, "labels": len(data.class_names) if data.kind == "labels" else 0,
                      "channels": int(data.images.shape[1])}
        return data

    def check_data(self, train_set: PairData, test_set: PairData) -> None:
        if train_set.input_size != test_set.input_size or train_set.images.shape[1:] != test_set.images.shape[1:]:
            raise DataError(f"{test_set.name}: test pairs are {tuple(test_set.images.shape[1:])}, training pairs "
                            f"{tuple(train_set.images.shape[1:])}")
        side = train_set.input_size[1]
        if side != train_set.input_size[2] or side % 2 or side < 14:
            raise DataError(f"{train_set.name}: pix2pix takes square images of an even side of at least 14, not "
                            f"{train_set.input_size[1]} x {train_set.input_size[2]}")

    def data_fields(self, train_set: PairData) -> dict[str, Any]:
        labels = train_set.kind == "labels"
        mean, std = ((0.0,), (1 / 255,)) if labels else ((HALF,), (HALF,))  # class indices pass unchanged
        return {"class_names": list(train_set.class_names), "input_size": train_set.input_size, "mean": mean,
                "std": std, "extra": {"pairs": train_set.kind, "image_channels": int(train_set.images.shape[1])}}

    def model_options(self) -> dict[str, Any]:
        return {"num_labels": self._info.get("labels", 0), "out_channels": self._info.get("channels", 1),
                "width": self.config.gan_width}

    # --- batches
    def make_batch(self, dataset: PairData, indices: torch.Tensor, *, train: bool,
                   generator: torch.Generator | None = None) -> Batch:
        return Batch(dataset.conditions[indices], dataset.images[indices], {"kind": dataset.kind})

    def _condition(self, conditions: torch.Tensor, kind: str, device) -> torch.Tensor:
        mean, std = ((0.0,), (1 / 255,)) if kind == "labels" else ((HALF,), (HALF,))
        return normalize(conditions.to(device), mean, std)

    def prepare(self, batch: Batch, device: torch.device, *, channels_last: bool = False) -> Batch:
        x = self._condition(batch.inputs, batch.extra["kind"], device)
        c = batch.targets.shape[1]
        y = normalize(batch.targets.to(device), (HALF,) * c, (HALF,) * c)  # [-1, 1]
        return Batch(x, y, batch.extra)

    # --- training
    def phase_parameters(self, model: nn.Module, phase: str):
        return getattr(model, phase).parameters()

    def training_step(self, forward, model: nn.Module, batch: Batch, phase: str) -> StepOutput:
        x, y, n = batch.inputs, batch.targets, len(batch.inputs)
        if phase == "discriminator":
            fake = model.translate(x)
            real_logit, fake_logit = model.score(x, y), model.score(x, fake.detach())
            loss = 0.5 * (F.binary_cross_entropy_with_logits(real_logit, torch.ones_like(real_logit))
                          + F.binary_cross_entropy_with_logits(fake_logit, torch.zeros_like(fake_logit)))  # halved, §3.3
            self._pending = (id(model), fake)
            return StepOutput(loss, {"d_loss": loss.detach().double() * n}, n)
        fake = self._pending[1] if self._pending and self._pending[0] == id(model) else model.translate(x)
        self._pending = None
        logit = model.score(x, fake)
        adversarial = F.binary_cross_entropy_with_logits(logit, torch.ones_like(logit))
        l1 = (fake - y).abs().mean()
        loss = adversarial + LAMBDA_L1 * l1  # Eq. 4
        return StepOutput(loss, {"loss": loss.detach().double() * n, "g_gan_loss": adversarial.detach().double() * n,
                                 "l1": l1.detach().double() * n / 2}, n)  # l1 in [0, 1] pixel units

    # --- evaluation
    @torch.no_grad()
    def evaluate(self, model: nn.Module, dataset: PairData, *, device: torch.device | str = "cpu",
                 batch_size: int = 64, precision: str = "fp32", channels_last: bool = False,
                 preprocessing=None, **options: Any) -> dict[str, Any]:
        was_training = model.training
        model.eval()
        errors, squares, out = 0.0, 0.0, []
        for s in range(0, len(dataset), batch_size):
            x = self._condition(dataset.conditions[s:s + batch_size], dataset.kind, device)
            fake = to_uint8(model.translate(x))
            real = dataset.images[s:s + batch_size]
            diff = (fake.float() - real.float()) / 255.0
            errors += float(diff.abs().mean((1, 2, 3)).sum())
            squares += float(diff.square().mean((1, 2, 3)).sum())
            if s == 0:
                out = fake[:8]
        model.train(was_training)
        n = max(1, len(dataset))
        mse = squares / n
        self._preview = (dataset.conditions[:8], out, dataset.images[:8], dataset.kind, len(dataset.class_names))
        return {"l1": errors / n, "psnr": 10 * math.log10(1.0 / max(mse, 1e-12)), "images": len(dataset)}

    def scalars(self, metrics: dict[str, Any]) -> dict[str, float]:
        return {"l1": float(metrics["l1"]), "psnr": float(metrics["psnr"])}

    def report(self, metrics: dict[str, Any], checkpoint, *, dataset: str, split: str) -> None:
        print(f"{checkpoint.arch} on {dataset}/{split} ({metrics['images']} pairs): L1 {metrics['l1']:.4f}  "
              f"PSNR {metrics['psnr']:.2f} dB")

    def end_epoch(self, model: nn.Module, run_dir: Path, record: dict[str, Any],
                  log: Callable[[str], None]) -> None:
        if self._preview is None:
            return
        from ..generation import image_grid
        from ..generation.grids import save_png

        cond, fake, real, kind, labels = self._preview
        shown = cond if kind == "edges" else (cond.float() * (255 / max(1, labels - 1))).round().to(torch.uint8)
        c = real.shape[1]
        shown = shown.expand(-1, c, -1, -1)
        rows = torch.stack([shown, fake, real], 1).reshape(-1, *real.shape[1:])  # condition | generated | real
        save_png(image_grid(rows, columns=3), Path(run_dir) / "samples" / f"epoch-{record['epoch']:03d}.png", scale=1)

    # --- using a trained model
    def predictor(self, checkpoint, *, device: str | torch.device = "cpu") -> TranslationPredictor:
        return TranslationPredictor(checkpoint, device=device)

    def describe(self, prediction: torch.Tensor) -> dict[str, Any]:
        return {"image_png": png_base64(prediction), "size": list(prediction.shape)}

    def print_predictions(self, paths: Sequence[str], predictions, *, out_dir: Path | None = None,
                          images: Sequence[Any] = ()) -> list[str]:
        from ..generation.grids import save_png

        out_dir = Path(out_dir or "translated")
        written = []
        for path, image in zip(paths, predictions):
            target = save_png(image, out_dir / f"{Path(path).stem}-translated.png", scale=1)
            print(f"{path} -> {target}")
            written.append(str(target))
        return written
