"""Scenes of real items: deterministic, split-pure, occlusion resolved, readable by COCO and VOC tools."""

import contextlib
import dataclasses
import io
import json
import logging

import numpy as np
import pytest
import torch
from PIL import Image
from pycocotools.coco import COCO

from cnnlab.data import load_dataset
from cnnlab.data import object_datasets
from cnnlab.data.object_datasets import BUNDLED_SCENES, SCENE_SETS, load_object_dataset, make_scene_set
from cnnlab.data.object_stats import object_statistics
from cnnlab.data.objects import ImageInfo, ObjectDataset, ObjectTable
from cnnlab.data.scenes import SceneConfig, fill_small_holes, prepare_items, render_item, render_scene
from cnnlab.errors import DataError

NOISELESS = SceneConfig(noise=0.0)


@pytest.fixture(scope="module")
def mini_items():
    items = {}
    for split in ("train", "test"):
        data = load_dataset("fashion-mnist-mini", split)
        items[split] = (data.images, prepare_items(data.images, NOISELESS), data.labels.numpy())
    return items


def test_scene_is_a_function_of_seed_split_and_index(mini_items):
    _, pool, labels = mini_items["train"]
    a = render_scene(pool, labels, SceneConfig(), 3, "train", 7)
    b = render_scene(pool, labels, SceneConfig(), 3, "train", 7)
    c = render_scene(pool, labels, SceneConfig(), 4, "train", 7)
    assert np.array_equal(a.image, b.image) and np.array_equal(a.instances, b.instances)
    assert [o.source for o in a.objects] == [o.source for o in b.objects]
    assert not np.array_equal(a.image, c.image)


def _check_items_come_from(scene, images, pool, split_images_other):
    """Each object's unhidden, fully opaque pixels are its recorded item, re-rendered; that item is no
    image of the other split."""
    other = {bytes(x.numpy().tobytes()) for x in split_images_other}
    h, w = scene.instances.shape
    renders = [render_item(pool[o.source["index"]], o.source["scale"], o.source["angle"]) for o in scene.objects]
    painted_over = np.zeros((h, w), bool)  # pixels that a later item's soft edge touched
    for j in reversed(range(len(scene.objects))):
        s = scene.objects[j].source
        colour, alpha = renders[j]
        side = colour.shape[0]
        window = (slice(s["y"], s["y"] + side), slice(s["x"], s["x"] + side))
        region = scene.image[window][:, :, 0].astype(np.float64)
        solid = (scene.instances[window] == j + 1) & (alpha >= 1.0) & ~painted_over[window]
        painted_over[window] |= alpha > 0
        assert solid.sum() > 0
        expected = np.clip(np.rint(colour * s["gain"]), 0, 255)
        assert np.array_equal(region[solid], expected[solid])
        assert bytes(images[s["index"]].numpy().tobytes()) not in other
    return len(scene.objects)


def test_training_scenes_hold_only_training_items(mini_items):
    train_images, train_pool, train_labels = mini_items["train"]
    test_images, test_pool, test_labels = mini_items["test"]
    for index in range(12):
        scene = render_scene(train_pool, train_labels, NOISELESS, 0, "train", index)
        _check_items_come_from(scene, train_images, train_pool, test_images)
        assert [o.label for o in scene.objects] == [int(train_labels[o.source["index"]]) for o in scene.objects]
        scene = render_scene(test_pool, test_labels, NOISELESS, 0, "test", index)
        _check_items_come_from(scene, test_images, test_pool, train_images)
    # The check can fail: the same geometry with the other split's item at that index does not match.
    scene = render_scene(train_pool, train_labels, NOISELESS, 0, "train", 0)
    wrong_images, wrong_pool = torch.cat([test_images] * 3), torch.cat([test_pool] * 3)  # 3,000 test items
    with pytest.raises(AssertionError):
        _check_items_come_from(scene, wrong_images, wrong_pool, train_images[:0])


def test_bundled_scenes_use_split_items():
    train_items = load_dataset("fashion-mnist-mini", "train").images
    test_bytes = {bytes(x.numpy().tobytes()) for x in load_dataset("fashion-mnist-mini", "test").images}
    data = json.loads((BUNDLED_SCENES / "annotations" / "instances_train.json").read_text())
    indices = {a["source"]["index"] for a in data["annotations"]}
    assert all(0 <= i < len(train_items) for i in indices)
    assert not any(bytes(train_items[i].numpy().tobytes()) in test_bytes for i in indices)


