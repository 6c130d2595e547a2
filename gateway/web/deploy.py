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
import hashlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response

from gateway.config import Settings
from gateway.deploy.flow import PaymentHeaders
from gateway.deploy.idempotency import parse_key
from gateway.deploy.validation import invalid, parse_json_object, validate_deploy, validate_redeploy
from gateway.headers import (
    IDEMPOTENCY_KEY,
    PAYMENT_CHAIN,
    PAYMENT_TOKEN,
    PAYMENT_TX,
    USE_EXISTING_CREDITS,
)
from gateway.web.idempotent import answer_once
from gateway.web.services import authenticated, services

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


def payment_headers(headers: Headers) -> PaymentHeaders:
    def value(name: str) -> str | None:
        """The header's trimmed value; absent and blank are the same."""
        return headers.get(name, "").strip() or None

    return PaymentHeaders(
        tx=value(PAYMENT_TX),
        chain=value(PAYMENT_CHAIN),
        token=value(PAYMENT_TOKEN),
        use_existing_credits=(headers.get(USE_EXISTING_CREDITS, "").strip().lower() == "true"),
    )


async def deploy(request: Request) -> Response:
    wallet = await authenticated(request)
    svc = services(request)
    key = parse_key(request.headers.get(IDEMPOTENCY_KEY))
    payment = payment_headers(request.headers)
    body = await read_body(request)

    async def run() -> tuple[int, dict[str, Any]]:
        deploy_request = await validated(body, validate_deploy, svc.settings)
        deployed = await svc.deploys.deploy(wallet, deploy_request, payment)
        return 200, deployed.as_wire()

    return await answer_once(request, svc, wallet.address, key, body.digest, run)


async def redeploy(request: Request) -> Response:
    """Body ``{"upload", "months"?}``; paid like a deploy; ``Idempotency-Key`` honoured."""
    wallet = await authenticated(request)
    svc = services(request)
    project_id = request.path_params["projectId"]
    key = parse_key(request.headers.get(IDEMPOTENCY_KEY))
    payment = payment_headers(request.headers)
    body = await read_body(request)

    async def run() -> tuple[int, dict[str, Any]]:
        redeploy_request = await validated(body, validate_redeploy, svc.settings)
        deployed = await svc.deploys.redeploy(wallet, project_id, redeploy_request, payment)
        return 200, deployed.as_wire()

    return await answer_once(request, svc, wallet.address, key, body.digest, run)
