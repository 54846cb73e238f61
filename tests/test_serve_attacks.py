"""Attacks on a real ``cnnlab serve`` process over real sockets: a 2 KB strip image that would fit to
a 28 x 28,000,000 picture, idle and one-byte-a-second connections, a connection flood past the
open-file limit, images in every mode Pillow can open (LAB TIFF among them), and JSON nested
100,000 deep. The server runs with short timeouts and a low open-file limit so that each attack
plays out in seconds."""

from __future__ import annotations

import base64
import http.client
import io
import json
import re
import resource
import selectors
import socket
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from PIL import Image

from test_serve_units import encode, expected_scores, make_checkpoint, sample_images

from cnnlab.train.checkpoint import load_checkpoint

HEADER_TIMEOUT = 1.0
OPEN_FILES = 600  # the server's open-file limit: it may accept 300 connections, keeping the rest free


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def peak_rss_mb(pid: int) -> float:
    status = open(f"/proc/{pid}/status").read()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    folder = tmp_path_factory.mktemp("attacks")
    ckpt = make_checkpoint(folder / "fashion")
    port = free_port()
    log_path = folder / "server.log"
    log = open(log_path, "w")

    def low_open_file_limit():
        resource.setrlimit(resource.RLIMIT_NOFILE, (OPEN_FILES, OPEN_FILES))

    proc = subprocess.Popen(
        [sys.executable, "-m", "cnnlab.cli", "serve", str(ckpt), "--port", str(port), "--threads", "1",
         "--header-timeout", str(HEADER_TIMEOUT), "--keep-alive", "1", "--log-level", "info"],
        stdout=log, stderr=subprocess.STDOUT, preexec_fn=low_open_file_limit)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, log_path.read_text()
            try:
                if get(port, "/readyz")[0] == 200:
                    break
            except OSError:
                pass
            assert time.monotonic() < deadline, "server never became ready"
            time.sleep(0.1)
        yield {"port": port, "proc": proc, "log": log_path, "model": load_checkpoint(ckpt).model}
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()


def get(port: int, path: str, timeout: float = 5.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def post(port: int, path: str, body: bytes, content_type: str, timeout: float = 30.0) -> tuple[int, dict]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("POST", path, body=body, headers={"content-type": content_type})
        response = conn.getresponse()
        return response.status, json.loads(response.read())
    finally:
        conn.close()


def multipart(files: list[tuple[str, bytes]]) -> tuple[bytes, str]:
    boundary = "cnnlabattackboundary"
    parts = []
    for name, data in files:
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="x"\r\n'
                     "Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


class LivenessProbe:
    """Polls /livez on its own connections while an attack runs; keeps the slowest answer."""

    def __init__(self, port: int):
        self.port, self.worst, self.failures, self.done = port, 0.0, [], threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self):
        while not self.done.is_set():
            start = time.perf_counter()
            try:
                status, _ = get(self.port, "/livez", timeout=20)
                if status != 200:
                    self.failures.append(status)
            except OSError as e:
                self.failures.append(repr(e))
            self.worst = max(self.worst, time.perf_counter() - start)
            time.sleep(0.05)

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join(30)


def strip_png(length: int) -> bytes:
    """A 1 x ``length`` grey PNG: a couple of kilobytes, within the 4096 x 4096 pixel limit."""
    return encode(Image.new("L", (length, 1), 128), "PNG")


def test_a_strip_image_is_refused_from_its_header_and_blocks_nobody(server):
    port, pid = server["port"], server["proc"].pid
    strips = [strip_png(1_000_000), strip_png(2_000_000)]
    assert all(len(s) < 10_000 for s in strips)
    before = peak_rss_mb(pid)
    with LivenessProbe(port) as probe:
        for data in strips:
            status, answer = post(port, "/v1/classify", data, "image/png")
            assert status == 413 and answer["error_code"] == "image_too_large", answer
            assert "sides differ by more than 32:1" in answer["error_msg"]
        body, kind = multipart([("images", strips[0]), ("images", encode(Image.fromarray(sample_images(1)[0]), "PNG"))])
        status, answer = post(port, "/v1/classify/batch", body, kind)
        time.sleep(0.3)
    assert status == 200 and answer["results"][0]["error_code"] == "image_too_large"
    assert answer["results"][1]["result_num"] == 5
    # Fitting 1 x 1,000,000 to 28 x 28 the naive way builds 28 x 28,000,000 (784 MB) and stalled
    # /livez for seconds; refused from the header, it costs nothing.
    assert peak_rss_mb(pid) - before < 100, (before, peak_rss_mb(pid))
    assert probe.failures == [] and probe.worst < 2.0, (probe.failures, probe.worst)