def test_top_item_owns_the_pixel(mini_items):
    _, pool, labels = mini_items["train"]
    config = SceneConfig(noise=0.0, max_objects=8, max_occlusion=0.5)
    occluded_seen = 0
    for index in range(15):
        scene = render_scene(pool, labels, config, 1, "train", index)
        n = len(scene.objects)
        assert set(np.unique(scene.instances)) <= set(range(n + 1))
        for j, obj in enumerate(scene.objects):
            s = obj.source
            _, alpha = render_item(pool[s["index"]], s["scale"], s["angle"])
            side = alpha.shape[0]
            full = np.zeros_like(scene.instances, dtype=bool)
            full[s["y"]:s["y"] + side, s["x"]:s["x"] + side] = alpha >= 0.5
            # Every pixel of item j is owned by j or by an item painted after it.
            assert (scene.instances[full] >= j + 1).all()
            visible = scene.instances == j + 1
            assert (visible <= full).all()
            assert obj.occluded == pytest.approx(1 - visible.sum() / full.sum())
            assert obj.occluded <= 0.5 + 1e-9
            ys, xs = np.nonzero(visible)
            assert obj.box == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) and obj.area == visible.sum()
            occluded_seen += obj.occluded > 0
    assert occluded_seen > 0


def test_bundled_set_opens_in_pycocotools_and_as_voc_pngs():
    ds = load_object_dataset("fashion-scenes-mini", "train")
    assert ds.input_size == (1, 128, 128) and len(ds) == SCENE_SETS["fashion-scenes-mini"].counts[0] and ds.hflip
    with contextlib.redirect_stdout(io.StringIO()):
        ref = COCO(str(BUNDLED_SCENES / "annotations" / "instances_train.json"))
    for i in (0, 1, 17, len(ds) - 1):
        info = ds.image_info(i)
        anns = ref.loadAnns(ref.getAnnIds(imgIds=info.id))
        target = ds.target(i)
        assert len(anns) == len(target)
        for j, a in enumerate(anns):
            assert np.array_equal(ref.annToMask(a).astype(bool), target.masks[j].numpy())
            x, y, w, h = a["bbox"]
            assert target.boxes[j].tolist() == [x, y, x + w, y + h]
        stem = info.file_name
        cls = np.asarray(Image.open(BUNDLED_SCENES / "SegmentationClass" / stem))
        assert np.array_equal(cls, ds.semantic_mask(i).numpy())
        assert np.array_equal(np.asarray(Image.open(BUNDLED_SCENES / "images" / stem)), ds.image(i)[0].numpy())


def test_bundled_set_is_reproduced_by_its_command(tmp_path):
    out = make_scene_set("fashion-scenes-mini", out=tmp_path / "mini")
    for path in sorted(BUNDLED_SCENES.rglob("*")):
        if path.is_dir():
            continue
        rel = path.relative_to(BUNDLED_SCENES)
        mine = out / rel
        assert mine.is_file(), rel
        if path.suffix == ".png":
            assert np.array_equal(np.asarray(Image.open(path)), np.asarray(Image.open(mine))), rel
        else:
            assert path.read_bytes() == mine.read_bytes(), rel
    assert len([p for p in out.rglob("*") if p.is_file()]) == len([p for p in BUNDLED_SCENES.rglob("*") if p.is_file()])


def test_generated_on_first_use_with_a_log_line(tmp_path, monkeypatch, caplog):
    spec = dataclasses.replace(SCENE_SETS["fashion-scenes"], source="fashion-mnist-mini", counts=(5, 3))
    monkeypatch.setitem(object_datasets.SCENE_SETS, "fashion-scenes", spec)
    with caplog.at_level(logging.WARNING, logger="cnnlab.data"):
        ds = load_object_dataset("fashion-scenes", "test", tmp_path)
    assert "fashion-scenes: not found" in caplog.text and "generating" in caplog.text
    assert len(ds) == 3 and (tmp_path / "fashion-scenes" / "annotations" / "instances_train.json").is_file()
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="cnnlab.data"):
        assert len(load_object_dataset("fashion-scenes", "train", tmp_path)) == 5
    assert caplog.text == ""
    # the first scenes of a longer set are the same scenes
    longer = make_scene_set("fashion-scenes", data_dir=tmp_path, out=tmp_path / "longer", count=8, test_count=1)
    big = load_object_dataset(longer, "train")
    assert torch.equal(big.pixels[:5], ds_train_pixels(tmp_path))


def ds_train_pixels(root):
    return load_object_dataset(root / "fashion-scenes", "train").pixels


def test_existing_folder_needs_force(tmp_path):
    make_scene_set("fashion-scenes-mini", out=tmp_path / "s", count=2, test_count=1)
    with pytest.raises(DataError, match="already exists; pass --force"):
        make_scene_set("fashion-scenes-mini", out=tmp_path / "s", count=2, test_count=1)
    make_scene_set("fashion-scenes-mini", out=tmp_path / "s", count=3, test_count=1, force=True)
    assert len(load_object_dataset(tmp_path / "s", "train")) == 3
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary folder left


def test_mnist_scenes_are_digits_never_mirrored(tmp_path, shared_data):
    folder = make_scene_set("mnist-scenes", data_dir=shared_data, source="mnist-10k", out=tmp_path / "m",
                            count=6, test_count=2, rotate=20, channels=3)
    ds = load_object_dataset(folder, "train")
    assert not ds.hflip and ds.class_names == [str(d) for d in range(10)] and ds.input_size == (3, 128, 128)
    assert ds.describe()["objects"] == len(ds.table.labels) > 0


def test_scene_settings_are_checked():
    with pytest.raises(DataError, match="objects 0..0"):
        SceneConfig(min_objects=0, max_objects=0)
    with pytest.raises(DataError, match="channels 2"):
        SceneConfig(channels=2)


def test_small_holes_filled_as_scipy_would():
    ndimage = pytest.importorskip("scipy.ndimage")
    rng = np.random.default_rng(0)
    masks = rng.random((40, 28, 28)) < 0.55
    got = fill_small_holes(torch.from_numpy(masks), 5).numpy()
    for m, g in zip(masks, got):
        labels, n = ndimage.label(~m)  # 4-connected background regions
        border = set(np.unique(np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])))
        expected = m.copy()
        for k in range(1, n + 1):
            if k not in border and (labels == k).sum() <= 5:
                expected |= labels == k
        assert np.array_equal(g, expected)


class TableOnly(ObjectDataset):
    def __init__(self):
        images = [ImageInfo(i + 1, f"{i}.png", 200, 100) for i in range(3)]
        boxes = [[0, 0, 10, 10], [5, 5, 45, 55], [0, 0, 100, 100]]
        table = ObjectTable.from_rows([2, 1, 0], boxes, [0, 1, 1], [False, False, False], [1, 2, 3],
                                      [100.0, 2000.0, 10000.0], occluded=[0.0, 0.25, 0.5])
        super().__init__(name="t", split="train", images=images, table=table, class_names=["a", "b"],
                         category_ids=[1, 2], mean=(0.5,), std=(0.2,), channels=1, hflip=True, has_masks=False)


def test_statistics_by_hand():
    s = object_statistics(TableOnly())
    assert s["objects"] == 3 and s["objects_per_image"] == {"mean": 1.0, "min": 0, "max": 2, "histogram": [1, 1, 1]}
    assert s["per_class"] == [1, 2] and s["input_size"] == [1, 100, 200]
    assert (s["size"]["small"], s["size"]["medium"], s["size"]["large"]) == (1, 1, 1)  # < 32², < 96², above
    assert s["overlap_rate"] == pytest.approx(2 / 3, abs=1e-4)  # the two boxes of image 0 overlap
    assert s["size"]["sqrt_area_percentiles"]["50"] == pytest.approx(np.sqrt(2000), abs=0.01)
    assert s["occlusion"] == {"rate": pytest.approx(2 / 3, abs=1e-4), "mean_hidden": 0.25,
                              "mean_hidden_when_occluded": 0.375, "max_hidden": 0.5}
