"""Request recording, API-key checking and fault injection for the CreateOS simulator.

``FaultsAndRecording`` is the simulator's outermost ASGI middleware. For every HTTP request it

1. records it (``RecordedRequest``; handlers later add the JSON body or the upload's file names),
2. answers 401 unless ``X-Api-Key`` is one of the accepted keys,
3. takes the first queued fault whose method and path match, and applies it:

   ==================  =========================================  ==========================
   kind                what the client sees                       is the request applied?
   ==================  =========================================  ==========================
   FAIL                ``status`` with an error envelope          no
   OK_WITH_FAIL        HTTP 200 with a ``fail`` envelope          no
   DELAY               the normal answer, ``seconds`` late        yes, before the sleep
   FAIL_AFTER_APPLY    ``status`` with an error envelope          yes
   DROP_AFTER_APPLY    headers, part of the body, then the        yes
                       connection closes (a protocol error)
   ==================  =========================================  ==========================

A fault path pattern is a regular expression that must match the whole request path (no query
string), e.g. ``r"/v1/projects"`` matches the create and list calls only, and
``r"/v1/projects/[^/]+/deployments/files(/base64)?"`` both JSON uploads. Methods compare
case-insensitively. Faults apply only to requests that passed the API-key check.
"""

from __future__ import annotations

import asyncio
import enum
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

from starlette.datastructures import Headers
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

RECORD_SCOPE_KEY = "createos_sim.record"
API_KEY_SCOPE_KEY = "createos_sim.api_key"


@dataclass
class RecordedRequest:
    """One request as the simulator received it.

    ``json`` is the decoded JSON body of non-upload calls (``None`` when absent or not JSON);
    uploads record ``file_count`` and ``file_names`` instead, never contents. ``status`` is the
    HTTP status answered (``None`` for a dropped connection or an unfinished request); ``fault``
    names the injected fault that applied, if any.
    """

    method: str
    path: str
    query: dict[str, str]
    api_key: str | None
    time: float
    json: Any = None
    file_count: int | None = None
    file_names: tuple[str, ...] | None = None
    status: int | None = None
    fault: str | None = None

    @property
    def api_key_present(self) -> bool:
        return bool(self.api_key)


class FaultKind(enum.Enum):
    FAIL = "fail"
    OK_WITH_FAIL = "ok_with_fail"
    DELAY = "delay"
    FAIL_AFTER_APPLY = "fail_after_apply"
    DROP_AFTER_APPLY = "drop_after_apply"


@dataclass
class Fault:
    kind: FaultKind
    method: str
    path: re.Pattern[str]
    remaining: int
    status: int = 500
    message: str = "simulated failure"
    seconds: float = 0.0
    headers: dict[str, str] = field(default_factory=dict)

    def matches(self, method: str, path: str) -> bool:
        return self.method == method.upper() and self.path.fullmatch(path) is not None


class FaultQueue:
    """Queued faults, consumed in the order they were added. Thread-safe: tests add faults
    from their own thread while the server thread takes them."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def add(
        self,
        kind: FaultKind,
        method: str,
        path_pattern: str,
        *,
        times: int,
        status: int = 500,
        message: str = "simulated failure",
        seconds: float = 0.0,
        headers: dict[str, str] | None = None,
    ) -> None:
        if times < 1:
            raise ValueError("times must be at least 1")
        fault = Fault(
            kind=kind,
            method=method.upper(),
            path=re.compile(path_pattern),
            remaining=times,
            status=status,
            message=message,
            seconds=seconds,
            headers=dict(headers or {}),
        )
        with self._lock:
            self._faults.append(fault)

    def take(self, method: str, path: str) -> Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(method, path):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()


RenderError = Callable[[int, str, bool, dict[str, str]], Response]
"""``(status, message, http_ok, headers) -> Response``: an error in the configured envelope;
``http_ok`` answers HTTP 200 with the failure in the body."""


class FaultsAndRecording:
    """ASGI middleware; see the module docstring for the order of its steps."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        requests: list[RecordedRequest],
        faults: FaultQueue,
        clock: Callable[[], float],
        accepts_key: Callable[[str | None], bool],
        render_error: RenderError,
    ) -> None:
        self.app = app
        self.requests = requests
        self.faults = faults
        self.clock = clock
        self.accepts_key = accepts_key
        self.render_error = render_error

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        api_key = headers.get("x-api-key")
        record = RecordedRequest(
            method=scope["method"],
            path=scope["path"],
            query=_query(scope),
            api_key=api_key,
            time=self.clock(),
        )
        self.requests.append(record)
        scope[RECORD_SCOPE_KEY] = record
        scope[API_KEY_SCOPE_KEY] = api_key

        async def recording_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                record.status = message["status"]
            await send(message)

        if not self.accepts_key(api_key):
            message = "missing X-Api-Key" if not api_key else "invalid api key"
            await self.render_error(401, message, False, {})(scope, receive, recording_send)
            return
        fault = self.faults.take(scope["method"], scope["path"])
        if fault is None:
            await self.app(scope, receive, recording_send)
            return
        record.fault = fault.kind.value
        await self._apply(fault, scope, receive, send, recording_send)

    async def _apply(
        self, fault: Fault, scope: Scope, receive: Receive, send: Send, recording_send: Send
    ) -> None:
        if fault.kind in (FaultKind.FAIL, FaultKind.OK_WITH_FAIL):
            http_ok = fault.kind is FaultKind.OK_WITH_FAIL
            status = 200 if http_ok else fault.status
            error = self.render_error(status, fault.message, http_ok, fault.headers)
            await error(scope, receive, recording_send)
            return
        answer: list[Message] = []

        async def capture(message: Message) -> None:
            answer.append(message)

        await self.app(scope, receive, capture)
        if fault.kind is FaultKind.DELAY:
            await asyncio.sleep(fault.seconds)
            for message in answer:
                await recording_send(message)
        elif fault.kind is FaultKind.FAIL_AFTER_APPLY:
            error = self.render_error(fault.status, fault.message, False, fault.headers)
            await error(scope, receive, recording_send)
        else:
            await _send_truncated(answer, send)


async def _send_truncated(answer: list[Message], send: Send) -> None:
    """Send the headers and half the body, then return: the server closes the connection
    because the response never completed, which the client sees as a dropped connection."""
    body = b"".join(m.get("body", b"") for m in answer if m["type"] == "http.response.body")
    start = next(m for m in answer if m["type"] == "http.response.start")
    await send(start)
    await send({"type": "http.response.body", "body": body[: len(body) // 2], "more_body": True})


def _query(scope: Scope) -> dict[str, str]:
    raw = scope.get("query_string", b"").decode("latin-1")
    return dict(parse_qsl(raw, keep_blank_values=True))
