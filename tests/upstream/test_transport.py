"""The CreateOS transport (``gateway.upstream.transport``) against real sockets.

Each test serves raw bytes from an asyncio server on loopback, so what an odd or broken server
does (chunks, gzip, a close-delimited body, a truncated answer, garbage, silence) is produced
for real; the simulator-level behaviour is in ``test_client.py``.
"""

from __future__ import annotations

import asyncio
import gzip
import pathlib
import shutil
import ssl
import subprocess
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import TypeVar

import pytest

from gateway.upstream.transport import AnswerTooLarge, Transport, TransportError

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]
Failure = TypeVar("Failure", bound=Exception)


class RawServer:
    def __init__(self, handler: Handler) -> None:
        self.handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> RawServer:
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self.connections += 1
            try:
                await self.handler(reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        self.server = await asyncio.start_server(accept, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.server is not None
        self.server.close()

    @property
    def url(self) -> str:
        assert self.server is not None
        port = self.server.sockets[0].getsockname()[1]
        return f"http://127.0.0.1:{port}/v1"

    async def read_request(self, reader: asyncio.StreamReader) -> bytes | None:
        """One request (head and Content-Length body), or None when the client closed."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":")[1])
        body = await reader.readexactly(length)
        self.requests.append(head + body)
        return head + body


def answer(body: bytes, *extra: str, status: str = "200 OK") -> bytes:
    headers = "".join(f"{h}\r\n" for h in extra)
    return f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{headers}\r\n".encode() + body


async def call(transport: Transport, **kwargs: object) -> object:
    options: dict[str, object] = {
        "connect_timeout": 2.0,
        "read_timeout": 2.0,
        "max_answer_bytes": 1024,
    }
    options.update(kwargs)
    return await transport.request("GET", "/thing", **options)  # type: ignore[arg-type]


async def failure_of(reply: bytes, expected: type[Failure], *, linger: float) -> Failure:
    """What one request raises when the server answers ``reply`` (and keeps the connection
    open ``linger`` seconds after it)."""

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(reply)
        await writer.drain()
        await asyncio.sleep(linger)

    server = RawServer(handler)
    async with server:
        transport = Transport(server.url)
        try:
            with pytest.raises(expected) as caught:
                await call(transport)
        finally:
            await transport.close()
    return caught.value


@pytest.fixture
async def keep_alive() -> AsyncIterator[RawServer]:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await server.read_request(reader) is not None:
            writer.write(answer(b'{"ok":true}', "Content-Type: application/json"))
            await writer.drain()

    server = RawServer(handler)
    async with server:
        yield server


async def test_sequential_requests_share_one_kept_alive_connection(keep_alive: RawServer) -> None:
    transport = Transport(keep_alive.url, headers={"X-Api-Key": "k"})
    try:
        for _ in range(20):
            got = await call(transport)
            assert got.status == 200 and got.body == b'{"ok":true}'  # type: ignore[attr-defined]
    finally:
        await transport.close()
    assert keep_alive.connections == 1
    first = keep_alive.requests[0]
    assert first.startswith(b"GET /v1/thing HTTP/1.1\r\n")
    assert b"Host: 127.0.0.1:" in first and b"X-Api-Key: k\r\n" in first


async def test_params_and_a_streamed_body_of_a_known_length_arrive_whole(
    keep_alive: RawServer,
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for part in (b"x" * 70_000, b"y" * 5, b"z"):
            yield part

    transport = Transport(keep_alive.url)
    try:
        got = await transport.request(
            "PUT",
            "/upload",
            params={"skip": 3, "q": "a b&c"},
            headers={"Content-Type": "application/json", "Content-Length": "1"},
            body=chunks(),
            length=70_006,
            connect_timeout=2,
            read_timeout=2,
            max_answer_bytes=1024,
        )
    finally:
        await transport.close()
    assert got.status == 200
    sent = keep_alive.requests[0]
    assert sent.startswith(b"PUT /v1/upload?skip=3&q=a+b%26c HTTP/1.1\r\n")
    assert b"Content-Length: 70006\r\n" in sent and b"Content-Length: 1\r\n" not in sent
    assert sent.endswith(b"x" * 70_000 + b"yyyyyz")


async def test_a_connection_the_server_closed_is_not_reused() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        writer.write(answer(b"{}", "Connection: close"))
        await writer.drain()

    server = RawServer(handler)
    async with server:
        transport = Transport(server.url)
        try:
            for _ in range(3):
                assert (await call(transport)).status == 200  # type: ignore[attr-defined]
                await asyncio.sleep(0.05)  # the close arrives before the next request
        finally:
            await transport.close()
    assert server.connections == 3


async def test_chunked_gzip_and_close_delimited_answers_are_read_whole() -> None:
    packed = gzip.compress(b'{"isAvailable":true}')
    replies = [
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n",
        answer(packed, "Content-Encoding: gzip"),
        b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\nuntil the end",
    ]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await server.read_request(reader) is not None and replies:
            reply = replies.pop(0)
            writer.write(reply)
            await writer.drain()
            if b"Connection: close" in reply:
                return

    server = RawServer(handler)
    async with server:
        transport = Transport(server.url)
        try:
            bodies = [(await call(transport)).body for _ in range(3)]  # type: ignore[attr-defined]
        finally:
            await transport.close()
    assert bodies == [b"hello world", b'{"isAvailable":true}', b"until the end"]


@pytest.mark.parametrize(
    "reply",
    [
        pytest.param(b"HTTP/1.1 200 OK\r\nContent-Length: 999999\r\n\r\nxxxxxxxxxx", id="declared"),
        pytest.param(
            answer(gzip.compress(b"0" * 5_000_000), "Content-Encoding: gzip"), id="gzip-bomb"
        ),
        pytest.param(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            + b"400\r\n"
            + b"a" * 1024
            + b"\r\n"
            + b"400\r\n"
            + b"b" * 1024
            + b"\r\n0\r\n\r\n",
            id="chunked",
        ),
    ],
)
async def test_an_answer_over_the_limit_is_refused(reply: bytes) -> None:
    refused = await failure_of(reply, AnswerTooLarge, linger=1.0)
    assert refused.status == 200


@pytest.mark.parametrize(
    ("reply", "kind"),
    [
        pytest.param(
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten..",
            "Disconnected",
            id="truncated",
        ),
        pytest.param(b"", "Disconnected", id="closed-at-once"),
        pytest.param(b"SMTP ready\r\n\r\n", "ProtocolError", id="not-http"),
    ],
)
async def test_a_broken_answer_is_a_failure_after_sending(reply: bytes, kind: str) -> None:
    failed = await failure_of(reply, TransportError, linger=0.0)
    assert failed.kind == kind
    assert failed.sent is True


async def test_silence_is_a_read_timeout_and_a_refused_connect_sends_nothing() -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        await asyncio.sleep(5)

    server = RawServer(handler)
    async with server:
        transport = Transport(server.url)
        try:
            with pytest.raises(TransportError) as caught:
                await call(transport, read_timeout=0.2)
        finally:
            await transport.close()
        url = server.url
    assert (caught.value.kind, caught.value.sent) == ("ReadTimeout", True)
    server.server = None
    await asyncio.sleep(0.05)
    refused = Transport(url)  # nothing listens there any more
    with pytest.raises(TransportError) as caught:
        await call(refused)
    assert (caught.value.kind, caught.value.sent) == ("ConnectError", False)


async def test_no_free_connection_in_time_is_a_connect_timeout_that_sent_nothing() -> None:
    release = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await server.read_request(reader)
        await release.wait()
        writer.write(answer(b"{}"))
        await writer.drain()

    server = RawServer(handler)
    async with server:
        transport = Transport(server.url, max_connections=2)
        try:
            busy = [asyncio.create_task(call(transport)) for _ in range(2)]
            await asyncio.sleep(0.1)
            with pytest.raises(TransportError) as caught:
                await call(transport, connect_timeout=0.2)
            assert (caught.value.kind, caught.value.sent) == ("ConnectTimeout", False)
            release.set()
            assert [r.status for r in await asyncio.gather(*busy)] == [200, 200]  # type: ignore[attr-defined]
        finally:
            await transport.close()
    assert server.connections == 2


@pytest.fixture
def tls_files(tmp_path: pathlib.Path) -> tuple[pathlib.Path, pathlib.Path]:
    """A self-signed certificate for ``localhost`` (openssl, as on every machine of ours)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl is not installed")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [openssl, "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=localhost", "-addext", "subjectAltName=DNS:localhost",
         "-keyout", str(key), "-out", str(cert)],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


async def test_https_is_served_over_tls_with_the_certificate_checked(
    tls_files: tuple[pathlib.Path, pathlib.Path],
) -> None:
    cert, key = tls_files
    server_side = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_side.load_cert_chain(cert, key)

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while await raw.read_request(reader) is not None:
            writer.write(answer(b'{"tls":true}'))
            await writer.drain()

    raw = RawServer(handler)
    raw.server = await asyncio.start_server(
        lambda r, w: handler(r, w), "127.0.0.1", 0, ssl=server_side
    )
    port = raw.server.sockets[0].getsockname()[1]
    try:
        trusting = ssl.create_default_context(cafile=str(cert))
        transport = Transport(f"https://localhost:{port}/v1", ssl_context=trusting)
        try:
            got = [await call(transport) for _ in range(3)]
        finally:
            await transport.close()
        assert [g.body for g in got] == [b'{"tls":true}'] * 3  # type: ignore[attr-defined]
        assert b"Host: localhost:" in raw.requests[0]

        stranger = Transport(f"https://localhost:{port}/v1")  # the system's CAs only
        with pytest.raises(TransportError) as caught:
            await call(stranger)
        assert (caught.value.kind, caught.value.sent) == ("ConnectError", False)
        await stranger.close()
    finally:
        raw.server.close()
