"""A wallet's projects after the deploy: status, logs, listing and deletion (docs/PROTOCOL.md
section 3).

Every call starts from the ownership record, so a wallet only ever sees its own projects:
404 for an unknown (or deleted) project or a deployment id that is not one of the project's
recorded deployments, 403 for another wallet's project. CreateOS failures keep their safe
public messages (502, or 503 + Retry-After when throttled); a 404 from CreateOS for a project
we know becomes our 404.

Deployment status mapping (docs/PROTOCOL.md section 3):

- ``deployed`` with an endpoint -> ``ready``, the endpoint ``https://``-prefixed when bare;
- ``queue|queued|pending|building|deploying|promoting`` (and ``deployed`` while its endpoint is
  not known yet) -> ``deploying`` with the raw ``deployment_status`` and a message;
- anything else -> ``failed`` with the raw ``deployment_status`` and a human ``reason``; for
  ``build_error`` the reason is the last ``BUILD_ERROR_LINES`` build-log lines.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeVar

from gateway.errors import Conflict, NotFound
from gateway.projects.records import NameClaims, Ownership, ProjectRecord, ProjectStatus
from gateway.upstream import (
    BuildLogLine,
    Deployment,
    Project,
    UpstreamError,
    UpstreamNotFound,
)

log = logging.getLogger("gateway.projects")

IN_PROGRESS = frozenset({"queue", "queued", "pending", "building", "deploying", "promoting"})
BUILD_ERROR_LINES = 20
LIST_CONCURRENCY = 8

_PROGRESS_MESSAGES = {
    "queue": "Waiting in the build queue",
    "queued": "Waiting in the build queue",
    "pending": "Waiting in the build queue",
    "building": "Building the app",
    "deploying": "Starting the app",
    "promoting": "Making the new version live",
}
_FAILURE_REASONS = {
    "build_error": "The build failed",
    "error": "The deployment failed",
    "cancelled": "The deployment was cancelled",
    "crashing": "The app keeps crashing after it starts; check its runtime logs",
    "sleeping": "The deployment is asleep and not serving",
    "terminating": "The deployment is shutting down",
}

_T = TypeVar("_T")


class ProjectsUpstream(Protocol):
    """The CreateOS reads and the delete (``gateway.upstream.CreateOSClient`` satisfies it)."""

    async def get_project(self, project_id: str) -> Project: ...

    async def delete_project(self, project_id: str) -> None: ...

    async def get_deployment(self, project_id: str, deployment_id: str) -> Deployment: ...

    async def list_deployments(self, project_id: str) -> list[Deployment]: ...

    async def build_logs(
        self, project_id: str, deployment_id: str, *, skip: int = ...
    ) -> list[BuildLogLine]: ...

    async def runtime_logs(
        self, project_id: str, deployment_id: str, *, since_seconds: int = ...
    ) -> str: ...


@dataclass(frozen=True, slots=True)
class DeploymentStatus:
    """One of the three status bodies of docs/PROTOCOL.md section 3: ``deploying``, ``ready`` or
    ``failed``."""

    status: str
    deployment_id: str
    deployment_status: str
    endpoint: str | None = None
    message: str | None = None
    reason: str | None = None

    def as_wire(self) -> dict[str, Any]:
        body: dict[str, Any] = {"status": self.status, "deployment_id": self.deployment_id}
        if self.status == "ready":
            body["endpoint"] = self.endpoint
        elif self.status == "deploying":
            body["deployment_status"] = self.deployment_status
            body["message"] = self.message
        else:
            body["deployment_status"] = self.deployment_status
            body["reason"] = self.reason
        return body


@dataclass(frozen=True, slots=True)
class ProjectSummary:
    """An entry of ``GET /agent/projects``. ``url`` is None until a deployment is live."""

    id: str
    name: str
    display_name: str
    status: str
    url: str | None
    created_at: str

    def as_wire(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "displayName": self.display_name,
            "status": self.status,
            "url": self.url,
            "createdAt": self.created_at,
        }


def map_status(
    deployment: Deployment, build_log: list[BuildLogLine] | None = None
) -> DeploymentStatus:
    """The status mapping (docs/PROTOCOL.md section 3) of a CreateOS deployment (``build_log`` only
    matters for build_error)."""
    raw = deployment.status
    if deployment.is_live and deployment.endpoint:
        return DeploymentStatus("ready", deployment.id, raw, endpoint=deployment.endpoint)
    if deployment.is_live:
        return DeploymentStatus(
            "deploying", deployment.id, raw, message="Deployed; waiting for its URL"
        )
    if raw in IN_PROGRESS:
        return DeploymentStatus("deploying", deployment.id, raw, message=_PROGRESS_MESSAGES[raw])
    reason = _FAILURE_REASONS.get(raw, f"The deployment ended in the state {raw!r}")
    if raw == "build_error" and build_log:
        tail = build_log[-BUILD_ERROR_LINES:]
        reason = "\n".join(line.log for line in tail)
    return DeploymentStatus("failed", deployment.id, raw, reason=reason)


class Projects:
    def __init__(
        self,
        upstream: ProjectsUpstream,
        ownership: Ownership,
        names: NameClaims,
        *,
        list_concurrency: int = LIST_CONCURRENCY,
    ) -> None:
        self._upstream = upstream
        self._ownership = ownership
        self._names = names
        self._list_concurrency = list_concurrency

    async def status(
        self,
        wallet: str,
        project_id: str,
        deployment_id: str,
        *,
        record: ProjectRecord | None = None,
    ) -> DeploymentStatus:
        """``record``: the project's ownership record if the caller already read it (the route
        reads it in the same Redis round trip as the authentication); read here otherwise."""
        await self._require_deployment(wallet, project_id, deployment_id, record)
        deployment = await _known(self._upstream.get_deployment(project_id, deployment_id))
        build_log: list[BuildLogLine] | None = None
        if deployment.status == "build_error":
            try:
                build_log = await self._upstream.build_logs(project_id, deployment_id)
            except UpstreamError as exc:  # the status is known; the detail is a bonus
                log.warning("build log of a failed build unavailable: %s", exc.internal)
        return map_status(deployment, build_log)

    async def build_logs(
        self, wallet: str, project_id: str, deployment_id: str, *, skip: int = 0
    ) -> list[BuildLogLine]:
        await self._require_deployment(wallet, project_id, deployment_id)
        return await _known(self._upstream.build_logs(project_id, deployment_id, skip=skip))

    async def runtime_logs(
        self, wallet: str, project_id: str, deployment_id: str, *, since_seconds: int = 60
    ) -> str:
        """409 ``not_live`` while the deployment is not deployed (CreateOS answers 422)."""
        await self._require_deployment(wallet, project_id, deployment_id)
        try:
            return await _known(
                self._upstream.runtime_logs(project_id, deployment_id, since_seconds=since_seconds)
            )
        except UpstreamError as exc:
            if exc.upstream_status == 422:
                raise Conflict(
                    "Runtime logs are available once the deployment is live", code="not_live"
                ) from exc
            raise

    async def of_wallet(self, wallet: str) -> list[ProjectSummary]:
        """The wallet's projects from its own index, oldest first; live data fetched at most
        ``list_concurrency`` projects at a time. A project whose upstream read fails is listed
        from our record (``url`` null) rather than failing the whole list."""
        records = await self._ownership.projects_of(wallet)
        bound = asyncio.Semaphore(self._list_concurrency)

        async def summary(record: ProjectRecord) -> ProjectSummary:
            async with bound:
                return await self._summary(record)

        return list(await asyncio.gather(*(summary(r) for r in records)))

    async def delete(self, wallet: str, project_id: str) -> None:
        """Delete upstream, then stop metering (status ``deleted``) and free the name.

        CreateOS deletes asynchronously; a project it no longer knows counts as deleted.
        """
        record = await self._ownership.require_owner(project_id, wallet)
        try:
            await self._upstream.delete_project(project_id)
        except UpstreamNotFound:
            log.info("project %s already gone upstream", project_id)
        await self._ownership.set_status(project_id, ProjectStatus.DELETED)
        await self._names.release(wallet, record.unique_name)

    async def _require_deployment(
        self,
        wallet: str,
        project_id: str,
        deployment_id: str,
        known: ProjectRecord | None = None,
    ) -> ProjectRecord:
        if known is not None and known.project_id == project_id:
            record = self._ownership.check_owner(known, wallet)
        else:
            record = await self._ownership.require_owner(project_id, wallet)
        if deployment_id not in record.deployments:
            raise NotFound("Unknown deployment of this project", code="unknown_deployment")
        return record

    async def _summary(self, record: ProjectRecord) -> ProjectSummary:
        status, url = record.status, None
        project, deployments = await asyncio.gather(
            self._upstream.get_project(record.project_id),
            self._upstream.list_deployments(record.project_id),
            return_exceptions=True,
        )
        for result in (project, deployments):
            if isinstance(result, BaseException):
                if not isinstance(result, UpstreamError):
                    raise result
                log.warning("project %s: live data unavailable: %s", record.project_id, result)
        if isinstance(project, Project) and record.status != ProjectStatus.SUSPENDED.value:
            status = project.status
        if isinstance(deployments, list):
            url = next((d.endpoint for d in deployments if d.is_live and d.endpoint), None)
        return ProjectSummary(
            id=record.project_id,
            name=record.unique_name,
            display_name=record.display_name,
            status=status,
            url=url,
            created_at=iso_ms(record.created_at_ms),
        )


async def _known(call: Awaitable[_T]) -> _T:
    """A read of a project we have on record: CreateOS's 404 is our 404."""
    try:
        return await call
    except UpstreamNotFound as exc:
        raise NotFound("Unknown project or deployment", code="unknown_deployment") from exc


def iso_ms(ms: int) -> str:
    """RFC 3339 UTC with milliseconds."""
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")
