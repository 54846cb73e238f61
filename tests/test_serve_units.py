"""Serving, piece by piece: category paths, safe decoding, request parsing and the micro-batcher.

Also holds the helpers the HTTP and browser tests share (checkpoints, encoded images, the expected
answer computed straight from the model)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cnnlab import create_model
from cnnlab.serve.batcher import MicroBatcher
from cnnlab.serve.errors import ServeError
from cnnlab.serve.images import decode_image, parse_body, parse_int
from cnnlab.serve.taxonomy import class_roots
from cnnlab.train.checkpoint import save_checkpoint

FASHION = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"]


# --- shared helpers ------------------------------------------------------------------------------------

def make_checkpoint(directory: Path, *, seed: int = 0, arch: str = "lenet5_modern", accuracy: float = 0.9) -> Path:
    """A LeNet-5 checkpoint with seeded weights. BatchNorm statistics are set away from (0, 1) so the
    logits differ clearly from image to image even without training."""
    torch.manual_seed(seed)
    model = create_model(arch)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (torch.nn.BatchNorm1d, torch.nn.BatchNorm2d)):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.02, 0.1)
    return save_checkpoint(directory, model, {
        "arch": arch, "arch_kwargs": {}, "class_names": FASHION, "input_size": [1, 28, 28],
        "mean": [0.286], "std": [0.353], "dataset": "fashion-mnist", "epoch": 3,
        "metrics": {"test_acc": accuracy, "test_top5": 0.99},
    })


def sample_images(count: int = 8, seed: int = 1) -> np.ndarray:
    """``count`` 28 x 28 uint8 grey images: bright blobs of different places and sizes on black."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:28, 0:28]
    out = []
    for _ in range(count):
        cy, cx = rng.uniform(6, 22, size=2)
        ry, rx = rng.uniform(3, 12, size=2)
        blob = np.exp(-(((yy - cy) / ry) ** 2 + ((xx - cx) / rx) ** 2))
        out.append(np.clip(blob * 255 + rng.normal(0, 8, (28, 28)), 0, 255).astype(np.uint8))
    return np.stack(out)


def encode(img: Image.Image, fmt: str, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **kw)
    return buf.getvalue()


def expected_scores(model: torch.nn.Module, grey: np.ndarray) -> np.ndarray:
    """Softmax of the model on a 28 x 28 uint8 grey image, computed here without the service."""
    x = torch.from_numpy(grey.astype(np.float32) / 255.0)[None, None]
    x = (x - 0.286) / 0.353
    with torch.no_grad():
        return torch.softmax(model.eval()(x), dim=1)[0].numpy()


