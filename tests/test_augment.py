"""Policy augmentations and label mixing, batched: checked against PIL's definitions and by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image, ImageEnhance, ImageOps

from cnnlab.data import augment as A
from cnnlab.train.trainer import train

RNG = np.random.default_rng(0)
PICTURE = RNG.integers(0, 256, (20, 24, 3), dtype=np.uint8)


def ours(name: str, strength: float, picture=PICTURE, sign: float = 1.0) -> np.ndarray:
    x = torch.from_numpy(picture).permute(2, 0, 1)[None].float()
    out = A.OPERATIONS[name](x, torch.tensor([strength]), torch.tensor([sign]))
    return out[0].permute(1, 2, 0).round().clamp(0, 255).numpy().astype(np.int64)


@pytest.mark.parametrize("name, strength, pil, tolerance", [
    ("equalize", 1.0, lambda im: ImageOps.equalize(im), 0),
    ("autocontrast", 1.0, lambda im: ImageOps.autocontrast(im), 0),
    ("posterize", 0.5, lambda im: ImageOps.posterize(im, 6), 0),  # strength 0.5: 8 - 2 bits
    ("solarize", 0.5, lambda im: ImageOps.solarize(im, 128), 0),  # strength 0.5: threshold 128
    # ImageEnhance blends in 8-bit arithmetic: one grey level apart at most.
    ("brightness", 0.5, lambda im: ImageEnhance.Brightness(im).enhance(1.45), 1),
    ("contrast", 0.5, lambda im: ImageEnhance.Contrast(im).enhance(1.45), 1),
    ("color", 0.5, lambda im: ImageEnhance.Color(im).enhance(1.45), 1),
    ("sharpness", 0.5, lambda im: ImageEnhance.Sharpness(im).enhance(1.45), 1),
])
def test_pixel_operations_follow_pil(name, strength, pil, tolerance):
    expected = np.asarray(pil(Image.fromarray(PICTURE))).astype(np.int64)
    assert np.abs(ours(name, strength) - expected).max() <= tolerance
    grey = PICTURE[:, :, :1]
    expected_grey = np.asarray(pil(Image.fromarray(grey[:, :, 0]))).astype(np.int64)
    assert np.abs(ours(name, strength, grey)[:, :, 0] - expected_grey).max() <= tolerance


def test_translation_moves_the_picture_by_the_stated_fraction():
    moved = ours("translate_x", 1 / 3, sign=1.0)  # 10% of 24 pixels: the grid samples 2.4 pixels to the right
    shift = 2.4
    columns = [c for c in range(24) if 0 <= c + shift < 23]
    for c in columns:
        assert np.array_equal(moved[:, c], PICTURE[:, int(round(c + shift))].astype(np.int64)), c
    assert np.array_equal(ours("rotate", 0.0), PICTURE.astype(np.int64))  # strength 0: no rotation


def test_policies_are_seeded_shaped_and_vary_per_image():
    batch = torch.from_numpy(RNG.integers(0, 256, (32, 1, 28, 28), dtype=np.uint8))
    first = A.trivial_augment(batch, torch.Generator().manual_seed(3))
    again = A.trivial_augment(batch, torch.Generator().manual_seed(3))
    assert first.dtype == torch.uint8 and first.shape == batch.shape and torch.equal(first, again)
    changed = (first != batch).flatten(1).any(1)
    assert 16 < int(changed.sum()) < 32  # most images changed, a few drew identity (or a no-op strength)
    twice = A.rand_augment(batch, 2, 9, torch.Generator().manual_seed(3))
    assert twice.dtype == torch.uint8 and not torch.equal(twice, batch)
    jittered = A.color_jitter(batch, 0.4, torch.Generator().manual_seed(0))
    ratio = jittered.float().mean((1, 2, 3)) / batch.float().mean((1, 2, 3))
    assert 0.5 < float(ratio.min()) and float(ratio.max()) < 1.5 and float(ratio.std()) > 0.05


def test_mixup_and_cutmix_mix_pixels_and_labels_as_the_papers_define():
    batch = torch.from_numpy(RNG.integers(0, 256, (8, 1, 16, 16), dtype=np.uint8))
    labels = torch.arange(8)
    mixed, partner, lam = A.mix(batch, labels, mixup_alpha=0.2, generator=torch.Generator().manual_seed(0))
    order = partner  # labels are 0..7, so the partners' labels are their positions
    assert 0 < float(lam[0]) < 1 and torch.all(lam == lam[0])
    torch.testing.assert_close(mixed, lam[0] * batch.float() + (1 - lam[0]) * batch.float()[order])
    mixed, partner, lam = A.mix(batch, labels, cutmix_alpha=1.0, generator=torch.Generator().manual_seed(1))
    pasted = (mixed != batch.float()) & (mixed == batch.float()[partner])
    box = pasted.any(0)[0]  # where any image took its partner's pixels
    rows, cols = box.any(1).nonzero().flatten(), box.any(0).nonzero().flatten()
    area = (int(rows.max()) - int(rows.min()) + 1) * (int(cols.max()) - int(cols.min()) + 1)
    assert float(lam[0]) == pytest.approx(1 - area / 256, abs=1e-6)


def test_training_with_trivialaugment_and_cutmix_learns(isolated_data_root, tmp_path):
    result = train(model="lenet5_modern", data="fashion-mnist-mini", augment="flip,trivial,color,cutmix",
                   epochs=2, limit_train=1024, limit_test=256, batch_size=64, threads=1, out=str(tmp_path / "r"))
    assert result.final["test_acc"] > 0.4  # chance is 0.1
    with pytest.raises(Exception, match="one augmentation policy"):
        train(model="lenet5", augment="trivial,randaug", epochs=1, limit_train=64, out=str(tmp_path / "s"))
