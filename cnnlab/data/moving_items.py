"""Clips of real items in motion, for video classification, and folders of clips.

No video of people can be downloaded here, so clips are made of real Fashion-MNIST (or MNIST) items
moving on a dark canvas, and the class is the motion, not the item: ``still``, the four translations
(``left``, ``right``, ``up``, ``down``), the two rotations (``rotate_cw``, ``rotate_ccw``, as seen on
the screen) and the two zooms (``zoom_in``, ``zoom_out``). Each clip draws its item, its speed and the
item's state at the reference frame ``T // 2`` (position, angle, scale) from one distribution shared by
every class; the motion is laid out before and after that frame. The reference frame is therefore the
same picture whatever the class: no single frame can tell the motion, only the order of the frames
can (a single-frame classifier stays at chance, docs/video.md). Training clips use training items,
test clips test items. The generator is deterministic for a seed.

A set on disk is either

* ``train.npz`` / ``test.npz`` (``clips``: N x T x H x W or N x T x H x W x 3 uint8, ``labels``: N) and
  ``classes.txt``, the compact form the bundled mini set uses, or
* the layout video datasets use (UCF101, HMDB51 after frame extraction, Something-Something):
  ``<root>/<split>/<class>/<clip>`` where each clip is a folder of frame images (read in file-name
  order), a GIF, or a video file (``.mp4``, ``.avi``, ``.mov``, ``.webm``, read through ``imageio``
  or ``av`` where one is installed).

:func:`load_clips` reads either; every clip is brought to T frames (spread evenly over the clip) of
H x W pixels.
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

MOTIONS = ("still", "left", "right", "up", "down", "rotate_cw", "rotate_ccw", "zoom_in", "zoom_out")
CLASSES_FILE = "classes.txt"
FRAME_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v")
MIN_FRAMES = 2  # one frame holds no motion


@dataclass(frozen=True)
class MovingItemsConfig:
    """How clips are drawn (sizes in pixels of the canvas; speeds per frame, scaled to the canvas side / 32)."""

    frames: int = 16
    size: int = 64
    scale: tuple[float, float] = (0.45, 0.7)  # item side / canvas side at the reference frame
    speed: tuple[float, float] = (0.6, 1.0)  # translation, pixels per frame on a 32-pixel canvas
    spin: tuple[float, float] = (6.0, 12.0)  # rotation, degrees per frame
    zoom: tuple[float, float] = (0.03, 0.05)  # zoom, log-scale change per frame
    noise: float = 0.0  # sensor-noise sigma in grey levels

    def __post_init__(self):
        if self.frames < MIN_FRAMES:
            raise DataError(f"a clip needs at least {MIN_FRAMES} frames, got {self.frames}")
        if self.size < 16:
            raise DataError(f"the canvas must be at least 16 pixels, got {self.size}")
        for name in ("scale", "speed", "spin", "zoom"):
            low, high = getattr(self, name)
            if not 0 < low <= high:
                raise DataError(f"{name} must satisfy 0 < low <= high, got {low}..{high}")


@dataclass(frozen=True)
class ItemState:
    """Where the item is in one frame: its centre (x right, y down, pixels), angle (degrees, clockwise
    on the screen) and side (pixels)."""

    x: float
    y: float
    angle: float
    side: float


def trajectory(motion: str, start: ItemState, rate: float, frames: int) -> list[ItemState]:
    """The item's state in each of ``frames`` frames: ``start`` at frame ``frames // 2``, ``rate`` the
    speed of ``motion`` (pixels, degrees or log-scale per frame)."""
    if motion not in MOTIONS:
        raise DataError(f"unknown motion '{motion}' (known: {', '.join(MOTIONS)})")
    dx, dy, da, dz = {"still": (0, 0, 0, 0), "left": (-1, 0, 0, 0), "right": (1, 0, 0, 0), "up": (0, -1, 0, 0),
                      "down": (0, 1, 0, 0), "rotate_cw": (0, 0, 1, 0), "rotate_ccw": (0, 0, -1, 0),
                      "zoom_in": (0, 0, 0, 1), "zoom_out": (0, 0, 0, -1)}[motion]
    ref = frames // 2
    return [ItemState(start.x + dx * rate * (t - ref), start.y + dy * rate * (t - ref),
                      start.angle + da * rate * (t - ref), start.side * math.exp(dz * rate * (t - ref)))
            for t in range(frames)]


def render_frame(item: np.ndarray, state: ItemState, size: int) -> np.ndarray:
    """The ``item`` (h x w uint8) drawn at ``state`` on a black ``size`` x ``size`` canvas: size x size float32."""
    h, w = item.shape[:2]
    s = state.side / max(h, w)
    theta = math.radians(state.angle)
    cos, sin = math.cos(theta), math.sin(theta)
    # Output pixel p = centre + s * R(theta) (q - item centre) with y down (so theta > 0 turns clockwise on
    # the screen); Pillow wants the inverse, q = item centre + R(-theta) (p - centre) / s, as a 2 x 3 matrix.
    a, b, d, e = cos / s, sin / s, -sin / s, cos / s
    cx, cy = state.x, state.y
    c = w / 2 - a * cx - b * cy
    f = h / 2 - d * cx - e * cy
    img = Image.fromarray(item).transform((size, size), Image.AFFINE, (a, b, c, d, e, f), resample=Image.BILINEAR)
    return np.asarray(img, dtype=np.float32)


def draw_clip(item: np.ndarray, motion: str, rng: np.random.Generator, config: MovingItemsConfig) -> np.ndarray:
    """One clip (T x S x S uint8) of ``item`` doing ``motion``, its reference state and speed drawn from ``rng``."""
    c, size = config, config.size
    unit = size / 32
    side = rng.uniform(*c.scale) * size
    # the reference position keeps most of the item on the canvas for the whole clip at the fastest speed
    # (the same range for every class, so that the position tells nothing of the motion)
    reach = c.speed[1] * unit * (c.frames - c.frames // 2)
    margin = min(size / 2 - 1, side / 2 + reach * 0.5)
    start = ItemState(rng.uniform(margin, size - margin), rng.uniform(margin, size - margin),
                      rng.uniform(-30, 30), side)
    rate = {"left": c.speed, "right": c.speed, "up": c.speed, "down": c.speed, "rotate_cw": c.spin,
            "rotate_ccw": c.spin, "zoom_in": c.zoom, "zoom_out": c.zoom}.get(motion, (0.0, 0.0))
    speed = rng.uniform(*rate) * (unit if motion in ("left", "right", "up", "down") else 1.0) if rate[1] else 0.0
    clip = np.stack([render_frame(item, state, size) for state in trajectory(motion, start, speed, c.frames)])
    if c.noise > 0:  # T x S x S
        clip = clip + rng.normal(0, c.noise, clip.shape)
    return np.clip(np.rint(clip), 0, 255).astype(np.uint8)


def make_clips(items: np.ndarray, count: int, rng: np.random.Generator, config: MovingItemsConfig,
               motions: Sequence[str] = MOTIONS) -> tuple[np.ndarray, np.ndarray]:
    """``count`` clips (N x T x S x S uint8) of random ``items`` (M x h x w) and their motion labels, the
    classes as even as ``count`` allows (each class in turn, then shuffled)."""
    labels = np.arange(count) % len(motions)
    rng.shuffle(labels)
    clips = np.zeros((count, config.frames, config.size, config.size), np.uint8)
    for n, label in enumerate(labels):
        clips[n] = draw_clip(items[int(rng.integers(0, len(items)))], motions[int(label)], rng, config)
    return clips, labels.astype(np.int64)


def write_moving_items(folder: str | Path, *, counts: dict[str, int], seed: int = 0,
                       config: MovingItemsConfig = MovingItemsConfig(), source: str = "fashion-mnist",
                       data_dir: str | None = None, force: bool = False, layout: str = "npz",
                       progress: Callable[[str, int, int], None] | None = None) -> Path:
    """Write ``counts[split]`` clips per split into ``folder``: ``<split>.npz`` and ``classes.txt``
    (``layout="npz"``), or ``<split>/<class>/<clip>.gif`` (``"gif"``) or ``<split>/<class>/<clip>/`` of PNG
    frames (``"frames"``)."""
    from .datasets import load_dataset

    if layout not in ("npz", "gif", "frames"):
        raise DataError(f"layout must be npz, gif or frames, not '{layout}'")
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        if not force:
            raise DataError(f"{folder} already exists; pass --force to replace it")
        shutil.rmtree(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    for split, count in counts.items():
        items = load_dataset(source, split, data_dir).images[:, 0].numpy()  # training items only in training clips
        clips, labels = make_clips(items, count, rng, config)
        if layout == "npz":
            np.savez_compressed(folder / f"{split}.npz", clips=clips, labels=labels)
        else:
            for n, (clip, label) in enumerate(zip(clips, labels)):
                write_clip(clip, folder / split / MOTIONS[int(label)] / f"{n:05d}", layout)
        if progress is not None:
            progress(split, count, count)
    (folder / CLASSES_FILE).write_text("\n".join(MOTIONS) + "\n", encoding="utf-8")
    return folder


def write_clip(clip: np.ndarray, path: Path, layout: str = "gif", *, duration_ms: int = 80) -> Path:
    """A T x H x W (x 3) uint8 clip as ``path.gif`` or as the folder ``path/`` of ``00000.png`` frames."""
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = [Image.fromarray(f) for f in clip]
    if layout == "gif":
        # Pillow merges a frame equal to the one before into it (one frame shown longer); a frame of a still
        # clip gets its corner pixel changed by one grey level instead, so the GIF keeps all T frames.
        marked = [clip[0]]
        for t in range(1, len(clip)):
            frame = clip[t]
            if np.array_equal(frame, marked[-1]):
                frame = frame.copy()
                corner = frame[(-1, -1) if frame.ndim == 2 else (-1, -1, 0)]
                frame[(-1, -1) if frame.ndim == 2 else (-1, -1, 0)] = corner + 1 if corner < 255 else corner - 1
            marked.append(frame)
        frames = [Image.fromarray(f) for f in marked]
        out = path.with_suffix(".gif")
        # disposal 1 and no optimisation: every frame is stored whole, so a reader gets the frames back
        frames[0].save(out, save_all=True, append_images=frames[1:], duration=duration_ms, loop=0, optimize=False,
                       disposal=1)
        return out
    path.mkdir(parents=True, exist_ok=True)
    for t, frame in enumerate(frames):
        frame.save(path / f"{t:05d}.png")
    return path


# ------------------------------------------------------------------------------------- the dataset

@dataclass
class Clips:
    """A split of clips: ``clips`` N x C x T x H x W uint8, ``labels`` N, ``class_names`` in label order."""

    name: str
    split: str
    clips: torch.Tensor
    labels: torch.Tensor
    class_names: list[str]
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def __post_init__(self):
        if self.clips.dim() != 5:
            raise DataError(f"{self.name}/{self.split}: clips must be N x C x T x H x W, got {tuple(self.clips.shape)}")
        if len(self.clips) != len(self.labels):
            raise DataError(f"{self.name}/{self.split}: {len(self.clips)} clips but {len(self.labels)} labels")

    def __len__(self) -> int:
        return int(self.clips.shape[0])

    @property
    def images(self) -> torch.Tensor:
        """The clips, under the name the image tools (``export``, ``bench infer``) look for."""
        return self.clips

    @property
    def input_size(self) -> tuple[int, int, int, int]:
        return tuple(int(v) for v in self.clips.shape[1:])

    def subset(self, index, split: str | None = None) -> "Clips":
        picked = torch.arange(len(self))[index]
        return dataclasses.replace(self, clips=self.clips[picked], labels=self.labels[picked], split=split or self.split)

    def random_split(self, fraction: float, seed: int) -> tuple["Clips", "Clips"]:
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(seed))
        cut = int(round(len(self) * fraction))
        return self.subset(order[cut:]), self.subset(order[:cut], "val")


def sample_frames(count: int, frames: int) -> list[int]:
    """``frames`` indices spread evenly over a clip of ``count`` frames (repeated where it has fewer)."""
    if count < MIN_FRAMES:
        raise DataError(f"a clip needs at least {MIN_FRAMES} frames, this one has {count}")
    return [min(count - 1, int(math.floor((t + 0.5) * count / frames))) for t in range(frames)]


def fit_frame(img: Image.Image, height: int, width: int, channels: int) -> np.ndarray:
    """One frame resized to ``height`` x ``width``, grey (H x W) or colour (H x W x 3) uint8."""
    img = img.convert("L" if channels == 1 else "RGB")
    if img.size != (width, height):
        img = img.resize((width, height), Image.BILINEAR)
    return np.asarray(img, dtype=np.uint8)


def _video_frames(path: Path) -> list[Image.Image]:
    """The frames of a video file, through imageio or av, whichever is installed and can read it."""
    errors = []
    try:
        import imageio.v3 as iio

        return [Image.fromarray(np.asarray(f)) for f in iio.imiter(path)]
    except ImportError:
        errors.append("imageio is not installed")
    except Exception as err:  # imageio without a plugin for the container raises many kinds of error
        errors.append(f"imageio cannot read it ({str(err).splitlines()[0] if str(err) else type(err).__name__})")
    try:
        import av

        with av.open(str(path)) as container:
            return [frame.to_image() for frame in container.decode(video=0)]
    except ImportError:
        errors.append("av is not installed")
    except Exception as err:
        errors.append(f"av cannot read it ({err})")
    raise DataError(f"{path}: no video decoder could read it ({'; '.join(errors)}); install one with "
                    "'pip install imageio[ffmpeg]' or 'pip install av', or pass the clip as a GIF or a folder of frames")


def image_frames(img: Image.Image) -> list[Image.Image]:
    """The frames of an animated image (GIF, APNG, WebP) in display time: a frame shown k times as long as
    the shortest one counts k times (how GIF writers store a frame that repeats)."""
    frames, durations = [], []
    for index in range(getattr(img, "n_frames", 1)):
        img.seek(index)
        frames.append(img.convert("RGB"))
        durations.append(float(img.info.get("duration") or 0))
    shortest = min((d for d in durations if d > 0), default=0)
    if shortest <= 0 or len(frames) < 2:
        return frames
    timed = []
    for frame, duration in zip(frames, durations):
        timed += [frame] * max(1, int(round(duration / shortest)) if duration > 0 else 1)
    return timed


def read_clip_frames(path: str | Path) -> list[Image.Image]:
    """All frames of a clip: a folder of frame images (in file-name order), a GIF, or a video file."""
    path = Path(path).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in FRAME_SUFFIXES)
        if not files:
            raise DataError(f"{path}: a frame folder holds images ({', '.join(FRAME_SUFFIXES)}); this one holds none")
        frames = []
        for file in files:
            try:
                with Image.open(file) as img:
                    img.load()
                    frames.append(img.copy())
            except (OSError, ValueError) as err:
                raise DataError(f"{file}: not a readable image ({err})") from None
        return frames
    if not path.is_file():
        raise DataError(f"{path}: no such clip (a GIF, a folder of frames or a video file)")
    if path.suffix.lower() in VIDEO_SUFFIXES:
        return _video_frames(path)
    try:
        with Image.open(path) as img:
            return image_frames(img)
    except (OSError, ValueError, EOFError) as err:
        raise DataError(f"{path}: not a readable clip (a GIF, a folder of frames, or a video file: "
                        f"{', '.join(VIDEO_SUFFIXES)}): {err}") from None


def frames_to_clip(every: Sequence[Image.Image], frames: int, height: int, width: int, channels: int,
                   what: str = "the clip") -> np.ndarray:
    """Decoded frames as ``frames`` frames (spread evenly over them) of ``height`` x ``width``: C x T x H x W uint8."""
    try:
        picked = sample_frames(len(every), frames)
    except DataError as err:
        raise DataError(f"{what}: {err}") from None
    arr = np.stack([fit_frame(every[i], height, width, channels) for i in picked])  # T x H x W (x 3)
    return arr[None] if channels == 1 else arr.transpose(3, 0, 1, 2)


def clip_array(path: str | Path, frames: int, height: int, width: int, channels: int) -> np.ndarray:
    """A clip read from ``path`` as ``frames`` frames of ``height`` x ``width``: C x T x H x W uint8."""
    return frames_to_clip(read_clip_frames(path), frames, height, width, channels, str(path))


def _is_grey(img: Image.Image) -> bool:
    rgb = np.asarray(img.convert("RGB"), dtype=np.int16)
    return bool(np.abs(rgb - rgb[..., :1]).max() <= 2)


def _clip_entries(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_dir() or p.suffix.lower() in (".gif",) + VIDEO_SUFFIXES)


def _stats(clips: torch.Tensor) -> tuple[tuple[float, ...], tuple[float, ...]]:
    x = clips[: min(len(clips), 512)].float() / 255  # N x C x T x H x W
    dims = (0, 2, 3, 4)
    mean = tuple(float(v) for v in x.mean(dims))
    std = tuple(max(float(v), 1e-3) for v in x.std(dims))
    return mean, std


def load_clips(folder: str | Path, split: str, *, name: str | None = None, frames: int | None = None,
               size: tuple[int, int] | None = None, channels: int | None = None,
               class_names: Sequence[str] | None = None, stats: tuple | None = None) -> Clips:
    """The ``split`` of a clip set: ``<split>.npz`` beside ``classes.txt``, or ``<split>/<class>/<clip>``
    folders (frame folders, GIFs, videos). ``frames``, ``size`` and ``channels`` default to the first
    clip's (16 frames for a folder); ``class_names`` (the training split's, for the test split) fixes
    the label order; ``stats`` (mean, std) defaults to the split's own."""
    root = Path(folder).expanduser()
    set_name = name or root.name
    if (root / f"{split}.npz").is_file():
        with np.load(root / f"{split}.npz") as data:
            arr, labels = data["clips"], data["labels"]
        arr = arr[:, None] if arr.ndim == 4 else arr.transpose(0, 4, 1, 2, 3)  # N x C x T x H x W
        names = (root / CLASSES_FILE).read_text(encoding="utf-8").split() if (root / CLASSES_FILE).is_file() \
            else [str(i) for i in range(int(labels.max()) + 1)]
        clips = torch.from_numpy(np.ascontiguousarray(arr))
        if class_names is not None and list(class_names) != names:
            raise DataError(f"{root}: its classes {names} are not the training classes {list(class_names)}")
        mean, std = stats or _stats(clips)
        return Clips(set_name, split, clips, torch.from_numpy(labels.astype(np.int64)), names, mean, std)
    where = root / split
    if not where.is_dir():
        raise DataError(f"{root}: no {split}.npz and no {split}/ folder: a clip set is {split}/<class>/<clip> "
                        "(a folder of frames, a GIF or a video per clip), or the npz files 'cnnlab data make "
                        "moving-items' writes")
    found = sorted(p.name for p in where.iterdir() if p.is_dir())
    names = list(class_names) if class_names is not None else found
    unknown = sorted(set(found) - set(names))
    if unknown:
        raise DataError(f"{where}: classes {unknown} are not among the training classes")
    entries = [(path, names.index(c)) for c in found for path in _clip_entries(where / c)]
    if not entries:
        raise DataError(f"{where}: no clips (each class folder holds GIFs, videos or folders of frames)")
    first = read_clip_frames(entries[0][0])
    frames = frames or 16
    height, width = size or (first[0].height, first[0].width)
    channels = channels or (1 if _is_grey(first[0]) else 3)
    arrays = [clip_array(path, frames, height, width, channels) for path, _ in entries]
    clips = torch.from_numpy(np.stack(arrays))
    mean, std = stats or _stats(clips)
    return Clips(set_name, split, clips, torch.tensor([k for _, k in entries]), names, mean, std)
