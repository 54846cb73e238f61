"""``cnnlab bench serve``: requests per second and latency of ``cnnlab serve``, with and without
micro-batching, at several concurrency levels; optionally a soak run that watches memory.

The server runs as its own process (``cnnlab serve``) on 127.0.0.1 so the load generator here does
not share its interpreter; both still share the machine's cores, so absolute figures depend on the
machine and on what else runs on it. The ratio batched / unbatched, measured side by side in one
run, is the figure to compare across machines. Weights are seeded random ones: speed does not
depend on what a network has learnt.

Requests send a PNG of the model's input size as a bare ``image/png`` body over keep-alive
connections, from a minimal asyncio client, so the load generator spends as little CPU as possible.
"""

from __future__ import annotations

import asyncio
import io
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ..commands import add_verb
from ..console import print_json, print_table
from ..errors import ConfigError

BATCHED = {"max_batch": 32, "max_wait_ms": 2.0}
UNBATCHED = {"max_batch": 1, "max_wait_ms": 0.0}
DEFAULT_MODELS = ("lenet5", "resnet18")


# --- checkpoints -------------------------------------------------------------------------------------

def bench_checkpoint(name: str, directory: Path, *, seed: int = 0) -> tuple[Path, tuple[int, int, int]]:
    """A seeded random-weight checkpoint of ``name``; networks with a small-input form are built in
    it, for 1 x 28 x 28 (Fashion-MNIST-sized) images, like LeNet-5."""
    import torch

    from ..registry import create_model, list_models, model_arguments, model_info
    from ..train.checkpoint import save_checkpoint

    if name not in list_models():
        raise ConfigError(f"model '{name}' is not registered here (known: {', '.join(list_models())})")
    info = model_info(name)
    size = (1, 28, 28) if info.has_small_form and info.input_size[1] > 28 else tuple(info.input_size)
    kwargs = model_arguments(name, input_size=size, num_classes=10)
    torch.manual_seed(seed)
    model = create_model(name, **kwargs)
    folder = save_checkpoint(directory / name, model, {
        "arch": name, "arch_kwargs": kwargs, "class_names": [f"class{i}" for i in range(10)],
        "input_size": list(size), "mean": [0.5] * size[0], "std": [0.25] * size[0], "dataset": "benchmark",
    })
    return folder, size


def sample_png(size: Sequence[int], seed: int = 0) -> bytes:
    from PIL import Image

    c, h, w = size
    pixels = np.random.default_rng(seed).integers(0, 256, (h, w, c), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels[:, :, 0] if c == 1 else pixels).save(buf, format="PNG")
    return buf.getvalue()


