"""CIFAR-10 / CIFAR-100 from their binary release: record layout, download with SHA-256, training."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import tarfile

import numpy as np
import pytest
import torch

from cnnlab.data import DATASETS, load_dataset
from cnnlab.data.cifar import CIFAR_DATASETS, load_cifar, read_records
from cnnlab.errors import DataError


def release(path, spec, per_member: int = 6, seed: int = 0):
    """A small archive in the binary release's layout; returns the images and labels written."""
    rng = np.random.default_rng(seed)
    written = {}
    with tarfile.open(path, "w:gz") as archive:
        for split, members in spec.members.items():
            images, labels = [], []
            for name in members:
                pixels = rng.integers(0, 256, (per_member, 3, 32, 32), dtype=np.uint8)
                label = rng.integers(0, len(spec.class_names), per_member).astype(np.uint8)
                heads = [label[:, None]] if spec.label_bytes == 1 else [label[:, None] // 5, label[:, None]]
                data = np.concatenate(heads + [pixels.reshape(per_member, -1)], axis=1).tobytes()
                info = tarfile.TarInfo(name)
                info.size = len(data)
                archive.addfile(info, io.BytesIO(data))
                images.append(pixels)
                labels.append(label)
            written[split] = (np.concatenate(images), np.concatenate(labels).astype(np.int64))
    return written


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_records_are_read_plane_by_plane_with_the_right_label(tmp_path, name):
    spec = CIFAR_DATASETS[name]
    folder = tmp_path / spec.folder
    folder.mkdir()
    written = release(folder / spec.archive, spec)
    for split in ("train", "test"):
        data = load_cifar(spec, split, tmp_path, download_missing=False)
        images, labels = written[split]
        assert torch.equal(data.images, torch.from_numpy(images)) and data.labels.tolist() == labels.tolist()
        assert data.input_size == (3, 32, 32) and data.class_names == spec.class_names and data.hflip
    assert len(load_cifar(spec, "train", tmp_path, download_missing=False)) == 6 * len(spec.members["train"])


def test_download_is_checked_against_sha256(tmp_path, monkeypatch):
    spec = CIFAR_DATASETS["cifar10"]
    source = tmp_path / "mirror"
    source.mkdir()
    release(source / spec.archive, spec)
    digest = hashlib.sha256((source / spec.archive).read_bytes()).hexdigest()
    good = dataclasses.replace(spec, mirrors=(source.as_uri(),), sha256={spec.archive: digest})
    assert len(load_cifar(good, "test", tmp_path / "root")) == 6
    bad = dataclasses.replace(spec, mirrors=(source.as_uri(),), sha256={spec.archive: "0" * 64})
    with pytest.raises(DataError, match="SHA-256"):
        load_cifar(bad, "test", tmp_path / "other")
    assert not (tmp_path / "other" / spec.folder / spec.archive).exists()


def test_official_checksums_and_names_are_registered():
    assert DATASETS["cifar10"].sha256["cifar-10-binary.tar.gz"].startswith("c4a38c50")
    assert DATASETS["cifar100"].sha256["cifar-100-binary.tar.gz"].startswith("58a81ae1")
    assert len(DATASETS["cifar100"].class_names) == 100 and DATASETS["cifar10"].class_names[3] == "cat"


def test_a_damaged_archive_is_one_clear_error(tmp_path, monkeypatch):
    spec = CIFAR_DATASETS["cifar10"]
    (tmp_path / spec.folder).mkdir()
    (tmp_path / spec.folder / spec.archive).write_bytes(b"\x1f\x8bnot really")
    monkeypatch.setenv("CNNLAB_OFFLINE", "1")
    with pytest.raises(DataError, match="not a readable cifar10 archive"):
        load_dataset("cifar10", "train", tmp_path)


def test_resnet20_trains_on_cifar_format_data(tmp_path, capsys):
    from cnnlab.cli import main

    spec = CIFAR_DATASETS["cifar10"]
    (tmp_path / spec.folder).mkdir()
    release(tmp_path / spec.folder / spec.archive, spec, per_member=20)
    assert main(["train", "resnet20", "--data", "cifar10", "--data-dir", str(tmp_path), "--epochs", "1",
                 "--batch-size", "50", "--out", str(tmp_path / "r"), "--json", "--threads", "1"]) == 0
    assert '"task": "classify"' in capsys.readouterr().out
