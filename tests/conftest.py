"""Shared fixtures: the real data folder beside the repository, and small checkpoints."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("MPLBACKEND", "Agg")
# Tests train with fixed settings, so runs compare bitwise; the execution plan has tests of its own.
os.environ.setdefault("CNNLAB_PLAN", "off")
torch.set_num_threads(min(2, torch.get_num_threads()))

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (Fashion-MNIST and the MNIST sample); tests that need it skip without it."""
    if not (SHARED_DATA / "fashion-mnist").is_dir():
        pytest.skip("../shared/data is not present")
    return SHARED_DATA


@pytest.fixture()
def isolated_data_root(tmp_path, monkeypatch) -> Path:
    """An empty data root, so nothing is found (or downloaded) by accident."""
    root = tmp_path / "data"
    root.mkdir()
    monkeypatch.setenv("CNNLAB_DATA", str(root))
    return root


@pytest.fixture()
def one_thread():
    """Tiny tensors: one thread beats two threads fighting over a shared CPU."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
