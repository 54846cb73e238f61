"""Pascal VOC folders: 1-based boxes, palette masks with the void border, splits, one-line errors."""

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab.data.object_datasets import load_object_dataset
from cnnlab.data.objects import IGNORE
from cnnlab.data.voc import VOC_CLASSES, VocDataset, voc_palette, voc_xml, write_palette_png
from cnnlab.errors import DataError


def make_voc(root, *, extra_object=None, mask_size=None, labels=None):
    for sub in ("Annotations", "JPEGImages", "ImageSets/Main", "SegmentationClass", "SegmentationObject"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    h, w = 30, 40
    objects = [("dog", (2, 3, 12, 20), False), ("person", (20, 5, 35, 28), True)]
    if extra_object:
        objects.append(extra_object)
    for k, image_id in enumerate(["2008_000001", "2008_000002"]):
        arr = np.full((h, w, 3), 40 * (k + 1), np.uint8)
        Image.fromarray(arr).save(root / "JPEGImages" / f"{image_id}.png")
        (root / "Annotations" / f"{image_id}.xml").write_text(voc_xml(f"{image_id}.png", w, h, 3, objects))
        inst = np.zeros(mask_size or (h, w), np.uint8)
        cls = np.zeros(mask_size or (h, w), np.uint8)
        for j, (name, (x1, y1, x2, y2), _) in enumerate(objects[:2]):
            inst[y1:y2, x1:x2] = j + 1
            cls[y1:y2, x1:x2] = VOC_CLASSES.index(name) + 1
        inst[0, :] = cls[0, :] = 255  # VOC's void border
        write_palette_png(root / "SegmentationObject" / f"{image_id}.png", inst)
        write_palette_png(root / "SegmentationClass" / f"{image_id}.png", cls)
    (root / "ImageSets" / "Main" / "train.txt").write_text("2008_000001\n2008_000002\n")
    (root / "ImageSets" / "Main" / "val.txt").write_text("2008_000002\n")
    if labels:
        (root / "labels.txt").write_text("\n".join(labels))
    return root


def test_reads_boxes_masks_and_classes(tmp_path):
    root = make_voc(tmp_path / "VOCdevkit" / "VOC2012")
    ds = load_object_dataset(tmp_path, "train")  # finds VOCdevkit/VOC2012
    assert isinstance(ds, VocDataset) and len(ds) == 2 and ds.class_names == VOC_CLASSES
    img, t = ds[0]
    assert img.shape == (3, 30, 40) and int(img[0, 0, 0]) == 40
    # written 1-based inclusive (xmin = x1 + 1), read back as continuous pixel edges
    assert t.boxes.tolist() == [[2, 3, 12, 20], [20, 5, 35, 28]]
    assert t.labels.tolist() == [VOC_CLASSES.index("dog"), VOC_CLASSES.index("person")]
    assert t.iscrowd.tolist() == [False, True]  # difficult
    assert int(t.masks[0].sum()) == (20 - 3) * (12 - 2) and not t.masks[:, 0].any()  # void row is no object
    sem = ds.semantic_mask(0)
    assert (sem[0] == IGNORE).all() and int(sem[10, 5]) == VOC_CLASSES.index("dog") + 1
    assert ds.table.areas[:2].tolist() == [170.0, (28 - 5) * (35 - 20)]  # mask areas
    assert len(load_object_dataset(root, "test")) == 1  # no test.txt: val


def test_palette_is_vocs():
    p = voc_palette()
    # the colours VOC's devkit gives background, aeroplane, bicycle, bird and the void label
    assert [tuple(p[3 * i:3 * i + 3]) for i in (0, 1, 2, 3, 255)] == [
        (0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (224, 224, 192)]


def test_own_labels_file(tmp_path):
    root = make_voc(tmp_path / "v", extra_object=("zebra", (1, 1, 5, 5), False), labels=["dog", "person", "zebra"])
    ds = VocDataset(root, "train")
    assert ds.class_names == ["dog", "person", "zebra"] and ds.target(0).labels.tolist() == [0, 1, 2]


@pytest.mark.parametrize("kwargs, message", [
    ({"extra_object": ("unicorn", (1, 1, 5, 5), False), "labels": ["dog", "person"]}, r"object 3 \('unicorn'\): unknown category"),
    ({"extra_object": ("dog", (30, 1, 45, 5), False)}, r"object 3 \('dog'\): box 31,2,45,5 lies outside the 40x30 image"),
    ({"extra_object": ("dog", (10, 1, 9, 5), False)}, r"object 3 \('dog'\): box 11,2,9,5 has zero area"),
    ({"mask_size": (31, 40)}, r"SegmentationObject/2008_000001.png: mask is 40x31 but the image '2008_000001.png' is 40x30"),
])
def test_bad_folders_give_one_line_errors(tmp_path, kwargs, message):
    root = make_voc(tmp_path / "v", **kwargs)
    with pytest.raises(DataError, match=message) as info:
        VocDataset(root, "train")
    assert "\n" not in str(info.value)


def test_missing_image_and_duplicate_ids(tmp_path):
    root = make_voc(tmp_path / "v")
    (root / "ImageSets" / "Main" / "train.txt").write_text("2008_000001\n2008_000001\n")
    with pytest.raises(DataError, match="train.txt: duplicate image id 2008_000001"):
        VocDataset(root, "train")
    (root / "ImageSets" / "Main" / "train.txt").write_text("2008_000009\n")
    with pytest.raises(DataError, match="image '2008_000009' not found"):
        VocDataset(root, "train")
    (root / "Annotations" / "2008_000002.xml").write_text("<annotation><object>")
    (root / "ImageSets" / "Main" / "train.txt").write_text("2008_000002\n")
    with pytest.raises(DataError, match="2008_000002.xml: not valid XML"):
        VocDataset(root, "train")


def test_scene_set_reads_the_same_as_voc_and_coco():
    coco = load_object_dataset("fashion-scenes-mini", "test")
    voc = load_object_dataset(coco.source.rsplit("/annotations", 1)[0], "test", format="voc")
    assert len(voc) == len(coco) and voc.class_names == coco.class_names
    for i in range(len(coco)):
        a, b = coco.target(i), voc.target(i)
        assert torch.equal(a.boxes, b.boxes) and torch.equal(a.labels, b.labels) and torch.equal(a.masks, b.masks)
        assert torch.equal(coco.semantic_mask(i), voc.semantic_mask(i))
        assert torch.equal(coco.image(i), voc.image(i))
