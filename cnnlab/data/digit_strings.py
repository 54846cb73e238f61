"""Text lines for scene-text recognition: strings of real handwritten MNIST digits, and folders of line images.

No photograph of street signs can be downloaded here, so text lines are composed of real handwriting:
1 to 12 MNIST digits (the training split's digits in training lines, the test split's in test lines, so
no test glyph is ever seen in training), each cut to its ink, scaled, slanted, placed with a varying gap
(negative: touching or overlapping digits) and a baseline jitter, on a background of varying brightness
and sensor noise. Digits are light on dark, as in MNIST. The string of each line is its digits in
reading order; the generator is deterministic for a seed.

A set on disk is the layout many OCR datasets use (IIIT5K, the MJSynth / ICDAR crops after conversion):
a folder per split holding the line images and ``labels.txt``, one ``file<TAB>text`` line per image
(a space instead of the tab is accepted, as in several public sets). Any alphabet is read: the
alphabet is the set of characters of the training texts. :func:`load_text_lines` reads such a folder
(``train/`` and ``test/`` below it), resizing every line to the height of the set and padding or
squeezing it to one width.
"""

from __future__ import annotations

import dataclasses
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from PIL import Image

from ..errors import DataError

LABELS = "labels.txt"


@dataclass(frozen=True)
class DigitStringConfig:
    """How digit lines are drawn (sizes in pixels of the line image)."""

    height: int = 32
    width: int = 256
    min_digits: int = 1
    max_digits: int = 12
    scale: tuple[float, float] = (0.75, 1.1)  # digit height / line height (before fitting the line)
    slant: float = 0.3  # largest horizontal shear (x shift per pixel of height), either way
    gap: tuple[int, int] = (-3, 6)  # space between neighbouring digits' ink; negative: they overlap
    jitter: int = 3  # largest baseline shift up or down
    noise: float = 12.0  # largest sensor-noise sigma in grey levels
    background: int = 40  # largest background grey level

    def __post_init__(self):
        if self.height < 16 or self.width < self.height:
            raise DataError(f"digit lines need a height of at least 16 and a width at least the height, "
                            f"got {self.height}x{self.width}")
        if not 1 <= self.min_digits <= self.max_digits:
            raise DataError(f"digits per line must satisfy 1 <= min <= max, got {self.min_digits}..{self.max_digits}")
        if not 0 < self.scale[0] <= self.scale[1]:
            raise DataError(f"digit scale must satisfy 0 < low <= high, got {self.scale}")


def _ink_crop(digit: np.ndarray) -> np.ndarray:
    """The columns of a 28 x 28 digit that hold ink (all rows kept, so the baseline stays MNIST's)."""
    cols = np.flatnonzero(digit.max(0) > 30)
    return digit[:, cols[0]:cols[-1] + 1] if len(cols) else digit[:, 10:18]


def _glyph(digit: np.ndarray, height: float, shear: float) -> np.ndarray:
    """A digit scaled to ``height`` pixels and sheared (top moved right by ``shear`` x height), float 0-255."""
    img = Image.fromarray(_ink_crop(digit))
    h = max(4, int(round(height)))
    w = max(2, int(round(img.width * h / img.height)))
    img = img.resize((w, h), Image.BILINEAR)
    extra = int(math.ceil(abs(shear) * h))
    # output (x, y) <- input (x + shear * y + c, y): the top leans right for shear > 0, c keeps the glyph in the box
    c = -shear * h if shear > 0 else 0.0
    img = img.transform((w + extra, h), Image.AFFINE, (1, shear, c, 0, 1, 0), resample=Image.BILINEAR)
    return np.asarray(img, dtype=np.float32)


