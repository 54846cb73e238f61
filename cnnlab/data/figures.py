"""Articulated stick figures with COCO's 17 person keypoints, written as a COCO person-keypoints set.

No photograph of people can be downloaded here, so pose data is drawn: a skeleton whose proportions
and joint angles are sampled within human limits, limbs drawn as thick textured strokes, a head with
eyes and a nose when the figure faces the camera, on the cluttered backgrounds of :mod:`.backgrounds`
with distractor strokes and blobs. The file is exactly what a COCO ``person_keypoints_*.json`` holds, so
the same reader serves users' COCO downloads and these sets.

Keypoints (COCO order): nose, left/right eye, left/right ear, left/right shoulder, elbow, wrist,
hip, knee, ankle. "Left" is the figure's own left: on the image's right for a figure facing the
camera (80 %), on the image's left for one seen from behind (nose and eyes are then labelled but
hidden, ``v = 1``).

Visibility as COCO marks it: ``v = 2`` labelled and visible, ``v = 1`` labelled but hidden (under a
later figure, a distractor, or the back of the head), ``v = 0`` not labelled (outside the image; the
coordinates are then 0). ``bbox`` is the box of the figure's drawn pixels (clipped to the image),
``num_keypoints`` the count of labelled keypoints. ``area`` is the box's area, not the count of drawn
pixels, as keypoint sets without masks commonly record it: COCO's OKS scales its tolerances by the
square root of the area, and a stick figure's strokes fill only about a third of its box (median 0.32 on
``figures-mini``) where a person's silhouette fills more than half, so the pixel count would judge a
figure more strictly than a person of the same size.

Proportions, as fractions of the standing height ``H`` (after anthropometric tables of adults, e.g.
Drillis & Contini 1966: shoulder width 0.26 H, hip width 0.19 H, upper arm 0.19 H, forearm 0.15 H,
thigh 0.25 H, shin 0.25 H), each scaled by up to +-10 % per figure. Angles (2-D projections, degrees):
torso lean within +-20; upper arm 0-170 away from the torso's downward axis (abduction), elbow bent
0-145 to either side; thigh -15..50 abduction with 0-30 of projected flexion, knee bent 0-110 to either
side; head tilt +-20. Limbs are foreshortened by a factor 0.75-1 (a limb pointing partly at the camera).
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

from ..errors import DataError
from .backgrounds import make_background, textures

KEYPOINT_NAMES = ["nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
                  "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip", "left_knee",
                  "right_knee", "left_ankle", "right_ankle"]
# COCO's person skeleton (1-based keypoint indices, as in person_keypoints_*.json)
SKELETON = [[16, 14], [14, 12], [17, 15], [15, 13], [12, 13], [6, 12], [7, 13], [6, 7], [6, 8], [7, 9], [8, 10],
            [9, 11], [2, 3], [1, 2], [1, 3], [2, 4], [3, 5], [4, 6], [5, 7]]
# COCO's per-keypoint OKS constants sigma_i (Ruggero Ronchi & Perona 2017; pycocotools' kpt_oks_sigmas:
# the standard deviations of human annotators' clicks as fractions of the object's scale)
COCO_SIGMAS = [v / 10 for v in (.26, .25, .25, .35, .35, .79, .79, .72, .72, .62, .62, 1.07, 1.07, .87, .87, .89, .89)]
K = {name: i for i, name in enumerate(KEYPOINT_NAMES)}


@dataclass(frozen=True)
class FigureConfig:
    """How a figure set is drawn."""

    height: int = 128
    width: int = 128
    min_figures: int = 1
    max_figures: int = 3
    min_size: float = 0.45  # standing height as a fraction of the canvas height
    max_size: float = 0.9
    distractors: int = 4  # at most this many clutter strokes and blobs per image
    noise: float = 6.0  # largest sensor-noise sigma in grey levels
    back_view: float = 0.2  # share of figures seen from behind

    def __post_init__(self):
        if self.height < 32 or self.width < 32:
            raise DataError(f"figure images need at least 32x32 pixels, got {self.height}x{self.width}")
        if not 1 <= self.min_figures <= self.max_figures:
            raise DataError(f"figures per image must satisfy 1 <= min <= max, got {self.min_figures}..{self.max_figures}")
        if not 0 < self.min_size <= self.max_size:
            raise DataError(f"figure sizes must satisfy 0 < min <= max, got {self.min_size}..{self.max_size}")


def _unit(angle_deg: float) -> np.ndarray:
    """The image-plane direction at ``angle_deg`` from straight down (y grows downwards), counter-clockwise
    as seen on screen towards the image's right."""
    a = math.radians(angle_deg)
    return np.array([math.sin(a), math.cos(a)])


