"""Safe file handling.

Writing: a file is either its old self or its complete new self, never half. Each write goes to a
temporary file beside its destination (named ``.NAME.tmp-XXXX``), which is fsync'd and renamed into
place. While it is being written its writer holds an advisory lock on it, so a later run can tell a
temporary left by a killed process (unlocked: removed) from one another process is still writing
(locked: left alone).

Reading: only regular files are opened. A FIFO, a device or a socket given where a file is expected
would block a reader forever (or stream without end), so it is refused before any byte is read.
"""

from __future__ import annotations

import os
import stat
import tempfile
import time
from pathlib import Path
from typing import BinaryIO

from .errors import DataError

try:  # advisory locks exist on POSIX; elsewhere stale temporaries are recognised by age alone
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None

TMP_MARK = ".tmp-"
UNLOCKED_STALE_AGE_S = 24 * 3600.0  # without locks, a temporary this old is taken as abandoned
# A writer locks its temporary right after creating it; one younger than this may be in that instant.
FRESH_TEMPORARY_S = 2.0


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


def lock_file(fd: int) -> None:
    """Hold an exclusive advisory lock on ``fd`` until it is closed (marks a temporary as in use)."""
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


def temporary_beside(path: Path) -> tuple[int, str]:
    """A new, locked temporary file in ``path``'s folder, named after ``path``: (fd, name)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}{TMP_MARK}", dir=path.parent)
    try:
        lock_file(fd)
    except OSError:
        pass  # a file system without locks: the temporary is still private by its random name
    return fd, tmp


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync it, then rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = temporary_beside(path)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
            os.chmod(tmp, default_file_mode())
            # Renamed while still open, so the lock is held until the file has its final name.
            os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _abandoned(path: Path) -> bool:
    """Is the temporary ``path`` left by a process that is gone (nobody holds its lock)?"""
    try:
        age = time.time() - path.stat().st_mtime
    except OSError:
        return False
    if fcntl is None:
        return age > UNLOCKED_STALE_AGE_S
    if age < FRESH_TEMPORARY_S:
        return False
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False  # a live writer holds it
    finally:
        os.close(fd)  # closing releases the probe's own lock
    return True


def clean_stale_temporaries(directory: str | os.PathLike, name: str | None = None) -> list[Path]:
    """Remove temporaries left by killed writers in ``directory`` (only those of file ``name`` when
    given); temporaries a live process is writing are kept. Returns what was removed."""
    directory = Path(directory)
    removed = []
    prefix = f".{name}{TMP_MARK}" if name else "."
    if directory.is_dir():
        for p in directory.iterdir():
            if p.name.startswith(prefix) and TMP_MARK in p.name and p.is_file() and _abandoned(p):
                p.unlink(missing_ok=True)
                removed.append(p)
    return removed


# --- reading -----------------------------------------------------------------------------------------

class NotARegularFile(DataError):
    """A path names a folder, FIFO, device or socket where a file was expected."""


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode) or stat.S_ISBLK(mode):
        return "a device"
    return "not a regular file"


def _refuse_irregular(path: str | os.PathLike, mode: int) -> None:
    if stat.S_ISDIR(mode):
        raise NotARegularFile(f"'{path}' is a folder, not a file")
    if not stat.S_ISREG(mode):
        raise NotARegularFile(f"'{path}' is {_kind(mode)}; only regular files are read")


def open_regular_file(path: str | os.PathLike, what: str = "file") -> BinaryIO:
    """Open ``path`` for binary reading, refusing anything but a regular file without blocking on it;
    ``what`` names the file in the error for a missing one ("image 'x.png' does not exist").

    The path is opened non-blocking (opening a FIFO for reading would otherwise wait for a writer)
    and checked with ``fstat`` on that very descriptor, so nothing can swap the file in between.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        # A stat first, so a FIFO or device is refused without ever being opened (even a non-blocking
        # open briefly makes a FIFO's writer see a reader); fstat below closes the race that leaves.
        _refuse_irregular(path, os.stat(path).st_mode)
        fd = os.open(path, flags)
    except FileNotFoundError:
        raise DataError(f"{what} '{path}' does not exist") from None
    except IsADirectoryError:
        raise NotARegularFile(f"'{path}' is a folder, not a file") from None
    except PermissionError:
        raise DataError(f"{what} '{path}' cannot be read (permission denied)") from None
    try:
        _refuse_irregular(path, os.fstat(fd).st_mode)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def is_regular_file(path: str | os.PathLike) -> bool:
    """True for a regular file (following symbolic links); never opens it."""
    try:
        return stat.S_ISREG(os.stat(path).st_mode)
    except OSError:
        return False
