"""The IDX reader and writer, including every way a file can be malformed."""

import gzip
import struct
import subprocess
import sys

import numpy as np
import pytest

from cnnlab.data.idx import encode_idx, parse_idx, read_idx, read_image_label_pair, write_idx
from cnnlab.errors import DataError


def header(code: int, dims: tuple[int, ...]) -> bytes:
    # Written out by hand from the format's description, independently of encode_idx.
    return bytes([0, 0, code, len(dims)]) + b"".join(struct.pack(">i", d) for d in dims)


def test_reads_hand_built_file():
    payload = bytes(range(6))
    array = parse_idx(header(0x08, (2, 3)) + payload)
    assert array.tolist() == [[0, 1, 2], [3, 4, 5]]


def test_reads_big_endian_int32_and_float64():
    data = header(0x0C, (2,)) + struct.pack(">ii", -7, 65536)
    assert parse_idx(data).tolist() == [-7, 65536]
    data = header(0x0E, (1,)) + struct.pack(">d", 1.25)
    assert parse_idx(data).tolist() == [1.25]


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", [".idx", ".idx.gz"])
def test_write_read_round_trip(tmp_path, dtype, suffix):
    array = (np.arange(24).reshape(2, 3, 4) - 5).astype(dtype)
    path = write_idx(tmp_path / f"a{suffix}", array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == suffix.endswith(".gz")
    out = read_idx(path)
    assert out.dtype == np.dtype(dtype) and np.array_equal(out, array)


@pytest.mark.parametrize("data, message", [
    (b"\x00\x00", "too short"),
    (b"\x01\x00\x08\x01" + struct.pack(">i", 1) + b"\x00", "bad magic"),
    (b"\x00\x00\x07\x01" + struct.pack(">i", 1) + b"\x00", "unknown IDX data type"),
    (b"\x00\x00\x08\x00", "dimensions"),
    (b"\x00\x00\x08\x02" + struct.pack(">i", 1), "header truncated"),
    (header(0x08, (3, 4)) + bytes(11), "truncated"),
    (header(0x08, (3, 4)) + bytes(13), "1 trailing bytes"),
    (header(0x08, (-1,)), "negative dimension"),
])
def test_malformed_files_name_the_problem(data, message):
    with pytest.raises(DataError, match=message) as info:
        parse_idx(data, "broken.idx")
    assert "broken.idx" in str(info.value)


def test_damaged_gzip_names_the_file(tmp_path):
    good = gzip.compress(header(0x08, (100,)) + bytes(100))
    path = tmp_path / "cut.gz"
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="cut.gz.*gzip"):
        read_idx(path)


def test_missing_file(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_idx(tmp_path / "nope.idx")


def test_label_checks(tmp_path):
    write_idx(tmp_path / "img.idx", np.zeros((3, 2, 2), np.uint8))
    write_idx(tmp_path / "lab.idx", np.array([0, 1, 10], np.uint8))
    with pytest.raises(DataError, match="label 10 out of range"):
        read_image_label_pair(tmp_path / "img.idx", tmp_path / "lab.idx", num_classes=10)
    write_idx(tmp_path / "lab2.idx", np.array([0, 1], np.uint8))
    with pytest.raises(DataError, match="2 labels for 3 images"):
        read_image_label_pair(tmp_path / "img.idx", tmp_path / "lab2.idx", num_classes=10)


def test_validation_holds_under_python_O(tmp_path):
    path = tmp_path / "bad.idx"
    path.write_bytes(header(0x08, (4,)) + bytes(3))
    code = f"from cnnlab.data.idx import read_idx\ntry:\n read_idx({str(path)!r})\nexcept ValueError as e:\n print('caught', e)"
    out = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.startswith("caught") and "truncated" in out


def test_real_fashion_mnist_headers(shared_data):
    labels = read_idx(shared_data / "fashion-mnist" / "t10k-labels-idx1-ubyte.gz")
    assert labels.shape == (10000,) and labels.max() == 9
    # Per the data README, the test split holds 1,000 images of each class.
    assert np.bincount(labels).tolist() == [1000] * 10
    assert encode_idx(labels)[:8] == b"\x00\x00\x08\x01" + struct.pack(">i", 10000)
