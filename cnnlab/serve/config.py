"""Limits and tuning of the classification service, in one typed place.

Every limit has a reason: the body limit bounds memory per request before anything is parsed; the
pixel limit (16.8 megapixels, 4096 x 4096) is read from the image header before decoding and sits
far below Pillow's own decompression-bomb threshold (about 89.5 megapixels warns, twice that
refuses), so a small file that claims a huge canvas never gets to allocate it; the aspect-ratio
limit, read from the same header, refuses strips (1 x 1,000,000 passes the pixel limit) that would
keep a sliver of themselves when fitted to a square input. Connection limits (request-head deadline,
keep-alive timeout, open connections) keep idle or trickling clients from holding the server's file
descriptors.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from ..errors import ConfigError

# Formats the service decodes. Pillow can read many more; each extra decoder is extra attack surface.
ACCEPTED_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM")


@dataclass
class ServeConfig:
    """How the service listens, batches and protects itself."""

    host: str = "127.0.0.1"  # loopback unless the operator asks for more
    port: int = 8000
    max_body_bytes: int = 10 * 1024 * 1024  # 413 beyond this, checked before the body is read
    max_pixels: int = 4096 * 4096  # 413 beyond this, checked from the header before decoding
    max_batch: int = 32  # largest micro-batch handed to the model; 1 turns micro-batching off
    max_wait_ms: float = 5.0  # longest the first request of a batch waits for company
    queue_size: int = 256  # waiting requests per model; beyond it 503 with Retry-After
    request_timeout_s: float = 10.0  # whole request (decode + queue + inference); 504 beyond it
    body_timeout_s: float = 5.0  # receiving the body; 408 beyond it (slow senders)
    header_timeout_s: float = 5.0  # a request line and headers must arrive within this; then the connection closes
    keep_alive_s: float = 5.0  # an idle connection between requests is closed after this
    max_connections: int = 1000  # open connections; beyond, 503 at once (kept below the open-file limit)
    max_header_bytes: int = 16 * 1024  # request line and headers; a longer head is answered 400
    max_aspect_ratio: float = 32.0  # longer side over shorter side; 413 beyond it, checked from the header
    max_batch_images: int = 64  # images in one /v1/classify/batch request
    decode_workers: int = 4  # images decoded at once (each decoded image may hold up to max_pixels * 4 bytes)
    cam_workers: int = 1  # Grad-CAM views (a backward pass each) computed at once
    threads: int = 0  # torch threads per inference thread; 0: measured at start-up with the layout (the plan)
    channels_last: bool | None = None  # memory layout; None: measured at start-up
    precision: str = "fp32"  # fp32 | bf16 | fp16 | auto (auto: bf16 where native, measured against fp32)
    plan: bool = True  # measure what is left open at start-up (cached per machine, model and batch size)
    graceful_shutdown_s: float = 30.0  # on SIGTERM, how long requests in flight may take to finish
    default_top_k: int = 5

    def __post_init__(self) -> None:
        checks = {
            "port": 0 <= self.port <= 65535,
            "max_body_bytes": self.max_body_bytes >= 1024,
            "max_pixels": self.max_pixels >= 1,
            "max_batch": self.max_batch >= 1,
            "max_wait_ms": self.max_wait_ms >= 0,
            "queue_size": self.queue_size >= 1,
            "request_timeout_s": self.request_timeout_s > 0,
            "body_timeout_s": self.body_timeout_s > 0,
            "max_batch_images": self.max_batch_images >= 1,
            "decode_workers": self.decode_workers >= 1,
            "cam_workers": self.cam_workers >= 1,
            "header_timeout_s": self.header_timeout_s > 0,
            "keep_alive_s": self.keep_alive_s > 0,
            "max_connections": self.max_connections >= 1,
            "max_header_bytes": self.max_header_bytes >= 1024,
            "max_aspect_ratio": self.max_aspect_ratio >= 1,
            "graceful_shutdown_s": self.graceful_shutdown_s >= 0,
            "threads": self.threads >= 0,
            "precision": self.precision in ("fp32", "bf16", "fp16", "auto"),
            "default_top_k": self.default_top_k >= 1,
        }
        bad = [name for name, ok in checks.items() if not ok]
        if bad:
            raise ConfigError(f"invalid serve setting {bad[0]}={getattr(self, bad[0])!r}")

    def to_dict(self) -> dict:
        return asdict(self)
