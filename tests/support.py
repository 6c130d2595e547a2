"""Constants and helpers shared by test modules; fixtures live in the conftest files.

Test modules import from here, never from a conftest (pytest loads those as plugins).
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import httpx
from redis.asyncio import Redis

from devstack.gateway_process import GatewayProcess, write_config
from gateway.app import create_app
from gateway.config import PROJECT_ROOT, Settings
from gateway.ledger import EntryKind
from gateway.store import Store
from gateway.types import Clock, system_clock
from gateway.web.services import Services

LOCAL_CONFIG = PROJECT_ROOT / "config" / "local.toml"
PAY_TO = "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720"  # anvil account #9, per local.toml
USDC = 10**6  # one token unit in base units (6 decimals)

#: ``make_settings``: local settings on this session's Redis and simulator (conftest.py).
SettingsFactory = Callable[..., Settings]


@dataclass
class Gateway:
    """The in-process gateway and the collaborators it was built with."""

    client: httpx.AsyncClient
    services: Services
    settings: Settings
    app: Any = None  # the Starlette app (its state holds the background loops' objects)

    async def credit(self, wallet: str, usd_micro: int) -> None:
        """Give ``wallet`` credits directly (an operator adjustment), no chain involved."""
        await self.services.ledger.apply(
            wallet, EntryKind.ADJUSTMENT, usd_micro, ref="test", reason="test credits"
        )

    async def balance(self, wallet: str) -> int:
        return await self.services.ledger.balance(wallet)


@contextlib.asynccontextmanager
async def running_gateway(
    settings: Settings, *, clock: Clock = system_clock, **kwargs: Any
) -> AsyncIterator[Gateway]:
    """The gateway app in-process (ASGI, no sockets, lifespan running) on ``clock``; extra
    keyword arguments go to ``create_app``."""
    app = create_app(settings, clock=clock, **kwargs)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://gateway", timeout=60.0
        ) as client:
            yield Gateway(client, app.state.services, settings, app)


def raw_redis(store: Store) -> Redis:
    """The store's own Redis client, for tests that look behind its typed operations (count
    a sorted set, tamper with a balance, flush the script cache). On a cluster it is a
    ``RedisCluster``, which takes the same commands."""
    return cast("Redis", store._redis)


@contextlib.contextmanager
def served_gateway(
    workdir: Path,
    redis_url: str,
    key_prefix: str,
    createos_url: str,
    rpc_urls: Mapping[str, str],
    changes: Mapping[str, Any] | None = None,
    env: Mapping[str, str] | None = None,
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
    process_env = {"REDIS_URL": redis_url, **(env or {})}
    process_env.update({f"GATEWAY_RPC_{name.upper()}": url for name, url in rpc_urls.items()})
    with GatewayProcess(config, process_env, workdir / "gateway.log") as gateway:
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