def pose(rng: np.random.Generator, height: float, centre: np.ndarray, facing_camera: bool) -> tuple[np.ndarray, float, np.ndarray]:
    """17 x 2 keypoints of one figure of standing height ``height`` whose hips centre at ``centre``, and
    the head radius and centre. Coordinates are PIL's (the centre of pixel ``i`` at ``i``). Angles and proportions as the module docstring says."""
    s = lambda: rng.uniform(0.9, 1.1)  # noqa: E731 - one person's proportions vary within +-10 %
    fore = lambda: rng.uniform(0.75, 1.0)  # noqa: E731 - foreshortening of a limb
    torso, shoulder_w, hip_w = 0.30 * height * s(), 0.26 * height * s(), 0.19 * height * s()
    upper_arm, forearm = 0.19 * height * s(), 0.15 * height * s()
    thigh, shin = 0.25 * height * s(), 0.25 * height * s()
    head_r = 0.065 * height * s()
    lean = rng.uniform(-20, 20)
    down = _unit(lean)  # torso axis, hips -> below
    across = np.array([down[1], -down[0]])  # towards the image's right, perpendicular to the torso
    # the figure's left is on the image's right when it faces the camera
    side = {"left": 1.0 if facing_camera else -1.0}
    side["right"] = -side["left"]
    kp = np.zeros((17, 2))
    neck = centre - down * torso
    for name in ("left", "right"):
        sign = side[name]
        hip = centre + across * sign * hip_w / 2
        shoulder = neck + across * sign * shoulder_w / 2
        kp[K[f"{name}_hip"]], kp[K[f"{name}_shoulder"]] = hip, shoulder
        # arm: abduction measured from the torso's downward axis, away from the body
        arm_dir = lean + sign * rng.uniform(0, 170)
        elbow = shoulder + _unit(arm_dir) * upper_arm * fore()
        wrist = elbow + _unit(arm_dir + rng.choice([-1, 1]) * rng.uniform(0, 145)) * forearm * fore()
        kp[K[f"{name}_elbow"]], kp[K[f"{name}_wrist"]] = elbow, wrist
        leg_dir = lean + sign * rng.uniform(-15, 50) + rng.uniform(-30, 30) * 0.5
        knee = hip + _unit(leg_dir) * thigh * fore()
        ankle = knee + _unit(leg_dir + rng.choice([-1, 1]) * rng.uniform(0, 110)) * shin * fore()
        kp[K[f"{name}_knee"]], kp[K[f"{name}_ankle"]] = knee, ankle
    tilt = lean + rng.uniform(-20, 20)
    head_up = -_unit(tilt)
    head_across = np.array([-head_up[1], head_up[0]])  # image right, for the head's frame
    head = neck + head_up * (head_r * 1.5)
    turn = rng.uniform(-0.3, 0.3) * head_r  # the face turned a little to one side
    for name in ("left", "right"):
        sign = side[name]
        kp[K[f"{name}_ear"]] = head + head_across * sign * head_r * 0.95
        kp[K[f"{name}_eye"]] = head + head_across * (sign * head_r * 0.4 + turn) + head_up * head_r * 0.2
    kp[K["nose"]] = head + head_across * turn - head_up * head_r * 0.15
    return kp, head_r, head


# limbs drawn as strokes: (from, to, width as a fraction of the height, part: 0 skin, 1 clothes)
_LIMBS = [("left_shoulder", "left_elbow", 0.055, 1), ("left_elbow", "left_wrist", 0.045, 0),
          ("right_shoulder", "right_elbow", 0.055, 1), ("right_elbow", "right_wrist", 0.045, 0),
          ("left_hip", "left_knee", 0.07, 1), ("left_knee", "left_ankle", 0.06, 1),
          ("right_hip", "right_knee", 0.07, 1), ("right_knee", "right_ankle", 0.06, 1)]


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """An H x W x 3 float fill: a flat colour modulated by a crop of a bundled photo (cloth, skin)."""
    colour = rng.uniform(40, 255, size=3)
    photo = textures(3)[int(rng.integers(len(textures(3))))]
    top = int(rng.integers(0, photo.shape[0] - height + 1)) if photo.shape[0] >= height else 0
    left = int(rng.integers(0, photo.shape[1] - width + 1)) if photo.shape[1] >= width else 0
    crop = np.resize(photo[top:top + height, left:left + width].mean(axis=2), (height, width))
    crop = (crop - crop.mean()) / max(float(crop.std()), 1.0)
    return np.clip(colour[None, None, :] * (1 + 0.18 * crop[:, :, None]), 0, 255)


