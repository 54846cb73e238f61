"""The video task's parts: the moving-items generator (deterministic, labels that match the motion, a
reference frame that is the same picture whatever the class), clip folders (GIFs, frame folders) and
bad clips, and the models against the papers: C3D's parameter count, R(2+1)D's mid-channel formula
worked by hand, LRCN's averaged per-step prediction, the single-frame baseline's blindness to time."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

import cnnlab
from cnnlab.data.moving_items import (MOTIONS, ItemState, MovingItemsConfig, clip_array, draw_clip, load_clips,
                                      make_clips, render_frame, trajectory, write_clip, write_moving_items)
from cnnlab.errors import DataError
from cnnlab.models.r2plus1d import Conv2Plus1d, mid_channels

CONFIG = MovingItemsConfig(size=32)


def dot_item() -> np.ndarray:
    """A 28 x 28 item whose only ink is a 4 x 4 dot up and right of its centre (so turning shows)."""
    item = np.zeros((28, 28), np.uint8)
    item[4:8, 18:22] = 255
    return item


def centre_of_mass(frame: np.ndarray) -> tuple[float, float]:
    ys, xs = np.nonzero(frame > 60)
    return float(xs.mean()), float(ys.mean())


def test_the_generator_is_deterministic_and_balanced():
    items = np.random.default_rng(1).integers(0, 255, (5, 28, 28)).astype(np.uint8)
    a, la = make_clips(items, 27, np.random.default_rng(7), CONFIG)
    b, lb = make_clips(items, 27, np.random.default_rng(7), CONFIG)
    c, _ = make_clips(items, 27, np.random.default_rng(8), CONFIG)
    assert a.shape == (27, 16, 32, 32) and a.dtype == np.uint8
    assert np.array_equal(a, b) and np.array_equal(la, lb) and not np.array_equal(a, c)
    assert np.bincount(la, minlength=len(MOTIONS)).tolist() == [3] * len(MOTIONS)


def test_labels_match_the_motion_of_a_real_item():
    """Translations move the centre of mass their way, zooms grow or shrink the ink, a still clip stays."""
    from cnnlab.data.datasets import load_dataset

    items = load_dataset("fashion-mnist-mini", "train").images[:40, 0].numpy()
    rng = np.random.default_rng(0)
    for motion, axis, sign in (("right", 0, 1), ("left", 0, -1), ("down", 1, 1), ("up", 1, -1)):
        for item in items[:8]:
            clip = draw_clip(item, motion, rng, CONFIG)
            first, last = centre_of_mass(clip[2]), centre_of_mass(clip[-3])
            assert sign * (last[axis] - first[axis]) > 4, (motion, first, last)
            assert abs(last[1 - axis] - first[1 - axis]) < 1.5
    for item in items[:8]:
        zin, zout, still = (draw_clip(item, m, rng, CONFIG).astype(float) for m in ("zoom_in", "zoom_out", "still"))
        assert zin[-1].sum() > 1.5 * zin[0].sum() and zout[0].sum() > 1.5 * zout[-1].sum()
        assert np.array_equal(still[0], still[-1])


def test_rotations_turn_the_way_their_names_say_on_the_screen():
    start = ItemState(16, 16, 0, 16)
    for motion, sign in (("rotate_cw", 1), ("rotate_ccw", -1)):
        angles = []
        for state in trajectory(motion, start, 10.0, 16)[4:13:4]:
            x, y = centre_of_mass(render_frame(dot_item(), state, 32))
            angles.append(math.degrees(math.atan2(y - 16, x - 16)))  # y down: clockwise on the screen = growing angle
        assert sign * (angles[1] - angles[0]) > 20 and sign * (angles[2] - angles[1]) > 20, (motion, angles)


def test_the_reference_frame_is_the_same_picture_whatever_the_motion():
    """What the single-frame baseline sees carries no class: the same draws give the same frame T // 2."""
    items = np.random.default_rng(2).integers(0, 255, (3, 28, 28)).astype(np.uint8)
    frames = [draw_clip(items[0], m, np.random.default_rng(5), CONFIG)[CONFIG.frames // 2] for m in MOTIONS]
    assert all(np.array_equal(frames[0], f) for f in frames[1:])
    clips = [draw_clip(items[0], m, np.random.default_rng(5), CONFIG) for m in MOTIONS]
    assert not np.array_equal(clips[1], clips[2])  # the other frames differ


def test_folders_of_gifs_and_of_frames_read_back_the_clips(tmp_path):
    counts = {"train": 9, "test": 9}
    npz = load_clips(write_moving_items(tmp_path / "npz", counts=counts, config=CONFIG, source="fashion-mnist-mini"),
                     "test")
    for layout in ("gif", "frames"):
        folder = write_moving_items(tmp_path / layout, counts=counts, config=CONFIG, source="fashion-mnist-mini",
                                    layout=layout)
        clips = load_clips(folder, "test", class_names=list(MOTIONS))
        assert clips.input_size == (1, 16, 32, 32) and clips.class_names == list(MOTIONS)
        # folders are read class by class: match each clip with the npz clip of its label and frames
        for clip, label in zip(clips.clips, clips.labels):
            # (a GIF of a still clip has one corner pixel off by one grey level: Pillow would merge equal frames)
            matches = [i for i in range(len(npz)) if int(npz.labels[i]) == int(label)
                       and (npz.clips[i].int() - clip.int()).abs().max() <= 1
                       and (npz.clips[i] != clip).sum() <= (16 if layout == "gif" else 0)]
            assert len(matches) == 1, f"{layout}: a {MOTIONS[int(label)]} clip was not read back"


def test_a_clip_is_brought_to_the_model_s_frames_and_size(tmp_path):
    clip = np.stack([np.full((20, 24), 10 * t, np.uint8) for t in range(8)])
    gif = write_clip(clip, tmp_path / "c", "gif")
    arr = clip_array(gif, 4, 16, 16, 1)
    assert arr.shape == (1, 4, 16, 16)
    assert [int(arr[0, t, 0, 0]) for t in range(4)] == [10, 30, 50, 70]  # frames 1, 3, 5, 7: spread evenly
    assert clip_array(gif, 4, 16, 16, 3).shape == (3, 4, 16, 16)


def test_bad_clips_get_one_line_that_says_why(tmp_path):
    one = write_clip(np.zeros((1, 8, 8), np.uint8), tmp_path / "one", "gif")
    with pytest.raises(DataError, match="at least 2 frames, this one has 1"):
        clip_array(one, 16, 32, 32, 1)
    junk = tmp_path / "junk.gif"
    junk.write_bytes(b"not a gif at all")
    with pytest.raises(DataError, match="not a readable clip"):
        clip_array(junk, 16, 32, 32, 1)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds none"):
        clip_array(tmp_path / "empty", 16, 32, 32, 1)
    video = tmp_path / "clip.mp4"
    video.write_bytes(b"\x00" * 64)
    with pytest.raises(DataError, match="pip install") as err:
        clip_array(video, 16, 32, 32, 1)
    assert "\n" not in str(err.value)
    with pytest.raises(DataError, match="no train.npz and no train/ folder"):
        load_clips(tmp_path / "empty", "train")


def c3d_parameters_by_hand(classes: int) -> int:
    """§3.3: eight 3 x 3 x 3 convolutions (with biases), pool5 leaving 512 x 1 x 4 x 4, fc6 and fc7 4096."""
    widths = [3, 64, 128, 256, 256, 512, 512, 512, 512]
    convs = sum(27 * a * b + b for a, b in zip(widths, widths[1:]))
    return convs + (8192 * 4096 + 4096) + (4096 * 4096 + 4096) + (4096 * classes + classes)


def test_c3d_has_the_paper_s_parameters_and_shapes():
    for classes, expected in ((101, 78_409_573), (487, 79_991_015)):
        with torch.device("meta"):
            model = cnnlab.create_model("c3d", num_classes=classes)
        assert sum(p.numel() for p in model.parameters()) == c3d_parameters_by_hand(classes) == expected
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv3d)]
    pools = [m for m in model.modules() if isinstance(m, torch.nn.MaxPool3d)]
    assert len(convs) == 8 and all(c.kernel_size == (3, 3, 3) for c in convs)
    assert pools[0].kernel_size == (1, 2, 2) and all(p.kernel_size == (2, 2, 2) for p in pools[1:])
    from cnnlab.analysis.summary import summarize

    summary = summarize("c3d", (3, 16, 112, 112))
    assert summary.output_shape[-1] == 487
    small = cnnlab.create_model("c3d_small", input_size=(1, 16, 32, 32), num_classes=9)
    assert small(torch.zeros(2, 1, 16, 32, 32)).shape == (2, 9)
    with pytest.raises(DataError, match="takes clips"):
        small(torch.zeros(2, 1, 8, 32, 32))


