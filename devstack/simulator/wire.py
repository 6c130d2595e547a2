"""How the CreateOS simulator reads request bodies and writes answers.

Envelopes (docs/UPSTREAM.md section 1), chosen per answer from the live configuration:

    jsend     success  {"status": "success", "data": ...}
              failure  {"status": "fail", "data": "message"}       (below 500)
                       {"status": "error", "message": "message"}   (500 and up)
    success   success  {"success": true, "data": ...}
              failure  {"success": false, "message": "message"}

Lists answer ``data = {"data": [...], "pagination": {total, limit, offset, count}}``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, Literal

from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response

from devstack.simulator.rules import SimulatorError, bad_request

EnvelopeStyle = Literal["jsend", "success"]


class Envelope:
    """Renders answers in the style ``style()`` returns at the time of the answer."""

    def __init__(self, style: Callable[[], EnvelopeStyle]) -> None:
        self._style = style

    def ok(self, data: Any, status: int = 200) -> JSONResponse:
        if self._style() == "success":
            return JSONResponse({"success": True, "data": data}, status_code=status)
        return JSONResponse({"status": "success", "data": data}, status_code=status)

    def page(self, items: list[dict[str, Any]], total: int, limit: int, offset: int) -> Response:
        pagination = {"total": total, "limit": limit, "offset": offset, "count": len(items)}
        return self.ok({"data": items, "pagination": pagination})

    def error(
        self,
        status: int,
        message: str,
        http_ok: bool = False,
        headers: dict[str, str] | None = None,
    ) -> JSONResponse:
        """``http_ok`` sends HTTP 200 with the failure body (a documented upstream quirk)."""
        body: dict[str, Any]
        if self._style() == "success":
            body = {"success": False, "message": message}
        elif status >= 500:
            body = {"status": "error", "message": message}
        else:
            body = {"status": "fail", "data": message}
        return JSONResponse(body, status_code=200 if http_ok else status, headers=headers)

    async def on_simulator_error(self, request: Request, exc: Exception) -> Response:
        assert isinstance(exc, SimulatorError)
        return self.error(exc.status, exc.message, headers=exc.headers)

    async def on_http_exception(self, request: Request, exc: Exception) -> Response:
        """Starlette's own 404 and 405, in the same envelope."""
        assert isinstance(exc, HTTPException)
        return self.error(exc.status_code, exc.detail, headers=dict(exc.headers or {}))


async def read_body(request: Request, limit: int) -> bytearray:
    """The whole body in one buffer; 413 beyond ``limit`` bytes, checked while reading."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise SimulatorError(413, f"body larger than {limit} bytes")
    body = bytearray()
    try:
        async for chunk in request.stream():
            body += chunk
            if len(body) > limit:
                raise SimulatorError(413, f"body larger than {limit} bytes")
    except ClientDisconnect:
        raise SimulatorError(400, "client disconnected while sending the body") from None
    return body


def parse_json(body: bytes | bytearray) -> Any:
    """The decoded body, None when it is empty; 400 when it is not JSON."""
    if not body or body.isspace():
        return None
    try:
        return json.loads(body)
    except ValueError:
        raise bad_request("body is not valid JSON") from None
