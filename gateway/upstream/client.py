"""The CreateOS REST client: the only module that talks HTTP to CreateOS.

One ``Transport`` per instance (create one per process and share it): keep-alive HTTP/1.1
connections answered through httptools' parser (``transport.py``), not an HTTP client library:
on the quote and status paths the library's own work cost more than the call itself on
loopback (httpx about 510 µs of client CPU per name check, aiohttp about 300 µs, the transport
about 120 µs; docs/PERFORMANCE.md). Every transport failure becomes an ``UpstreamError`` in
``_transport_errors_mapped``; every reply goes through ``parse_envelope``; every result is a
frozen dataclass from ``models``.

Retries (docs/UPSTREAM.md section 6):

- Safe calls (GETs, the name check, DELETE, suspend/unsuspend) are retried on connect
  errors, timeouts, dropped connections, 5xx and 429, with exponential backoff and jitter.
  A 429's Retry-After is honoured when it is at most ``max_retry_after`` seconds; a longer
  one is raised at once as ``UpstreamThrottled`` for the caller to pass on.
- Create and the uploads are not idempotent: they are retried only when the request never
  left (connect error, no free connection). After any other failure ``may_have_applied``
  says whether CreateOS may have acted; the deploy flow then reads state with
  ``find_project_by_name`` / ``list_deployments`` before acting again.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import random
import time
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Awaitable,
    Callable,
    Iterable,
    Iterator,
    Mapping,
    Sequence,
)
from types import TracebackType
from typing import Any, Self, TypeVar

from gateway.headers import (
    ACCEPT,
    CONTENT_TYPE,
    CREATEOS_API_KEY,
    RETRY_AFTER,
    USER_AGENT,
)
from gateway.metrics import GatewayMetrics, upstream_endpoint
from gateway.upstream.envelope import parse_envelope
from gateway.upstream.errors import (
    UpstreamError,
    UpstreamNotFound,
    UpstreamThrottled,
    UpstreamUnreachable,
)
from gateway.upstream.models import BuildLogLine, Deployment, Project
from gateway.upstream.transport import AnswerTooLarge, Transport, TransportError

__all__ = ["MAX_FILES_PER_UPLOAD", "CreateOSClient"]

MAX_FILES_PER_UPLOAD = 100

_PAGE_SIZE = 20  # the upstream's maximum ``limit``
_MAX_PAGES = 500  # a guard against a pagination that never ends, not a real limit
_BASE64_ALPHABET = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/="
_STREAM_CHUNK = 1 << 20  # characters of a base64 content encoded and sent at a time
_USER_AGENT = "agent-deploy-gateway (CreateOS client)"

_T = TypeVar("_T")


class CreateOSClient:
    """Typed access to the CreateOS API; see the module docstring for retries."""

    def __init__(
        self,
        base_url: str,
        api_key: str,
        *,
        connect_timeout: float = 5.0,
        read_timeout: float = 15.0,
        upload_timeout: float = 120.0,
        max_attempts: int = 3,
        backoff_base: float = 0.2,
        max_retry_after: float = 10.0,
        max_answer_bytes: int = 8 * 1024 * 1024,
        answer_seconds: float = 30.0,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        metrics: GatewayMetrics | None = None,
        timer: Callable[[], float] = time.perf_counter,
    ) -> None:
        """``base_url`` is the API origin; ``/v1`` is appended unless already there.

        ``upload_timeout`` is the write timeout of uploads (bodies reach ~45 MB);
        ``max_attempts`` counts the first try; ``sleep`` is injected so tests back off fast.
        Every answer is bounded before it is parsed: at most ``max_answer_bytes`` (refused
        from Content-Length, or as soon as the stream passes it), ``envelope.MAX_DEPTH``
        levels of JSON, and ``answer_seconds`` for the whole exchange (``upload_timeout`` more
        for uploads), since ``read_timeout`` bounds each read only and a dripping answer
        would never end. Past a bound the call fails as an ``UpstreamError`` (502) that may
        have applied.
        Every HTTP attempt is observed in ``metrics`` (latency and, when it fails, the error
        class) under its ``upstream_endpoint`` label.
        """
        self._metrics = metrics or GatewayMetrics()
        self._timer = timer
        if max_attempts < 1:
            raise ValueError("max_attempts must be at least 1")
        self._max_attempts = max_attempts
        self._backoff_base = backoff_base
        self._max_retry_after = max_retry_after
        self._sleep = sleep
        self._max_answer_bytes = max_answer_bytes
        self._answer_seconds = answer_seconds
        self._upload_seconds = upload_timeout
        # The connect timeout covers waiting for a free connection too; the read timeout bounds
        # each read. An upload waits for its answer up to the upload timeout: CreateOS answers
        # once the whole body is in.
        self._connect_timeout = connect_timeout
        self._read_timeout = read_timeout
        self._upload_read_timeout = max(read_timeout, upload_timeout)
        self._root = _api_root(base_url)
        self._headers = {
            CREATEOS_API_KEY: api_key,
            ACCEPT: "application/json",
            USER_AGENT: _USER_AGENT,
        }
        self._transport: Transport | None = None
        self._closed = False

    def _http(self) -> Transport:
        """The pooled transport, made on first use."""
        if self._transport is None:
            if self._closed:
                raise UpstreamError(internal="the CreateOS client is closed")
            try:
                self._transport = Transport(self._root, headers=self._headers)
            except ValueError as exc:
                raise UpstreamError(internal=f"InvalidURL: {exc}", may_have_applied=False) from None
        return self._transport

    async def aclose(self) -> None:
        self._closed = True
        if self._transport is not None:
            await self._transport.close()
            self._transport = None

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # Projects

    async def is_name_available(self, unique_name: str) -> bool:
        payload = await self._retrying(
            lambda: self._send(
                "POST",
                "/projects/available-unique-name",
                json_body={"uniqueName": unique_name.lower()},
            ),
            idempotent=True,
        )
        available = payload.get("isAvailable") if isinstance(payload, Mapping) else None
        if not isinstance(available, bool):
            raise UpstreamError(internal="CreateOS name check without a boolean isAvailable")
        return available

    async def create_project(
        self,
        *,
        unique_name: str,
        display_name: str,
        description: str | None,
        settings: Mapping[str, Any],
    ) -> str:
        """Create an upload project; return its id. Not retried once sent (see module doc)."""
        body: dict[str, Any] = {
            "uniqueName": unique_name.lower(),
            "displayName": display_name,
            "type": "upload",
            "source": {},
            "settings": dict(settings),
        }
        if description is not None:
            body["description"] = description
        payload = await self._retrying(
            lambda: self._send("POST", "/projects", json_body=body), idempotent=False
        )
        return _id_of(payload, "created project")

    async def find_project_by_name(self, unique_name: str) -> Project | None:
        """The project of ours named exactly ``unique_name`` (case-insensitively), if any."""
        wanted = unique_name.lower()
        for project in await self.list_projects(name=wanted):
            if project.unique_name.lower() == wanted:
                return project
        return None

    async def get_project(self, project_id: str) -> Project:
        payload = await self._get(f"/projects/{project_id}")
        return Project.from_payload(payload)

    async def list_projects(self, *, name: str | None = None) -> list[Project]:
        """Every page of our projects; ``name`` is the upstream's partial match."""
        params = {"name": name} if name is not None else {}
        items = await self._list_all("/projects", params)
        return _unique_by_id(Project.from_payload(item) for item in items)

    async def delete_project(self, project_id: str) -> None:
        """Delete (asynchronously upstream). A 404 after an ambiguous attempt counts as done."""
        earlier_attempt_may_have_applied = False

        async def attempt() -> None:
            nonlocal earlier_attempt_may_have_applied
            try:
                await self._send("DELETE", f"/projects/{project_id}")
            except UpstreamNotFound:
                if earlier_attempt_may_have_applied:
                    return
                raise
            except UpstreamError as exc:
                earlier_attempt_may_have_applied |= exc.may_have_applied
                raise

        await self._retrying(attempt, idempotent=True)

    async def suspend_project(self, project_id: str) -> None:
        await self._retrying(
            lambda: self._send("PUT", f"/projects/{project_id}/suspend"), idempotent=True
        )

    async def unsuspend_project(self, project_id: str) -> None:
        await self._retrying(
            lambda: self._send("PUT", f"/projects/{project_id}/unsuspend"), idempotent=True
        )

    # Uploads: each one creates a new deployment; none is retried once sent.

    async def upload_files(self, project_id: str, files: Sequence[tuple[str, bytes]]) -> str:
        """Upload ``(path, content)`` pairs; return the new deployment's id.

        Raises ``ValueError`` for no files or more than ``MAX_FILES_PER_UPLOAD``.
        """
        _check_file_count(len(files))
        body = _FilesBody.of((path, base64.b64encode(content)) for path, content in files)
        return await self._upload_files_body(project_id, body)

    async def upload_files_base64(self, project_id: str, files: Sequence[tuple[str, str]]) -> str:
        """Like ``upload_files`` with content already base64 text, passed through unchanged.

        Raises ``ValueError`` if a content holds anything but standard base64 characters
        (no line breaks), as well as for the file count.
        """
        _check_file_count(len(files))
        for path, content in files:
            _check_base64_text(path, content)
        return await self._upload_files_body(project_id, _FilesBody.of(files))

    async def upload_zip(self, project_id: str, zip_bytes: bytes, filename: str = "app.zip") -> str:
        """Upload a zip (no top-level folder inside); return the new deployment's id."""
        payload = await self._retrying(
            lambda: self._send(
                "PUT",
                f"/projects/{project_id}/deployments/upload-zip",
                files={"file": (filename, zip_bytes, "application/zip")},
                upload=True,
            ),
            idempotent=False,
        )
        return _id_of(payload, "upload reply")

    async def _upload_files_body(self, project_id: str, body: _FilesBody) -> str:
        payload = await self._retrying(
            lambda: self._send(
                "PUT",
                f"/projects/{project_id}/deployments/files/base64",
                content=(body.chunks(), body.length),  # a fresh stream for every attempt
                headers={CONTENT_TYPE: "application/json"},
                upload=True,
            ),
            idempotent=False,
        )
        return _id_of(payload, "upload reply")

    # Deployments

    async def get_deployment(self, project_id: str, deployment_id: str) -> Deployment:
        payload = await self._get(f"/projects/{project_id}/deployments/{deployment_id}")
        return Deployment.from_payload(payload)

    async def list_deployments(self, project_id: str) -> list[Deployment]:
        """Every deployment of the project, in the upstream's order (newest first, unverified)."""
        items = await self._list_all(f"/projects/{project_id}/deployments", {})
        return _unique_by_id(Deployment.from_payload(item) for item in items)

    async def build_logs(
        self, project_id: str, deployment_id: str, *, skip: int = 0
    ) -> list[BuildLogLine]:
        """Build log lines after the first ``skip`` (poll with ``skip`` = lines seen)."""
        payload = await self._get(
            f"/projects/{project_id}/deployments/{deployment_id}/build-logs",
            params={"skip": skip},
        )
        if isinstance(payload, Mapping) and isinstance(payload.get("data"), list):
            payload = payload["data"]
        if payload is None:
            return []
        if not isinstance(payload, list):
            raise UpstreamError(internal="CreateOS build logs are not a list")
        return [
            BuildLogLine.from_payload(item, fallback_line_number=skip + index + 1)
            for index, item in enumerate(payload)
        ]

    async def runtime_logs(
        self, project_id: str, deployment_id: str, *, since_seconds: int = 60
    ) -> str:
        """Runtime log text; CreateOS answers 422 (``UpstreamRejected``) unless deployed."""
        payload = await self._get(
            f"/projects/{project_id}/deployments/{deployment_id}/deployment-logs",
            params={"since-seconds": since_seconds},
        )
        if payload is None:
            return ""
        if isinstance(payload, str):
            return payload
        if isinstance(payload, list) and all(isinstance(line, str) for line in payload):
            return "\n".join(payload)
        raise UpstreamError(internal="CreateOS runtime logs are not text")

    async def check_health(self) -> None:
        """One authenticated ``GET /v1/quotas``, not retried (a readiness probe wants a prompt
        answer). Raises ``UpstreamError`` whose public message says what the probe got (the
        HTTP status, no answer, an unreadable body), not what that status means to a deploy:
        a 404 here is a wrong API URL, not an unknown project."""
        try:
            await self._send("GET", "/quotas")
        except UpstreamError as exc:
            exc.public = f"GET /v1/quotas got {_probe_outcome(exc)}"  # same class, status
            raise

    # Plumbing

    async def _get(self, path: str, *, params: Mapping[str, str | int] | None = None) -> Any:
        return await self._retrying(lambda: self._send("GET", path, params=params), idempotent=True)

    async def _list_all(self, path: str, params: Mapping[str, str | int]) -> list[Any]:
        """Items of every page of a list endpoint: ``data.data[]`` + ``data.pagination``."""
        items: list[Any] = []
        offset = 0
        for _ in range(_MAX_PAGES):
            page_params = {**params, "limit": _PAGE_SIZE, "offset": offset}
            payload = await self._get(path, params=page_params)
            page, pagination = _page_of(payload)
            items.extend(page)
            if pagination is None:
                return items
            total = _int_or(pagination.get("total"), len(items))
            count = _int_or(pagination.get("count"), len(page))
            page_offset = _int_or(pagination.get("offset"), offset)
            if count <= 0 or page_offset + count >= total:
                return items
            offset = page_offset + count
        raise UpstreamError(internal=f"CreateOS pagination of {path} did not end")

    async def _retrying(self, attempt: Callable[[], Awaitable[_T]], *, idempotent: bool) -> _T:
        attempts_made = 0
        while True:
            attempts_made += 1
            try:
                return await attempt()
            except UpstreamError as exc:
                delay = self._retry_delay(exc, attempts_made, idempotent=idempotent)
                if delay is None:
                    raise
            await self._sleep(delay)

    def _retry_delay(
        self, error: UpstreamError, attempts_made: int, *, idempotent: bool
    ) -> float | None:
        """Seconds to wait before trying again, or ``None`` to give up with ``error``."""
        if attempts_made >= self._max_attempts:
            return None
        if idempotent:
            retryable = isinstance(error, UpstreamUnreachable | UpstreamThrottled) or (
                error.upstream_status is not None and error.upstream_status >= 500
            )
        else:
            retryable = isinstance(error, UpstreamUnreachable) and not error.may_have_applied
        if not retryable:
            return None
        # Exponential backoff with jitter in [50%, 100%], so clients retrying together spread.
        backoff = self._backoff_base * 2.0 ** (attempts_made - 1) * (0.5 + random.random() / 2)
        if isinstance(error, UpstreamThrottled) and error.upstream_retry_after is not None:
            if error.upstream_retry_after > self._max_retry_after:
                return None
            return max(backoff, error.upstream_retry_after)
        return backoff

    async def _send(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None = None,
        json_body: Any = None,
        content: tuple[AsyncIterable[bytes], int] | None = None,
        files: Mapping[str, tuple[str, bytes, str]] | None = None,
        headers: Mapping[str, str] | None = None,
        upload: bool = False,
    ) -> Any:
        """One request, one envelope: the payload, or an ``UpstreamError``.

        ``content``: a streamed body and its length in bytes. ``upload`` selects the long
        write timeout.
        """
        operation = f"{method} {path}"
        started = self._timer()
        error_kind: str | None = None
        deadline = self._answer_seconds + (self._upload_seconds if upload else 0.0)
        data: bytes | AsyncIterable[bytes] | None = None
        length: int | None = None
        if content is not None:
            data, length = content
        elif json_body is not None:
            data = json.dumps(json_body, separators=(",", ":"), ensure_ascii=False).encode()
            headers = {**(headers or {}), CONTENT_TYPE: "application/json"}
        elif files is not None:
            data, content_type = _multipart(files)
            headers = {**(headers or {}), CONTENT_TYPE: content_type}
        try:
            with _transport_errors_mapped():
                async with asyncio.timeout(deadline):
                    status, body, retry_after = await self._exchange(
                        method,
                        path,
                        params=params,
                        data=data,
                        length=length,
                        headers=headers,
                        read_timeout=self._upload_read_timeout if upload else self._read_timeout,
                    )
            return parse_envelope(status, body, retry_after=retry_after)
        except UpstreamError as exc:
            error_kind = type(exc).__name__.removeprefix("Upstream").lower() or "error"
            exc.operation = operation
            exc.internal = f"{operation}: {exc.internal}"
            exc.args = (exc.internal,)
            raise
        finally:
            self._metrics.upstream_attempt(
                upstream_endpoint(method, path), self._timer() - started, error_kind
            )

    async def _exchange(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str | int] | None,
        data: bytes | AsyncIterable[bytes] | None,
        length: int | None,
        headers: Mapping[str, str] | None,
        read_timeout: float,
    ) -> tuple[int, bytes, str | None]:
        """One HTTP exchange; its status, body (at most ``max_answer_bytes``) and Retry-After."""
        try:
            answer = await self._http().request(
                method,
                path,
                params=params,
                headers=headers,
                body=data,
                length=length,
                connect_timeout=self._connect_timeout,
                read_timeout=read_timeout,
                max_answer_bytes=self._max_answer_bytes,
            )
        except AnswerTooLarge as exc:
            raise _oversize(exc.status, self._max_answer_bytes) from None
        return answer.status, answer.body, answer.headers.get(RETRY_AFTER.lower())


