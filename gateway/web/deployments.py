"""Deployment routes: a deployment's status and its logs, owner only (docs/PROTOCOL.md
section 3)."""

from __future__ import annotations

import asyncio
import contextlib

from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import BadRequest
from gateway.headers import WALLET_ADDRESS
from gateway.types import is_address
from gateway.web.responses import json_response
from gateway.web.services import authenticated, services

MAX_SINCE_SECONDS = 7 * 24 * 3600


async def status(request: Request) -> Response:
    """The ownership record is read beside the authentication: both calls are made in one
    event-loop turn, so they share one Redis round trip (``gateway.store.scripts``), the record
    read straight from the claimed wallet's slot. The record is used only once that wallet is
    authenticated; a failed authentication discards it."""
    svc = services(request)
    project_id, deployment_id = _ids(request)
    claimed = request.headers.get(WALLET_ADDRESS, "")
    record = asyncio.ensure_future(
        svc.ownership.get_as(project_id, claimed)
        if is_address(claimed)
        else svc.ownership.get(project_id)
    )
    try:
        wallet = await authenticated(request)
    except BaseException:
        record.cancel()
        with contextlib.suppress(Exception, asyncio.CancelledError):
            await record
        raise
    found = await svc.projects.status(
        wallet.address, project_id, deployment_id, record=await record
    )
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
