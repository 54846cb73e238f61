"""Connections that cannot be held hostage: a deadline for every request head, a cap on open
connections that stays below the process's open-file limit, and logs that a flood cannot grow.

Uvicorn closes a keep-alive connection that stays silent after a response, but a connection that
never sends a complete request head (nothing at all, or one header byte a second) stays open, and
every open connection holds a file descriptor until ``accept()`` fails for everyone. Here each
connection gets ``header_timeout_s`` to deliver its request line and headers, counted from the
moment it opens and again from the end of each response; then it is closed (with a 408 when part of
a head had arrived). Beyond ``max_connections`` open connections, a new one is answered 503 at once
and closed, so the descriptors in use stay bounded.
"""

from __future__ import annotations

import json
import logging
import secrets
import time

log = logging.getLogger("uvicorn.error")
# asyncio accepts up to ``backlog`` connections in one go before any of them can be refused, so the
# descriptors kept free are those of one such burst (twice, as closing lags) plus the process's own
# (model files, pipes, the listener, the event loop).
ACCEPT_BURST = 512
FD_RESERVE = 64 + 2 * ACCEPT_BURST


def raw_response(status: int, reason: str, code: str, message: str, *, retry_after: int | None = None) -> bytes:
    """A complete ``Connection: close`` HTTP/1.1 response with the service's JSON error body, for the
    moments before any request exists to answer through the application."""
    body = json.dumps({"error_code": code, "error_msg": message, "log_id": str(secrets.randbits(63))}).encode()
    head = [f"HTTP/1.1 {status} {reason}", "content-type: application/json", f"content-length: {len(body)}",
            "connection: close"]
    if retry_after is not None:
        head.append(f"retry-after: {retry_after}")
    return ("\r\n".join(head) + "\r\n\r\n").encode("ascii") + body


def connection_limit(requested: int, *, raise_soft_limit: bool = False) -> tuple[int, int | None]:
    """(connections to allow, the open-file limit), keeping ``FD_RESERVE`` descriptors free (at most half of them).

    ``raise_soft_limit`` first lifts the soft open-file limit to the hard one (a server's own process)."""
    try:
        import resource
    except ImportError:  # pragma: no cover - not POSIX
        return requested, None
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if raise_soft_limit and soft != resource.RLIM_INFINITY and (hard == resource.RLIM_INFINITY or soft < hard):
        wanted = hard if hard != resource.RLIM_INFINITY else max(soft, requested + FD_RESERVE)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    if soft == resource.RLIM_INFINITY:
        return requested, None
    reserve = min(FD_RESERVE, soft // 2)
    return max(1, min(requested, soft - reserve)), soft


def guarded_protocol(header_timeout_s: float, max_connections: int) -> type:
    """Uvicorn's h11 protocol with a request-head deadline and a connection cap (see the module docstring)."""
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class GuardedH11Protocol(H11Protocol):
        _head_timer = None
        _awaited = None  # the request cycle that was current when the wait for a new head began
        _partial = False  # bytes of a new head arrived since then

        def connection_made(self, transport) -> None:
            super().connection_made(transport)
            if len(self.connections) > max_connections:
                log.warning("refusing a connection: %d are open, the limit is %d", len(self.connections) - 1,
                            max_connections)
                transport.write(raw_response(503, "Service Unavailable", "overloaded",
                                             "too many open connections; try again shortly", retry_after=1))
                transport.close()
                return
            self._await_head()

        def _await_head(self) -> None:
            self._cancel_head_timer()
            self._awaited, self._partial = self.cycle, False
            self._head_timer = self.loop.call_later(header_timeout_s, self._head_overdue)

        def _cancel_head_timer(self) -> None:
            if self._head_timer is not None:
                self._head_timer.cancel()
                self._head_timer = None

        def _head_arrived(self) -> None:
            if self._head_timer is not None and self.cycle is not self._awaited:
                self._cancel_head_timer()  # a new request began: the application's own timeouts take over

        def data_received(self, data: bytes) -> None:
            if self._head_timer is not None:
                self._partial = True
            super().data_received(data)
            self._head_arrived()

        def on_response_complete(self) -> None:
            if not self.transport.is_closing():
                self._await_head()  # armed first: a pipelined request is started by the call below
            super().on_response_complete()
            self._head_arrived()

        def connection_lost(self, exc) -> None:
            self._cancel_head_timer()
            super().connection_lost(exc)

        def _head_overdue(self) -> None:
            self._head_timer = None
            if self.transport.is_closing() or self.cycle is not self._awaited:
                return
            if self._partial:
                self.transport.write(raw_response(408, "Request Timeout", "request_timeout",
                                                  f"the request head did not arrive within {header_timeout_s:g} s"))
            self.transport.close()

    return GuardedH11Protocol


class RateLimitedLog(logging.Filter):
    """Let through at most ``burst`` records of one message per ``window_s``; the first record after a
    quiet spell says how many were dropped. Keeps a flood (a failing ``accept()``, refused
    connections, malformed requests) from filling the disk with one line repeated."""

    def __init__(self, burst: int = 5, window_s: float = 60.0, max_keys: int = 1024):
        super().__init__()
        self.burst, self.window_s, self.max_keys = burst, window_s, max_keys
        self.state: dict[tuple[str, str], list] = {}  # key -> [window start, count, dropped]

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg).split("\n", 1)[0][:200])
        now = time.monotonic()
        entry = self.state.get(key)
        if entry is None:
            if len(self.state) >= self.max_keys:
                self.state.clear()
            entry = self.state[key] = [now, 0, 0]
        if now - entry[0] > self.window_s:
            entry[0], entry[1] = now, 0
        entry[1] += 1
        if entry[1] > self.burst:
            entry[2] += 1
            return False
        if entry[2]:
            record.msg = f"{record.msg} [{entry[2]} more like this were not logged]"
            entry[2] = 0
        return True


LOGGERS = ("asyncio", "uvicorn.error", "cnnlab.serve")


def bound_logs(burst: int = 5, window_s: float = 60.0) -> RateLimitedLog:
    """Attach one :class:`RateLimitedLog` to the loggers a flood would fill (once per process)."""
    for name in LOGGERS:
        for existing in logging.getLogger(name).filters:
            if isinstance(existing, RateLimitedLog):
                return existing
    limiter = RateLimitedLog(burst, window_s)
    for name in LOGGERS:
        logging.getLogger(name).addFilter(limiter)
    return limiter
