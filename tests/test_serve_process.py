"""``cnnlab serve`` as a process: loopback by default, SIGTERM finishes requests in flight and
exits 0, uploads never touch the disk, bad checkpoints are one-line errors."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time

import httpx
import numpy as np
from PIL import Image

from test_serve_units import encode, expected_scores, make_checkpoint, sample_images

from cnnlab.train.checkpoint import load_checkpoint


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cnnlab(*args: str, env: dict | None = None, **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "cnnlab.cli", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env, **kw)


def test_sigterm_lets_the_request_in_flight_finish_and_exits_cleanly(tmp_path):
    ckpt = make_checkpoint(tmp_path / "ckpt")
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    env = {**os.environ, "TMPDIR": str(scratch), "TEMP": str(scratch), "TMP": str(scratch)}
    port = free_port()
    proc = cnnlab("serve", str(ckpt), "--port", str(port), "--log-level", "info", env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(url + "/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert proc.poll() is None, proc.stdout.read()
            time.sleep(0.1)
        else:
            raise AssertionError("server never became ready")

        grey = sample_images(1, seed=21)[0]
        big = np.tile(grey, (40, 40))  # 1120 x 1120: a body of a few hundred KB, held in memory only
        data = encode(Image.fromarray(big), "PNG")
        outcome, half = {}, len(data) // 2
        sent_half = threading.Event()

        def slow_body():
            # The request is in flight (its body half sent) when SIGTERM arrives.
            yield data[:half]
            sent_half.set()
            time.sleep(1.0)
            yield data[half:]

        def request():
            outcome["response"] = httpx.post(url + "/v1/classify?top_k=3", content=slow_body(),
                                             headers={"content-type": "image/png"}, timeout=30)

        sender = threading.Thread(target=request)
        sender.start()
        assert sent_half.wait(10)
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        sender.join(30)
        code = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    log = proc.stdout.read()
    assert code == 0, log
    response = outcome["response"]
    assert response.status_code == 200, response.text
    model = load_checkpoint(ckpt).model
    want = expected_scores(model, np.asarray(Image.fromarray(big).resize((28, 28), Image.BILINEAR)))
    assert [r["index"] for r in response.json()["result"]] == np.argsort(-want)[:3].tolist()
    assert f"http://127.0.0.1:{port}" in log  # bound to loopback by default
    assert list(scratch.iterdir()) == []  # nothing spooled to disk
    # and it is really gone
    try:
        httpx.get(url + "/livez", timeout=2)
        raise AssertionError("server still answers after SIGTERM")
    except httpx.TransportError:
        pass


def test_bad_checkpoint_and_busy_port_are_one_line_errors(tmp_path, capsys):
    from cnnlab.cli import main

    missing = tmp_path / "missing"
    assert main(["serve", str(missing), "--port", str(free_port())]) == 1
    assert capsys.readouterr().err.strip().splitlines() == [f"cnnlab serve: error: checkpoint '{missing}' does not exist"]

    ckpt = make_checkpoint(tmp_path / "ckpt")
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        assert main(["serve", str(ckpt), "--port", str(busy.getsockname()[1])]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("cnnlab serve: error: cannot listen on 127.0.0.1:"), err
