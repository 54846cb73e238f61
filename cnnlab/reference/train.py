"""Training LeNet-5 with the NumPy engine alone.

The recipe: inputs scaled to [0, 1] then standardised with the training set's mean and standard deviation,
mini-batches drawn in a fresh random order each epoch, each image shifted by up to ``shift`` pixels (LeCun
et al. 1998, section III-C, trained on distorted copies of the digits for the same reason: 8,000 examples
are few), softmax cross-entropy, Adam (Kingma & Ba, 2015) with the learning rate annealed along a half
cosine to zero (Loshchilov & Hutter, ICLR 2017), or cut in steps. Everything runs in float32, the precision deep-learning
frameworks train in; the parity tests use float64.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from ..errors import ConfigError, DataError
from . import functional as F
from . import nn
from .idx import read_idx
from .optim import SGD, Adam

MNIST_SAMPLE_FILES = ("images-idx3-ubyte.gz", "labels-idx1-ubyte.gz")


def load_idx_pair(data_dir: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Images N x 1 x H x W (uint8) and labels N (int64) from a folder with one IDX image and label file."""
    folder = Path(data_dir)
    if not folder.is_dir():
        raise DataError(f"no such data folder: {folder}")
    candidates = [(folder / a, folder / b) for a, b in (MNIST_SAMPLE_FILES,
                  ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"))]
    for images_path, labels_path in candidates:
        if images_path.is_file() and labels_path.is_file():
            images, labels = read_idx(images_path), read_idx(labels_path)
            if images.ndim != 3 or labels.shape != images.shape[:1]:
                raise DataError(f"{folder}: {images.shape[0]} images do not match {labels.shape[0]} labels")
            return images[:, None], labels.astype(np.int64)
    raise DataError(f"{folder}: expected {MNIST_SAMPLE_FILES[0]} and {MNIST_SAMPLE_FILES[1]}")


def split(images: np.ndarray, labels: np.ndarray, train_count: int, test_count: int):
    """The first ``train_count`` examples train, the last ``test_count`` test (they must not overlap)."""
    if train_count < 1 or test_count < 1 or train_count + test_count > len(images):
        raise ConfigError(f"cannot take {train_count} training and {test_count} test examples from {len(images)}")
    test_start = len(images) - test_count
    return (images[:train_count], labels[:train_count]), (images[test_start:], labels[test_start:])


@dataclass
class TrainConfig:
    arch: str = "lenet5"
    epochs: int = 15
    batch_size: int = 32
    lr: float = 5e-3
    optimizer: str = "adam"
    schedule: str = "cosine"  # or "step": multiply by lr_decay every lr_decay_every epochs
    lr_decay_every: int = 4  # epochs
    lr_decay: float = 0.5
    shift: int = 1  # pixels of random translation; 0 turns it off
    seed: int = 0

    def validate(self) -> None:
        if self.arch not in ("lenet5", "lenet5_modern"):
            raise ConfigError(f"reference training supports lenet5 and lenet5_modern, not '{self.arch}'")
        if self.schedule not in ("cosine", "step"):
            raise ConfigError(f"schedule must be cosine or step, not '{self.schedule}'")
        if self.optimizer not in ("adam", "sgd"):
            raise ConfigError(f"optimizer must be adam or sgd, not '{self.optimizer}'")
        if self.epochs < 1 or self.batch_size < 1 or self.lr <= 0:
            raise ConfigError("epochs and batch size must be positive and the learning rate above zero")
        if self.shift < 0 or self.lr_decay_every < 0:
            raise ConfigError("shift and lr_decay_every cannot be negative")


@dataclass
class TrainResult:
    model: nn.Module
    mean: float
    std: float
    history: list[dict] = field(default_factory=list)

    @property
    def test_accuracy(self) -> float:
        return self.history[-1]["test_accuracy"]


def standardise(images: np.ndarray, mean: float, std: float) -> np.ndarray:
    return ((images.astype(np.float32) / 255 - mean) / std).astype(np.float32)


def random_shift(images: np.ndarray, max_shift: int, rng: np.random.Generator) -> np.ndarray:
    """Translate each image by its own random offset in [-max_shift, max_shift] pixels, filling with 0.

    N x C x H x W -> N x C x H x W: pad, view every crop position, pick one position per image.
    """
    if max_shift == 0:
        return images
    n, _, h, w = images.shape
    padded = np.pad(images, ((0, 0), (0, 0), (max_shift, max_shift), (max_shift, max_shift)))
    crops = sliding_window_view(padded, (h, w), axis=(2, 3))  # N x C x (2s+1) x (2s+1) x H x W
    top, left = rng.integers(0, 2 * max_shift + 1, n), rng.integers(0, 2 * max_shift + 1, n)
    return crops[np.arange(n), :, top, left]


def evaluate(model: nn.Module, x: np.ndarray, y: np.ndarray, batch_size: int = 500) -> float:
    """Top-1 accuracy in inference mode."""
    model.eval()
    correct = 0
    for start in range(0, len(x), batch_size):
        logits = model(x[start:start + batch_size])
        correct += int((logits.argmax(1) == y[start:start + batch_size]).sum())
    model.train()
    return correct / len(x)


def train(train_images: np.ndarray, train_labels: np.ndarray, test_images: np.ndarray, test_labels: np.ndarray,
          config: TrainConfig, progress: Callable[[dict], None] | None = None) -> TrainResult:
    """Train a reference LeNet-5 from scratch; ``progress`` receives each epoch's figures."""
    config.validate()
    nn.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    pixels = train_images.astype(np.float32) / 255
    mean, std = float(pixels.mean()), float(pixels.std())
    x_test = standardise(test_images, mean, std)
    model = getattr(nn, config.arch)(in_channels=train_images.shape[1], image_size=train_images.shape[2])
    model.astype(np.float32)
    model.features[0].needs_input_grad = False  # the images need no gradient
    params = model.parameters()
    optimiser = Adam(params, config.lr) if config.optimizer == "adam" else SGD(params, config.lr, momentum=0.9)
    result = TrainResult(model, mean, std)
    steps_per_epoch = -(-len(train_images) // config.batch_size)
    total_steps, step = config.epochs * steps_per_epoch, 0
    for epoch in range(1, config.epochs + 1):
        started = time.perf_counter()
        order = rng.permutation(len(train_images))
        loss_sum, seen = 0.0, 0
        for start in range(0, len(order), config.batch_size):
            batch = order[start:start + config.batch_size]
            if config.schedule == "cosine":
                optimiser.lr = config.lr * 0.5 * (1 + math.cos(math.pi * step / total_steps))
            step += 1
            optimiser.zero_grad()
            x = standardise(random_shift(train_images[batch], config.shift, rng), mean, std)
            logits = model(x)  # N x 10
            loss_sum += F.cross_entropy(logits, train_labels[batch]) * len(batch)
            seen += len(batch)
            model.backward(F.cross_entropy_backward(logits, train_labels[batch]).astype(np.float32))
            optimiser.step()
        seconds = time.perf_counter() - started
        figures = {"epoch": epoch, "loss": loss_sum / seen, "lr": optimiser.lr,
                   "test_accuracy": evaluate(model, x_test, test_labels), "seconds": seconds,
                   "images_per_second": seen / seconds}
        result.history.append(figures)
        if progress:
            progress(figures)
        if config.schedule == "step" and config.lr_decay_every and epoch % config.lr_decay_every == 0:
            optimiser.lr *= config.lr_decay
    return result


def save_weights(model: nn.Module, path: str | Path, metadata: dict[str, str] | None = None) -> Path:
    """Write the parameters and buffers as safetensors with torch's names (loads into the torch twin)."""
    from safetensors.numpy import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({k: np.ascontiguousarray(v) for k, v in model.state_dict().items()}, str(path), metadata=metadata)
    return path
