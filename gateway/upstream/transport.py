"""HTTP/1.1 to one origin (CreateOS): pooled keep-alive connections, answers parsed by httptools.

Why not an HTTP client library: on the quote and status paths the CreateOS call is a few hundred
bytes each way on a kept-alive connection, and the library's own work around it cost more than
the call. Measured on one process against the simulator, client CPU per name check: httpx about
510 µs, aiohttp about 300 µs, this transport about 120 µs, the same as a bare asyncio stream
doing the exchange by hand (docs/PERFORMANCE.md). What is left is the part that cannot be
skipped: one write, one read, httptools' C parser (the one uvicorn serves with).

What it does, and no more: HTTP/1.1 requests with a ``bytes`` body or an async stream of a known
length (``Content-Length``, never chunked), over TCP or TLS; answers with ``Content-Length``,
chunked or close-delimited bodies, ``gzip``/``deflate`` decoded (never asked for, accepted if
sent) within ``max_answer_bytes`` of decoded bytes; no redirects, cookies, proxies or
``Expect``. Connections are reused while the server keeps them alive, dropped when it closed
them, and after ``idle_seconds`` unused (below the usual servers' keep-alive of 5 s).

Every failure is a ``TransportError`` whose ``kind`` says what happened and whether the request
may have reached the server (``sent``); the CreateOS client turns them into ``UpstreamError``.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import time
import zlib
from collections.abc import AsyncIterable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode, urlsplit

import httptools

__all__ = ["Answer", "AnswerTooLarge", "Transport", "TransportError"]

_READ_SIZE = 1 << 16


class TransportError(Exception):
    """``kind``: ConnectError, ConnectTimeout (neither sent anything), ReadTimeout,
    Disconnected, ProtocolError (the request had left: it may have been applied)."""

    def __init__(self, kind: str, detail: str = "", *, sent: bool) -> None:
        super().__init__(detail)
        self.kind = kind
        self.sent = sent


class AnswerTooLarge(Exception):
    """The answer passed ``max_answer_bytes`` (declared or decoded); ``status`` is its own."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


@dataclass(frozen=True, slots=True)
class Answer:
    status: int
    headers: Mapping[str, str]  # lower-case names; a repeated header keeps its last value
    body: bytes


@dataclass(slots=True, eq=False)
class _Connection:
    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    idle_since: float = 0.0

    def usable(self, now: float, idle_seconds: float) -> bool:
        return (
            not self.writer.is_closing()
            and not self.reader.at_eof()
            and now - self.idle_since < idle_seconds
        )

    def close(self) -> None:
        self.writer.close()


@dataclass(slots=True)
class _Parsed:
    """httptools callbacks for one answer. Nothing raises inside a callback (httptools would
    wrap it); overflow is a flag checked after each feed."""

    limit: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytearray = field(default_factory=bytearray)
    decoder: Any = None  # a zlib decompressor when the body is gzip or deflate
    headers_done: bool = False
    complete: bool = False
    keep_alive: bool = False
    too_large: bool = False
    parser: Any = None  # the httptools parser feeding this (its flags hold while in a callback)

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode("latin-1").lower()] = value.decode("latin-1")

    def on_headers_complete(self) -> None:
        self.headers_done = True
        declared = self.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.limit:
            self.too_large = True
        encoding = self.headers.get("content-encoding", "").strip().lower()
        if encoding in ("gzip", "x-gzip"):
            self.decoder = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        elif encoding == "deflate":
            self.decoder = zlib.decompressobj()

    def on_body(self, data: bytes) -> None:
        if self.too_large:
            return
        if self.decoder is not None:
            room = self.limit - len(self.body) + 1
            try:
                data = self.decoder.decompress(data, room)
            except zlib.error:
                data = b""
                self.decoder = None
                self.too_large = True  # undecodable: refused like an oversize answer
                return
            if self.decoder.unconsumed_tail:
                self.too_large = True  # a gzip bomb stops here
        self.body += data
        if len(self.body) > self.limit:
            self.too_large = True

    def on_message_complete(self) -> None:
        self.complete = True
        self.keep_alive = bool(self.parser.should_keep_alive())

    def close_delimited(self) -> bool:
        """The headers are in and say neither a length nor chunks: the body ran to EOF."""
        return (
            self.headers_done
            and "content-length" not in self.headers
            and "chunked" not in self.headers.get("transfer-encoding", "").lower()
        )


