"""Deploy routes: ``POST /agent/deploy``, a deployment's status and its logs (docs/PROTOCOL.md
sections 3 and 4).

Handlers stay thin: authenticate, read and validate the body (``gateway.deploy.validation``), hand
the request to ``gateway.deploy.flow.DeployFlow`` and render its answer. The body of an upload is
read once into one buffer, decoded to text, and freed before the JSON is parsed, so a ~65 MB
deploy is never held more than twice; parsing and validating a large body run in a worker
thread so the event loop keeps serving other requests.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from starlette.datastructures import Headers
from starlette.requests import Request
from starlette.responses import Response

from gateway.config import Settings
from gateway.deploy.flow import PaymentHeaders
from gateway.deploy.idempotency import StoredAnswer, fingerprint, parse_key
from gateway.deploy.validation import invalid, parse_json_object, validate_deploy
from gateway.errors import BadRequest
from gateway.headers import (
    IDEMPOTENCY_KEY,
    PAYMENT_CHAIN,
    PAYMENT_TOKEN,
    PAYMENT_TX,
    USE_EXISTING_CREDITS,
)
from gateway.web.responses import json_response
from gateway.web.services import Services, authenticated, services

#: Bodies above this are parsed and validated in a worker thread.
THREAD_THRESHOLD_BYTES = 256 * 1024
MAX_SINCE_SECONDS = 7 * 24 * 3600

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
        return json_response(
            begun.body, status=begun.status, headers={"Idempotent-Replayed": "true"}
        )
    try:
        status, answer = await run()
    except BaseException:
        await svc.idempotency.abandon(begun)
        raise
    await svc.idempotency.finish(begun, status, answer)
    return json_response(answer, status=status)


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


async def status(request: Request) -> Response:
    wallet = await authenticated(request)
    project_id, deployment_id = _ids(request)
    found = await services(request).projects.status(wallet.address, project_id, deployment_id)
    return json_response(found.as_wire())


async def logs(request: Request) -> Response:
    """``kind=build`` (default): ``lines`` after ``skip``; ``kind=runtime``: ``text`` of the
    last ``since`` seconds (default 60)."""
    wallet = await authenticated(request)
    svc = services(request)
    project_id, deployment_id = _ids(request)
    kind = request.query_params.get("kind", "build")
    if kind == "build":
        skip = _int_param(request, "skip", default=0, low=0, high=10**9)
        lines = await svc.projects.build_logs(wallet.address, project_id, deployment_id, skip=skip)
        return json_response(
            {
                "kind": "build",
                "deployment_id": deployment_id,
                "lines": [
                    {
                        "lineNumber": line.line_number,
                        "log": line.log,
                        "stage": line.stage,
                        "ts": line.ts,
                    }
                    for line in lines
                ],
            }
        )
    if kind == "runtime":
        since = _int_param(request, "since", default=60, low=1, high=MAX_SINCE_SECONDS)
        text = await svc.projects.runtime_logs(
            wallet.address, project_id, deployment_id, since_seconds=since
        )
        return json_response({"kind": "runtime", "deployment_id": deployment_id, "text": text})
    raise BadRequest('kind must be "build" or "runtime"', field="kind")


def _ids(request: Request) -> tuple[str, str]:
    return request.path_params["projectId"], request.path_params["deploymentId"]


def _int_param(request: Request, name: str, *, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise BadRequest(f"{name} must be an integer from {low} to {high}", field=name)
    return int(raw)
