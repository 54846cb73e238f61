"""Fetching dataset files: HTTPS from the official mirrors, SHA-256 verified, renamed into place.

A file is streamed into a temporary file beside its destination while its SHA-256 is computed; only
a complete file with the right checksum is renamed to its final name, so an interrupted or corrupted
download never leaves a plausible-looking file behind. On any failure the next mirror is tried.
Temporaries of a download that was killed are removed by the next download of that file (a live
download holds a lock on its own), and a download that fails leaves no folder it created.
"""

from __future__ import annotations

import hashlib
import os
import urllib.error
import urllib.request
from pathlib import Path
from typing import Callable, Sequence

from ..errors import DownloadError
from ..io import clean_stale_temporaries, default_file_mode, fsync_dir, temporary_beside

CHUNK = 1 << 16


def sha256_of(path: str | os.PathLike) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fetch_one(url: str, destination: Path, sha256: str | None, timeout: float,
               progress: Callable[[int, int | None], None] | None) -> None:
    fd, tmp = temporary_beside(destination)
    try:
        digest = hashlib.sha256()
        request = urllib.request.Request(url, headers={"User-Agent": "cnnlab"})
        with urllib.request.urlopen(request, timeout=timeout) as response, os.fdopen(fd, "wb") as out:
            total = response.headers.get("Content-Length")
            total = int(total) if total and total.isdigit() else None
            done = 0
            while block := response.read(CHUNK):
                out.write(block)
                digest.update(block)
                done += len(block)
                if progress:
                    progress(done, total)
            if total is not None and done != total:
                raise DownloadError(f"{url}: connection closed after {done} of {total} bytes")
            out.flush()
            os.fsync(out.fileno())
        if sha256 and digest.hexdigest() != sha256.lower():
            raise DownloadError(f"{url}: SHA-256 mismatch (got {digest.hexdigest()[:16]}..., expected {sha256[:16]}...)")
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, destination)
        fsync_dir(destination.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def download(
    filename: str,
    mirrors: Sequence[str],
    destination_dir: str | os.PathLike,
    sha256: str | None,
    *,
    timeout: float = 30.0,
    progress: Callable[[int, int | None], None] | None = None,
) -> Path:
    """Download ``filename`` from the first mirror that serves it intact; returns the final path."""
    destination_dir = Path(destination_dir)
    created = make_folders(destination_dir)
    destination = destination_dir / filename
    clean_stale_temporaries(destination_dir, filename)
    failures = []
    try:
        for mirror in mirrors:
            url = mirror.rstrip("/") + "/" + filename
            try:
                _fetch_one(url, destination, sha256, timeout, progress)
                return destination
            except DownloadError as e:
                failures.append(str(e))
            except (urllib.error.URLError, OSError, ValueError) as e:  # HTTP errors, timeouts, resets
                reason = getattr(e, "reason", None) or e
                failures.append(f"{url}: {reason}")
        raise DownloadError(f"could not download {filename}: " + "; ".join(failures))
    except BaseException:
        remove_empty_folders(created)
        raise


def make_folders(folder: Path) -> list[Path]:
    """Create ``folder`` and any missing parents; returns the ones created, innermost first."""
    created = []
    for p in [folder, *folder.parents]:
        if p.exists():
            break
        created.append(p)
    folder.mkdir(parents=True, exist_ok=True)
    return created


def remove_empty_folders(folders: list[Path]) -> None:
    """Remove the given folders, innermost first, as long as they are empty."""
    for p in folders:
        try:
            p.rmdir()
        except OSError:  # not empty (another download put a file there) or already gone
            return
