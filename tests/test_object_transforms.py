"""Augmentation that carries targets: the transformed target must still match the transformed image."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from cnnlab.data.object_batches import collate, iter_object_batches, placement
from cnnlab.data.object_transforms import ObjectAugment, color_jitter, parse_object_augment, warp
from cnnlab.data.objects import IGNORE, ImageInfo, ObjectBatch, ObjectDataset, Objects, ObjectTable
from cnnlab.errors import ConfigError, DataError

SETTINGS = settings(max_examples=60, deadline=None)


def rect_objects(boxes, h, w, labels=None, keypoints=None):
    """Objects whose masks are exactly their (whole-pixel) boxes."""
    masks = torch.zeros(len(boxes), h, w, dtype=torch.bool)
    for j, (x1, y1, x2, y2) in enumerate(boxes):
        masks[j, y1:y2, x1:x2] = True
    n = len(boxes)
    return Objects(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4),
                   torch.tensor(labels if labels is not None else list(range(n)), dtype=torch.long),
                   torch.zeros(n, dtype=torch.bool), torch.arange(1, n + 1), masks, keypoints)


def semantic_of(target, h, w):
    sem = torch.zeros(h, w, dtype=torch.long)
    for m, label in zip(target.masks, target.labels):
        sem[m] = label + 1
    return sem


def mask_box(mask):
    ys, xs = torch.nonzero(mask, as_tuple=True)
    return [xs.min().item(), ys.min().item(), xs.max().item() + 1, ys.max().item() + 1]


@st.composite
def affine_cases(draw):
    h, w = draw(st.integers(8, 40)), draw(st.integers(8, 40))
    n = draw(st.integers(1, 4))
    boxes = []
    for _ in range(n):
        x1, y1 = draw(st.integers(0, w - 2)), draw(st.integers(0, h - 2))
        boxes.append((x1, y1, draw(st.integers(x1 + 1, w)), draw(st.integers(y1 + 1, h))))
    mirror = draw(st.booleans())
    a = draw(st.floats(0.3, 3.0))
    ay = draw(st.floats(0.3, 3.0))
    bx, by = draw(st.floats(-20, 20)), draw(st.floats(-20, 20))
    out = (draw(st.integers(8, 48)), draw(st.integers(8, 48)))
    return h, w, boxes, (-a if mirror else a), (bx + out[1] if mirror else bx), ay, by, out


@given(affine_cases())
@SETTINGS
def test_box_of_transformed_mask_is_transformed_clipped_box(case):
    h, w, boxes, ax, bx, ay, by, out = case
    target = rect_objects(boxes, h, w)
    image = semantic_of(target, h, w).to(torch.uint8).view(1, 1, h, w)  # the image *is* the label map
    batch = ObjectBatch(image, [target], semantic_of(target, h, w).unsqueeze(0), torch.tensor([0]))
    res = warp(batch, ax, bx, ay, by, out, interpolation="nearest", min_size=0.0)
    t = res.targets[0]
    ho, wo = out
    for j in range(len(t)):
        # Independently: map the corners, order them, clip to the output.
        label = int(t.labels[j])
        x1, y1, x2, y2 = boxes[label]
        xs = sorted([ax * x1 + bx, ax * x2 + bx])
        ys = sorted([ay * y1 + by, ay * y2 + by])
        expected = [min(max(xs[0], 0), wo), min(max(ys[0], 0), ho), min(max(xs[1], 0), wo), min(max(ys[1], 0), ho)]
        assert t.boxes[j].tolist() == pytest.approx(expected, abs=1e-4)
        # Nearest sampling of a whole-pixel rectangle moves each edge by at most half a pixel.
        assert np.allclose(mask_box(t.masks[j]), expected, atol=0.5 + 1e-6)
    # The image, the semantic map and the masks were moved identically.
    inside = res.semantic[0] != IGNORE
    assert torch.equal(res.images[0, 0].long()[inside], res.semantic[0][inside])
    assert torch.equal(semantic_of(t, ho, wo)[inside], res.semantic[0][inside]) or len(t) < len(target)


@given(st.integers(0, 10_000), st.sampled_from([16, 24, 33]))
@SETTINGS
def test_random_augment_keeps_masks_inside_boxes_and_semantic_consistent(seed, side):
    g = torch.Generator().manual_seed(seed)
    h = w = side
    masks = torch.rand(3, h, w, generator=g) < 0.15  # irregular blobs
    masks[:, side // 3, side // 3] = True
    masks[1] &= ~masks[0]
    masks[2] &= ~(masks[0] | masks[1])
    boxes = torch.tensor([mask_box(m) for m in masks], dtype=torch.float32)
    target = Objects(boxes, torch.tensor([0, 1, 2]), torch.zeros(3, dtype=torch.bool), torch.tensor([1, 2, 3]), masks)
    sem = semantic_of(target, h, w)
    batch = ObjectBatch(sem.to(torch.uint8).view(1, 1, h, w), [target], sem.unsqueeze(0), torch.tensor([0]))
    aug = ObjectAugment(flip=True, crop=(0.3, 1.0), scale=(0.5, 2.0), translate=0.2, min_size=1.0, interpolation="nearest")
    res = aug(batch, torch.Generator().manual_seed(seed))
    t = res.targets[0]
    for j in range(len(t)):
        mb = mask_box(t.masks[j])
        x1, y1, x2, y2 = t.boxes[j].tolist()
        # A mask never leaves its box (up to the half pixel of nearest sampling).
        assert mb[0] >= x1 - 0.5 - 1e-6 and mb[1] >= y1 - 0.5 - 1e-6
        assert mb[2] <= x2 + 0.5 + 1e-6 and mb[3] <= y2 + 0.5 + 1e-6
        assert (res.semantic[0][t.masks[j]] == t.labels[j] + 1).all()
    inside = res.semantic[0] != IGNORE
    assert torch.equal(res.images[0, 0].long()[inside], res.semantic[0][inside])


@given(st.floats(0.5, 3.0), st.floats(-10, 10), st.floats(-10, 10), st.booleans(), st.integers(0, 1000))
@SETTINGS
def test_keypoints_land_on_the_transformed_pixel(scale, tx, ty, mirror, seed):
    h = w = 32
    rng = np.random.default_rng(seed)
    centres = rng.integers(3, 29, size=(2, 2))  # (row, col) of two keypoints
    disks = torch.zeros(2, h, w, dtype=torch.bool)
    yy, xx = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    for k, (r, c) in enumerate(centres):
        disks[k] = (yy - int(r)) ** 2 + (xx - int(c)) ** 2 <= 4  # radius 2
    kp = torch.tensor([[[c + 0.5, r + 0.5, 2.0] for r, c in centres]])  # 1 object x 2 keypoints, pixel centres
    target = Objects(torch.tensor([[0.0, 0.0, w, h]]), torch.tensor([0]), torch.tensor([False]), torch.tensor([1]),
                     disks[:1] | disks[1:], kp)
    # Two "masks": carry each disk in its own image channel to follow it through the warp.
    image = (disks.to(torch.uint8) * 255).unsqueeze(0)  # 1 x 2 x H x W
    batch = ObjectBatch(image, [target], None, torch.tensor([0]))
    ax = -scale if mirror else scale
    bx = (w if mirror else 0.0) + tx
    res = warp(batch, ax, bx, scale, ty, (h, w), interpolation="nearest", min_size=0.0, flip_pairs=[(0, 1)])
    if not len(res.targets[0]):
        return
    out_kp = res.targets[0].keypoints[0]
    for k in range(2):
        source = 1 - k if mirror else k  # a mirror swaps the left/right pair
        x, y, v = out_kp[k].tolist()
        ex = ax * (centres[source][1] + 0.5) + bx
        ey = scale * (centres[source][0] + 0.5) + ty
        if 0 <= ex < w and 0 <= ey < h:
            assert v == 2 and x == pytest.approx(ex, abs=1e-4) and y == pytest.approx(ey, abs=1e-4)
            assert res.images[0, source, int(math.floor(y)), int(math.floor(x))] == 255
        else:
            assert (x, y, v) == (0.0, 0.0, 0.0)


def test_flip_is_exact_and_swaps_pairs():
    h, w = 6, 10
    img = torch.arange(h * w, dtype=torch.uint8).view(1, 1, h, w)
    kp = torch.tensor([[[1.5, 2.5, 2.0], [7.5, 2.5, 1.0], [0.0, 0.0, 0.0]]])
    target = rect_objects([(1, 1, 4, 5)], h, w, keypoints=kp)
    batch = ObjectBatch(img, [target], semantic_of(target, h, w).unsqueeze(0), torch.tensor([0]))
    res = warp(batch, -1.0, float(w), 1.0, 0.0, flip_pairs=[(0, 1)])  # bilinear on the pixel grid is exact
    assert torch.equal(res.images, img.flip(-1))
    assert torch.equal(res.semantic, batch.semantic.flip(-1))
    assert res.targets[0].boxes.tolist() == [[6.0, 1.0, 9.0, 5.0]]
    assert torch.equal(res.targets[0].masks, target.masks.flip(-1))
    # keypoint 0 (left) now holds the mirrored right one: x = 10 - 7.5 = 2.5, visibility 1
    assert res.targets[0].keypoints[0].tolist() == [[2.5, 2.5, 1.0], [8.5, 2.5, 2.0], [0.0, 0.0, 0.0]]
    assert res.affine[0].tolist() == [-1.0, 10.0, 1.0, 0.0]
    assert res.boxes_to_original(0, res.targets[0].boxes).tolist() == [[1.0, 1.0, 4.0, 5.0]]


def test_boxes_dropped_when_too_small_or_outside():
    h = w = 20
    target = rect_objects([(0, 0, 3, 3), (10, 10, 20, 20), (2, 15, 3, 18)], h, w)
    batch = ObjectBatch(torch.zeros(1, 1, h, w, dtype=torch.uint8), [target], None, torch.tensor([0]))
    # shift left by 5 and keep 2-pixel boxes: box 0 leaves the image, box 2 (1 pixel wide) is too narrow
    res = warp(batch, 1.0, -5.0, 1.0, 0.0, min_size=2.0)
    assert res.targets[0].labels.tolist() == [1]
    assert res.targets[0].boxes.tolist() == [[5.0, 10.0, 15.0, 20.0]]


def test_augment_is_reproducible_and_respects_hflip():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (4, 1, 16, 16), dtype=torch.uint8, generator=g)
    targets = [rect_objects([(2, 2, 9, 12)], 16, 16) for _ in range(4)]
    batch = ObjectBatch(images, targets, None, torch.arange(4))
    aug = parse_object_augment("flip,scale=0.7:1.4,translate=0.1,color=0.3")
    a = aug(batch, torch.Generator().manual_seed(5))
    b = aug(batch, torch.Generator().manual_seed(5))
    c = aug(batch, torch.Generator().manual_seed(6))
    assert torch.equal(a.images, b.images) and not torch.equal(a.images, c.images)
    assert all(torch.equal(x.boxes, y.boxes) for x, y in zip(a.targets, b.targets))
    flip_only = ObjectAugment(flip=True)
    same = flip_only(batch, torch.Generator().manual_seed(1), hflip=False)  # digits: never mirrored
    assert torch.equal(same.images, images)
    mirrored = flip_only(batch, torch.Generator().manual_seed(1), hflip=True)
    flipped = [i for i in range(4) if not torch.equal(mirrored.images[i], images[i])]
    assert flipped and all(torch.equal(mirrored.images[i], images[i].flip(-1)) for i in flipped)


def test_color_jitter_matches_formula():
    g = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (3, 1, 5, 5), dtype=torch.uint8, generator=g)
    out = color_jitter(images, 0.4, torch.Generator().manual_seed(9))
    g2 = torch.Generator().manual_seed(9)
    draws = [torch.rand(3, generator=g2) * 0.8 + 0.6 for _ in range(3)]  # brightness, contrast, saturation
    for i in range(3):
        x = images[i].double() * float(draws[0][i])
        level = x.mean()
        expected = (level + (x - level) * float(draws[1][i])).round().clamp(0, 255)
        assert (out[i].double() - expected).abs().max() <= 1  # float32 rounding at .5 may differ by one


def test_parse_object_augment_errors():
    assert parse_object_augment("crop").crop == (0.3, 1.0)
    assert parse_object_augment("scale=0.5:2, flip").scale == (0.5, 2.0)
    with pytest.raises(ConfigError, match="unknown augmentation 'rotate'"):
        parse_object_augment("rotate")
    with pytest.raises(ConfigError, match="crop range"):
        parse_object_augment("crop=0.5:1.5")


class TinyDataset(ObjectDataset):
    """Two images of different sizes held in lists: enough to test collation."""

    def __init__(self):
        images = [ImageInfo(1, "a.png", 100, 50), ImageInfo(2, "b.png", 30, 60)]
        table = ObjectTable.from_rows([1, 1], [[10, 10, 30, 40], [0, 0, 30, 60]], [0, 1], [False, False], [1, 2],
                                      [600.0, 1800.0])
        super().__init__(name="tiny", split="train", images=images, table=table, class_names=["a", "b"],
                         category_ids=[1, 2], mean=(0.5,), std=(0.25,), channels=1, hflip=True, has_masks=True)
        self.pixels = [torch.full((1, 50, 100), 200, dtype=torch.uint8), torch.full((1, 60, 30), 10, dtype=torch.uint8)]

    def _read_image(self, i):
        return self.pixels[i]

    def _read_masks(self, i):
        info = self.images[i]
        m = torch.zeros(1, info.height, info.width, dtype=torch.bool)
        x1, y1, x2, y2 = [int(v) for v in self.table.boxes[i].tolist()]
        m[0, y1:y2, x1:x2] = True
        return m


def test_collate_letterbox_and_resize():
    ds = TinyDataset()
    with pytest.raises(DataError, match="2 sizes"):
        ds.batch([0, 1])
    batch = ds.batch([0, 1], size=(64, 64))
    assert batch.images.shape == (2, 1, 64, 64)
    # image 0: 100 x 50 -> scale 0.64, 64 x 32, centred with a 16-pixel margin above and below
    assert placement(50, 100, (64, 64), "letterbox") == (0.64, 0.0, 0.64, 16.0)
    assert batch.targets[0].boxes[0].tolist() == pytest.approx([6.4, 22.4, 19.2, 41.6])
    assert (batch.images[0, 0, :16] == round(0.5 * 255)).all()  # the margin takes the mean colour
    assert (batch.semantic[0, :16] == IGNORE).all() and (batch.semantic[0, 16:48] != IGNORE).all()
    assert batch.boxes_to_original(0, batch.targets[0].boxes)[0].tolist() == pytest.approx([10, 10, 30, 40], abs=1e-4)
    stretched = ds.batch([1], size=(30, 30), mode="resize")
    assert stretched.targets[0].boxes[0].tolist() == pytest.approx([0, 0, 30, 30])


def test_epoch_iterator_covers_every_image_reproducibly():
    ds = TinyDataset()
    aug = ObjectAugment(flip=True, color=0.2)
    first = list(iter_object_batches(ds, 1, generator=torch.Generator().manual_seed(3), augment=aug, size=(32, 32)))
    again = list(iter_object_batches(ds, 1, generator=torch.Generator().manual_seed(3), augment=aug, size=(32, 32)))
    assert sorted(int(b.indices[0]) for b in first) == [0, 1]
    assert all(torch.equal(a.images, b.images) for a, b in zip(first, again))