def test_idle_and_trickling_connections_are_closed(server):
    port = server["port"]
    idle = [socket.create_connection(("127.0.0.1", port)) for _ in range(8)]
    trickling = [socket.create_connection(("127.0.0.1", port)) for _ in range(8)]
    head = b"GET /livez HTTP/1.1\r\nHost: x\r\nX-Padding: " + b"a" * 200 + b"\r\n\r\n"
    closed_after: dict[int, float] = {}
    replies: dict[int, bytes] = {}
    start = time.monotonic()

    def trickle(i: int, sock: socket.socket) -> None:
        sock.settimeout(0.1)
        data = b""
        for byte in head:  # one byte every 0.1 s: the whole head would take 20 s
            try:
                sock.sendall(bytes([byte]))
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
            except socket.timeout:
                continue
            except OSError:
                break
        closed_after[i] = time.monotonic() - start
        replies[i] = data

    def wait_closed(i: int, sock: socket.socket) -> None:
        sock.settimeout(10)
        try:
            replies[i] = sock.recv(4096)
        except OSError:
            replies[i] = b""
        closed_after[i] = time.monotonic() - start

    threads = [threading.Thread(target=trickle, args=(i, s)) for i, s in enumerate(trickling)]
    threads += [threading.Thread(target=wait_closed, args=(100 + i, s)) for i, s in enumerate(idle)]
    with LivenessProbe(port) as probe:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    for s in idle + trickling:
        s.close()
    assert len(closed_after) == 16
    assert max(closed_after.values()) < HEADER_TIMEOUT + 2.0, closed_after  # never 40 s and more
    assert all(replies[i].startswith(b"HTTP/1.1 408") for i in range(8)), replies  # a head had begun
    assert all(replies[100 + i] == b"" for i in range(8))  # silent ones are just closed
    assert probe.failures == [] and probe.worst < 2.0

    # A keep-alive connection that goes quiet after its request is closed as well.
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(b"GET /livez HTTP/1.1\r\nHost: x\r\n\r\n")
    sock.settimeout(10)
    begin, received = time.monotonic(), b""
    while chunk := sock.recv(4096):
        received += chunk
    assert received.startswith(b"HTTP/1.1 200") and received.endswith(b"}") and time.monotonic() - begin < 3.0
    sock.close()


def test_a_connection_flood_is_capped_below_the_open_file_limit_and_the_log_stays_short(server):
    port, log_path = server["port"], server["log"]
    lines_before = len(log_path.read_text().splitlines())
    socks, refused = [], 0
    for _ in range(450):
        s = socket.socket()
        s.settimeout(5)
        s.connect(("127.0.0.1", port))
        socks.append(s)
    time.sleep(0.3)
    with selectors.DefaultSelector() as sel:
        for s in socks:
            sel.register(s, selectors.EVENT_READ)
        answered = [key.fileobj for key, _ in sel.select(timeout=0)]  # the others wait for their request
    for s in answered:
        data = s.recv(4096)
        if data.startswith(b"HTTP/1.1 503"):
            refused += 1
            assert b"retry-after: 1" in data.lower() and b'"overloaded"' in data
    # The server's limit of 600 open files keeps 300 connections: the rest are told 503 at once,
    # instead of accept() failing for everyone.
    assert 450 - 300 - 10 <= refused <= 450 - 300 + 10, refused
    time.sleep(HEADER_TIMEOUT + 1.0)  # then the idle ones are closed...
    assert get(port, "/livez")[0] == 200  # ... and the service answers again
    for s in socks:
        s.close()
    assert server["proc"].poll() is None
    text = log_path.read_text()
    new_lines = text.splitlines()[lines_before:]
    assert "out of system resource" not in text
    assert len(new_lines) < 30, new_lines  # 150 refusals, a handful of lines
    assert re.search(r"at most 300 connections \(open-file limit 600\)", text), text[:2000]


def lab_tiff(grey: np.ndarray) -> bytes:
    """A LAB-mode TIFF of a grey picture (a = b = 0): its lightness L* from the grey level."""
    from PIL import ImageCms

    rgb = Image.fromarray(grey).convert("RGB")
    to_lab = ImageCms.buildTransform(ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB")
    return encode(ImageCms.applyTransform(rgb, to_lab), "TIFF")


def test_lab_tiffs_and_every_other_mode_are_classified_or_refused_with_400(server):
    port, model = server["port"], server["model"]
    grey = sample_images(1, seed=4)[0]
    lab = lab_tiff(grey)
    assert Image.open(io.BytesIO(lab)).mode == "LAB"
    status, answer = post(port, "/v1/classify?top_k=3", lab, "image/tiff")
    assert status == 200, answer
    want = expected_scores(model, np.asarray(Image.open(io.BytesIO(lab)).convert("RGB").convert("L")))
    assert [r["index"] for r in answer["result"]] == np.argsort(-want)[:3].tolist()

    # One LAB image in a batch: answered with the others, not a 500 for all.
    body, kind = multipart([("images", encode(Image.fromarray(grey), "PNG")), ("images", lab),
                            ("images", b"not an image")])
    status, answer = post(port, "/v1/classify/batch", body, kind)
    assert status == 200, answer
    assert [("result" in r) for r in answer["results"]] == [True, True, False]
    assert answer["results"][2]["error_code"] == "invalid_image"

    sent = 0
    for mode in Image.MODES + ["I;16", "I;16B", "I;16L"]:
        try:
            img = Image.fromarray(grey).convert("RGB").convert(mode) if mode not in ("I;16", "I;16B", "I;16L") \
                else Image.fromarray(grey.astype(np.uint16) * 257).convert(mode)
        except (ValueError, TypeError):
            img = Image.new(mode, (28, 28))
        for fmt in ("PNG", "TIFF", "BMP", "PPM", "JPEG", "GIF", "WEBP"):
            try:
                data = encode(img, fmt)
            except (OSError, ValueError, KeyError, TypeError):
                continue  # Pillow cannot write this mode in this format, so no client can send it either
            status, answer = post(port, "/v1/classify", data, "application/octet-stream")
            assert status in (200, 400), (mode, fmt, status, answer)
            sent += 1
    assert sent > 40


def test_json_nested_100000_deep_is_a_400(server):
    status, answer = post(server["port"], "/v1/classify", b"[" * 100_000, "application/json")
    assert status == 400 and answer["error_code"] == "invalid_argument" and "nested too deeply" in answer["error_msg"]
    image = base64.b64encode(encode(Image.fromarray(sample_images(1)[0]), "PNG")).decode()
    deep = '{"image": "' + image + '", "x": ' + "[" * 50_000 + "]" * 50_000 + "}"
    status, answer = post(server["port"], "/v1/classify", deep.encode(), "application/json")
    assert status == 400 and "nested too deeply" in answer["error_msg"]
    assert get(server["port"], "/livez")[0] == 200
