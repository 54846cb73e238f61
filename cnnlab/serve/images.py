"""Turning request bodies into images, safely and entirely in memory.

Three request shapes carry an image: ``multipart/form-data`` (a file field named ``image``, or
``images`` for a batch), ``application/json`` (``{"image": "<base64>"}``, a ``data:`` URL prefix
allowed) and a bare ``image/*`` body. URLs are refused: the service never fetches anything.

Before any pixel is decoded the header is read with only the accepted formats' decoders, and the
pixel count and aspect ratio it claims are checked against the limits; then
:func:`cnnlab.data.images.open_image` decodes. Fitting the image to the model then resamples only
the part it keeps, straight to the model's input size, so no request can make the server build a
larger image than the one it sent. Multipart bodies are parsed here from the bytes already held in
memory, so an upload never becomes a temporary file. JSON nested too deeply to parse is a 400.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
from dataclasses import dataclass, field
from typing import Any

from PIL import Image, UnidentifiedImageError

from ..data.images import MAX_ASPECT_RATIO, ImageTooLarge, check_geometry, open_image
from ..errors import DataError
from .config import ACCEPTED_FORMATS
from .errors import bad_request, image_too_large, invalid_image, unsupported_media_type


@dataclass
class Upload:
    """What a request asked for: raw image bytes (one or many) and its text fields."""

    images: list[bytes] = field(default_factory=list)
    fields: dict[str, str] = field(default_factory=dict)


def decode_image(data: bytes, *, max_pixels: int, max_aspect: float | None = MAX_ASPECT_RATIO,
                 index: int | None = None) -> Image.Image:
    """Bytes -> decoded Pillow image, or a :class:`ServeError` (400 bad image, 413 too many pixels or
    too extreme a shape)."""
    what = "image" if index is None else f"image {index}"
    if not data:
        raise invalid_image(f"{what} is empty")
    try:
        # Opening reads only the header; restricting ``formats`` keeps other decoders out entirely.
        with Image.open(io.BytesIO(data), formats=list(ACCEPTED_FORMATS)) as probe:
            fmt, (width, height) = probe.format, probe.size
    except Image.DecompressionBombError:
        raise image_too_large(f"{what} claims more pixels than allowed ({max_pixels})") from None
    except UnidentifiedImageError:
        raise invalid_image(f"{what} is not an image in an accepted format ({', '.join(ACCEPTED_FORMATS)})") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise invalid_image(f"{what} is damaged: {e}") from None
    try:
        check_geometry(width, height, name=what, max_pixels=max_pixels, max_aspect=max_aspect)
        img = open_image(data, max_pixels=max_pixels, max_aspect=max_aspect)
    except ImageTooLarge as e:
        raise image_too_large(str(e).replace("image '<bytes>'", what)) from None
    except DataError as e:
        message = str(e).replace("image '<bytes>'", what).replace("'<bytes>'", what)
        raise invalid_image(message) from None
    if img.format != fmt:  # the unrestricted open took it for something else: refuse rather than guess
        raise invalid_image(f"{what} is ambiguous ({fmt} header, {img.format} decoder)")
    return img


# --- request bodies ----------------------------------------------------------------------------------

def media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def parse_body(body: bytes, content_type: str, *, image_field: str) -> Upload:
    """Split a request body into image bytes and text fields according to its content type."""
    kind = media_type(content_type)
    if kind == "multipart/form-data":
        return _parse_multipart(body, content_type, image_field)
    if kind == "application/json":
        return _parse_json(body, image_field)
    if kind.startswith("image/") or kind == "application/octet-stream":
        return Upload(images=[body])
    raise unsupported_media_type(kind)


def _b64(value: Any, where: str) -> bytes:
    if not isinstance(value, str):
        raise bad_request(f"{where} must be a base64 string")
    text = value.strip()
    if text.lower().startswith(("http://", "https://", "ftp://", "file:")):
        raise bad_request(f"{where} is a URL; the service does not fetch URLs, send the image itself")
    if text.startswith("data:"):
        text = text.split(",", 1)[1] if "," in text else ""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise bad_request(f"{where} is not valid base64") from None


def _parse_json(body: bytes, image_field: str) -> Upload:
    try:
        doc = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise bad_request(f"body is not valid JSON: {e.msg if hasattr(e, 'msg') else e}") from None
    except RecursionError:  # e.g. "[" x 100,000: the parser gives up before any object is built
        raise bad_request("JSON body is nested too deeply") from None
    if not isinstance(doc, dict):
        raise bad_request("JSON body must be an object")
    if "url" in doc or "image_url" in doc:
        raise bad_request("the service does not fetch URLs; send the image itself as base64")
    if image_field not in doc:
        raise bad_request(f"JSON body needs '{image_field}'")
    raw = doc[image_field]
    if image_field == "images":
        if not isinstance(raw, list):
            raise bad_request("'images' must be a list of base64 strings")
        images = [_b64(v, f"images[{i}]") for i, v in enumerate(raw)]
    else:
        images = [_b64(raw, image_field)]
    fields = {k: str(v) for k, v in doc.items() if k != image_field and isinstance(v, (str, int, float))}
    return Upload(images=images, fields=fields)


def _parse_multipart(body: bytes, content_type: str, image_field: str) -> Upload:
    """Parse multipart/form-data held in memory (python-multipart's push parser; nothing on disk)."""
    from python_multipart.multipart import MultipartParser, parse_options_header

    _, params = parse_options_header(content_type)
    boundary = params.get(b"boundary")
    if not boundary:
        raise bad_request("multipart body without a boundary")
    parts: list[dict[str, Any]] = []
    header = {"field": b"", "value": b""}

    def on_part_begin() -> None:
        parts.append({"headers": {}, "data": bytearray()})

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header["field"] += data[start:end]

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header["value"] += data[start:end]

    def on_header_end() -> None:
        parts[-1]["headers"][header["field"].decode("latin-1").lower()] = header["value"]
        header["field"], header["value"] = b"", b""

    def on_part_data(data: bytes, start: int, end: int) -> None:
        parts[-1]["data"] += data[start:end]

    parser = MultipartParser(boundary, callbacks={
        "on_part_begin": on_part_begin, "on_header_field": on_header_field,
        "on_header_value": on_header_value, "on_header_end": on_header_end, "on_part_data": on_part_data,
    })
    try:
        parser.write(body)
        parser.finalize()
    except Exception as e:  # python-multipart raises its own error types for malformed bodies
        raise bad_request(f"malformed multipart body: {e}") from None
    upload = Upload()
    for part in parts:
        _, disp = parse_options_header(part["headers"].get("content-disposition", b""))
        name = disp.get(b"name", b"").decode("utf-8", "replace")
        if name in (image_field, "image", "images", "file"):
            upload.images.append(bytes(part["data"]))
        elif name in ("url", "image_url"):
            raise bad_request("the service does not fetch URLs; upload the image itself")
        elif name:
            upload.fields[name] = bytes(part["data"]).decode("utf-8", "replace").strip()
    if not upload.images:
        raise bad_request(f"multipart body has no '{image_field}' file field")
    return upload


def parse_int(value: str | None, name: str, low: int, high: int, default: int) -> int:
    """An integer request field in [low, high]; a clear 400 otherwise."""
    if value is None or value == "":
        return default
    try:
        number = int(str(value).strip())
    except ValueError:
        raise bad_request(f"{name} must be an integer, got '{value}'") from None
    if not low <= number <= high:
        raise bad_request(f"{name} must be between {low} and {high}, got {number}")
    return number
