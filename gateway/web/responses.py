"""Rendering: JSON bodies, the error shape of docs/PROTOCOL.md section 1, and raw-ASGI error
replies."""

from __future__ import annotations

import json
import logging
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.types import Send

from gateway.errors import GatewayError, MethodNotAllowed, NotFound
from gateway.headers import CACHE_CONTROL

log = logging.getLogger("gateway.web")


def json_response(
    body: Any, status: int = 200, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(body, status_code=status, headers=headers)


def error_response(error: GatewayError) -> JSONResponse:
    headers = dict(error.headers)
    if error.status == 402:
        headers.setdefault(CACHE_CONTROL, "no-store")
    return JSONResponse(error.body(), status_code=error.status, headers=headers)


async def send_error(send: Send, error: GatewayError) -> None:
    """Answer from raw ASGI middleware (before the router), same shape as ``error_response``."""
    body = json.dumps(error.body()).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        (b"connection", b"close"),
    ]
    headers += [(k.lower().encode(), v.encode()) for k, v in error.headers.items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def handle_gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    if exc.status >= 500:
        log.warning("request failed: %s", exc.internal or exc.public, extra={"status": exc.status})
    return error_response(exc)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    """Starlette's own 404/405 (unknown route, wrong method) in our JSON shape."""
    status = getattr(exc, "status_code", 500)
    headers = dict(getattr(exc, "headers", None) or {})
    error: GatewayError
    if status == 405:
        error = MethodNotAllowed(
            f"Method {request.method} not allowed on {request.url.path}", headers=headers
        )
    elif status == 404:
        error = NotFound(f"No route {request.method} {request.url.path}")
    else:
        error = GatewayError(str(getattr(exc, "detail", "Error")), headers=headers, status=status)
    return error_response(error)
