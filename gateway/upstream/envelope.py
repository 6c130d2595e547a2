"""The one place that decides whether a CreateOS reply succeeded, and what it carried.

CreateOS wraps replies in an envelope whose exact shape is unverified (docs/UPSTREAM.md section
1), so the parser accepts both forms seen in its sources:

    {"status": "success", "data": ...}        {"success": true, "data": ...}
    {"status": "fail", "data": "message"}     {"success": false, "message": "..."}
    {"status": "error", "message": "..."}

A reply is a failure when the HTTP status is >= 400, ``status`` is ``fail`` or ``error``,
``success`` is false, or the body is not a JSON object (nested at most ``MAX_DEPTH`` levels,
``gateway.bounded_json``); a 200 with ``status: "fail"`` is a failure like any other.
"""

from __future__ import annotations

import math
from typing import Any

from gateway import bounded_json
from gateway.upstream.errors import (
    UpstreamError,
    UpstreamForbidden,
    UpstreamNameTaken,
    UpstreamNotFound,
    UpstreamRejected,
    UpstreamThrottled,
    UpstreamUnauthorized,
)

__all__ = ["parse_envelope", "parse_retry_after"]

#: Deepest CreateOS answer accepted: a page of projects is data.data[].settings.envVars, 5.
MAX_DEPTH = 32

# Upstream messages go to the log only, but a log line is no place for a whole HTML page.
_MAX_INTERNAL_MESSAGE = 500


def parse_envelope(status_code: int, body: bytes | str, *, retry_after: str | None = None) -> Any:
    """Return the ``data`` of a successful reply (``None`` when absent); raise otherwise.

    ``retry_after`` is the reply's Retry-After header, used when the status is 429.
    Raises an ``UpstreamError`` subclass chosen by the HTTP status (see
    ``gateway.upstream.errors``). A 204 with an empty body succeeds with ``None``.
    """
    if status_code == 204 and not body.strip():
        return None
    try:
        document = bounded_json.loads(body, max_depth=MAX_DEPTH)
    except bounded_json.JsonRefused:  # not JSON, not UTF-8, or too deep: unusable alike
        document = None
    if not isinstance(document, dict):
        raise _error_for(
            status_code,
            f"CreateOS HTTP {status_code}: the body is not a JSON object",
            retry_after=retry_after,
            server_fault=True,
        )

    data = document.get("data")
    envelope_status = document.get("status")
    failed = (
        status_code >= 400
        or envelope_status in ("fail", "error")
        or document.get("success") is False
    )
    if not failed:
        return data
    message = _message(status_code, document, data)
    if len(message) > _MAX_INTERNAL_MESSAGE:
        message = message[:_MAX_INTERNAL_MESSAGE] + "..."
    raise _error_for(
        status_code,
        f"CreateOS HTTP {status_code} (status={envelope_status!r}): {message}",
        retry_after=retry_after,
        server_fault=envelope_status == "error",
    )


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header in its delta-seconds form; ``None`` if unusable.

    The HTTP-date form would need a clock and is not known to be used by CreateOS; it is
    treated as absent, so the caller falls back to its default.
    """
    if value is None:
        return None
    try:
        seconds = float(value.strip())
    except ValueError:
        return None
    if not math.isfinite(seconds) or seconds < 0:
        return None
    return seconds


def _message(status_code: int, document: dict[str, Any], data: Any) -> str:
    """Message = ``data`` if a string, else ``data.message``, else ``message``, else HTTP code."""
    if isinstance(data, str) and data:
        return data
    if isinstance(data, dict) and isinstance(data.get("message"), str) and data["message"]:
        return str(data["message"])
    message = document.get("message")
    if isinstance(message, str) and message:
        return message
    return f"HTTP {status_code}"


_BY_STATUS: dict[int, type[UpstreamError]] = {
    401: UpstreamUnauthorized,
    403: UpstreamForbidden,
    404: UpstreamNotFound,
    409: UpstreamNameTaken,
}


def _error_for(
    status_code: int, internal: str, *, retry_after: str | None, server_fault: bool
) -> UpstreamError:
    """The error for a failed reply, by HTTP status.

    ``server_fault`` marks a failure that a 2xx reply blamed on the server (JSend
    ``error``, or an unreadable body): CreateOS may have acted on the request.
    """
    if status_code == 429:
        return UpstreamThrottled(parse_retry_after(retry_after), internal=internal)
    if status_code in _BY_STATUS:
        return _BY_STATUS[status_code](internal=internal, upstream_status=status_code)
    if 400 <= status_code < 500:
        return UpstreamRejected(internal=internal, upstream_status=status_code)
    if status_code >= 500 or server_fault:
        return UpstreamError(internal=internal, upstream_status=status_code, may_have_applied=True)
    return UpstreamRejected(internal=internal, upstream_status=status_code)
