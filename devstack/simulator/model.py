"""The simulated CreateOS world: projects, deployments, and how they change as time passes.

Nothing runs in the background. Every status, log line and endpoint is a pure function of the
timestamps stored at creation and the ``now`` passed in, so a test that steps a manual clock
sees exactly the same story on every run:

    deployment   queue ──queue_seconds──> building ──building_seconds──> deploying
                 ──deploying_seconds──> deployed | error | crashing
                 (a build error stops at the end of ``building`` with ``build_error``)
                 deployed ──sleep_after_seconds or put_to_sleep()──> sleeping ──wakeup──> deployed
    project      active ──DELETE──> deleting ──delete_seconds──> deleted

Durations are copied into each record when it is created, so changing the configuration later
does not rewrite history. Only file names and sizes are kept, never contents, except a marker
file's content (truncated), which goes into the logs.
"""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

RUNTIME_LOG_INTERVAL_SECONDS = 15.0
MAX_RUNTIME_LOG_LINES = 500


class Outcome(enum.Enum):
    """Where a deployment ends; chosen at upload time by marker files."""

    DEPLOYED = "deployed"
    BUILD_ERROR = "build_error"
    ERROR = "error"
    CRASHING = "crashing"


@dataclass(frozen=True)
class UploadedFile:
    path: str
    size: int


@dataclass(frozen=True)
class Marker:
    """A ``SIMULATE_*`` file found in an upload, and the outcome it forces."""

    path: str
    outcome: Outcome
    content: str


@dataclass(frozen=True)
class Timeline:
    created_at: float
    building_at: float
    deploying_at: float
    finished_at: float

    @classmethod
    def starting(cls, now: float, queue: float, building: float, deploying: float) -> Timeline:
        return cls(now, now + queue, now + queue + building, now + queue + building + deploying)


@dataclass(frozen=True)
class LogLine:
    at: float
    stage: str
    text: str


