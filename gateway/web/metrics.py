"""``GET /metrics``: the app's Prometheus series (``gateway.metrics``).

Open when ``GATEWAY_ADMIN_TOKEN`` is unset (scrapers on a private network, docs/PROTOCOL.md section
5: not rate limited); when it is set, the route is an operator route like ``/admin/*`` and needs
``Authorization: Bearer <token>`` (401 otherwise), since the series name wallets' money flows
in aggregate and the operator has said who may read operator data.
"""

from __future__ import annotations

import hmac

from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import AuthFailed
from gateway.headers import WWW_AUTHENTICATE
from gateway.metrics import CONTENT_TYPE
from gateway.web.services import services


def bearer_token_matches(authorization: str | None, token: str) -> bool:
    """``Authorization: Bearer <token>``, compared in constant time."""
    if authorization is None:
        return False
    scheme, _, presented = authorization.partition(" ")
    if scheme.lower() != "bearer" or not presented:
        return False
    return hmac.compare_digest(presented.strip().encode(), token.encode())


async def metrics(request: Request) -> Response:
    svc = services(request)
    token = svc.settings.admin_token
    if token is not None and not bearer_token_matches(request.headers.get("authorization"), token):
        raise AuthFailed(
            "GET /metrics needs Authorization: Bearer <GATEWAY_ADMIN_TOKEN>",
            code="admin_token_required",
            headers={WWW_AUTHENTICATE: "Bearer"},
        )
    return Response(svc.metrics.render(), media_type=CONTENT_TYPE)
