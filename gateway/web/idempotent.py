"""Answering at most once per ``Idempotency-Key`` (docs/PROTOCOL.md section 4): the deploy,
redeploy and operator-adjustment routes run their work through ``answer_once``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.deploy.idempotency import StoredAnswer, fingerprint
from gateway.headers import IDEMPOTENT_REPLAYED
from gateway.web.responses import json_response
from gateway.web.services import Services


async def answer_once(
    request: Request,
    svc: Services,
    scope: str,
    key: str | None,
    body_digest: str,
    run: Callable[[], Awaitable[tuple[int, dict[str, Any]]]],
) -> Response:
    """Run ``run`` at most once per ``Idempotency-Key`` within ``scope`` (a wallet's address,
    or ``operator`` for the admin routes; see ``gateway.deploy.idempotency``)."""
    if key is None:
        status, answer = await run()
        return json_response(answer, status=status)
    request_fingerprint = fingerprint(request.method, request.url.path, body_digest)
    begun = await svc.idempotency.begin(scope, key, request_fingerprint)
    if isinstance(begun, StoredAnswer):
        return json_response(begun.body, status=begun.status, headers={IDEMPOTENT_REPLAYED: "true"})
    try:
        status, answer = await run()
    except BaseException:
        await svc.idempotency.abandon(begun)
        raise
    await svc.idempotency.finish(begun, status, answer)
    return json_response(answer, status=status)