def render_line(digits: Sequence[np.ndarray], rng: np.random.Generator, config: DigitStringConfig) -> np.ndarray:
    """One H x W uint8 line of the 28 x 28 ``digits`` in order, placed left to right."""
    c = config
    glyphs = [_glyph(d, rng.uniform(*c.scale) * c.height, rng.uniform(-c.slant, c.slant)) for d in digits]
    gaps = rng.integers(c.gap[0], c.gap[1] + 1, size=max(0, len(glyphs) - 1))
    total = sum(g.shape[1] for g in glyphs) + int(gaps.sum())
    fit = min(1.0, (c.width - 4) / max(total, 1))  # a long line is drawn smaller, as a person writes to fit
    if fit < 1.0:
        glyphs = [np.asarray(Image.fromarray(g).resize((max(2, int(g.shape[1] * fit)), max(4, int(g.shape[0] * fit))),
                                                       Image.BILINEAR), dtype=np.float32) for g in glyphs]
        gaps = np.floor(gaps * fit).astype(int)
        total = sum(g.shape[1] for g in glyphs) + int(gaps.sum())
    canvas = np.zeros((c.height, c.width), np.float32)
    x = int(rng.integers(0, max(1, c.width - total) + 1))
    for i, g in enumerate(glyphs):
        gh, gw = g.shape
        gh, gw = min(gh, c.height), min(gw, c.width - x)
        if gw <= 0:
            break
        free = c.height - gh
        y = int(np.clip(free // 2 + rng.integers(-c.jitter, c.jitter + 1), 0, free))
        region = canvas[y:y + gh, x:x + gw]
        np.maximum(region, g[:gh, :gw], out=region)  # overlapping strokes: the brighter ink shows
        x += g.shape[1] + (int(gaps[i]) if i < len(gaps) else 0)
        x = max(0, x)
    level = rng.uniform(0, c.background)
    ramp = np.linspace(0, rng.uniform(-1, 1) * c.background / 2, c.width, dtype=np.float32)[None]
    sigma = rng.uniform(0, c.noise)
    line = np.maximum(canvas, level + ramp) + rng.normal(0, sigma, canvas.shape)
    return np.clip(np.rint(line), 0, 255).astype(np.uint8)


def make_lines(images: np.ndarray, labels: np.ndarray, count: int, rng: np.random.Generator,
               config: DigitStringConfig) -> tuple[np.ndarray, list[str]]:
    """``count`` lines (N x H x W uint8) drawn from the digits ``images`` (M x 28 x 28) and their strings."""
    lines, texts = np.zeros((count, config.height, config.width), np.uint8), []
    for n in range(count):
        k = int(rng.integers(config.min_digits, config.max_digits + 1))
        pick = rng.integers(0, len(images), size=k)
        lines[n] = render_line([images[i] for i in pick], rng, config)
        texts.append("".join(str(int(labels[i])) for i in pick))
    return lines, texts


def write_digit_strings(folder: str | Path, *, counts: dict[str, int], seed: int = 0,
                        config: DigitStringConfig = DigitStringConfig(), source: str = "mnist-10k",
                        data_dir: str | None = None, force: bool = False,
                        progress: Callable[[str, int, int], None] | None = None) -> Path:
    """Write ``counts[split]`` lines per split into ``folder/<split>/`` (PNG files and ``labels.txt``)."""
    from .datasets import load_dataset

    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        if not force:
            raise DataError(f"{folder} already exists; pass --force to replace it")
        shutil.rmtree(folder)
    rng = np.random.default_rng(seed)
    for split, count in counts.items():
        digits = load_dataset(source, split, data_dir)  # training digits only in training lines
        images = digits.images[:, 0].numpy()
        labels = digits.labels.numpy()
        lines, texts = make_lines(images, labels, count, rng, config)
        out = folder / split
        out.mkdir(parents=True, exist_ok=True)
        rows = []
        for n, (line, text) in enumerate(zip(lines, texts)):
            name = f"{n:06d}.png"
            Image.fromarray(line).save(out / name, optimize=True)
            rows.append(f"{name}\t{text}")
            if progress is not None and (n + 1 == count or n % 200 == 0):
                progress(split, n + 1, count)
        (out / LABELS).write_text("\n".join(rows) + "\n", encoding="utf-8")
    return folder


@dataclass
class TextLines:
    """A split of line images: ``images`` N x C x H x W uint8, ``texts`` their strings; ``class_names``
    is the alphabet (one character each, in the order of the model's classes after the CTC blank)."""

    name: str
    split: str
    images: torch.Tensor
    texts: list[str]
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self):
        if len(self.images) != len(self.texts):
            raise DataError(f"{self.name}/{self.split}: {len(self.images)} images but {len(self.texts)} texts")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def input_size(self) -> tuple[int, int, int]:
        return tuple(int(v) for v in self.images.shape[1:])

    def subset(self, index, split: str | None = None) -> "TextLines":
        picked = torch.arange(len(self))[index]
        return dataclasses.replace(self, images=self.images[picked], texts=[self.texts[int(i)] for i in picked],
                                   split=split or self.split)

    def random_split(self, fraction: float, seed: int) -> tuple["TextLines", "TextLines"]:
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        cut = int(round(len(self) * fraction))
        return self.subset(order[cut:]), self.subset(order[:cut], "val")


def read_labels(path: Path) -> list[tuple[str, str]]:
    """``file<TAB>text`` lines (or ``file text``: the first space splits) of a labels file."""
    rows = []
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not raw.strip():
            continue
        name, sep, text = raw.partition("\t") if "\t" in raw else raw.partition(" ")
        if not sep or not text:
            raise DataError(f"{path}:{number}: expected 'file<TAB>text', got {raw!r}")
        rows.append((name.strip(), text))
    if not rows:
        raise DataError(f"{path} lists no images")
    return rows


def fit_line(img: Image.Image, height: int, width: int, channels: int = 1) -> np.ndarray:
    """A line image scaled to ``height`` (aspect kept), then padded on the right with its edge's mean
    grey level or squeezed to ``width``: H x W (x 3) uint8."""
    img = img.convert("L" if channels == 1 else "RGB")
    w = max(1, int(round(img.width * height / img.height)))
    img = img.resize((min(w, width), height), Image.BILINEAR)
    arr = np.asarray(img, dtype=np.uint8)
    if arr.shape[1] < width:
        fill = arr[:, -1:].mean(axis=(0, 1))
        pad = np.broadcast_to(np.asarray(fill, np.float32), (height, width - arr.shape[1]) + arr.shape[2:])
        arr = np.concatenate([arr, np.rint(pad).astype(np.uint8)], axis=1)
    return arr


def load_text_lines(folder: str | Path, split: str, *, name: str | None = None, height: int = 32,
                    width: int | None = None, alphabet: Sequence[str] | None = None) -> TextLines:
    """The ``split`` of a folder of line images with ``labels.txt`` (in ``folder/<split>/``, or the folder
    itself for a set without splits). ``width`` defaults to 8 x ``height``; ``alphabet`` to the characters
    of the split's texts (pass the training split's for the test split)."""
    root = Path(folder).expanduser()
    where = root / split if (root / split / LABELS).is_file() else root
    labels = where / LABELS
    if not labels.is_file():
        raise DataError(f"{folder}: no {split}/{LABELS} (nor {LABELS}): a text-line set is a folder of line "
                        f"images with a '{LABELS}' of 'file<TAB>text' lines")
    rows = read_labels(labels)
    width = width or 8 * height
    images = []
    for file, _ in rows:
        path = where / file
        if not path.is_file():
            raise DataError(f"{labels}: lists {file}, which is not in {where}")
        try:
            with Image.open(path) as img:
                images.append(fit_line(img, height, width))
        except (OSError, ValueError) as err:
            raise DataError(f"{path}: not a readable image ({err})") from None
    x = torch.from_numpy(np.stack(images))[:, None]  # N x 1 x H x W
    texts = [t for _, t in rows]
    chars = sorted(set("".join(texts))) if alphabet is None else list(alphabet)
    mean = float(x.float().mean() / 255)
    std = max(float((x.float() / 255).std()), 1e-3)
    return TextLines(name or root.name, split, x, texts, chars, (mean,), (std,))
