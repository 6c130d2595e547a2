"""Serve any ASGI app over real HTTP from a background thread, for tests and the dev stack.

    with ServerThread(app) as server:          # port 0: a free port, chosen by the OS
        httpx.get(server.url + "/healthz")

The socket is bound before the thread starts, so ``url`` is known at once and no other process
can take the port in between. The server runs ``uvicorn.Server`` on its own event loop in a
daemon thread; entering waits until it accepts connections (and the app's lifespan startup has
finished), leaving asks it to exit, waits for in-flight requests for ``graceful_seconds``, and
joins the thread. Uvicorn's logging setup is skipped so the host process keeps its own.
"""

from __future__ import annotations

import socket
import threading
import time
from types import TracebackType
from typing import Any, Literal

import uvicorn
from starlette.types import ASGIApp


class ServerThread:
    """One uvicorn server in a daemon thread; usable once, as a context manager or through
    ``start``/``stop``. Extra keyword arguments go to ``uvicorn.Config``."""

    def __init__(
        self,
        app: ASGIApp,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        lifespan: Literal["on", "auto", "off"] = "on",
        startup_timeout: float = 10.0,
        shutdown_timeout: float = 10.0,
        graceful_seconds: float = 2.0,
        **uvicorn_options: Any,
    ) -> None:
        self._socket = _bind(host, port)
        self.host = host
        self.port: int = self._socket.getsockname()[1]
        self._startup_timeout = startup_timeout
        self._shutdown_timeout = shutdown_timeout
        options: dict[str, Any] = {
            "log_level": "warning",
            "log_config": None,
            "access_log": False,
            "ws": "none",
            # The peer is the client: X-Forwarded-For is the app's business (trusted proxies).
            "proxy_headers": False,
            "timeout_graceful_shutdown": graceful_seconds,
            "lifespan": lifespan,
            **uvicorn_options,
        }
        self.server = uvicorn.Server(uvicorn.Config(app, **options))
        self._thread = threading.Thread(target=self._run, name=f"asgi-server-{self.port}")
        self._thread.daemon = True
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """``http://host:port`` with no trailing slash (IPv6 hosts in brackets)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + self._startup_timeout
        while not self.server.started:
            if not self._thread.is_alive():
                self.stop()
                raise RuntimeError(f"server on {self.url} failed to start") from self._error
            if time.monotonic() > deadline:
                self.stop()
                raise TimeoutError(f"server on {self.url} did not start in time")
            time.sleep(0.005)

    def stop(self) -> None:
        self.server.should_exit = True
        if self._thread.is_alive():
            self._thread.join(self._shutdown_timeout)
        if self._thread.is_alive():
            self.server.force_exit = True
            self._thread.join(self._shutdown_timeout)
        self._socket.close()

    def __enter__(self) -> ServerThread:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def _run(self) -> None:
        try:
            self.server.run(sockets=[self._socket])
        except BaseException as exc:  # SystemExit on a failed lifespan startup included
            self._error = exc


def _bind(host: str, port: int) -> socket.socket:
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock
