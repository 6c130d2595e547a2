"""Project routes: the wallet's list, delete, and new code into an owned project (docs/PROTOCOL.md
section 3)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from gateway.deploy.idempotency import parse_key
from gateway.deploy.validation import validate_redeploy
from gateway.headers import IDEMPOTENCY_KEY
from gateway.web.deploy import answer_once, payment_headers, read_body, validated
from gateway.web.responses import json_response
from gateway.web.services import authenticated, services


async def list_projects(request: Request) -> Response:
    wallet = await authenticated(request)
    projects = await services(request).projects.of_wallet(wallet.address)
    return json_response(
        {
            "wallet": wallet.address,
            "count": len(projects),
            "projects": [p.as_wire() for p in projects],
        }
    )


async def delete_project(request: Request) -> Response:
    wallet = await authenticated(request)
    project_id = request.path_params["projectId"]
    await services(request).projects.delete(wallet.address, project_id)
    return json_response({"projectId": project_id, "status": "deleted"})


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
