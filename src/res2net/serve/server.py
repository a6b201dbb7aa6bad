"""Running an app under uvicorn with the socket, timeouts and signal handling a service needs.

We bind the listening socket ourselves so ``--port 0`` works and the real address can be
announced (tests and scripts read it from the first line of output). SIGTERM and SIGINT
start uvicorn's graceful shutdown: stop accepting, let in-flight requests finish (up to
``graceful_timeout_s``), then the app's lifespan drains the batcher. uvicorn re-raises the
signal once it is done; we answer that with a no-op, so a clean drain exits with status 0
instead of dying by the signal.
"""

from __future__ import annotations

import signal
import socket
import sys
from collections.abc import Callable
from types import FrameType

import uvicorn
from fastapi import FastAPI

#: Largest request line plus headers h11 will buffer; bigger ones get a 4xx from uvicorn.
MAX_HEADER_BYTES = 64 * 1024


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``host:port`` (``port`` 0: any free port)."""
    family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError:
        sock.close()
        raise
    sock.listen(2048)
    return sock


def make_server(app: FastAPI, *, graceful_timeout_s: int = 30, log_level: str = "warning") -> uvicorn.Server:
    """A uvicorn server for ``app``; start it with ``server.run(sockets=[bind_socket(...)])``."""
    config = uvicorn.Config(
        app,
        http="h11",
        loop="asyncio",
        lifespan="on",
        log_level=log_level,
        access_log=False,
        timeout_keep_alive=5,
        timeout_graceful_shutdown=graceful_timeout_s,
        h11_max_incomplete_event_size=MAX_HEADER_BYTES,
    )
    return uvicorn.Server(config)


def serve(
    app: FastAPI,
    *,
    host: str,
    port: int,
    announce: Callable[[str], None] = print,
    graceful_timeout_s: int = 30,
) -> bool:
    """Serve ``app`` until SIGTERM/SIGINT; ``False`` if it failed to start (e.g. the model failed)."""
    sock = bind_socket(host, port)
    bound_host, bound_port = sock.getsockname()[:2]
    server = make_server(app, graceful_timeout_s=graceful_timeout_s, log_level="info")

    def request_exit(signum: int, frame: FrameType | None) -> None:
        server.should_exit = True

    # Installed before uvicorn swaps in its own handlers and restored by it afterwards, this
    # turns the signal uvicorn re-raises after its graceful shutdown into a no-op, and
    # covers a signal that arrives in the instant before uvicorn installs its handlers.
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, request_exit)
    url_host = f"[{bound_host}]" if ":" in bound_host else bound_host
    announce(f"serving on http://{url_host}:{bound_port}")
    sys.stdout.flush()
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
    return server.started