def test_r2plus1d_mid_channels_match_the_3d_block_worked_by_hand():
    # M = floor(t d^2 N_in N_out / (d^2 N_in + t N_out)), t = d = 3
    assert mid_channels(64, 64) == 110592 // 768 == 144
    assert mid_channels(64, 128) == 221184 // 960 == 230
    assert mid_channels(3, 64, t=3, d=7) == 28224 // 339 == 83
    for n_in, n_out in ((64, 64), (64, 128), (128, 256), (256, 512), (512, 512)):
        conv = Conv2Plus1d(n_in, n_out)
        weights = [m.weight.numel() for m in conv if isinstance(m, torch.nn.Conv3d)]
        three_d = 27 * n_in * n_out
        m = conv.mid
        assert weights == [9 * n_in * m, 3 * m * n_out]
        assert 0 <= three_d - sum(weights) < 9 * n_in + 3 * n_out  # equal but for the rounding of M
    assert sum(w for w in [m.weight.numel() for m in Conv2Plus1d(64, 64) if isinstance(m, torch.nn.Conv3d)]) == 110592
    with torch.device("meta"):
        model = cnnlab.create_model("r2plus1d_18", num_classes=400)
    convs = [m for m in model.modules() if isinstance(m, torch.nn.Conv3d)]
    spatial = [c for c in convs if c.kernel_size[0] == 1 and c.kernel_size[1] > 1]
    temporal = [c for c in convs if c.kernel_size[1:] == (1, 1) and c.kernel_size[0] > 1]
    assert len(spatial) == len(temporal) == 17  # conv1 + 16 in the eight blocks (Table 1's 18 layers with fc)
    assert spatial[0].kernel_size == (1, 7, 7) and spatial[0].stride == (1, 2, 2) and temporal[0].kernel_size == (3, 1, 1)
    x = torch.zeros(1, 1, 16, 32, 32)
    small = cnnlab.create_model("r2plus1d_small", input_size=(1, 16, 32, 32), num_classes=9).eval()
    assert small.forward_features(x).shape == (1, 128, 2, 2, 2) and small(x).shape == (1, 9)


