"""Project routes: the wallet's project list and deleting a project (docs/PROTOCOL.md
section 3). New code into a project is a deploy (``gateway.web.deploy``)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

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