def _stroke(draw: ImageDraw.ImageDraw, a: np.ndarray, b: np.ndarray, width: float) -> None:
    w = max(2, int(round(width)))
    draw.line([tuple(a), tuple(b)], fill=255, width=w)
    r = w / 2
    for p in (a, b):  # round caps, so joints look like joints
        draw.ellipse([p[0] - r, p[1] - r, p[0] + r, p[1] + r], fill=255)


def render_figure(rng: np.random.Generator, kp: np.ndarray, head_r: float, head: np.ndarray, height: float,
                  facing_camera: bool, size: tuple[int, int]) -> tuple[list[tuple[np.ndarray, np.ndarray]], np.ndarray]:
    """The figure as layers (mask, fill) back to front, and its whole H x W bool mask."""
    h, w = size
    parts = [_texture(rng, h, w), _texture(rng, h, w)]  # skin, clothes
    layers = []
    body = Image.new("L", (w, h), 0)
    draw = ImageDraw.Draw(body)
    sh = (kp[K["left_shoulder"]] + kp[K["right_shoulder"]]) / 2
    hp = (kp[K["left_hip"]] + kp[K["right_hip"]]) / 2
    torso = [tuple(kp[K["left_shoulder"]]), tuple(kp[K["right_shoulder"]]), tuple(kp[K["right_hip"]]),
             tuple(kp[K["left_hip"]])]
    draw.polygon(torso, fill=255)
    _stroke(draw, sh, hp, 0.12 * height)
    _stroke(draw, sh, head, 0.05 * height)  # neck
    layers.append((np.asarray(body) > 0, parts[1]))
    for a, b, width, part in _LIMBS:
        mask = Image.new("L", (w, h), 0)
        _stroke(ImageDraw.Draw(mask), kp[K[a]], kp[K[b]], width * height)
        layers.append((np.asarray(mask) > 0, parts[part]))
    mask = Image.new("L", (w, h), 0)
    ImageDraw.Draw(mask).ellipse([head[0] - head_r, head[1] - head_r, head[0] + head_r, head[1] + head_r], fill=255)
    layers.append((np.asarray(mask) > 0, parts[0]))
    if facing_camera:  # eyes and nose: the cue that tells the figure's left from its right
        dots = Image.new("L", (w, h), 0)
        d = ImageDraw.Draw(dots)
        r = max(1.0, head_r * 0.18)
        for name in ("left_eye", "right_eye", "nose"):
            p = kp[K[name]]
            d.ellipse([p[0] - r, p[1] - r, p[0] + r, p[1] + r], fill=255)
        layers.append((np.asarray(dots) > 0, np.full((h, w, 3), rng.uniform(0, 40), np.float32)))
    whole = np.zeros((h, w), bool)
    for m, _ in layers:
        whole |= m
    return layers, whole