def test_lrcn_averages_its_per_step_predictions():
    torch.manual_seed(0)
    model = cnnlab.create_model("lrcn_small", input_size=(1, 16, 32, 32), num_classes=9).eval()
    x = torch.randn(3, 1, 16, 32, 32)
    with torch.no_grad():
        out = model(x)
        steps = model.forward_features(x)  # N x T x hidden
        per_step = model.classifier(steps).softmax(-1)
    assert steps.shape == (3, 16, 128)
    assert torch.allclose(out.exp(), per_step.mean(1), atol=1e-6) and torch.allclose(out.exp().sum(1), torch.ones(3))
    with torch.no_grad():  # the order of the frames matters to the LSTM
        assert not torch.allclose(model(x.flip(2)), out, atol=1e-4)


def test_the_single_frame_baseline_sees_only_the_middle_frame():
    torch.manual_seed(0)
    model = cnnlab.create_model("frame_cnn", input_size=(1, 16, 32, 32), num_classes=9).eval()
    x = torch.randn(2, 1, 16, 32, 32)
    y = x.clone()
    y[:, :, :8] = torch.randn(2, 1, 8, 32, 32)
    y[:, :, 9:] = 0
    with torch.no_grad():
        assert torch.equal(model(x), model(y))
        y[:, :, 8] += 1
        assert not torch.equal(model(x), model(y))


