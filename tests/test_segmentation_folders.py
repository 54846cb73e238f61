"""Segmentation from COCO and VOC folders: the class maps read through a COCO .json agree with those read
from the same scenes' VOC palette PNGs (two readers, one truth), and a VOC folder trains through the CLI
with its void pixels (255) left out of every count."""

from __future__ import annotations

import json

import numpy as np
import torch
from PIL import Image

from cnnlab.cli import main
from cnnlab.data.objects import IGNORE
from cnnlab.data.voc import VOC_CLASSES, voc_xml, write_palette_png
from cnnlab.tasks.segment import load_segmentation
from cnnlab.train import segmetrics

torch.set_num_threads(1)


def test_coco_json_and_voc_pngs_of_the_bundled_scenes_give_the_same_class_maps():
    from importlib.resources import files

    from cnnlab.data.object_datasets import load_object_dataset

    root = files("cnnlab") / "bundled" / "fashion-scenes-mini"
    coco = load_segmentation(str(root / "annotations" / "instances_test.json"), "test")
    voc = load_object_dataset(str(root), "test", format="voc")
    assert coco.class_names == ["background", *voc.class_names]
    for i in range(0, len(coco), 7):
        # the VOC reader decodes SegmentationClass/<id>.png, the COCO one paints the RLE masks
        png = np.asarray(Image.open(root / "SegmentationClass" / f"test-{i:06d}.png"))
        assert np.array_equal(coco.masks[i].numpy(), png)
        assert torch.equal(voc.semantic_mask(i).to(torch.uint8), coco.masks[i])


def make_voc(root, n: int = 6, side: int = 32):
    """Squares of two VOC classes on a plain ground, a void frame round each object as VOC draws them."""
    for sub in ("Annotations", "JPEGImages", "ImageSets/Segmentation", "SegmentationClass", "SegmentationObject"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    ids = [f"2012_{i:06d}" for i in range(n)]
    for k, image_id in enumerate(ids):
        name = ("dog", "cat")[k % 2]
        x1, y1 = (int(v) for v in rng.integers(2, side // 2, 2))
        x2, y2 = x1 + 12, y1 + 12
        image = np.full((side, side, 3), 30, np.uint8)
        image[y1:y2, x1:x2] = (200, 60, 60) if name == "dog" else (60, 60, 200)
        Image.fromarray(image).save(root / "JPEGImages" / f"{image_id}.png")
        (root / "Annotations" / f"{image_id}.xml").write_text(
            voc_xml(f"{image_id}.png", side, side, 3, [(name, (x1, y1, x2, y2), False)]))
        cls = np.zeros((side, side), np.uint8)
        cls[y1 - 1:y2 + 1, x1 - 1:x2 + 1] = 255  # the void outline
        cls[y1:y2, x1:x2] = VOC_CLASSES.index(name) + 1
        inst = np.where(cls == 255, 255, (cls > 0).astype(np.uint8))
        write_palette_png(root / "SegmentationClass" / f"{image_id}.png", cls)
        write_palette_png(root / "SegmentationObject" / f"{image_id}.png", inst)
    (root / "ImageSets" / "Segmentation" / "train.txt").write_text("\n".join(ids[:4]) + "\n")
    (root / "ImageSets" / "Segmentation" / "val.txt").write_text("\n".join(ids[4:]) + "\n")
    return root


def test_a_voc_folder_trains_and_its_void_pixels_count_nowhere(tmp_path, capsys):
    root = make_voc(tmp_path / "voc")
    test = load_segmentation(str(root), "test")  # no test.txt: val
    assert test.class_names == ["background", *VOC_CLASSES] and len(test) == 2
    void = int((test.masks == IGNORE).sum())
    assert void == 2 * (14 * 14 - 12 * 12)  # one outline per image
    run = tmp_path / "run"
    assert main(["train", "unet", "--data", str(root), "--epochs", "1", "--batch-size", "2", "--optimizer", "adam",
                 "--lr", "0.01", "--weight-decay", "0", "--threads", "1", "--plan", "no", "--quiet",
                 "--out", str(run)]) == 0
    assert main(["eval", str(run), "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    matrix = np.array(result["confusion"])
    assert matrix.shape == (21, 21) and len(result["per_class_iou"]) == 21
    assert result["pixels"] == matrix.sum() == 2 * 32 * 32 - void  # void is neither right nor wrong
    # the figures are the confusion matrix's, recomputed here
    assert abs(result["miou"] - segmetrics.scores(torch.tensor(matrix))["miou"]) < 1e-9
