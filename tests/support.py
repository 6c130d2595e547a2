"""Helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Iterator, Mapping
from pathlib import Path
from typing import Any

import httpx

from gateway.app import create_app
from gateway.config import PROJECT_ROOT, Settings
from gateway.devstack.gateway_process import GatewayProcess, write_config

LOCAL_CONFIG = PROJECT_ROOT / "config" / "local.toml"


@contextlib.asynccontextmanager
async def serve_in_process(settings: Settings, **kwargs: Any) -> AsyncIterator[httpx.AsyncClient]:
    """The gateway app with its lifespan running, behind an httpx client (ASGI, no sockets)."""
    app = create_app(settings, **kwargs)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(transport=transport, base_url="http://gateway") as client:
            yield client


@contextlib.contextmanager
def served_gateway(
    workdir: Path,
    redis_url: str,
    key_prefix: str,
    createos_url: str,
    rpc_urls: Mapping[str, str],
    changes: Mapping[str, Any] | None = None,
) -> Iterator[GatewayProcess]:
    """``python -m gateway serve`` on config/local.toml with this test's Redis prefix,
    CreateOS URL and RPC URLs (``{"arbitrum": url, ...}``) and any other config ``changes``.
    Fails the test if the process is no longer running when the block ends."""
    config = write_config(
        workdir / "gateway.toml",
        LOCAL_CONFIG,
        {
            "gateway.redis_key_prefix": key_prefix,
            "upstream.api_url": createos_url,
            **(changes or {}),
        },
    )
    env = {"REDIS_URL": redis_url}
    env.update({f"GATEWAY_RPC_{name.upper()}": url for name, url in rpc_urls.items()})
    with GatewayProcess(config, env, workdir / "gateway.log") as gateway:
        yield gateway
        assert gateway.process is not None and gateway.process.poll() is None, (
            f"the gateway process died: {gateway.log_path.read_text()[-2000:]}"
        )


def metric_value(metrics_text: str, series: str) -> float:
    """The value of one exposition line (``name{labels}`` exactly as exported), 0 if absent."""
    for line in metrics_text.splitlines():
        name, _, value = line.rpartition(" ")
        if name == series:
            return float(value)
    return 0.0


class TcpProxy:
    """A loopback TCP forwarder in a thread: an RPC endpoint that can be killed mid-run.
    ``stop()`` closes the listener and every open connection, as a crashed node would."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._sockets: list[socket.socket] = []
        self.accepted = 0  # connections served so far
        self._drop_next_reply = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return  # listener closed
            upstream = socket.create_connection(("127.0.0.1", self.target_port))
            with self._lock:
                self._sockets += [client, upstream]
                self.accepted += 1
            for source, sink, replies in ((client, upstream, False), (upstream, client, True)):
                threading.Thread(
                    target=self._pipe, args=(source, sink, replies), daemon=True
                ).start()

    def drop_next_reply(self) -> None:
        """The next bytes the target sends back are not delivered: the connection is cut
        instead, after the target has acted on the request (a reply lost in the network)."""
        self._drop_next_reply = True

    def _pipe(self, source: socket.socket, sink: socket.socket, replies: bool) -> None:
        with contextlib.suppress(OSError):
            while chunk := source.recv(65536):
                if replies and self._drop_next_reply:
                    self._drop_next_reply = False
                    for sock in (source, sink):
                        with contextlib.suppress(OSError):
                            sock.shutdown(socket.SHUT_RDWR)
                    return
                sink.sendall(chunk)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def stop(self) -> None:
        self._listener.close()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
