"""Stick-figure data and COCO keypoint files: same seed same set, visibility flags as COCO marks them,
and a user's person_keypoints file read unchanged into person crops."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from cnnlab.data.figures import FigureConfig, KEYPOINT_NAMES, SKELETON, render_image, write_figure_set
from cnnlab.errors import DataError
from cnnlab.tasks.keypoints import load_keypoint_split


def test_same_seed_same_set_and_another_seed_differs(tmp_path):
    a = write_figure_set(tmp_path / "a", counts={"train": 3, "test": 2}, seed=7)
    b = write_figure_set(tmp_path / "b", counts={"train": 3, "test": 2}, seed=7)
    c = write_figure_set(tmp_path / "c", counts={"train": 3, "test": 2}, seed=8)
    ja, jb, jc = (json.loads((f / "annotations/person_keypoints_train.json").read_text()) for f in (a, b, c))
    assert ja == jb and ja["annotations"] != jc["annotations"]
    assert (a / "images/train-000000.jpg").read_bytes() == (b / "images/train-000000.jpg").read_bytes()
    for ann in ja["annotations"]:
        v = ann["keypoints"][2::3]
        assert ann["num_keypoints"] == sum(f > 0 for f in v)
        assert all(ann["keypoints"][3 * j:3 * j + 2] == [0, 0] for j in range(17) if v[j] == 0)


def test_visibility_flags():
    rng = np.random.default_rng(0)
    alone = FigureConfig(min_figures=1, max_figures=1, distractors=0, back_view=0.0, min_size=0.5, max_size=0.6)
    flags = [f for _ in range(10) for a in render_image(rng, alone)[1] for f in a["keypoints"][:, 2]]
    assert set(flags) <= {0, 2} and 2 in flags  # nothing can hide a lone figure facing the camera
    behind = FigureConfig(min_figures=1, max_figures=1, distractors=0, back_view=1.0, min_size=0.5, max_size=0.6)
    for _ in range(5):
        for a in render_image(rng, behind)[1]:
            kp = a["keypoints"]
            face = [KEYPOINT_NAMES.index(n) for n in ("nose", "left_eye", "right_eye")]
            assert all(kp[j, 2] in (0, 1) for j in face)  # the face is behind the head
    big = FigureConfig(min_figures=1, max_figures=1, distractors=0, min_size=1.6, max_size=1.8)
    flags = [f for _ in range(5) for a in render_image(rng, big)[1] for f in a["keypoints"][:, 2]]
    assert 0 in flags  # a figure taller than the image has keypoints outside it: not labelled


def test_a_coco_person_keypoints_file_is_read_unchanged(tmp_path):
    (tmp_path / "annotations").mkdir()
    (tmp_path / "val2017").mkdir()
    Image.new("RGB", (100, 80), (90, 90, 90)).save(tmp_path / "val2017" / "000000000001.jpg")
    kp = [0] * 51
    kp[0:3] = [40, 20, 2]  # nose, COCO's integer pixel coordinates
    kp[15:18] = [30, 35, 1]  # left shoulder, hidden
    data = {"images": [{"id": 1, "file_name": "000000000001.jpg", "width": 100, "height": 80}],
            "annotations": [{"id": 5, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [20, 10, 40, 60],
                             "area": 1500.0, "num_keypoints": 2, "keypoints": kp},
                            {"id": 6, "image_id": 1, "category_id": 1, "iscrowd": 0, "bbox": [70, 10, 10, 10],
                             "area": 80.0, "num_keypoints": 0, "keypoints": [0] * 51}],
            "categories": [{"id": 1, "name": "person", "supercategory": "person", "keypoints": KEYPOINT_NAMES,
                            "skeleton": SKELETON}]}
    (tmp_path / "annotations" / "person_keypoints_val2017.json").write_text(json.dumps(data))
    crops = load_keypoint_split(str(tmp_path), "test")  # test falls back to val, as COCO ships it
    assert len(crops) == 1 and crops.ann_ids.tolist() == [5]  # the person without keypoints has no crop
    assert crops.keypoint_names == KEYPOINT_NAMES and {(0, 1), (1, 0)} & set(crops.skeleton)  # 1-based edges read 0-based
    side = 60 * 1.25  # the longer side, widened
    x0, y0 = 40 - side / 2, 40 - side / 2
    back = crops.to_original(crops.keypoints[:, :, :2])[0]
    assert back[0].tolist() == pytest.approx([40.5, 20.5], abs=1e-4)  # continuous: COCO's value + 0.5
    assert crops.offsets[0].tolist() == pytest.approx([x0, y0])
    assert crops.keypoints[0, 5, 2] == 1 and crops.keypoints[0, 1, 2] == 0
    with pytest.raises(DataError, match="no such keypoint set"):
        load_keypoint_split(str(tmp_path / "missing"), "test")
