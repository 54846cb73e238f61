"""``cnnlab data make | info | show`` for detection and segmentation data."""

import json

import numpy as np
import pytest
from PIL import Image

from cnnlab.cli import main


def run_json(capsys, argv):
    capsys.readouterr()
    assert main(argv + ["--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_make_info_show(tmp_path, capsys):
    out = tmp_path / "scenes"
    made = run_json(capsys, ["data", "make", "fashion-scenes", "--source", "fashion-mnist-mini", "--count", "6",
                             "--test-count", "2", "--size", "96x112", "--max-objects", "3", "--seed", "4",
                             "--out", str(out)])
    train = made["statistics"]["train"]
    assert made["folder"] == str(out) and train["images"] == 6 and train["input_size"] == [1, 96, 112]
    data = json.loads((out / "annotations" / "instances_train.json").read_text())
    # the statistics agree with a count of the annotation file itself, within --max-objects
    per_image = [sum(a["image_id"] == im["id"] for a in data["annotations"]) for im in data["images"]]
    assert (train["objects_per_image"]["min"], train["objects_per_image"]["max"]) == (min(per_image), max(per_image))
    assert 1 <= min(per_image) and max(per_image) <= 3
    assert data["info"]["cnnlab_scenes"]["seed"] == 4 and len(data["annotations"]) == train["objects"]
    info = run_json(capsys, ["data", "info", str(out)])
    assert info["train"] == train and info["test"]["images"] == 2
    shown = run_json(capsys, ["data", "show", str(out), "--indices", "0,2", "--out", str(tmp_path / "g.png"),
                              "--augment", "flip,crop=0.5:1"])
    assert shown["indices"] == [0, 2] and Image.open(tmp_path / "g.png").size[0] > 300
    assert main(["data", "info", "fashion-scenes-mini", "--split", "test"]) == 0
    text = capsys.readouterr().out
    assert "fashion-scenes-mini test: 50 images of 1x128x128" in text and "occluded objects" in text


def test_one_line_errors(tmp_path, capsys):
    folder = tmp_path / "coco"
    (folder / "annotations").mkdir(parents=True)
    (folder / "annotations" / "instances_train.json").write_text(json.dumps({
        "images": [{"id": 1, "file_name": "gone.jpg", "width": 8, "height": 8}], "annotations": [],
        "categories": [{"id": 1, "name": "x"}]}))
    capsys.readouterr()
    assert main(["data", "show", str(folder)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "image 1 'gone.jpg' not found" in err
    assert main(["data", "make", "no-such-scenes"]) == 1
    assert "unknown scene set 'no-such-scenes'" in capsys.readouterr().err
    assert main(["data", "show", "fashion-scenes-mini", "--augment", "spin"]) == 1
    assert "unknown augmentation 'spin'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["data", "make", "fashion-scenes", "--help"])
    assert "example:" in capsys.readouterr().out


def test_show_draws_boxes(tmp_path):
    assert main(["data", "show", "fashion-scenes-mini", "--count", "1", "--out", str(tmp_path / "one.png")]) == 0
    picture = np.asarray(Image.open(tmp_path / "one.png").convert("RGB")).astype(int)
    # the boxes and the mask overlays are coloured; the scene itself is grey
    colourful = (np.abs(picture[:, :, 0] - picture[:, :, 1]) + np.abs(picture[:, :, 1] - picture[:, :, 2])) > 60
    assert colourful.mean() > 0.02