class Transport:
    """Requests to ``base_url``'s origin; ``max_connections`` at once (more wait for a free one,
    within the connect timeout)."""

    def __init__(
        self,
        base_url: str,
        *,
        headers: Mapping[str, str] | None = None,
        max_connections: int = 100,
        idle_seconds: float = 4.0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        parts = urlsplit(base_url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL: {base_url!r}")
        self._tls = parts.scheme == "https"
        self._host = parts.hostname
        self._port = parts.port or (443 if self._tls else 80)
        self._prefix = parts.path.rstrip("/")
        self._ssl = ssl_context if ssl_context is not None else ssl.create_default_context()
        default_port = self._port == (443 if self._tls else 80)
        host = f"[{self._host}]" if ":" in self._host else self._host
        authority = host if default_port else f"{host}:{self._port}"
        self._head_lines = f"Host: {authority}\r\n" + "".join(
            f"{name}: {value}\r\n" for name, value in (headers or {}).items()
        )
        self._max_connections = max_connections
        self._idle_seconds = idle_seconds
        self._idle: list[_Connection] = []
        self._busy: set[_Connection] = set()
        self._slots: asyncio.Semaphore | None = None
        self._closed = False

    async def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        headers: Mapping[str, str] | None = None,
        body: bytes | AsyncIterable[bytes] | None = None,
        length: int | None = None,
        connect_timeout: float,
        read_timeout: float,
        max_answer_bytes: int,
    ) -> Answer:
        """One exchange. ``body``: bytes, or a stream of exactly ``length`` bytes."""
        if self._closed:
            raise TransportError("ConnectError", "the transport is closed", sent=False)
        target = self._prefix + path
        if params:
            target += "?" + urlencode({k: str(v) for k, v in params.items()})
        if isinstance(body, bytes | bytearray):
            length = len(body)
        elif body is not None and length is None:
            raise ValueError("a streamed body needs its length")
        head = f"{method} {target} HTTP/1.1\r\n{self._head_lines}" + "".join(
            f"{name}: {value}\r\n"
            for name, value in (headers or {}).items()
            if name.lower() != "content-length"
        )
        if length is not None:
            head += f"Content-Length: {length}\r\n"
        elif method in ("POST", "PUT", "PATCH"):
            head += "Content-Length: 0\r\n"
        data = (head + "\r\n").encode("latin-1")

        if self._slots is None:
            self._slots = asyncio.Semaphore(self._max_connections)
        slots = self._slots
        if slots.locked():  # every connection busy: wait for one, as long as a connect may take
            try:
                async with asyncio.timeout(connect_timeout):
                    await slots.acquire()
            except TimeoutError:
                raise TransportError(
                    "ConnectTimeout", "no free connection in time", sent=False
                ) from None
        else:
            await slots.acquire()  # free: returns at once, no timer needed
        try:
            connection = await self._connection(connect_timeout)
            self._busy.add(connection)
            reusable = False
            try:
                answer, reusable = await self._exchange(
                    connection, data, body, read_timeout, max_answer_bytes
                )
                return answer
            finally:
                self._busy.discard(connection)
                if reusable and not self._closed:
                    connection.idle_since = time.monotonic()
                    self._idle.append(connection)
                else:
                    connection.close()
        finally:
            slots.release()

    async def _connection(self, connect_timeout: float) -> _Connection:
        now = time.monotonic()
        while self._idle:
            connection = self._idle.pop()  # the most recently used: the likeliest to be alive
            if connection.usable(now, self._idle_seconds):
                return connection
            connection.close()
        try:
            async with asyncio.timeout(connect_timeout):
                reader, writer = await asyncio.open_connection(
                    self._host,
                    self._port,
                    ssl=self._ssl if self._tls else None,
                    server_hostname=self._host if self._tls else None,
                    limit=_READ_SIZE,
                )
        except TimeoutError:
            raise TransportError("ConnectTimeout", "connecting timed out", sent=False) from None
        except (OSError, ssl.SSLError) as exc:
            detail = str(exc) or type(exc).__name__
            raise TransportError("ConnectError", detail, sent=False) from None
        return _Connection(reader, writer)

    async def _exchange(
        self,
        connection: _Connection,
        head: bytes,
        body: bytes | AsyncIterable[bytes] | None,
        read_timeout: float,
        max_answer_bytes: int,
    ) -> tuple[Answer, bool]:
        writer = connection.writer
        try:
            if body is None:
                writer.write(head)
            elif isinstance(body, bytes | bytearray):
                writer.write(head + body if len(body) < _READ_SIZE else head)
                if len(body) >= _READ_SIZE:
                    writer.write(body)
            else:
                writer.write(head)
                async for chunk in body:
                    writer.write(chunk)
                    await writer.drain()
            await writer.drain()
        except (OSError, RuntimeError) as exc:  # RuntimeError: the transport closed under us
            raise TransportError("Disconnected", f"writing: {exc}", sent=True) from None

        parsed = _Parsed(limit=max_answer_bytes)
        parser = httptools.HttpResponseParser(parsed)
        parsed.parser = parser
        reader = connection.reader
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(None) as deadline:
                while not parsed.complete:
                    deadline.reschedule(loop.time() + read_timeout)
                    chunk = await reader.read(_READ_SIZE)
                    if not chunk:
                        if parsed.close_delimited():
                            break  # a body without a length ends with the connection
                        raise TransportError(
                            "Disconnected", "the server closed the connection", sent=True
                        )
                    parser.feed_data(chunk)
                    if parsed.too_large:
                        raise AnswerTooLarge(parser.get_status_code())
        except TimeoutError:
            raise TransportError("ReadTimeout", "no answer in time", sent=True) from None
        except httptools.HttpParserUpgrade:
            raise TransportError("ProtocolError", "an upgrade answer", sent=True) from None
        except httptools.HttpParserError as exc:
            raise TransportError("ProtocolError", str(exc), sent=True) from None
        except OSError as exc:
            raise TransportError("Disconnected", f"reading: {exc}", sent=True) from None
        if parsed.decoder is not None:
            parsed.body += parsed.decoder.flush()
            if len(parsed.body) > max_answer_bytes:
                raise AnswerTooLarge(parser.get_status_code())
        answer = Answer(parser.get_status_code(), parsed.headers, bytes(parsed.body))
        return answer, parsed.complete and parsed.keep_alive and not reader.at_eof()

    async def close(self) -> None:
        """Close every connection; requests in flight finish on theirs, which close after."""
        self._closed = True
        connections = self._idle + list(self._busy)
        self._idle = []
        for connection in connections:
            connection.close()
        for connection in connections:
            with contextlib.suppress(OSError, ssl.SSLError, RuntimeError):
                await connection.writer.wait_closed()
