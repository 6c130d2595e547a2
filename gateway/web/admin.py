"""Operator routes (docs/PROTOCOL.md section 3, Operator): ``/admin/*`` behind
``GATEWAY_ADMIN_TOKEN``.

- No token configured: every route answers 404, as if it did not exist (off).
- ``Authorization: Bearer <token>`` missing or wrong: 401 (compared in constant time).
- The reads and the adjustment are ``gateway.audit``'s, shared with the command line.
"""

from __future__ import annotations

import hashlib
import hmac
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway import bounded_json
from gateway.deploy.idempotency import parse_key
from gateway.errors import AuthFailed, BadRequest, NotFound
from gateway.headers import IDEMPOTENCY_KEY, WWW_AUTHENTICATE
from gateway.web.idempotent import answer_once
from gateway.web.responses import json_response
from gateway.web.services import services

#: An adjustment body is two short fields; anything longer is not one.
MAX_ADJUST_BODY = 16 * 1024
MAX_ADJUST_DEPTH = 4  # {"amount_usd": ..., "reason": ...} is one level
#: The idempotency scope of operator requests (wallet scopes are 0x addresses: no clash).
OPERATOR_SCOPE = "operator"


def require_operator(request: Request) -> None:
    """404 when the admin routes are off, 401 unless the bearer token matches."""
    expected = services(request).settings.admin_token
    if not expected:
        raise NotFound(f"No route {request.method} {request.url.path}")
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(
        presented.strip().encode(), expected.encode()
    ):
        raise AuthFailed(
            "Admin bearer token missing or wrong",
            code="admin_auth",
            headers={WWW_AUTHENTICATE: "Bearer"},
        )


async def wallet(request: Request) -> Response:
    require_operator(request)
    return json_response(await services(request).audit.wallet(request.path_params["address"]))


async def payment(request: Request) -> Response:
    require_operator(request)
    params = request.path_params
    return json_response(await services(request).audit.payment(params["chain"], params["txHash"]))


async def adjust(request: Request) -> Response:
    """A signed adjustment entry; a positive one resumes projects the balance can pay again.

    With ``Idempotency-Key``, an operator's retry (a lost answer, a repeated command) returns
    the first answer instead of moving the money a second time."""
    require_operator(request)
    svc = services(request)
    key = parse_key(request.headers.get(IDEMPOTENCY_KEY))
    raw = await request.body()

    async def run() -> tuple[int, dict[str, Any]]:
        if len(raw) > MAX_ADJUST_BODY:
            raise BadRequest(
                "The body is too long for an adjustment", code="invalid_body", field="body"
            )
        try:
            body = bounded_json.loads(raw, max_depth=MAX_ADJUST_DEPTH)
        except bounded_json.JsonRefused:
            raise BadRequest(
                "The body must be a JSON object", code="invalid_body", field="body"
            ) from None
        if not isinstance(body, dict):
            raise BadRequest("The body must be a JSON object", code="invalid_body", field="body")
        adjusted = await svc.audit.adjust(
            request.path_params["address"], body.get("amount_usd"), body.get("reason")
        )
        resumed: list[str] = []
        if adjusted["amount_usd"] > 0:
            resumed = (await svc.metering.resume_wallet(adjusted["wallet"])).resumed
        return 200, {**adjusted, "resumed": resumed}

    digest = hashlib.sha256(raw).hexdigest()
    return await answer_once(request, svc, OPERATOR_SCOPE, key, digest, run)