def _multipart(files: Mapping[str, tuple[str, bytes, str]]) -> tuple[bytes, str]:
    """A ``multipart/form-data`` body of ``files`` (field -> (filename, bytes, type)) and its
    Content-Type."""
    boundary = "gateway-" + "".join(random.choices("0123456789abcdef", k=32))
    parts: list[bytes] = []
    for field_name, (filename, value, content_type) in files.items():
        quoted = filename.replace("\\", "\\\\").replace('"', '\\"')
        parts.append(
            f'--{boundary}\r\nContent-Disposition: form-data; name="{field_name}"; '
            f'filename="{quoted}"\r\nContent-Type: {content_type}\r\n\r\n'.encode()
        )
        parts.append(value)
        parts.append(b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"


def _oversize(status: int, limit: int) -> UpstreamError:
    return UpstreamError(
        internal=f"CreateOS HTTP {status}: an answer over {limit} bytes",
        upstream_status=status,
        may_have_applied=True,
    )


@contextlib.contextmanager
def _transport_errors_mapped() -> Iterator[None]:
    """Turn transport failures into ``UpstreamError``s; nothing of the transport passes upward.

    The internal message starts with what happened (``ConnectError``, ``ConnectTimeout``,
    ``ReadTimeout``, ``Disconnected``, ``ProtocolError``): the log and the readiness probe name
    the failure. A request that never left (no connection, or none in time) may be retried
    whatever it was; after it left, CreateOS may have applied it.
    """
    try:
        yield
    except TransportError as exc:
        internal = _describe(exc.kind, exc)
        if exc.kind == "ProtocolError":
            # An answer that is not HTTP, after the request left.
            raise UpstreamError(internal=internal, may_have_applied=True) from None
        raise UpstreamUnreachable(internal=internal, may_have_applied=exc.sent) from None
    except TimeoutError:
        # The whole-answer deadline (asyncio.timeout): the request had left.
        raise UpstreamUnreachable(
            internal="no complete answer within the deadline", may_have_applied=True
        ) from None


def _probe_outcome(error: UpstreamError) -> str:
    """What one failed request got back, in words an operator can act on."""
    if isinstance(error, UpstreamThrottled):
        return "HTTP 429 (throttled)"
    if isinstance(error, UpstreamUnreachable):
        cause = (error.internal or "").removeprefix(f"{error.operation}: ").split(":")[0]
        return f"no answer ({cause or 'connection failed'})"
    if error.upstream_status is not None and error.upstream_status >= 400:
        return f"HTTP {error.upstream_status}"
    if error.upstream_status is not None:
        return f"HTTP {error.upstream_status} with an answer that is not a success envelope"
    return f"an unusable answer ({type(error).__name__})"


def _describe(kind: str, exc: Exception) -> str:
    return f"{kind}: {exc}" if str(exc) else kind


def _api_root(base_url: str) -> str:
    root = base_url.rstrip("/")
    return root if root.endswith("/v1") else root + "/v1"


def _check_file_count(count: int) -> None:
    if count == 0:
        raise ValueError("an upload needs at least one file")
    if count > MAX_FILES_PER_UPLOAD:
        raise ValueError(
            f"{count} files exceed the {MAX_FILES_PER_UPLOAD} per upload; use a zip upload"
        )


def _check_base64_text(path: str, content: str) -> None:
    """``content`` must be base64 text (so it is safe inside JSON), checked slice by slice so
    a large content is never copied whole."""
    if not content.isascii():
        raise ValueError(f"content of {path!r} is not base64 text")
    for start in range(0, len(content), _STREAM_CHUNK):
        if content[start : start + _STREAM_CHUNK].encode("ascii").translate(None, _BASE64_ALPHABET):
            raise ValueError(f"content of {path!r} is not base64 text")


class _FilesBody:
    """``{"files":[{"path":..,"content":".."}]}``, streamed in pieces and never joined.

    Base64 needs no JSON escaping, so contents go out as they are: ``bytes`` whole, ``str``
    (ASCII, checked) encoded one ``_STREAM_CHUNK`` slice at a time. Only the paths go through
    ``json.dumps``. A 60 MB body thus costs the caller's contents plus one slice, not two more
    full copies; ``length`` gives the Content-Length up front.
    """

    def __init__(self, parts: list[bytes | str]) -> None:
        self._parts = parts

    @classmethod
    def of(cls, files: Iterable[tuple[str, bytes | str]]) -> _FilesBody:
        parts: list[bytes | str] = [b'{"files":[']
        for index, (path, content_base64) in enumerate(files):
            prefix = b'{"path":' + json.dumps(path).encode() + b',"content":"'
            parts += (b"," + prefix if index else prefix, content_base64, b'"}')
        parts.append(b"]}")
        return cls(parts)

    @property
    def length(self) -> int:
        return sum(len(part) for part in self._parts)  # str parts are ASCII: 1 byte each

    async def chunks(self) -> AsyncIterator[bytes]:
        for part in self._parts:
            if isinstance(part, bytes):
                yield part
                continue
            for start in range(0, len(part), _STREAM_CHUNK):
                yield part[start : start + _STREAM_CHUNK].encode("ascii")


def _page_of(payload: Any) -> tuple[list[Any], Mapping[str, Any] | None]:
    """The items and pagination block of one list page; a bare list is a single page."""
    if isinstance(payload, list):
        return payload, None
    if isinstance(payload, Mapping) and isinstance(payload.get("data"), list):
        pagination = payload.get("pagination")
        return payload["data"], pagination if isinstance(pagination, Mapping) else None
    raise UpstreamError(internal="CreateOS list reply without data.data[]")


def _int_or(value: Any, default: int) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    return default


def _id_of(payload: Any, what: str) -> str:
    identifier = payload.get("id") if isinstance(payload, Mapping) else None
    if not isinstance(identifier, str) or not identifier:
        # The write went through (2xx) but we cannot tell what it made: recover by reading.
        raise UpstreamError(internal=f"CreateOS {what} without an id", may_have_applied=True)
    return identifier


_Identified = TypeVar("_Identified", Project, Deployment)


def _unique_by_id(items: Iterable[_Identified]) -> list[_Identified]:
    """Drop repeats: a list that changes between pages can show an item twice."""
    seen: set[str] = set()
    unique: list[_Identified] = []
    for item in items:
        if item.id not in seen:
            seen.add(item.id)
            unique.append(item)
    return unique
