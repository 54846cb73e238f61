"""The IDX file format of the MNIST distribution, read and written with full validation.

Layout (LeCun et al., http://yann.lecun.com/exdb/mnist/): two zero bytes, a type code, the number
of dimensions ``d``, then ``d`` big-endian int32 sizes, then the payload in row-major order,
big-endian. Files may be gzip-compressed. Every check raises :class:`~cnnlab.errors.DataError`
(a ``ValueError``) naming the file and the problem; nothing relies on ``assert``.
"""

from __future__ import annotations

import gzip
import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np

from ..errors import DataError
from ..io import atomic_write_bytes, open_regular_file

# type code -> big-endian numpy dtype
IDX_TYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_CODES = {dt.newbyteorder("=").str if dt.itemsize > 1 else dt.str: code for code, dt in IDX_TYPES.items()}
MAX_DIMS = 8
GZIP_MAGIC = b"\x1f\x8b"
# The largest payload read by default: 1 GiB, 22 times Fashion-MNIST's training images and twice
# EMNIST ByClass's (698k 28 x 28 images); $CNNLAB_MAX_IDX_BYTES raises it.
MAX_IDX_BYTES = 1 << 30
# Deflate expands at most about 1032:1 (258-byte matches coded in 2 bits); a declared size beyond
# that for the file's compressed size cannot be real.
DEFLATE_MAX_RATIO = 1032
READ_CHUNK = 1 << 22


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """Parse the bytes of an (uncompressed) IDX file into a native-endian array."""
    dtype, dims, header_len = parse_header(data, name)
    expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
    payload = len(data) - header_len
    if payload < expected:
        raise DataError(f"{name}: truncated: dimensions {dims} need {expected} payload bytes, found {payload}")
    if payload > expected:
        raise DataError(f"{name}: {payload - expected} trailing bytes after the {expected}-byte payload of {dims}")
    array = np.frombuffer(data, dtype=dtype, count=expected // dtype.itemsize, offset=header_len)
    return array.reshape(dims).astype(dtype.newbyteorder("="), copy=True)


def parse_header(head: bytes, name: str) -> tuple[np.dtype, tuple[int, ...], int]:
    """(dtype, dims, header length) of an IDX header; ``head`` may run on into the payload."""
    if len(head) < 4:
        raise DataError(f"{name}: too short for an IDX header ({len(head)} bytes)")
    zero, code, ndim = struct.unpack(">HBB", head[:4])
    if zero != 0:
        raise DataError(f"{name}: bad magic number 0x{head[:4].hex()} (an IDX file starts with two zero bytes)")
    if code not in IDX_TYPES:
        raise DataError(f"{name}: unknown IDX data type 0x{code:02x}")
    if not 1 <= ndim <= MAX_DIMS:
        raise DataError(f"{name}: implausible number of dimensions {ndim}")
    header_len = 4 + 4 * ndim
    if len(head) < header_len:
        raise DataError(f"{name}: header truncated (needs {header_len} bytes, has {len(head)})")
    dims = struct.unpack(f">{ndim}i", head[4:header_len])
    if any(d < 0 for d in dims):
        raise DataError(f"{name}: negative dimension in {dims}")
    return IDX_TYPES[code], dims, header_len


def _read_exactly(stream, n: int) -> bytearray:
    """Up to ``n`` bytes of ``stream`` into one preallocated buffer (shorter only at the end of the data)."""
    buffer = bytearray(n)
    view, done = memoryview(buffer), 0
    while done < n:
        got = stream.readinto(view[done:done + min(n - done, READ_CHUNK)])
        if not got:
            break
        done += got
    del view
    if done < n:
        del buffer[done:]
    return buffer


def max_idx_bytes() -> int:
    """The payload limit: ``$CNNLAB_MAX_IDX_BYTES`` if set, else :data:`MAX_IDX_BYTES`."""
    value = os.environ.get("CNNLAB_MAX_IDX_BYTES", "")
    try:
        return int(value) if value else MAX_IDX_BYTES
    except ValueError:
        raise DataError(f"CNNLAB_MAX_IDX_BYTES must be a number of bytes, not '{value}'") from None


def read_idx(path: str | os.PathLike, *, max_bytes: int | None = None) -> np.ndarray:
    """Read an IDX file (gzip or not) into a native-endian NumPy array.

    The header is read first and the payload size it declares is checked before anything else is
    read: against ``max_bytes``, against the file's size, and for gzip against what a deflate stream
    of that size can expand to at most (about 1032:1); then exactly that many bytes are decompressed.
    A gzip bomb is refused after reading its header, and a file with data beyond its payload after
    one extra byte.
    """
    path = Path(path)
    name = str(path)
    max_bytes = max_idx_bytes() if max_bytes is None else max_bytes
    try:
        f = open_regular_file(path, "IDX file")
    except DataError as e:
        if "does not exist" in str(e):
            raise DataError(f"{path}: file not found") from None
        raise
    with f:
        on_disk = os.fstat(f.fileno()).st_size
        compressed = f.read(2) == GZIP_MAGIC
        f.seek(0)
        stream = gzip.GzipFile(fileobj=f, mode="rb") if compressed else f
        try:
            head = stream.read(4)
            head += stream.read(4 * head[3]) if len(head) == 4 else b""
            dtype, dims, header_len = parse_header(head, name)
            expected = int(np.prod(dims, dtype=np.int64)) * dtype.itemsize
            if expected > max_bytes:
                raise DataError(f"{name}: dimensions {dims} declare {expected:,} bytes, more than the "
                                f"{max_bytes:,} allowed (set CNNLAB_MAX_IDX_BYTES to read more)")
            if compressed and expected > on_disk * DEFLATE_MAX_RATIO + header_len:
                raise DataError(f"{name}: dimensions {dims} declare {expected:,} bytes, more than a "
                                f"{on_disk:,}-byte gzip file can hold; the file is damaged or forged")
            if not compressed and on_disk - header_len != expected:
                payload = on_disk - header_len
                if payload < expected:
                    raise DataError(f"{name}: truncated: dimensions {dims} need {expected} payload bytes, found {payload}")
                raise DataError(f"{name}: {payload - expected} trailing bytes after the {expected}-byte payload of {dims}")
            data = _read_exactly(stream, expected)
            if len(data) < expected:
                raise DataError(f"{name}: truncated: dimensions {dims} need {expected} payload bytes, found {len(data)}")
            if stream.read(1):
                raise DataError(f"{name}: trailing bytes after the {expected}-byte payload of {dims}")
        except (EOFError, OSError, zlib.error) as e:
            if isinstance(e, DataError):
                raise
            raise DataError(f"{path}: damaged gzip stream ({e})") from None
    array = np.frombuffer(data, dtype=dtype).reshape(dims)  # a view of the one buffer read
    native = dtype.newbyteorder("=")
    return array if native == dtype else array.byteswap(inplace=True).view(native)


def encode_idx(array: np.ndarray) -> bytes:
    """The IDX bytes of ``array`` (uint8, int8, int16, int32, float32 or float64)."""
    array = np.asarray(array)
    key = array.dtype.newbyteorder("=").str if array.dtype.itemsize > 1 else array.dtype.str
    if key not in _CODES:
        raise DataError(f"IDX cannot store dtype {array.dtype}")
    if not 1 <= array.ndim <= MAX_DIMS:
        raise DataError(f"IDX stores 1 to {MAX_DIMS} dimensions, not {array.ndim}")
    code = _CODES[key]
    header = struct.pack(">HBB", 0, code, array.ndim) + struct.pack(f">{array.ndim}i", *array.shape)
    return header + np.ascontiguousarray(array, dtype=IDX_TYPES[code]).tobytes()


def write_idx(path: str | os.PathLike, array: np.ndarray, *, compress: bool | None = None) -> Path:
    """Write ``array`` as IDX, gzip-compressed when the name ends in ``.gz`` (or ``compress``); atomic."""
    path = Path(path)
    data = encode_idx(array)
    if compress if compress is not None else path.suffix == ".gz":
        buffer = io.BytesIO()
        # mtime=0 makes the output reproducible byte for byte.
        with gzip.GzipFile(fileobj=buffer, mode="wb", mtime=0) as f:
            f.write(data)
        data = buffer.getvalue()
    atomic_write_bytes(path, data)
    return path


def read_image_label_pair(images_path: Path, labels_path: Path, num_classes: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Read matching image (N x H x W [x C]) and label (N) files, checking they agree."""
    images = read_idx(images_path)
    labels = read_idx(labels_path)
    if images.ndim not in (3, 4):
        raise DataError(f"{images_path}: expected N x H x W (or N x H x W x C) images, got shape {images.shape}")
    if images.dtype != np.uint8:
        raise DataError(f"{images_path}: expected uint8 pixels, got {images.dtype}")
    if labels.ndim != 1:
        raise DataError(f"{labels_path}: expected a 1-D label vector, got shape {labels.shape}")
    if len(labels) != len(images):
        raise DataError(f"{labels_path}: {len(labels)} labels for {len(images)} images in {images_path.name}")
    if len(labels):
        low, high = int(labels.min()), int(labels.max())
        if low < 0 or (num_classes is not None and high >= num_classes):
            bound = f"0..{num_classes - 1}" if num_classes is not None else "non-negative"
            raise DataError(f"{labels_path}: label {low if low < 0 else high} out of range ({bound})")
    return images, labels.astype(np.int64)