def test_video_models_register_for_the_video_task_with_clip_inputs():
    from cnnlab.registry import model_arguments
    from cnnlab.tasks import task_for_model

    names = cnnlab.list_models(task="video")
    assert set(names) >= {"c3d", "c3d_small", "r2plus1d_18", "r2plus1d_small", "lrcn", "lrcn_small", "frame_cnn"}
    assert all(task_for_model(n) == "video" and len(cnnlab.model_info(n).input_size) == 4 for n in names)
    assert model_arguments("c3d_small", input_size=(1, 8, 48, 48), num_classes=5) == \
        {"num_classes": 5, "in_channels": 1, "frames": 8, "image_size": 48}
    from cnnlab.errors import ConfigError

    with pytest.raises(ConfigError, match="takes clips"):
        model_arguments("c3d_small", input_size=(1, 32, 32))


def test_the_paper_lrcn_is_caffenet_fc6_into_an_lstm_of_256():
    # AlexNet as published has 60,965,224 parameters; without fc7 (4096 x 4096 + 4096) and fc8 (4096 x 1000
    # + 1000) its convolutions and fc6 keep 40,086,912; the LSTM 4 gates x 256 x (4096 + 256) + two biases
    alexnet_to_fc6 = 60_965_224 - (4096 * 4096 + 4096) - (4096 * 1000 + 1000)
    lstm = 4 * 256 * (4096 + 256) + 2 * 4 * 256
    with torch.device("meta"):
        model = cnnlab.create_model("lrcn", num_classes=101)
    assert sum(p.numel() for p in model.parameters()) == alexnet_to_fc6 + lstm + (256 * 101 + 101) == 44_571_365


def test_a_video_file_goes_through_an_installed_decoder(tmp_path, monkeypatch):
    """Where imageio (or av) reads the container, its frames become the clip; without one, one line says what to install."""
    iio = pytest.importorskip("imageio.v3")
    frames = [np.full((24, 24, 3), 20 * t, np.uint8) for t in range(10)]
    monkeypatch.setattr(iio, "imiter", lambda path, **_: iter(frames))
    video = tmp_path / "clip.avi"
    video.write_bytes(b"\x00" * 16)
    arr = clip_array(video, 5, 12, 12, 1)
    assert arr.shape == (1, 5, 12, 12) and [int(arr[0, t, 0, 0]) for t in range(5)] == [20, 60, 100, 140, 180]

    def fails(path, **_):
        raise OSError("no plugin for this container")

    monkeypatch.setattr(iio, "imiter", fails)
    with pytest.raises(DataError, match=r"imageio cannot read it .*pip install imageio\[ffmpeg\]"):
        clip_array(video, 5, 12, 12, 1)


def test_the_full_forms_take_the_bundled_clips_or_say_which_model_does():
    from cnnlab.registry import model_arguments

    x = torch.zeros(1, 1, 16, 32, 32)
    for name in ("c3d", "r2plus1d_18"):
        args = model_arguments(name, input_size=(1, 16, 32, 32), num_classes=9)
        model = cnnlab.create_model(name, **args).eval()
        with torch.no_grad():
            assert model(x).shape == (1, 9), name
    args = model_arguments("lrcn", input_size=(1, 16, 32, 32), num_classes=9)
    with torch.device("meta"):
        model = cnnlab.create_model("lrcn", **args)
    with pytest.raises(DataError, match="227 x 227 frames.*lrcn_small"):
        model(torch.zeros(1, 1, 16, 32, 32, device="meta"))
