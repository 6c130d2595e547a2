"""A CreateOS REST API simulator (docs/UPSTREAM.md section 7): a Starlette app to test against.

    clock = ManualClock()
    simulator = CreateOSSimulator(SimulatorConfig(queue_seconds=1), clock=clock)
    with ServerThread(simulator.app) as server:
        client = httpx.Client(base_url=server.url, headers={"X-Api-Key": "sim-test-key"})
        ...                      # create, upload, then clock.advance(...) and poll

It answers the section 3 calls under ``/v1`` with the JSend envelope (``config.envelope =
"success"`` switches to ``{"success", "data"|"message"}``), 5xx as ``{"status": "error",
"message"}``. Choices the real API leaves open, made here so the client is tested against them:

- create answers 201 ``{"id"}``; uploads answer 200 ``{"id"}`` (the deployment id); DELETE,
  suspend, unsuspend and wakeup answer a string in ``data``.
- Each API key is one account: it sees only its projects (403 for another key's project),
  and project quota, ``/quotas`` and the upload limit count per key. Names are global.
- A name is taken until its project is ``deleted``. Deleted projects still answer GET (status
  ``deleted``); DELETE on a ``deleting`` project answers 200 again, on a ``deleted`` one 404.
- Uploads to a project that is deleting, deleted, suspended or not ``type: "upload"`` are 422.
  Only accepted uploads count toward ``upload_limit``; its 429 carries ``Retry-After``.
- ``extra`` is ``{}`` until a successful deployment finishes, then ``{"endpoint": host}``
  without a scheme; the endpoint stays while the deployment sleeps.
- Bodies above ``max_body_bytes`` are 413.

State lives in memory and is inspected with ``projects()``; every request is in ``requests``.
The configuration is read on every request, so a test may change ``simulator.config`` live.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections import defaultdict, deque
from collections.abc import Callable
from dataclasses import dataclass
from itertools import count
from typing import Any, Literal

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from devstack.simulator.faults import (
    API_KEY_SCOPE_KEY,
    RECORD_SCOPE_KEY,
    FaultKind,
    FaultQueue,
    FaultsAndRecording,
    RecordedRequest,
)
from devstack.simulator.model import (
    Deployment,
    Project,
    ProjectState,
    Timeline,
    iso,
)
from devstack.simulator.rules import (
    PROJECT_STATUSES,
    PROJECT_TYPES,
    SimulatorError,
    bad_request,
    check_description,
    check_display_name,
    check_project_type,
    check_settings,
    check_unique_name,
    parse_choice,
    parse_page,
    parse_since_seconds,
    parse_skip,
)
from devstack.simulator.uploads import (
    UploadManifest,
    manifest_from_json,
    manifest_from_zip,
    multipart_field,
)
from devstack.simulator.wire import Envelope, parse_json, read_body

__all__ = ["CreateOSSimulator", "RecordedRequest", "SimulatorConfig"]


@dataclass
class SimulatorConfig:
    api_keys: tuple[str, ...] = ("sim-test-key",)
    queue_seconds: float = 1.0
    building_seconds: float = 2.0
    deploying_seconds: float = 1.0
    delete_seconds: float = 1.0
    project_quota: int = 100
    upload_limit: int | None = None
    """Max accepted uploads per key within ``upload_window_seconds``; None is unlimited."""
    upload_window_seconds: float = 60.0
    envelope: Literal["jsend", "success"] = "jsend"
    sleep_after_seconds: float | None = None
    """A deployed deployment turns ``sleeping`` after this long awake; None never."""
    endpoint_domain: str = "sim.createos.local"
    max_body_bytes: int = 64 * 1024 * 1024


class CreateOSSimulator:
    """The simulated API and its in-memory state. Thread-safe: the app runs in a server
    thread while tests inspect state and queue faults from theirs."""

    def __init__(
        self, config: SimulatorConfig | None = None, clock: Callable[[], float] = time.time
    ) -> None:
        self.config = config if config is not None else SimulatorConfig()
        self.clock = clock
        self.requests: list[RecordedRequest] = []
        self._faults = FaultQueue()
        self._lock = threading.RLock()
        self._projects: dict[str, Project] = {}
        self._upload_times: defaultdict[str, deque[float]] = defaultdict(deque)
        self._sequence = count()
        self._envelope = Envelope(lambda: self.config.envelope)
        self.app = Starlette(
            routes=self._routes(),
            middleware=[
                Middleware(
                    FaultsAndRecording,
                    requests=self.requests,
                    faults=self._faults,
                    clock=clock,
                    accepts_key=self._accepts_key,
                    render_error=self._envelope.error,
                )
            ],
            exception_handlers={
                SimulatorError: self._envelope.on_simulator_error,
                HTTPException: self._envelope.on_http_exception,
            },
        )

    # -- inspection and fault injection -------------------------------------------------------

    def clear_requests(self) -> None:
        self.requests.clear()

    def writes(self) -> list[RecordedRequest]:
        """Recorded requests other than GET and HEAD."""
        return [r for r in self.requests if r.method not in ("GET", "HEAD")]

    def fail_next(
        self,
        method: str,
        path_pattern: str,
        *,
        status: int = 500,
        times: int = 1,
        message: str = "simulated failure",
        retry_after: int | None = None,
    ) -> None:
        """Answer the next ``times`` matching requests with ``status``, without applying them."""
        headers = {"Retry-After": str(retry_after)} if retry_after is not None else None
        self._faults.add(
            FaultKind.FAIL,
            method,
            path_pattern,
            times=times,
            status=status,
            message=message,
            headers=headers,
        )

    def delay_next(self, method: str, path_pattern: str, *, seconds: float, times: int = 1) -> None:
        """Apply the request at once, then really sleep ``seconds`` before answering: a client
        that times out has still changed state (an ambiguous failure)."""
        self._faults.add(FaultKind.DELAY, method, path_pattern, times=times, seconds=seconds)

    def fail_after_apply(
        self,
        method: str,
        path_pattern: str,
        *,
        status: int = 500,
        times: int = 1,
        message: str = "simulated failure",
    ) -> None:
        """Apply the request, then answer ``status`` instead of its real answer."""
        self._faults.add(
            FaultKind.FAIL_AFTER_APPLY,
            method,
            path_pattern,
            times=times,
            status=status,
            message=message,
        )

    def ok_with_fail_next(
        self, method: str, path_pattern: str, *, times: int = 1, message: str = "simulated failure"
    ) -> None:
        """Answer HTTP 200 with a failure envelope, without applying the request."""
        self._faults.add(FaultKind.OK_WITH_FAIL, method, path_pattern, times=times, message=message)

    def drop_after_apply(self, method: str, path_pattern: str, *, times: int = 1) -> None:
        """Apply the request, send the headers and half the body, then close the connection
        (httpx raises ``RemoteProtocolError``)."""
        self._faults.add(FaultKind.DROP_AFTER_APPLY, method, path_pattern, times=times)

    def projects(self) -> list[ProjectState]:
        """Every project ever created, deleted ones included, oldest first, as of now."""
        with self._lock:
            now = self.clock()
            return [p.snapshot(now) for p in self._projects.values()]

    def put_to_sleep(self, deployment_id: str) -> None:
        """Make a ``deployed`` deployment ``sleeping`` (so ``/wakeup`` has work to do)."""
        with self._lock:
            now = self.clock()
            for project in self._projects.values():
                deployment = project.find_deployment(deployment_id)
                if deployment is None:
                    continue
                if deployment.status(now) != "deployed":
                    raise ValueError(f"deployment {deployment_id} is {deployment.status(now)}")
                deployment.put_to_sleep(now)
                return
        raise KeyError(deployment_id)

    def reset(self) -> None:
        """Forget all projects, requests, queued faults and upload history; keep the config."""
        with self._lock:
            self._projects.clear()
            self._upload_times.clear()
            self._faults.clear()
            self.requests.clear()

    # -- routes -------------------------------------------------------------------------------

    def _routes(self) -> list[Route]:
        project = "/v1/projects/{pid}"
        deployment = project + "/deployments/{did}"
        return [
            Route("/v1/projects/available-unique-name", self._check_name, methods=["POST"]),
            Route("/v1/projects", self._create_project, methods=["POST"]),
            Route("/v1/projects", self._list_projects, methods=["GET"]),
            Route(project, self._get_project, methods=["GET"]),
            Route(project, self._delete_project, methods=["DELETE"]),
            Route(project + "/suspend", self._suspend, methods=["PUT"]),
            Route(project + "/unsuspend", self._unsuspend, methods=["PUT"]),
            Route(project + "/deployments/files", self._upload_text, methods=["PUT"]),
            Route(project + "/deployments/files/base64", self._upload_base64, methods=["PUT"]),
            Route(project + "/deployments/upload-zip", self._upload_zip, methods=["PUT"]),
            Route(project + "/deployments", self._list_deployments, methods=["GET"]),
            Route(deployment, self._get_deployment, methods=["GET"]),
            Route(deployment + "/build-logs", self._build_logs, methods=["GET"]),
            Route(deployment + "/deployment-logs", self._runtime_logs, methods=["GET"]),
            Route(deployment + "/wakeup", self._wakeup, methods=["POST"]),
            Route("/v1/quotas", self._quotas, methods=["GET"]),
        ]

    async def _check_name(self, request: Request) -> Response:
        body = await self._json_body(request)
        name = check_unique_name(body.get("uniqueName") if isinstance(body, dict) else None)
        with self._lock:
            available = not self._name_taken(name, self.clock())
        return self._envelope.ok({"isAvailable": available})

    async def _create_project(self, request: Request) -> Response:
        body = await self._json_body(request)
        if not isinstance(body, dict):
            raise bad_request("body must be a JSON object")
        unique_name = check_unique_name(body.get("uniqueName"))
        display_name = check_display_name(body.get("displayName"))
        description = check_description(body.get("description"))
        project_type = check_project_type(body.get("type"))
        settings = check_settings(body.get("settings"), project_type)
        source = body.get("source", {})
        app_id = body.get("appId")
        if not isinstance(source, dict):
            raise bad_request("source must be an object")
        if app_id is not None and not isinstance(app_id, str):
            raise bad_request("appId must be a string")
        key = self._caller(request)
        with self._lock:
            now = self.clock()
            if self._name_taken(unique_name, now):
                raise SimulatorError(409, f"uniqueName {unique_name} is already taken")
            if self._live_project_count(key, now) >= self.config.project_quota:
                raise SimulatorError(429, "project quota reached")
            project = Project(
                id=str(uuid.uuid4()),
                sequence=next(self._sequence),
                api_key=key,
                unique_name=unique_name,
                display_name=display_name,
                description=description,
                type=project_type,
                settings=settings,
                source=source,
                app_id=app_id,
                created_at=now,
                updated_at=now,
            )
            self._projects[project.id] = project
        return self._envelope.ok({"id": project.id}, status=201)

    async def _list_projects(self, request: Request) -> Response:
        query = request.query_params
        limit, offset = parse_page(query)
        project_type = parse_choice(query, "type", PROJECT_TYPES)
        status = parse_choice(query, "status", PROJECT_STATUSES)
        name = query.get("name", "").lower()
        key = self._caller(request)
        with self._lock:
            now = self.clock()
            matching = [
                p
                for p in self._projects.values()
                if p.api_key == key
                and (project_type is None or p.type == project_type)
                and (p.status(now) == status if status else p.status(now) != "deleted")
                and (name in p.unique_name or name in p.display_name.lower())
            ]
            matching.sort(key=lambda p: p.sequence, reverse=True)
            page = [p.to_wire(now) for p in matching[offset : offset + limit]]
        return self._envelope.page(page, len(matching), limit, offset)

    async def _get_project(self, request: Request) -> Response:
        with self._lock:
            return self._envelope.ok(self._project_for(request).to_wire(self.clock()))

    async def _delete_project(self, request: Request) -> Response:
        with self._lock:
            now = self.clock()
            project = self._project_for(request)
            status = project.status(now)
            if status == "deleted":
                raise SimulatorError(404, "project not found")
            if status == "active":
                project.request_deletion(now, self.config.delete_seconds)
        return self._envelope.ok("project deletion started")

    async def _suspend(self, request: Request) -> Response:
        return self._set_suspended(request, suspended=True)

    async def _unsuspend(self, request: Request) -> Response:
        return self._set_suspended(request, suspended=False)

    def _set_suspended(self, request: Request, *, suspended: bool) -> Response:
        with self._lock:
            now = self.clock()
            project = self._project_for(request)
            status = project.status(now)
            if status != "active":
                raise SimulatorError(422, f"project is {status}")
            if (project.suspended_at is not None) == suspended:
                raise SimulatorError(
                    422, f"project is already {'' if suspended else 'un'}suspended"
                )
            project.set_suspended(now, suspended)
        return self._envelope.ok("project suspended" if suspended else "project unsuspended")

    async def _upload_text(self, request: Request) -> Response:
        return await self._upload(request, "text")

    async def _upload_base64(self, request: Request) -> Response:
        return await self._upload(request, "base64")

    async def _upload_zip(self, request: Request) -> Response:
        return await self._upload(request, "zip")

    async def _upload(self, request: Request, form: Literal["text", "base64", "zip"]) -> Response:
        with self._lock:
            self._check_uploadable(self._project_for(request), self.clock())
        manifest = await self._read_manifest(request, form)
        record = self._record(request)
        record.file_count = len(manifest.files)
        record.file_names = tuple(f.path for f in manifest.files)
        key = self._caller(request)
        config = self.config
        with self._lock:
            now = self.clock()
            # Checked again: the project may have changed while the body was read.
            project = self._project_for(request)
            self._check_uploadable(project, now)
            self._take_upload_slot(key, now)
            deployment_id = str(uuid.uuid4())
            project.deployments.append(
                Deployment(
                    id=deployment_id,
                    project_id=project.id,
                    version_number=len(project.deployments) + 1,
                    files=tuple(manifest.files),
                    marker=manifest.marker,
                    endpoint=f"{project.unique_name}-{deployment_id[:8]}.{config.endpoint_domain}",
                    timeline=Timeline.starting(
                        now, config.queue_seconds, config.building_seconds, config.deploying_seconds
                    ),
                    sleep_after=config.sleep_after_seconds,
                )
            )
            project.updated_at = now
        return self._envelope.ok({"id": deployment_id})

    async def _read_manifest(
        self, request: Request, form: Literal["text", "base64", "zip"]
    ) -> UploadManifest:
        body = await read_body(request, self.config.max_body_bytes)
        if form == "zip":
            content_type = request.headers.get("content-type", "")
            return manifest_from_zip(multipart_field(body, content_type, "file"))
        payload = parse_json(body)
        del body  # the decoded JSON is now the only copy
        return manifest_from_json(payload, encoded=form == "base64")

    async def _list_deployments(self, request: Request) -> Response:
        limit, offset = parse_page(request.query_params)
        with self._lock:
            now = self.clock()
            deployments = self._project_for(request).deployments[::-1]
            page = [d.to_wire(now) for d in deployments[offset : offset + limit]]
        return self._envelope.page(page, len(deployments), limit, offset)

    async def _get_deployment(self, request: Request) -> Response:
        with self._lock:
            return self._envelope.ok(self._deployment_for(request).to_wire(self.clock()))

    async def _build_logs(self, request: Request) -> Response:
        skip = parse_skip(request.query_params)
        with self._lock:
            lines = self._deployment_for(request).build_log(self.clock())
        entries = [
            {"lineNumber": number, "log": line.text, "stage": line.stage, "ts": iso(line.at)}
            for number, line in enumerate(lines, start=1)
        ]
        return self._envelope.ok(entries[skip:])

    async def _runtime_logs(self, request: Request) -> Response:
        since = parse_since_seconds(request.query_params)
        with self._lock:
            now = self.clock()
            deployment = self._deployment_for(request)
            status = deployment.status(now)
            if status != "deployed":
                raise SimulatorError(422, f"deployment is {status}, not deployed")
            return self._envelope.ok(deployment.runtime_log(now, since))

    async def _wakeup(self, request: Request) -> Response:
        with self._lock:
            now = self.clock()
            deployment = self._deployment_for(request)
            status = deployment.status(now)
            if status != "sleeping":
                raise SimulatorError(422, f"deployment is {status}, not sleeping")
            deployment.wake(now)
        return self._envelope.ok("deployment is waking up")

    async def _quotas(self, request: Request) -> Response:
        with self._lock:
            current = self._live_project_count(self._caller(request), self.clock())
        maximum = self.config.project_quota
        return self._envelope.ok(
            {
                "projects": {
                    "current": current,
                    "max": maximum,
                    "remaining": max(0, maximum - current),
                }
            }
        )

    # -- helpers (the state ones run under self._lock) ----------------------------------------

    def _accepts_key(self, key: str | None) -> bool:
        return key is not None and key in self.config.api_keys

    def _caller(self, request: Request) -> str:
        key: str = request.scope[API_KEY_SCOPE_KEY]
        return key

    def _record(self, request: Request) -> RecordedRequest:
        record: RecordedRequest = request.scope[RECORD_SCOPE_KEY]
        return record

    def _project_for(self, request: Request) -> Project:
        project = self._projects.get(request.path_params["pid"])
        if project is None:
            raise SimulatorError(404, "project not found")
        if project.api_key != self._caller(request):
            raise SimulatorError(403, "project belongs to another account")
        return project

    def _deployment_for(self, request: Request) -> Deployment:
        deployment = self._project_for(request).find_deployment(request.path_params["did"])
        if deployment is None:
            raise SimulatorError(404, "deployment not found")
        return deployment

    def _name_taken(self, unique_name: str, now: float) -> bool:
        return any(
            p.unique_name == unique_name and p.status(now) != "deleted"
            for p in self._projects.values()
        )

    def _live_project_count(self, key: str, now: float) -> int:
        return sum(
            1 for p in self._projects.values() if p.api_key == key and p.status(now) != "deleted"
        )

    def _check_uploadable(self, project: Project, now: float) -> None:
        status = project.status(now)
        if status != "active":
            raise SimulatorError(422, f"project is {status}")
        if project.suspended_at is not None:
            raise SimulatorError(422, "project is suspended")
        if project.type != "upload":
            raise SimulatorError(422, f"not an upload project (type {project.type})")

    def _take_upload_slot(self, key: str, now: float) -> None:
        times = self._upload_times[key]
        window = self.config.upload_window_seconds
        while times and times[0] <= now - window:
            times.popleft()
        limit = self.config.upload_limit
        if limit is not None and len(times) >= limit:
            retry_after = max(1, math.ceil(times[-limit] + window - now))
            raise SimulatorError(
                429,
                "deployment limit reached, try again later",
                {"Retry-After": str(retry_after)},
            )
        times.append(now)

    async def _json_body(self, request: Request) -> Any:
        """The decoded JSON body (None if empty), also put on the request's record."""
        payload = parse_json(await read_body(request, self.config.max_body_bytes))
        self._record(request).json = payload
        return payload
