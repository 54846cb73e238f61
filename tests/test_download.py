"""Downloads against a real HTTP server on 127.0.0.1: good, truncated, corrupted and missing files."""

import gzip
import hashlib
import http.server
import threading

import numpy as np
import pytest

from cnnlab.data import DATASETS, load_dataset
from cnnlab.data.datasets import IdxDatasetSpec, ensure_files, load_idx_dataset
from cnnlab.data.download import download
from cnnlab.data.idx import encode_idx
from cnnlab.errors import DataError, DownloadError

IMAGES = np.arange(5 * 4 * 4, dtype=np.uint8).reshape(5, 4, 4)
LABELS = np.array([0, 1, 2, 1, 0], np.uint8)
FILES = {"img.gz": gzip.compress(encode_idx(IMAGES)), "lab.gz": gzip.compress(encode_idx(LABELS))}
SHA = {name: hashlib.sha256(data).hexdigest() for name, data in FILES.items()}


class Handler(http.server.BaseHTTPRequestHandler):
    """/good/F serves F; /truncated/F promises F's length but sends half; /corrupt/F flips a byte."""

    def do_GET(self):
        mode, _, name = self.path.strip("/").partition("/")
        data = FILES.get(name)
        if data is None or mode not in ("good", "truncated", "corrupt"):
            self.send_error(404)
            return
        body = data
        if mode == "corrupt":
            body = data[:-1] + bytes([data[-1] ^ 0xFF])
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if mode == "truncated" else body)
        self.wfile.flush()
        if mode == "truncated":
            self.close_connection = True

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_good_download_is_verified_and_renamed(server, tmp_path):
    path = download("img.gz", [f"{server}/good"], tmp_path, SHA["img.gz"])
    assert path.read_bytes() == FILES["img.gz"]
    assert [p.name for p in tmp_path.iterdir()] == ["img.gz"]  # no temporary left behind


@pytest.mark.parametrize("mode, message", [("truncated", "closed after|IncompleteRead|incomplete"),
                                           ("corrupt", "SHA-256 mismatch"), ("missing", "404|Not Found")])
def test_bad_download_leaves_nothing(server, tmp_path, mode, message):
    with pytest.raises(DownloadError, match=message):
        download("img.gz", [f"{server}/{mode}"], tmp_path, SHA["img.gz"])
    assert list(tmp_path.iterdir()) == []


def test_next_mirror_is_tried(server, tmp_path):
    mirrors = [f"{server}/corrupt", f"{server}/truncated", f"{server}/good"]
    assert download("lab.gz", mirrors, tmp_path, SHA["lab.gz"]).read_bytes() == FILES["lab.gz"]


def test_dataset_downloads_missing_files_then_loads(server, tmp_path):
    spec = IdxDatasetSpec(name="toy", folder="toy", class_names=["a", "b", "c"], mean=(0.5,), std=(0.5,),
                          files={"train": ("img.gz", "lab.gz"), "test": ("img.gz", "lab.gz")}, sha256=SHA,
                          mirrors=(f"{server}/truncated", f"{server}/good"))
    ds = load_idx_dataset(spec, "train", tmp_path)
    assert ds.images.shape == (5, 1, 4, 4) and ds.labels.tolist() == LABELS.tolist()
    assert sorted(p.name for p in (tmp_path / "toy").iterdir()) == ["img.gz", "lab.gz"]


def test_offline_error_says_what_to_put_where(tmp_path):
    spec = IdxDatasetSpec(name="toy", folder="toy", class_names=["a"], mean=(0.5,), std=(0.5,),
                          files={"train": ("img.gz", "lab.gz")}, sha256=SHA, mirrors=("http://127.0.0.1:9/none",))
    with pytest.raises(DataError) as info:
        ensure_files(spec, tmp_path)
    text = str(info.value)
    assert "img.gz" in text and str(tmp_path / "toy") in text and "could not be downloaded" in text


def test_named_datasets_use_https_and_full_checksums():
    for spec in DATASETS.values():
        assert all(m.startswith("https://") for m in spec.mirrors)
        assert all(len(h) == 64 for h in spec.sha256.values())
        if spec.mirrors:
            assert set(spec.sha256) == set(spec.all_files())


def test_missing_local_only_dataset(isolated_data_root):
    with pytest.raises(DataError, match="mnist-10k: missing .*no download mirror"):
        load_dataset("mnist-10k")


def test_a_killed_downloads_temporary_is_removed_by_the_next_one(server, tmp_path):
    import fcntl
    import os

    stale = tmp_path / ".img.gz.tmp-killed"
    stale.write_bytes(b"the first half of a download")
    os.utime(stale, (1, 1))  # its writer died long ago: nobody holds its lock
    live = tmp_path / ".img.gz.tmp-live"
    live.write_bytes(b"another process is still writing this")
    os.utime(live, (1, 1))
    with open(live, "rb") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # as a live download holds its own temporary
        download("img.gz", [f"{server}/good"], tmp_path, SHA["img.gz"])
    assert sorted(p.name for p in tmp_path.iterdir()) == [".img.gz.tmp-live", "img.gz"]


def test_a_failed_download_leaves_no_folder(server, tmp_path):
    spec = IdxDatasetSpec(name="toy", folder="toy", class_names=["a", "b", "c"], mean=(0.5,), std=(0.5,),
                          files={"train": ("img.gz", "lab.gz")}, sha256=SHA, mirrors=(f"{server}/missing",))
    with pytest.raises(DataError, match="could not be downloaded"):
        load_idx_dataset(spec, "train", tmp_path / "root")
    assert not (tmp_path / "root").exists()


def test_data_info_downloads_nothing_and_creates_no_folder(isolated_data_root, capsys):
    from cnnlab.cli import main

    assert main(["data", "info", "mnist"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "cnnlab data download mnist" in err[0], err
    assert list(isolated_data_root.iterdir()) == []