# --- the server process ------------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ServerProcess:
    """``cnnlab serve`` in a child process on a free loopback port."""

    def __init__(self, checkpoints: Sequence[str], *, max_batch: int, max_wait_ms: float, threads: int = 0,
                 queue_size: int = 4096):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "cnnlab.cli", "serve", *checkpoints, "--port", str(self.port),
                "--max-batch", str(max_batch), "--max-wait-ms", str(max_wait_ms), "--queue-size", str(queue_size),
                "--timeout", "60", "--log-level", "warning"]
        if threads:
            args += ["--threads", str(threads)]
        self.log = tempfile.TemporaryFile(mode="w+")  # a file, not a pipe: a full pipe would stall the server
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=self.log, text=True)

    def wait_ready(self, timeout_s: float = 120.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                self.log.seek(0)
                raise ConfigError(f"the server exited: {self.log.read().strip()[-500:]}")
            try:
                if httpx.get(self.url + "/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.1)
        self.stop()
        raise ConfigError("the server did not become ready in time")

    def rss_bytes(self) -> int:
        """Resident memory of the server process (Linux /proc)."""
        with open(f"/proc/{self.proc.pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(60)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.log.close()
        return self.proc.returncode

    def __enter__(self) -> "ServerProcess":
        self.wait_ready()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


# --- load generation ---------------------------------------------------------------------------------

class _Connection:
    """One keep-alive HTTP/1.1 connection that sends the same prepared request again and again.

    A few lines of asyncio streams instead of a general client: at 32 requests in flight a
    general-purpose client spends more CPU than the server, on the same cores."""

    def __init__(self, host: str, port: int, request: bytes):
        self.host, self.port, self.request = host, port, request
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def send(self) -> int:
        """Send the request, read the whole answer, return its status."""
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        try:
            self.writer.write(self.request)
            head = await self.reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            status = int(lines[0].split()[1])
            length = next((int(v) for k, _, v in (line.partition(":") for line in lines[1:])
                           if k.strip().lower() == "content-length"), 0)
            await self.reader.readexactly(length)
            if any(line.lower().startswith("connection: close") for line in lines):
                await self.close()
            return status
        except (OSError, asyncio.IncompleteReadError, ValueError):
            await self.close()
            raise

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
        self.reader = self.writer = None


def classify_request(host: str, port: int, model: str, body: bytes) -> bytes:
    head = (f"POST /v1/classify?model={model}&top_k=5 HTTP/1.1\r\nHost: {host}:{port}\r\n"
            f"Content-Type: image/png\r\nContent-Length: {len(body)}\r\n\r\n")
    return head.encode("ascii") + body


async def _load(url: str, model: str, body: bytes, concurrency: int, duration_s: float, warmup_s: float,
                on_tick=None) -> dict[str, Any]:
    host, port = url.split("//", 1)[1].rsplit(":", 1)
    request = classify_request(host, int(port), model, body)
    latencies: list[float] = []
    errors: dict[str, int] = {}
    loop = asyncio.get_running_loop()
    start = loop.time()
    measure_from = start + warmup_s
    stop_at = measure_from + duration_s

    async def worker() -> None:
        conn = _Connection(host, int(port), request)
        try:
            while loop.time() < stop_at:
                t0 = loop.time()
                try:
                    status = await conn.send()
                    key = "" if status == 200 else str(status)
                except (OSError, asyncio.IncompleteReadError, ValueError) as e:
                    key = type(e).__name__
                t1 = loop.time()
                if t0 >= measure_from:
                    if not key:
                        latencies.append(t1 - t0)
                    else:
                        errors[key] = errors.get(key, 0) + 1
        finally:
            await conn.close()

    async def ticker() -> None:
        while loop.time() < stop_at:
            await asyncio.sleep(1.0)
            on_tick(loop.time() - start, len(latencies))

    tasks = [worker() for _ in range(concurrency)]
    if on_tick:
        tasks.append(ticker())
    await asyncio.gather(*tasks)
    return summarize(latencies, errors, duration_s)


def summarize(latencies_s: Sequence[float], errors: dict[str, int], duration_s: float) -> dict[str, Any]:
    lat = np.array(latencies_s) * 1000.0
    return {
        "requests": len(lat), "errors": errors,
        "rps": len(lat) / duration_s,
        "p50_ms": float(np.percentile(lat, 50)) if len(lat) else None,
        "p99_ms": float(np.percentile(lat, 99)) if len(lat) else None,
        "latencies_s": list(latencies_s),
    }


def run_load(url: str, model: str, body: bytes, *, concurrency: int, duration_s: float,
             warmup_s: float = 1.0, on_tick=None) -> dict[str, Any]:
    """Keep ``concurrency`` requests in flight for ``warmup_s + duration_s``; measure the last part."""
    return asyncio.run(_load(url, model, body, concurrency, duration_s, warmup_s, on_tick))


# --- the benchmark -----------------------------------------------------------------------------------

def serve_benchmark(models: Sequence[str] = DEFAULT_MODELS, concurrency: Sequence[int] = (1, 8, 32), *,
                    duration_s: float = 5.0, threads: int = 0, rounds: int = 4, progress=None) -> dict[str, Any]:
    """Requests/s and p50/p99 latency per model and concurrency, micro-batched and not.

    Both servers run side by side and each cell is measured in ``rounds`` short slices alternating
    between them (A B B A ...), so a change in the machine's load shifts both figures of a pair
    rather than their ratio."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="cnnlab-bench-serve-") as tmp:
        made = {m: bench_checkpoint(m, Path(tmp)) for m in models}
        checkpoints = [f"{m}={folder}" for m, (folder, _) in made.items()]
        servers = {mode: ServerProcess(checkpoints, threads=threads, **settings)
                   for mode, settings in (("unbatched", UNBATCHED), ("batched", BATCHED))}
        try:
            for server in servers.values():
                server.wait_ready()
            for m, (_, size) in made.items():
                body = sample_png(size)
                for c in concurrency:
                    if progress:
                        progress(f"{m} at concurrency {c}")
                    for mode, result in _paired_cell(servers, m, body, c, duration_s, rounds).items():
                        settings = UNBATCHED if mode == "unbatched" else BATCHED
                        rows.append({"model": m, "mode": mode, "concurrency": c, **settings, **result})
        finally:
            for server in servers.values():
                server.stop()
    return {"duration_s": duration_s, "cpus": os.cpu_count(), "results": rows,
            "settings": {"batched": BATCHED, "unbatched": UNBATCHED}}


def _paired_cell(servers: dict[str, "ServerProcess"], model: str, body: bytes, concurrency: int,
                 duration_s: float, rounds: int) -> dict[str, dict[str, Any]]:
    """``duration_s`` per server, measured in ``rounds`` alternating slices and pooled."""
    pooled: dict[str, tuple[list[float], dict[str, int]]] = {mode: ([], {}) for mode in servers}
    modes = list(servers)
    for r in range(rounds):
        for mode in (modes if r % 2 == 0 else modes[::-1]):
            part = run_load(servers[mode].url, model, body, concurrency=concurrency, duration_s=duration_s / rounds,
                            warmup_s=min(0.5, duration_s / rounds / 2))
            pooled[mode][0].extend(part["latencies_s"])
            for k, v in part["errors"].items():
                pooled[mode][1][k] = pooled[mode][1].get(k, 0) + v
    out = {}
    for mode, (lat, errs) in pooled.items():
        result = summarize(lat, errs, duration_s)
        result.pop("latencies_s")
        out[mode] = result
    return out


def soak(model: str = "lenet5", *, duration_s: float = 600.0, concurrency: int = 8, threads: int = 0,
         sample_every_s: float = 1.0, progress=None) -> dict[str, Any]:
    """Hold ``concurrency`` requests in flight for ``duration_s`` against a micro-batching server and
    report its resident memory: growth is measured from the end of the first tenth (or 5 s, whichever
    is longer: allocator pools and lazily built kernels settle there) to the end."""
    with tempfile.TemporaryDirectory(prefix="cnnlab-soak-") as tmp:
        folder, size = bench_checkpoint(model, Path(tmp))
        with ServerProcess([f"{model}={folder}"], threads=threads, **BATCHED) as server:
            samples: list[tuple[float, int]] = [(0.0, server.rss_bytes())]

            def tick(elapsed: float, done: int) -> None:
                samples.append((elapsed, server.rss_bytes()))
                if progress and int(elapsed) % 30 == 0:
                    progress(f"soak {elapsed:.0f}/{duration_s:.0f} s, {done} requests, "
                             f"RSS {samples[-1][1] / 2**20:.1f} MiB")

            result = run_load(server.url, model, sample_png(size), concurrency=concurrency,
                              duration_s=duration_s, warmup_s=0.0, on_tick=tick)
            result.pop("latencies_s")
            samples.append((duration_s, server.rss_bytes()))
            exit_code = server.stop()
    settle = max(5.0, duration_s / 10)
    baseline = next((rss for t, rss in samples if t >= settle), samples[-1][1])
    final = samples[-1][1]
    return {
        "model": model, "duration_s": duration_s, "concurrency": concurrency, **result,
        "rss_start_mib": samples[0][1] / 2**20, "rss_baseline_mib": baseline / 2**20,
        "rss_end_mib": final / 2**20, "rss_max_mib": max(r for _, r in samples) / 2**20,
        "growth_pct": 100.0 * (final - baseline) / baseline if baseline else None,
        "baseline_at_s": settle, "server_exit_code": exit_code,
        "samples": [(round(t, 1), round(r / 2**20, 2)) for t, r in samples],
    }


# --- command line ------------------------------------------------------------------------------------

def _ints(text: str) -> list[int]:
    try:
        values = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise ConfigError(f"expected comma-separated integers, got '{text}'") from None
    if not values or min(values) < 1:
        raise ConfigError(f"expected positive integers, got '{text}'")
    return values


def register(subparsers) -> None:
    p = add_verb(subparsers, "serve", help="HTTP service throughput and latency, micro-batched vs not (+ memory soak)",
                 example="cnnlab bench serve --duration 5 --concurrency 1,8,32 --soak 600")
    p.add_argument("--models", default=",".join(DEFAULT_MODELS), help="comma-separated model names")
    p.add_argument("--concurrency", default="1,8,32", help="requests kept in flight, comma-separated")
    p.add_argument("--duration", type=float, default=5.0, help="seconds measured per cell")
    p.add_argument("--soak", type=float, default=0.0, metavar="SECONDS",
                   help="also run a soak of this many seconds and report memory growth")
    p.add_argument("--soak-model", default="lenet5")
    p.add_argument("--threads", type=int, default=0, help="torch threads in the server (0: torch's default)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.duration <= 0:
        raise ConfigError("--duration must be positive")
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    say = (lambda text: None) if args.json else (lambda text: print(f"  {text}", file=sys.stderr, flush=True))
    if args.models == ",".join(DEFAULT_MODELS):  # the defaults: leave out any this installation lacks
        from ..registry import list_models

        known = set(list_models())
        for m in [m for m in models if m not in known]:
            print(f"cnnlab bench serve: note: '{m}' is not registered here; left out", file=sys.stderr)
        models = [m for m in models if m in known]
    report: dict[str, Any] = {}
    if models:
        report["throughput"] = serve_benchmark(models, _ints(args.concurrency), duration_s=args.duration,
                                               threads=args.threads, progress=say)
    if args.soak > 0:
        report["soak"] = soak(args.soak_model, duration_s=args.soak, threads=args.threads, progress=say)
    if args.json:
        print_json(report)
        return 0
    if "throughput" in report:
        print_throughput(report["throughput"])
    if "soak" in report:
        s = report["soak"]
        print(f"\nsoak: {s['model']}, {s['duration_s']:.0f} s at concurrency {s['concurrency']}, "
              f"{s['requests']} requests ({s['rps']:.0f}/s), errors {s['errors'] or 'none'}")
        print(f"  server RSS {s['rss_baseline_mib']:.1f} MiB at {s['baseline_at_s']:.0f} s -> "
              f"{s['rss_end_mib']:.1f} MiB at the end ({s['growth_pct']:+.2f}%), max {s['rss_max_mib']:.1f} MiB")
    return 0


def print_throughput(report: dict[str, Any]) -> None:
    cells = {(r["model"], r["concurrency"], r["mode"]): r for r in report["results"]}
    rows = []
    for (model, c, mode), r in cells.items():
        if mode != "unbatched":
            continue
        b = cells.get((model, c, "batched"))
        fmt = lambda v: "-" if v is None else f"{v:.1f}"  # noqa: E731
        errs = sum(r["errors"].values()) + (sum(b["errors"].values()) if b else 0)
        rows.append([model, c, f"{r['rps']:.0f}", fmt(r["p50_ms"]), fmt(r["p99_ms"]),
                     f"{b['rps']:.0f}" if b else "-", fmt(b["p50_ms"]) if b else "-", fmt(b["p99_ms"]) if b else "-",
                     f"{b['rps'] / r['rps']:.2f}x" if b and r["rps"] else "-", errs])
    print_table(rows, ["model", "conc", "req/s", "p50 ms", "p99 ms", "batched req/s", "p50 ms ", "p99 ms ",
                       "speed-up", "errors"],
                title=f"cnnlab serve on {report['cpus']} CPUs, {report['duration_s']:g} s per cell "
                      f"(left: one image per forward pass; right: micro-batches of up to {BATCHED['max_batch']}, "
                      f"{BATCHED['max_wait_ms']:g} ms wait)",
                justify_right=["conc", "req/s", "p50 ms", "p99 ms", "batched req/s", "p50 ms ", "p99 ms ",
                               "speed-up", "errors"])
