"""Running the application on uvicorn: in the foreground (``cnnlab serve``) or on a background
thread (tests, notebooks).

In the foreground uvicorn owns SIGTERM and SIGINT: it stops accepting connections, lets the
requests in flight finish (up to ``graceful_shutdown_s``), then runs the application's shutdown,
which drains the batch queues. After SIGTERM the process exits with status 0; after SIGINT
(Ctrl-C) with 130, as for any interrupted command.
"""

from __future__ import annotations

import logging
import signal
import socket
import threading
import time
from typing import Sequence

from ..errors import CnnlabError
from .config import ServeConfig


def uvicorn_config(app, config: ServeConfig, *, log_level: str = "info", access_log: bool = True,
                   raise_fd_limit: bool = False):
    """Uvicorn settings of the service: its own HTTP protocol (request-head deadline, connection cap;
    :mod:`.connections`), the keep-alive timeout and bounded logs."""
    import uvicorn

    from .connections import ACCEPT_BURST, bound_logs, connection_limit, guarded_protocol

    max_connections, fd_limit = connection_limit(config.max_connections, raise_soft_limit=raise_fd_limit)
    settings = uvicorn.Config(
        app, host=config.host, port=config.port, log_level=log_level, access_log=access_log,
        http=guarded_protocol(config.header_timeout_s, max_connections),
        timeout_keep_alive=config.keep_alive_s,  # an idle keep-alive connection is closed after this
        h11_max_incomplete_event_size=config.max_header_bytes,  # request line + headers
        backlog=ACCEPT_BURST,  # also the most connections accepted at once, before the cap can refuse them
        timeout_graceful_shutdown=config.graceful_shutdown_s or None,
        server_header=False,  # no need to tell the world which server version runs here
        proxy_headers=False,  # nothing in front of us is trusted to rewrite client addresses
        lifespan="on",
    )
    bound_logs()  # after uvicorn has configured its loggers
    limit = f" (open-file limit {fd_limit})" if fd_limit is not None else ""
    logging.getLogger("uvicorn.error").info(
        "at most %d connections%s; request heads due within %gs, idle connections closed after %gs",
        max_connections, limit, config.header_timeout_s, config.keep_alive_s)
    return settings


def run_server(checkpoints: Sequence[str], config: ServeConfig | None = None, *, device: str = "cpu",
               log_level: str = "info") -> None:
    """Load ``checkpoints`` and serve them until SIGTERM / SIGINT (blocking)."""
    import uvicorn

    from .app import build_app

    config = config or ServeConfig()
    check_address(config.host, config.port)
    app = build_app(checkpoints, config, device=device)
    server = uvicorn.Server(uvicorn_config(app, config, log_level=log_level, raise_fd_limit=True))
    if threading.current_thread() is threading.main_thread():
        # Uvicorn handles SIGTERM itself (graceful shutdown), then re-sends it to whatever handler
        # was there before; with this one in place a graceful stop ends in exit status 0.
        signal.signal(signal.SIGTERM, lambda signum, frame: None)
    server.run()
    if not server.started:
        raise CnnlabError(f"could not listen on {config.host}:{config.port}")


def check_address(host: str, port: int) -> None:
    """Fail in one line, before loading any model, if ``host:port`` cannot be listened on."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as e:
        raise CnnlabError(f"cannot listen on {host}:{port}: {e.strerror}") from None
    family, _, _, _, address = infos[0]
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as e:
            raise CnnlabError(f"cannot listen on {host}:{port}: {e.strerror}") from None


class BackgroundServer:
    """Serve an application on a daemon thread; ``port=0`` in the config picks a free port.

    >>> with BackgroundServer(app, ServeConfig(port=0)) as srv:   # doctest: +SKIP
    ...     httpx.get(srv.url + "/livez")
    """

    def __init__(self, app, config: ServeConfig | None = None, *, log_level: str = "warning"):
        import uvicorn

        self.config = config or ServeConfig(port=0)
        self.server = uvicorn.Server(uvicorn_config(app, self.config, log_level=log_level, access_log=False))
        self.thread = threading.Thread(target=self.server.run, name="cnnlab-serve", daemon=True)
        self.port: int | None = None

    @property
    def url(self) -> str:
        return f"http://{self.config.host}:{self.port}"

    def start(self, timeout_s: float = 30.0) -> "BackgroundServer":
        self.thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise CnnlabError("the background server did not start")
            time.sleep(0.01)
        self.port = self.server.servers[0].sockets[0].getsockname()[1]
        return self

    def stop(self, timeout_s: float = 30.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout_s)

    def __enter__(self) -> "BackgroundServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