def iso(timestamp: float) -> str:
    """RFC 3339 UTC with milliseconds, as the API's ``createdAt`` and log ``ts`` look."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True)
class DeploymentState:
    """A read-only view of one deployment for test assertions (``CreateOSSimulator.projects``)."""

    id: str
    project_id: str
    version_number: int
    status: str
    endpoint: str | None
    created_at: float
    files: tuple[UploadedFile, ...]
    marker: Marker | None


@dataclass(frozen=True)
class ProjectState:
    """A read-only view of one project, its deployments oldest first."""

    id: str
    api_key: str
    unique_name: str
    display_name: str
    description: str | None
    type: str
    status: str
    suspended: bool
    settings: dict[str, Any]
    created_at: float
    deployments: tuple[DeploymentState, ...]


@dataclass
class Deployment:
    id: str
    project_id: str
    version_number: int
    files: tuple[UploadedFile, ...]
    marker: Marker | None
    endpoint: str
    timeline: Timeline
    sleep_after: float | None
    asleep_since: float | None = None
    awake_since: float | None = None

    @property
    def outcome(self) -> Outcome:
        return self.marker.outcome if self.marker else Outcome.DEPLOYED

    def phase(self, now: float) -> tuple[str, float]:
        """``(status, since)``: the status at ``now`` and when it began."""
        t = self.timeline
        if now < t.building_at:
            return "queue", t.created_at
        if now < t.deploying_at:
            return "building", t.building_at
        if self.outcome is Outcome.BUILD_ERROR:
            return Outcome.BUILD_ERROR.value, t.deploying_at
        if now < t.finished_at:
            return "deploying", t.deploying_at
        if self.outcome is not Outcome.DEPLOYED:
            return self.outcome.value, t.finished_at
        if self.asleep_since is not None:
            return "sleeping", self.asleep_since
        awake = self.awake_since if self.awake_since is not None else t.finished_at
        if self.sleep_after is not None and now >= awake + self.sleep_after:
            return "sleeping", awake + self.sleep_after
        return "deployed", awake

    def status(self, now: float) -> str:
        return self.phase(now)[0]

    def live_endpoint(self, now: float) -> str | None:
        """Set once a successful deployment has finished; kept while it sleeps."""
        if self.outcome is Outcome.DEPLOYED and now >= self.timeline.finished_at:
            return self.endpoint
        return None

    def put_to_sleep(self, now: float) -> None:
        self.asleep_since = now

    def wake(self, now: float) -> None:
        self.asleep_since = None
        self.awake_since = now

    def build_log(self, now: float) -> list[LogLine]:
        return [line for line in self._build_script() if line.at <= now]

    def _build_script(self) -> list[LogLine]:
        t, building = self.timeline, self.timeline.deploying_at - self.timeline.building_at
        total = sum(f.size for f in self.files)
        names = ", ".join(f.path for f in self.files[:5])
        more = f" and {len(self.files) - 5} more" if len(self.files) > 5 else ""
        script = [
            LogLine(t.created_at, "queue", f"Deployment v{self.version_number} queued"),
            LogLine(
                t.building_at, "build", f"Build started: {len(self.files)} files, {total} bytes"
            ),
            LogLine(t.building_at + building * 0.25, "build", f"Files: {names}{more}"),
            LogLine(t.building_at + building * 0.5, "build", "Installing dependencies"),
            LogLine(t.building_at + building * 0.75, "build", "Running build command"),
        ]
        marker = self.marker
        if marker is not None and marker.outcome is Outcome.BUILD_ERROR:
            script.append(
                LogLine(
                    t.deploying_at,
                    "build",
                    f"Build failed: marker file {marker.path} (SIMULATE_BUILD_ERROR) found",
                )
            )
            if marker.content:
                script.append(LogLine(t.deploying_at, "build", marker.content))
            script.append(
                LogLine(t.deploying_at, "build", "Build finished with status build_error")
            )
            return script
        script.append(LogLine(t.deploying_at, "build", "Build succeeded"))
        script.append(LogLine(t.deploying_at, "deploy", "Deploying"))
        if marker is None:
            script.append(LogLine(t.finished_at, "deploy", f"Deployed at {self.endpoint}"))
            return script
        name = "SIMULATE_ERROR" if marker.outcome is Outcome.ERROR else "SIMULATE_CRASH"
        reason = (
            "Deployment failed"
            if marker.outcome is Outcome.ERROR
            else "Container exited with code 1, restarting"
        )
        script.append(
            LogLine(t.finished_at, "deploy", f"{reason}: marker file {marker.path} ({name}) found")
        )
        if marker.content:
            script.append(LogLine(t.finished_at, "deploy", marker.content))
        return script

    def runtime_log(self, now: float, since_seconds: float) -> str:
        """Fake application output since ``now - since_seconds``: a start line, then a health
        check every 15 s. Meaningful only while ``deployed``."""
        started = self.timeline.finished_at
        start = max(started, now - since_seconds)
        lines: list[str] = []
        if start <= started <= now:
            lines.append(f"{iso(started)} Server started, listening")
        first_tick = max(1, math.ceil((start - started) / RUNTIME_LOG_INTERVAL_SECONDS))
        last_tick = math.floor((now - started) / RUNTIME_LOG_INTERVAL_SECONDS)
        first_tick = max(first_tick, last_tick - MAX_RUNTIME_LOG_LINES + 1)
        for tick in range(first_tick, last_tick + 1):
            at = started + tick * RUNTIME_LOG_INTERVAL_SECONDS
            lines.append(f"{iso(at)} GET /health 200")
        return "\n".join(lines)

    def to_wire(self, now: float) -> dict[str, Any]:
        status, since = self.phase(now)
        endpoint = self.live_endpoint(now)
        return {
            "id": self.id,
            "projectId": self.project_id,
            "status": status,
            "versionNumber": self.version_number,
            "extra": {"endpoint": endpoint} if endpoint else {},
            "createdAt": iso(self.timeline.created_at),
            "updatedAt": iso(since),
        }

    def snapshot(self, now: float) -> DeploymentState:
        return DeploymentState(
            id=self.id,
            project_id=self.project_id,
            version_number=self.version_number,
            status=self.status(now),
            endpoint=self.live_endpoint(now),
            created_at=self.timeline.created_at,
            files=self.files,
            marker=self.marker,
        )


@dataclass
class Project:
    id: str
    sequence: int
    api_key: str
    unique_name: str
    display_name: str
    description: str | None
    type: str
    settings: dict[str, Any]
    source: dict[str, Any]
    app_id: str | None
    created_at: float
    delete_seconds: float = 0.0
    deletion_requested_at: float | None = None
    suspended_at: float | None = None
    updated_at: float = 0.0
    deployments: list[Deployment] = field(default_factory=list)

    def status(self, now: float) -> str:
        if self.deletion_requested_at is None:
            return "active"
        if now < self.deletion_requested_at + self.delete_seconds:
            return "deleting"
        return "deleted"

    def request_deletion(self, now: float, delete_seconds: float) -> None:
        self.deletion_requested_at = now
        self.delete_seconds = delete_seconds
        self.updated_at = now

    def set_suspended(self, now: float, suspended: bool) -> None:
        self.suspended_at = now if suspended else None
        self.updated_at = now

    def find_deployment(self, deployment_id: str) -> Deployment | None:
        return next((d for d in self.deployments if d.id == deployment_id), None)

    def to_wire(self, now: float) -> dict[str, Any]:
        status = self.status(now)
        changed = self.updated_at
        if status == "deleted" and self.deletion_requested_at is not None:
            changed = self.deletion_requested_at + self.delete_seconds
        return {
            "id": self.id,
            "uniqueName": self.unique_name,
            "displayName": self.display_name,
            "description": self.description,
            "type": self.type,
            "status": status,
            "source": self.source,
            "settings": self.settings,
            "appId": self.app_id,
            "suspendedAt": iso(self.suspended_at) if self.suspended_at is not None else None,
            "createdAt": iso(self.created_at),
            "updatedAt": iso(changed),
        }

    def snapshot(self, now: float) -> ProjectState:
        return ProjectState(
            id=self.id,
            api_key=self.api_key,
            unique_name=self.unique_name,
            display_name=self.display_name,
            description=self.description,
            type=self.type,
            status=self.status(now),
            suspended=self.suspended_at is not None,
            settings=dict(self.settings),
            created_at=self.created_at,
            deployments=tuple(d.snapshot(now) for d in self.deployments),
        )