def _distractor(rng: np.random.Generator, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A clutter stroke or blob (mask, fill): limb-like things that are not limbs."""
    h, w = size
    mask = Image.new("L", (w, h), 0)
    d = ImageDraw.Draw(mask)
    if rng.uniform() < 0.6:
        a = rng.uniform(0, [w, h])
        b = a + rng.uniform(-0.4, 0.4, 2) * [w, h]
        _stroke(d, a, b, rng.uniform(0.02, 0.07) * h)
    else:
        c, r = rng.uniform(0, [w, h]), rng.uniform(0.04, 0.12) * h
        d.ellipse([c[0] - r, c[1] - r * rng.uniform(0.5, 1.5), c[0] + r, c[1] + r], fill=255)
    return np.asarray(mask) > 0, _texture(rng, h, w)


def render_image(rng: np.random.Generator, config: FigureConfig) -> tuple[np.ndarray, list[dict]]:
    """One H x W x 3 uint8 image and its figures' annotations (``keypoints`` 17 x 3, ``bbox``, ``area``)."""
    h, w = config.height, config.width
    canvas, _ = make_background(rng, h, w, 3)
    canvas = canvas.copy()
    n = int(rng.integers(config.min_figures, config.max_figures + 1))
    owner = np.full((h, w), -1, np.int64)  # which figure a pixel shows (-1 background or clutter)
    figures = []
    items: list[tuple[int, list, np.ndarray]] = []
    for i in range(n):
        height = rng.uniform(config.min_size, config.max_size) * h
        centre = np.array([rng.uniform(0.1, 0.9) * w, rng.uniform(0.35, 0.75) * h + 0.05 * height])
        facing = bool(rng.uniform() >= config.back_view)
        kp, head_r, head = pose(rng, height, centre, facing)
        layers, whole = render_figure(rng, kp, head_r, head, height, facing, (h, w))
        items.append((i, layers, whole))
        figures.append((kp, facing, whole))
    clutter = [_distractor(rng, (h, w)) for _ in range(int(rng.integers(0, config.distractors + 1)))]
    # paint back to front: some clutter behind, figures, some clutter in front (occluders)
    order = [("clutter", c) for c in clutter[: len(clutter) // 2]] + [("figure", it) for it in items] + \
            [("clutter", c) for c in clutter[len(clutter) // 2:]]
    for kind, thing in order:
        if kind == "clutter":
            mask, fill = thing
            canvas[mask] = fill[mask]
            owner[mask] = -1
        else:
            i, layers, _ = thing
            for mask, fill in layers:
                canvas[mask] = fill[mask]
                owner[mask] = i
    sigma = rng.uniform(0, config.noise)
    canvas = np.clip(canvas + rng.normal(0, sigma, canvas.shape), 0, 255).astype(np.uint8)
    annotations = []
    for i, (kp, facing, whole) in enumerate(figures):
        out = np.zeros((17, 3))
        for j, (x, y) in enumerate(kp):
            if not (-0.5 <= x < w - 0.5 and -0.5 <= y < h - 0.5):
                continue  # outside the image: not labelled (v = 0, coordinates 0)
            r, c = int(round(y)), int(round(x))
            # hidden when no pixel within one of the joint shows this figure (a joint on its own outline,
            # an ear on the head's rim, is still visible)
            hidden = not (owner[max(0, r - 1):r + 2, max(0, c - 1):c + 2] == i).any()
            if not facing and KEYPOINT_NAMES[j] in ("nose", "left_eye", "right_eye"):
                hidden = True  # behind the head
            out[j] = (x, y, 1 if hidden else 2)  # COCO, like PIL, puts the centre of pixel 0 at 0
        ys, xs = np.nonzero(whole)
        if len(xs) == 0 or (out[:, 2] > 0).sum() == 0:
            continue
        x1, y1, x2, y2 = float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1)
        annotations.append({"keypoints": out, "bbox": [x1, y1, x2 - x1, y2 - y1],
                            "area": (x2 - x1) * (y2 - y1)})  # the box's area: see the module docstring
    return canvas, annotations


def categories() -> list[dict]:
    return [{"id": 1, "name": "person", "supercategory": "person", "keypoints": list(KEYPOINT_NAMES),
             "skeleton": [list(e) for e in SKELETON]}]


def write_figure_set(folder: Path, *, counts: dict[str, int], seed: int = 0, config: FigureConfig | None = None,
                     force: bool = False, progress: Callable[[str, int, int], None] | None = None) -> Path:
    """Draw a figure set into ``folder``: ``annotations/person_keypoints_<split>.json`` and
    ``images/<split>-NNNNNN.jpg``, the layout of a COCO download. Same seed, same set."""
    config = config or FigureConfig()
    folder = Path(folder)
    if folder.exists() and any(folder.iterdir()):
        if not force:
            raise DataError(f"{folder} exists and is not empty; pass --force to replace it")
        shutil.rmtree(folder)
    (folder / "annotations").mkdir(parents=True, exist_ok=True)
    (folder / "images").mkdir(parents=True, exist_ok=True)
    ann_id = 1
    for s, split in enumerate(("train", "test")):
        rng = np.random.default_rng([seed, s])
        images, anns = [], []
        for n in range(counts[split]):
            canvas, figures = render_image(rng, config)
            name = f"{split}-{n:06d}.jpg"
            Image.fromarray(canvas).save(folder / "images" / name, quality=90)  # JPEG, as COCO ships
            images.append({"id": n + 1, "file_name": name, "width": config.width, "height": config.height})
            for f in figures:
                kp = f["keypoints"]
                flat = [round(float(v), 2) if j % 3 < 2 else int(v) for j, v in enumerate(kp.reshape(-1))]
                anns.append({"id": ann_id, "image_id": n + 1, "category_id": 1, "iscrowd": 0,
                             "bbox": [round(v, 2) for v in f["bbox"]], "area": f["area"], "keypoints": flat,
                             "num_keypoints": int((kp[:, 2] > 0).sum())})
                ann_id += 1
            if progress:
                progress(split, n + 1, counts[split])
        data = {"info": {"description": f"cnnlab stick figures, seed {seed}", "cnnlab_figures": {
                    "seed": seed, "height": config.height, "width": config.width}},
                "images": images, "annotations": anns, "categories": categories()}
        (folder / "annotations" / f"person_keypoints_{split}.json").write_text(json.dumps(data, separators=(",", ":")))
    (folder / "README.txt").write_text(
        "Stick figures with COCO's 17 person keypoints, drawn by cnnlab (cnnlab data make figures).\n"
        f"seed {seed}; {counts['train']} train / {counts['test']} test images of {config.width}x{config.height}.\n"
        "Backgrounds and textures: six CC0 photographs shipped with scikit-image (cnnlab/bundled/textures).\n")
    return folder
