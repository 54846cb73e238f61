"""COCO JSON data: reading checked against pycocotools itself, one-line errors for bad files."""

import contextlib
import copy
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools import mask as mask_utils
from pycocotools.coco import COCO
from pycocotools.cocoeval import COCOeval

from cnnlab.data.coco import CocoDataset
from cnnlab.data.object_datasets import load_object_dataset
from cnnlab.data.objects import IGNORE
from cnnlab.data.rle import compressed_counts
from cnnlab.errors import DataError

KEYPOINTS = ["nose", "left_eye", "right_eye", "left_hand", "right_hand"]


def coco_dict():
    crowd = np.zeros((40, 60), np.uint8)
    crowd[30:38, 40:58] = 1
    crowd_rle = mask_utils.encode(np.asfortranarray(crowd))
    # uncompressed counts, as COCO stores crowd regions
    flat = crowd.flatten(order="F")
    runs, value, count = [], 0, 0
    for v in flat:
        if v != value:
            runs.append(count)
            value, count = v, 0
        count += 1
    runs.append(count)
    square = np.zeros((50, 70), np.uint8)
    square[5:25, 10:40] = 1
    return {
        "images": [{"id": 10, "file_name": "a.png", "width": 60, "height": 40},
                   {"id": 20, "file_name": "b.jpg", "width": 70, "height": 50}],
        "categories": [{"id": 3, "name": "person", "keypoints": KEYPOINTS, "skeleton": [[1, 2], [1, 3]]},
                       {"id": 7, "name": "kite"}],
        "annotations": [
            {"id": 1, "image_id": 10, "category_id": 3, "bbox": [4, 6, 20, 16], "area": 200.0, "iscrowd": 0,
             "segmentation": [[4, 6, 24, 6, 24, 22, 4, 22]],
             "keypoints": [10, 8, 2, 8, 7, 2, 12, 7, 1, 0, 0, 0, 5, 20, 2], "num_keypoints": 4},
            {"id": 2, "image_id": 10, "category_id": 7, "bbox": [40, 30, 18, 8], "area": float(crowd.sum()),
             "iscrowd": 1, "segmentation": {"size": [40, 60], "counts": runs}},
            {"id": 5, "image_id": 20, "category_id": 7, "bbox": [10, 5, 30, 20], "area": 600.0, "iscrowd": 0,
             "segmentation": {"size": [50, 70], "counts": mask_utils.encode(np.asfortranarray(square))["counts"].decode()}},
        ],
    }, crowd_rle


@pytest.fixture()
def coco_folder(tmp_path):
    root = tmp_path / "coco"
    (root / "annotations").mkdir(parents=True)
    (root / "train").mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)).save(root / "train" / "a.png")
    Image.fromarray(rng.integers(0, 255, (50, 70), dtype=np.uint8)).convert("RGB").save(root / "train" / "b.jpg")
    data, _ = coco_dict()
    (root / "annotations" / "instances_train.json").write_text(json.dumps(data))
    return root


def test_reads_what_pycocotools_reads(coco_folder):
    ds = load_object_dataset(coco_folder, "train")
    assert isinstance(ds, CocoDataset) and len(ds) == 2 and ds.input_size is None and ds.channels == 3
    assert ds.class_names == ["person", "kite"] and ds.category_ids == [3, 7]
    with contextlib.redirect_stdout(io.StringIO()):
        ref = COCO(str(coco_folder / "annotations" / "instances_train.json"))
    for i, image_id in enumerate([10, 20]):
        img, target = ds[i]
        assert tuple(img.shape) == (3, ref.imgs[image_id]["height"], ref.imgs[image_id]["width"])
        anns = ref.loadAnns(ref.getAnnIds(imgIds=image_id))
        assert target.ids.tolist() == [a["id"] for a in anns]
        for j, a in enumerate(anns):
            x, y, w, h = a["bbox"]
            assert target.boxes[j].tolist() == [x, y, x + w, y + h]
            assert target.labels[j] == [3, 7].index(a["category_id"])
            assert target.iscrowd[j] == bool(a["iscrowd"])
            assert np.array_equal(target.masks[j].numpy(), ref.annToMask(a).astype(bool))
    assert torch.equal(ds.image(0), torch.from_numpy(np.array(Image.open(coco_folder / "train" / "a.png"))).permute(2, 0, 1))
    # keypoints: pixel indices + 0.5, unlabelled ones at (0, 0, 0)
    kp = ds.target(0).keypoints[0]
    assert kp.tolist() == [[10.5, 8.5, 2], [8.5, 7.5, 2], [12.5, 7.5, 1], [0, 0, 0], [5.5, 20.5, 2]]
    assert ds.flip_pairs == [(1, 2), (3, 4)] and ds.skeleton == [(0, 1), (0, 2)]
    assert ds.target(1).keypoints.shape == (1, 5, 3) and ds.target(1).keypoints.sum() == 0  # a kite has none


def test_semantic_mask_marks_crowd_as_ignore(coco_folder):
    ds = load_object_dataset(coco_folder, "train")
    sem = ds.semantic_mask(0)
    assert sem.shape == (40, 60) and sem.dtype == torch.int64
    assert (sem[6:22, 4:24] == 1).all()  # person = class 0 -> 1
    assert (sem[30:38, 40:58] == IGNORE).all()  # crowd kite
    assert int((sem == 0).sum()) == 40 * 60 - 16 * 20 - 8 * 18


