"""A loopback TCP proxy that adds network latency and records what passes, for benchmarks.

    with LatencyProxy(target_port=8545, delay=0.05, name="rpc") as proxy:
        ...                      # point the gateway at proxy.url
        proxy.reset()
        ...                      # one request
        proxy.events             # every request the client sent, with its arrival time

Every chunk the client sends reaches the target ``delay`` seconds after it arrived, in order,
so each request/response exchange costs one extra ``delay`` (a round trip on a real network);
replies pass at once. Each request is an ``Event`` with its arrival time
(``time.perf_counter``) and, for HTTP, its request line and the JSON-RPC method names its body
carries. Counting events in
front of Redis counts round trips (a pipeline is one write). It runs its own event loop in a
daemon thread, so a synchronous benchmark can drive it.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import re
import threading
import time
from dataclasses import dataclass, field
from types import TracebackType

_METHOD = re.compile(rb'"method"\s*:\s*"([^"]{1,64})"')
_RESP_COMMAND = re.compile(rb"\*\d+\r\n\$\d+\r\n([A-Za-z]{2,32})\r\n")
_REQUEST_LINE = re.compile(rb"^([A-Z]{3,7}) (\S{1,512}) HTTP/1\.[01]\r\n")


@dataclass(slots=True)
class Event:
    """One request the client sent: when its first bytes arrived, its size so far, its HTTP
    request line (None for other protocols, where every chunk is an event) and the JSON-RPC
    methods in its body, or for Redis the commands the chunk carries."""

    time: float
    size: int
    request_line: str | None = None
    methods: tuple[str, ...] = field(default_factory=tuple)


class LatencyProxy:
    def __init__(self, target_port: int, *, delay: float = 0.0, name: str = "proxy") -> None:
        self.target_port = target_port
        self.delay = delay
        self.name = name
        self.events: list[Event] = []
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._server: asyncio.Server | None = None
        self.port = 0
        self._thread = threading.Thread(target=self._run, name=f"latency-{name}", daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> LatencyProxy:
        self._thread.start()
        if not self._ready.wait(10):
            raise RuntimeError(f"latency proxy {self.name} did not start")
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        asyncio.run_coroutine_threadsafe(self._shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)

    def reset(self) -> None:
        """Forget the events recorded so far."""
        with self._lock:
            self.events = []

    def snapshot(self) -> list[Event]:
        with self._lock:
            return [dataclasses.replace(e) for e in self.events]

    # --- the proxy ------------------------------------------------------------------------

    async def _shutdown(self) -> None:
        """Close the listener and end every open connection's tasks."""
        if self._server is not None:
            self._server.close()
        tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._serve, "127.0.0.1", 0)
        )
        self.port = int(self._server.sockets[0].getsockname()[1])
        self._ready.set()
        try:
            self._loop.run_forever()
        finally:
            self._loop.close()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            writer.close()
            return
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()
        tasks = [
            asyncio.create_task(self._read_client(reader, queue)),
            asyncio.create_task(self._deliver(queue, up_writer)),
            asyncio.create_task(self._pipe(up_reader, writer)),
        ]
        try:
            await asyncio.gather(*tasks)
        except (OSError, asyncio.CancelledError):
            pass  # a side closed, or the proxy is shutting down
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            for sink in (writer, up_writer):
                with contextlib.suppress(Exception):
                    sink.close()

    async def _read_client(
        self, reader: asyncio.StreamReader, queue: asyncio.Queue[tuple[float, bytes] | None]
    ) -> None:
        current: list[Event | None] = [None]  # this connection's request being received
        while chunk := await reader.read(65536):
            now = time.perf_counter()
            self._record(now, chunk, current)
            queue.put_nowait((now + self.delay, chunk))
        queue.put_nowait(None)

    async def _deliver(
        self, queue: asyncio.Queue[tuple[float, bytes] | None], writer: asyncio.StreamWriter
    ) -> None:
        while (item := await queue.get()) is not None:
            due, chunk = item
            wait = due - time.perf_counter()
            if wait > 0:
                await asyncio.sleep(wait)
            writer.write(chunk)
            await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
        with contextlib.suppress(OSError):
            writer.write_eof()

    def _record(self, now: float, chunk: bytes, current: list[Event | None]) -> None:
        """A chunk that starts an HTTP request (or any chunk of another protocol) is a new
        event; the following chunks of an HTTP request (its body) add to it."""
        line = _REQUEST_LINE.match(chunk)
        pattern = _METHOD if line is not None or current[0] is not None else _RESP_COMMAND
        methods = tuple(m.decode().upper() if pattern is _RESP_COMMAND else m.decode()
                        for m in pattern.findall(chunk))  # fmt: skip
        with self._lock:
            ongoing = current[0]
            if line is None and ongoing is not None:
                ongoing.size += len(chunk)
                ongoing.methods += methods
                return
            request_line = f"{line.group(1).decode()} {line.group(2).decode()}" if line else None
            event = Event(time=now, size=len(chunk), request_line=request_line, methods=methods)
            current[0] = event if line else None
            self.events.append(event)
