"""Typed results read tolerantly from payloads: pure, no I/O."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.upstream import BuildLogLine, Deployment, Project, UpstreamError


def test_project_from_payload() -> None:
    project = Project.from_payload(
        {
            "id": "p1",
            "uniqueName": "my-app",
            "displayName": "My App",
            "status": "active",
            "createdAt": "2027-01-15T08:00:00.000Z",
            "type": "upload",
            "settings": {"port": 3000},
        }
    )
    assert project == Project(
        id="p1",
        unique_name="my-app",
        display_name="My App",
        status="active",
        created_at="2027-01-15T08:00:00.000Z",
        type="upload",
    )


def test_project_tolerates_missing_optional_fields() -> None:
    project = Project.from_payload({"id": "p1", "uniqueName": "my-app", "status": "suspended?"})
    assert project.status == "suspended?"
    assert project.display_name == ""
    assert project.created_at is None
    assert project.type is None


@pytest.mark.parametrize(
    "payload", [None, "p1", ["p1"], {"uniqueName": "x"}, {"id": "", "uniqueName": "x"}]
)
def test_malformed_project_raises_upstream_error(payload: Any) -> None:
    with pytest.raises(UpstreamError):
        Project.from_payload(payload)


@pytest.mark.parametrize(
    ("extra", "endpoint"),
    [
        ({"endpoint": "my-app.nodeops.app"}, "https://my-app.nodeops.app"),
        ({"endpoint": "https://my-app.nodeops.app"}, "https://my-app.nodeops.app"),
        ({"endpoint": "http://localhost:8080"}, "http://localhost:8080"),
        ({"endpoint": ""}, None),
        ({}, None),
        (None, None),
    ],
)
def test_deployment_endpoint_gets_a_scheme(extra: Any, endpoint: str | None) -> None:
    payload = {"id": "d1", "status": "deployed", "extra": extra, "versionNumber": 2}
    deployment = Deployment.from_payload(payload)
    assert deployment.endpoint == endpoint
    assert deployment.version == 2


def test_deployment_unknown_status_parses_and_is_not_live() -> None:
    deployment = Deployment.from_payload({"id": "d1", "status": "hibernating"})
    assert deployment.status == "hibernating"
    assert not deployment.is_live
    assert not deployment.is_in_progress
    assert not deployment.is_failed
    assert deployment.endpoint is None
    assert deployment.version is None


@pytest.mark.parametrize(
    ("status", "live", "in_progress", "failed"),
    [
        ("queue", False, True, False),
        ("building", False, True, False),
        ("deploying", False, True, False),
        ("deployed", True, False, False),
        ("build_error", False, False, True),
        ("error", False, False, True),
        ("cancelled", False, False, True),
        ("crashing", False, False, False),
        ("sleeping", False, False, False),
    ],
)
def test_deployment_status_groups(status: str, live: bool, in_progress: bool, failed: bool) -> None:
    deployment = Deployment.from_payload({"id": "d1", "status": status})
    assert (deployment.is_live, deployment.is_in_progress, deployment.is_failed) == (
        live,
        in_progress,
        failed,
    )


def test_build_log_line() -> None:
    line = BuildLogLine.from_payload(
        {"lineNumber": 4, "log": "Installing", "stage": "build", "ts": "t"},
        fallback_line_number=99,
    )
    assert line == BuildLogLine(line_number=4, log="Installing", stage="build", ts="t")
    bare = BuildLogLine.from_payload({"log": "x"}, fallback_line_number=7)
    assert bare == BuildLogLine(line_number=7, log="x", stage=None, ts=None)


def test_results_are_frozen() -> None:
    deployment = Deployment.from_payload({"id": "d1", "status": "queue"})
    with pytest.raises(AttributeError):
        deployment.status = "deployed"  # type: ignore[misc]