def test_ground_truth_scores_perfectly_in_cocoeval(coco_folder):
    ds = load_object_dataset(coco_folder, "train")
    gt = ds.coco()
    results = []
    for i in range(len(ds)):
        target = ds.target(i)
        keep = ~target.iscrowd
        results += ds.coco_results(i, target.select(keep), torch.ones(int(keep.sum())))
    assert results[0]["keypoints"] == [10, 8, 2, 8, 7, 2, 12, 7, 1, 0, 0, 0, 5, 20, 2]  # back to the file's indices
    with contextlib.redirect_stdout(io.StringIO()):
        for kind in ("bbox", "segm"):
            ev = COCOeval(gt, gt.loadRes(copy.deepcopy(results)), kind)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
            assert ev.stats[0] == pytest.approx(1.0)  # AP@[.5:.95]
        shifted = [dict(r, bbox=[r["bbox"][0] + 6, *r["bbox"][1:]]) for r in results]
        ev = COCOeval(gt, gt.loadRes(shifted), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
        assert ev.stats[0] < 0.9


def test_compressed_rle_decoder_matches_pycocotools():
    rng = np.random.default_rng(1)
    for _ in range(50):
        h, w = rng.integers(1, 40, 2)
        m = (rng.random((h, w)) < rng.random()).astype(np.uint8)
        runs = compressed_counts(mask_utils.encode(np.asfortranarray(m))["counts"])
        assert runs.sum() == h * w
        # expand the runs ourselves and compare with the mask
        flat = np.repeat(np.arange(len(runs)) % 2, runs).astype(np.uint8)
        assert np.array_equal(flat.reshape(w, h).T, m)


def _write(root, data):
    (root / "annotations" / "instances_train.json").write_text(json.dumps(data) if not isinstance(data, str) else data)


@pytest.mark.parametrize("change, message", [
    (lambda d: d["images"][0].update(file_name="missing.png"), r"image 10 'missing.png' not found"),
    (lambda d: d["annotations"][0].update(bbox=[50, 6, 20, 16]), r"annotation 1: box .* lies outside the 60x40 image 10"),
    (lambda d: d["annotations"][0].update(bbox=[4, 6, 0, 16]), r"annotation 1: box .* has zero area"),
    (lambda d: d["annotations"][2].update(category_id=99), r"annotation 5: unknown category id 99"),
    (lambda d: d["annotations"][2].update(image_id=99), r"annotation 5: unknown image id 99"),
    (lambda d: d["annotations"][1]["segmentation"].update(size=[41, 60]), r"annotation 2 .*mask is 60x41 but the image is 60x40"),
    (lambda d: d["annotations"][2]["segmentation"].update(counts="PP0"), r"annotation 5 .*RLE runs cover"),
    (lambda d: d["annotations"][1].update(id=1), r"duplicate annotation id 1"),
    (lambda d: d["images"][1].update(id=10), r"duplicate image id 10"),
    (lambda d: (d["images"][1].update(width=71), d["annotations"][2].update(segmentation=[[10, 5, 40, 5, 40, 25]])),
     r"image 20 'b.jpg' is 70x50, the JSON says 71x50"),
    (lambda d: d["annotations"][0].update(keypoints=[1, 2, 3]), r"annotation 1: 'keypoints' must be 15 numbers"),
    (lambda d: d["annotations"][0].update(segmentation=[[1, 2, 3]]), r"annotation 1 .*even number"),
])
def test_bad_files_give_one_line_errors(coco_folder, change, message):
    data, _ = coco_dict()
    change(data)
    _write(coco_folder, data)
    with pytest.raises(DataError, match=message) as info:
        load_object_dataset(coco_folder, "train")
    text = str(info.value)
    assert "\n" not in text and "instances_train.json" in text


def test_not_json_and_no_split(coco_folder):
    _write(coco_folder, '{"images": [')
    with pytest.raises(DataError, match=r"instances_train.json: not valid JSON .*line 1"):
        load_object_dataset(coco_folder, "train")
    with pytest.raises(DataError, match="not a COCO file for split 'test'.* nor a VOC folder"):
        load_object_dataset(coco_folder, "test")


def test_images_read_lazily_through_a_bounded_cache(coco_folder):
    ds = load_object_dataset(coco_folder, "train", cache_bytes=3 * 60 * 40 + 10)  # room for image a only
    assert len(ds.cache) == 0  # opening reads headers only
    ds.image(0)
    ds.image(1)
    assert len(ds.cache) == 1 and ds.cache.bytes <= ds.cache.max_bytes
    ds.image(0)
    assert len(ds.cache) == 1


def test_mixed_sizes_letterboxed(coco_folder):
    ds = load_object_dataset(coco_folder, "train")
    batch = ds.batch([0, 1], size=(64, 64))
    assert batch.images.shape == (2, 3, 64, 64)
    # annotation 5 on the 70 x 50 image: scale 64/70 makes it 64 x 45.7, centred 9 whole pixels from the top
    x, y, w, h = 10, 5, 30, 20
    s = 64 / 70
    assert batch.targets[1].boxes[0].tolist() == pytest.approx([x * s, y * s + 9, (x + w) * s, (y + h) * s + 9], abs=1e-4)
