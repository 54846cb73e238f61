"""``GET /metrics``: the service's counters in the Prometheus text exposition format (version 0.0.4).

cnnlab_requests_total{endpoint, method, status}     requests answered
cnnlab_request_seconds{endpoint}                    latency histogram, from request to response start
cnnlab_errors_total{code}                           error answers by their ``error_code``
cnnlab_batch_size{model}                            images per inference batch (histogram)
cnnlab_queue_depth{model}                           images waiting for or in inference now (gauge)
cnnlab_inference_images_total{model}                images run

Endpoints are the routes' templates (``/v1/classify``), never raw paths, so a client cannot create
series at will; anything else counts as ``other``.
"""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict
from typing import Iterable

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


def _labels(pairs: dict[str, str]) -> str:
    def escape(value: str) -> str:
        return str(value).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')

    return "{" + ",".join(f'{k}="{escape(v)}"' for k, v in pairs.items()) + "}" if pairs else ""


class Histogram:
    """Cumulative-bucket histogram of one series."""

    def __init__(self, buckets: Iterable[float]):
        self.buckets = tuple(buckets)
        self.counts = [0] * (len(self.buckets) + 1)  # the last one: above every bucket (+Inf only)
        self.total = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.total += value
        self.count += 1

    def lines(self, name: str, labels: dict[str, str]) -> list[str]:
        out, running = [], 0
        for bound, count in zip(self.buckets, self.counts):
            running += count
            out.append(f"{name}_bucket{_labels({**labels, 'le': repr(float(bound))})} {running}")
        out.append(f"{name}_bucket{_labels({**labels, 'le': '+Inf'})} {self.count}")
        out.append(f"{name}_sum{_labels(labels)} {self.total!r}")
        out.append(f"{name}_count{_labels(labels)} {self.count}")
        return out


class ServiceMetrics:
    """The counters of one service; thread-safe (the batchers' threads record batches)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: dict[tuple[str, str, str], int] = defaultdict(int)
        self.latency: dict[str, Histogram] = {}
        self.errors: dict[str, int] = defaultdict(int)
        self.batches: dict[str, Histogram] = {}
        self.images: dict[str, int] = defaultdict(int)

    def request(self, endpoint: str, method: str, status: int, seconds: float) -> None:
        with self._lock:
            self.requests[(endpoint, method, str(status))] += 1
            self.latency.setdefault(endpoint, Histogram(LATENCY_BUCKETS)).observe(seconds)

    def error(self, code: str) -> None:
        with self._lock:
            self.errors[code] += 1

    def batch(self, model: str, size: int) -> None:
        with self._lock:
            self.batches.setdefault(model, Histogram(BATCH_BUCKETS)).observe(size)
            self.images[model] += size

    def render(self, queue_depths: dict[str, int]) -> str:
        with self._lock:
            lines = ["# HELP cnnlab_requests_total Requests answered, by endpoint, method and HTTP status.",
                     "# TYPE cnnlab_requests_total counter"]
            lines += [f"cnnlab_requests_total{_labels({'endpoint': e, 'method': m, 'status': s})} {n}"
                      for (e, m, s), n in sorted(self.requests.items())]
            lines += ["# HELP cnnlab_request_seconds Time from a request to the start of its response.",
                      "# TYPE cnnlab_request_seconds histogram"]
            for endpoint, histogram in sorted(self.latency.items()):
                lines += histogram.lines("cnnlab_request_seconds", {"endpoint": endpoint})
            lines += ["# HELP cnnlab_errors_total Error answers, by error_code.", "# TYPE cnnlab_errors_total counter"]
            lines += [f"cnnlab_errors_total{_labels({'code': c})} {n}" for c, n in sorted(self.errors.items())]
            lines += ["# HELP cnnlab_batch_size Images per inference batch.", "# TYPE cnnlab_batch_size histogram"]
            for model, histogram in sorted(self.batches.items()):
                lines += histogram.lines("cnnlab_batch_size", {"model": model})
            lines += ["# HELP cnnlab_inference_images_total Images run through a model.",
                      "# TYPE cnnlab_inference_images_total counter"]
            lines += [f"cnnlab_inference_images_total{_labels({'model': m})} {n}" for m, n in sorted(self.images.items())]
            lines += ["# HELP cnnlab_queue_depth Images waiting for or in inference.", "# TYPE cnnlab_queue_depth gauge"]
            lines += [f"cnnlab_queue_depth{_labels({'model': m})} {n}" for m, n in sorted(queue_depths.items())]
        return "\n".join(lines) + "\n"