def bomb_png(width: int = 20000, height: int = 20000, *, rows: int = 1) -> bytes:
    """A PNG claiming ``width`` x ``height`` 1-bit pixels whose body holds only ``rows`` rows (a few KB)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    # Each row: filter byte 0, then width/8 bytes of black; zeros compress to almost nothing.
    body = zlib.compress((b"\x00" + b"\x00" * ((width + 7) // 8)) * rows, 9)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0))
            + chunk(b"IDAT", body) + chunk(b"IEND", b""))


# --- category paths ------------------------------------------------------------------------------------

def test_fashion_classes_get_their_categories():
    roots = class_roots(FASHION, {"dataset": "fashion-mnist"})
    assert dict(zip(FASHION, roots)) == {
        "T-shirt/top": "clothing/top", "Trouser": "clothing/bottom", "Pullover": "clothing/top",
        "Dress": "clothing/dress", "Coat": "clothing/outerwear", "Sandal": "footwear/sandal",
        "Shirt": "clothing/top", "Sneaker": "footwear/shoe", "Bag": "accessory/bag", "Ankle boot": "footwear/boot"}


def test_checkpoint_roots_take_precedence_and_unknown_classes_fall_back_to_the_dataset():
    names = ["cat", "dog", "zebra"]
    assert class_roots(names, {"class_roots": ["a/1", "a/2", "b"]}) == ["a/1", "a/2", "b"]
    # a wrong-length list is ignored rather than misaligned
    assert class_roots(names, {"class_roots": ["x"], "dataset": "zoo"}) == ["zoo", "zoo", "zoo"]
    assert class_roots(names, {"taxonomy": {"dog": "animal/pet"}, "dataset": "zoo"}) == ["zoo", "animal/pet", "zoo"]
    assert class_roots([str(d) for d in range(10)], {}) == ["digit"] * 10
    assert class_roots(["thing"], {}) == ["unsorted"]


# --- decoding --------------------------------------------------------------------------------------------

def test_decompression_bomb_is_refused_from_its_header():
    data = bomb_png()
    assert len(data) < 10_000
    assert struct.unpack(">II", data[16:24]) == (20000, 20000)  # its header really claims 400 megapixels
    with pytest.raises(ServeError) as e:
        decode_image(data, max_pixels=4096 * 4096)
    assert e.value.status == 413 and e.value.code == "image_too_large"
    # The same construction with an honest size decodes: the header check is what stopped it.
    assert decode_image(bomb_png(64, 48, rows=48), max_pixels=4096 * 4096).size == (64, 48)


@pytest.mark.parametrize("data, words", [
    (b"", "empty"),
    (b"\x00\x01garbage" * 50, "not an image"),
    (encode(Image.fromarray(sample_images(1)[0]), "PNG")[:300], "truncated"),
])
def test_bad_bytes_are_400_with_a_reason(data, words):
    with pytest.raises(ServeError) as e:
        decode_image(data, max_pixels=10_000)
    assert e.value.status == 400 and words in e.value.message


def test_formats_outside_the_list_are_refused_even_when_pillow_reads_them():
    ico = encode(Image.new("RGB", (16, 16), (10, 200, 30)), "ICO")
    assert Image.open(io.BytesIO(ico)).format == "ICO"
    with pytest.raises(ServeError) as e:
        decode_image(ico, max_pixels=10_000)
    assert e.value.code == "invalid_image"


def test_json_body_carries_base64_and_refuses_urls():
    png = encode(Image.new("L", (4, 4), 7), "PNG")
    doc = {"image": "data:image/png;base64," + base64.b64encode(png).decode(), "top_k": 3}
    up = parse_body(json.dumps(doc).encode(), "application/json", image_field="image")
    assert up.images == [png] and up.fields == {"top_k": "3"}
    for bad in ({"url": "http://example.com/x.png"}, {"image": "https://example.com/x.png"}):
        with pytest.raises(ServeError) as e:
            parse_body(json.dumps(bad).encode(), "application/json", image_field="image")
        assert e.value.status == 400 and "URL" in e.value.message
    with pytest.raises(ServeError) as e:
        parse_body(b'{"image": "not base64!"}', "application/json", image_field="image")
    assert "base64" in e.value.message


def test_multipart_is_parsed_in_memory():
    png = encode(Image.new("L", (4, 4), 9), "PNG")
    body = (b"--XyZ\r\nContent-Disposition: form-data; name=\"top_k\"\r\n\r\n2\r\n"
            b"--XyZ\r\nContent-Disposition: form-data; name=\"image\"; filename=\"a.png\"\r\n"
            b"Content-Type: image/png\r\n\r\n" + png + b"\r\n--XyZ--\r\n")
    up = parse_body(body, "multipart/form-data; boundary=XyZ", image_field="image")
    assert up.images == [png] and up.fields == {"top_k": "2"}


def test_integer_fields_are_range_checked():
    assert parse_int(None, "top_k", 1, 10, 5) == 5
    assert parse_int("10", "top_k", 1, 10, 5) == 10
    for bad in ("0", "11", "two", "1.5"):
        with pytest.raises(ServeError):
            parse_int(bad, "top_k", 1, 10, 5)


# --- micro-batching ------------------------------------------------------------------------------------

def test_batcher_groups_concurrent_requests_and_returns_each_its_own_result():
    sizes = []

    def run(batch: torch.Tensor, k: int):
        sizes.append(batch.shape[0])
        return [[int(img.sum())] * k for img in batch]  # each image's own sum, k times

    async def main():
        b = MicroBatcher(run, max_batch=4, max_wait_s=0.2, queue_size=64)
        await b.start()
        images = [torch.full((1, 2, 2), i, dtype=torch.uint8) for i in range(10)]
        results = await asyncio.gather(*(b.submit(img, 1 + i % 3) for i, img in enumerate(images)))
        await b.stop()
        return results

    results = asyncio.run(main())
    assert results == [[4 * i] * (1 + i % 3) for i in range(10)]
    assert sum(sizes) == 10 and max(sizes) <= 4
    assert sizes[:2] == [4, 4]  # all ten arrived together: full batches first


def test_batcher_without_batching_runs_one_at_a_time():
    sizes = []

    async def main():
        b = MicroBatcher(lambda x, k: (sizes.append(len(x)), [[0]] * len(x))[1], max_batch=1, max_wait_s=0.05)
        await b.start()
        await asyncio.gather(*(b.submit(torch.zeros(1, 2, 2, dtype=torch.uint8), 1) for _ in range(5)))
        await b.stop()

    asyncio.run(main())
    assert sizes == [1] * 5


def test_batcher_waits_only_for_announced_requests():
    sizes = []

    async def main():
        b = MicroBatcher(lambda x, k: (sizes.append(len(x)), [[0]] * len(x))[1], max_batch=8, max_wait_s=0.5)
        await b.start()
        img = torch.zeros(1, 2, 2, dtype=torch.uint8)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        await b.submit(img, 1)  # alone: no one is on the way, so no waiting
        alone = loop.time() - t0

        async def late():
            with b.announce():  # being decoded...
                await asyncio.sleep(0.1)
            return await b.submit(img, 1)

        t0 = loop.time()
        await asyncio.gather(b.submit(img, 1), late())
        together = loop.time() - t0
        await b.stop()
        return alone, together

    alone, together = asyncio.run(main())
    assert alone < 0.25 and sizes[0] == 1
    assert sizes[1:] == [2]  # the first request waited for the announced one
    assert 0.1 <= together < 0.45


def test_full_queue_answers_503_with_retry_after_at_once():
    import threading

    release = threading.Event()

    def slow(batch, k):
        release.wait(5)
        return [[1]] * len(batch)

    async def main():
        b = MicroBatcher(slow, max_batch=1, max_wait_s=0, queue_size=2)
        await b.start()
        img = torch.zeros(1, 2, 2, dtype=torch.uint8)
        first = asyncio.create_task(b.submit(img, 1))
        await asyncio.sleep(0.05)  # the worker has taken it and is blocked in the model
        queued = [asyncio.create_task(b.submit(img, 1)) for _ in range(2)]
        await asyncio.sleep(0.01)
        with pytest.raises(ServeError) as e:
            await b.submit(img, 1)
        release.set()
        done = await asyncio.gather(first, *queued)
        await b.stop()
        return e.value, done

    error, done = asyncio.run(main())
    assert error.status == 503 and error.headers() == {"Retry-After": "1"}
    assert done == [[1]] * 3  # the accepted ones still finish
