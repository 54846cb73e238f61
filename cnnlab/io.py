"""Crash-safe file writing: a file is either its old self or its complete new self, never half."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

TMP_MARK = ".tmp-"


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def default_file_mode() -> int:
    """The permissions a plain ``open(path, "w")`` would give (mkstemp makes files private)."""
    return 0o666 & ~_umask()


def default_dir_mode() -> int:
    """The permissions a plain ``mkdir`` would give (mkdtemp makes folders private)."""
    return 0o777 & ~_umask()


def fsync_dir(directory: Path) -> None:
    """Make a rename inside ``directory`` durable (a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{TMP_MARK}", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def clean_stale_temporaries(directory: str | os.PathLike) -> list[Path]:
    """Remove temporaries left by an interrupted :func:`atomic_write_bytes`; returns what was removed."""
    directory = Path(directory)
    removed = []
    if directory.is_dir():
        for p in directory.iterdir():
            if p.name.startswith(".") and TMP_MARK in p.name and p.is_file():
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed
