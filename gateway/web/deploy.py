"""Deploy routes: ``POST /agent/deploy`` and new code into an owned project,
``POST /agent/projects/{projectId}/deploy`` (docs/PROTOCOL.md sections 3 and 4).

Handlers stay thin: authenticate, read and validate the body (``gateway.deploy.validation``), hand
the request to ``gateway.deploy.flow.DeployFlow`` and render its answer. The body of an upload is
read once into one buffer, decoded to text, and freed before the JSON is parsed, so a ~65 MB
deploy is never held more than twice; parsing and validating a large body run in a worker
thread so the event loop keeps serving other requests.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.requests import Request
from starlette.responses import Response

from gateway.config import Settings
from gateway.deploy.flow import Deployed
from gateway.deploy.idempotency import parse_key
from gateway.deploy.validation import invalid, parse_json_object, validate_deploy, validate_redeploy
from gateway.headers import IDEMPOTENCY_KEY
from gateway.web.idempotent import answer_once
from gateway.web.payment import (
    offering,
    payment_headers,
    receipt_headers,
    request_context,
    requester,
)
from gateway.web.responses import json_response
from gateway.web.services import services

#: Bodies above this are parsed and validated in a worker thread.
THREAD_THRESHOLD_BYTES = 256 * 1024

_T = TypeVar("_T")


@dataclass
class RawBody:
    """The request body as read: one buffer and its SHA-256 (for idempotency)."""

    buffer: bytearray
    digest: str


async def read_body(request: Request) -> RawBody:
    """The whole body in one growing buffer (the body-limit middleware stops it at the
    configured size with a 413)."""
    buffer = bytearray()
    digest = hashlib.sha256()
    async for chunk in request.stream():
        buffer += chunk
        digest.update(chunk)
    return RawBody(buffer, digest.hexdigest())


def parse_and_validate(
    body: RawBody, validate: Callable[[Mapping[str, Any], Settings], _T], settings: Settings
) -> _T:
    """Decode, parse and validate; the raw buffer is emptied as soon as it is text."""
    try:
        text = body.buffer.decode("utf-8")
    except UnicodeDecodeError:
        raise invalid("The body is not UTF-8 JSON", "body") from None
    finally:
        body.buffer.clear()
    parsed = parse_json_object(text)
    del text
    return validate(parsed, settings)


async def validated(
    body: RawBody, validate: Callable[[Mapping[str, Any], Settings], _T], settings: Settings
) -> _T:
    if len(body.buffer) > THREAD_THRESHOLD_BYTES:
        return await asyncio.to_thread(parse_and_validate, body, validate, settings)
    return parse_and_validate(body, validate, settings)


async def deploy(request: Request) -> Response:
    return await _paid(request, project_id=None)


async def redeploy(request: Request) -> Response:
    """Body ``{"upload", "months"?}``; paid like a deploy; ``Idempotency-Key`` honoured."""
    return await _paid(request, project_id=request.path_params["projectId"])


async def _paid(request: Request, *, project_id: str | None) -> Response:
    """Both routes: who pays and how (``gateway.web.payment``), then the flow; a 402 leaves
    with the protocol challenges, a paid 200 with its receipts."""
    svc = services(request)
    payment = payment_headers(request.headers)
    wallet = await requester(request, svc, payment)
    key = parse_key(request.headers.get(IDEMPOTENCY_KEY))
    body = await read_body(request)
    context = request_context(request, svc, bytes.fromhex(body.digest))
    payment = dataclasses.replace(payment, context=context)
    deployed: list[Deployed] = []

    async def run() -> tuple[int, dict[str, Any]]:
        with offering(svc, context):
            if project_id is None:
                deploy_request = await validated(body, validate_deploy, svc.settings)
                done = await svc.deploys.deploy(wallet, deploy_request, payment)
            else:
                redeploy_request = await validated(body, validate_redeploy, svc.settings)
                done = await svc.deploys.redeploy(wallet, project_id, redeploy_request, payment)
        deployed.append(done)
        return 200, done.as_wire()

    if wallet is None:  # no wallet to scope an Idempotency-Key to: the payment is the key
        status, answer = await run()
        response: Response = json_response(answer, status=status)
    else:
        response = await answer_once(request, svc, wallet.address, key, body.digest, run)
    if deployed:
        response.headers.update(receipt_headers(svc, deployed[0]))
    return response
