"""The CreateOS client against the simulator over real HTTP.

One simulator server per module; each test starts from an empty simulator with a fresh
configuration. Backoff sleeps are recorded, not slept, so retry tests run fast and can assert
the delays. Faults come from the simulator (500s, 429s, delays, applied-then-failed writes);
the only fault made up here is a connection refused, produced for real by a closed port.
"""

from __future__ import annotations

import base64
import io
import re
import socket
import zipfile
from collections.abc import AsyncIterator, Iterator

import pytest

from devstack.clock import ManualClock
from devstack.server_thread import ServerThread
from devstack.simulator.server import CreateOSSimulator, RecordedRequest, SimulatorConfig
from gateway.upstream import (
    CreateOSClient,
    UpstreamError,
    UpstreamForbidden,
    UpstreamNameTaken,
    UpstreamNotFound,
    UpstreamRejected,
    UpstreamThrottled,
    UpstreamUnauthorized,
    UpstreamUnreachable,
)

KEY = "sim-test-key"
OTHER_KEY = "sim-other-key"
SETTINGS = {"framework": "express", "runtime": "node:20", "port": 3000}
PROJECTS = r"/v1/projects"
PROJECT = r"/v1/projects/[^/]+"
UPLOAD_BASE64 = r"/v1/projects/[^/]+/deployments/files/base64"
DEPLOYMENT = r"/v1/projects/[^/]+/deployments/[^/]+"
ALL_TIMES = 10**6  # lets a deploy finish on the manual clock


class RecordedSleeps:
    """A ``sleep`` that records the backoff delays and returns at once."""

    def __init__(self) -> None:
        self.delays: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)


def config() -> SimulatorConfig:
    return SimulatorConfig(api_keys=(KEY, OTHER_KEY))


@pytest.fixture(scope="module")
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(scope="module")
def served(clock: ManualClock) -> Iterator[tuple[CreateOSSimulator, str]]:
    simulator = CreateOSSimulator(config(), clock=clock)
    with ServerThread(simulator.app) as server:
        yield simulator, server.url


@pytest.fixture
def simulator(served: tuple[CreateOSSimulator, str]) -> CreateOSSimulator:
    simulator, _ = served
    simulator.reset()
    simulator.config = config()
    return simulator


@pytest.fixture
def base_url(served: tuple[CreateOSSimulator, str]) -> str:
    return served[1]


@pytest.fixture
def sleeps() -> RecordedSleeps:
    return RecordedSleeps()


@pytest.fixture
async def client(
    simulator: CreateOSSimulator, base_url: str, sleeps: RecordedSleeps
) -> AsyncIterator[CreateOSClient]:
    async with CreateOSClient(base_url, KEY, sleep=sleeps) as client:
        yield client


async def create(client: CreateOSClient, name: str = "my-app") -> str:
    return await client.create_project(
        unique_name=name, display_name="My App", description=None, settings=SETTINGS
    )


def calls(simulator: CreateOSSimulator, method: str, path_regex: str) -> list[RecordedRequest]:
    pattern = re.compile(path_regex)
    return [r for r in simulator.requests if r.method == method and pattern.fullmatch(r.path)]


def free_port() -> int:
    """A port nothing listens on (bound and released; a connect to it is refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


# --- the happy path ----------------------------------------------------------------------


async def test_create_upload_and_deploy(
    client: CreateOSClient, simulator: CreateOSSimulator, clock: ManualClock
) -> None:
    assert await client.is_name_available("My-App")
    project_id = await client.create_project(
        unique_name="My-App",
        display_name="My App",
        description="An app of mine",
        settings=SETTINGS,
    )
    (create_call,) = calls(simulator, "POST", PROJECTS)
    assert create_call.json == {
        "uniqueName": "my-app",
        "displayName": "My App",
        "description": "An app of mine",
        "type": "upload",
        "source": {},
        "settings": SETTINGS,
    }
    assert create_call.api_key == KEY
    assert not await client.is_name_available("MY-APP")

    project = await client.get_project(project_id)
    assert (project.id, project.unique_name, project.display_name) == (
        project_id,
        "my-app",
        "My App",
    )
    assert (project.status, project.type) == ("active", "upload")
    assert project.created_at is not None

    deployment_id = await client.upload_files(
        project_id, [("package.json", b'{"name": "app"}'), ("src/index.js", b"\x00\x01binary")]
    )
    queued = await client.get_deployment(project_id, deployment_id)
    assert (queued.id, queued.status, queued.endpoint, queued.version) == (
        deployment_id,
        "queue",
        None,
        1,
    )
    assert queued.is_in_progress
    clock.advance(1.5)
    assert (await client.get_deployment(project_id, deployment_id)).status == "building"
    clock.advance(10)
    deployed = await client.get_deployment(project_id, deployment_id)
    assert deployed.is_live
    assert deployed.endpoint is not None
    assert deployed.endpoint.startswith("https://my-app-")
    assert deployed.endpoint.endswith(".sim.createos.local")

    (state,) = simulator.projects()
    assert [(f.path, f.size) for f in state.deployments[0].files] == [
        ("package.json", 15),
        ("src/index.js", 8),
    ]
    assert [d.id for d in await client.list_deployments(project_id)] == [deployment_id]


async def test_upload_base64_passes_content_through(
    client: CreateOSClient, simulator: CreateOSSimulator
) -> None:
    project_id = await create(client)
    content = bytes(range(256)) * 4096  # 1 MiB, every byte value
    files = [
        ("bin/blob", base64.b64encode(content).decode()),
        ('odd "name" ü.txt', base64.b64encode(b"x").decode()),
    ]
    deployment_id = await client.upload_files_base64(project_id, files)
    (upload,) = calls(simulator, "PUT", UPLOAD_BASE64)
    assert upload.file_names == ("bin/blob", 'odd "name" ü.txt')
    (state,) = simulator.projects()
    assert state.deployments[0].id == deployment_id
    assert [f.size for f in state.deployments[0].files] == [len(content), 1]


async def test_zip_upload(client: CreateOSClient, simulator: CreateOSSimulator) -> None:
    project_id = await create(client)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr("index.js", "console.log('hi')")
        zipped.writestr("lib/util.js", "module.exports = {}")
    deployment_id = await client.upload_zip(project_id, archive.getvalue())
    (state,) = simulator.projects()
    (deployment,) = state.deployments
    assert deployment.id == deployment_id
    assert [f.path for f in deployment.files] == ["index.js", "lib/util.js"]


async def test_each_upload_is_a_new_deployment(client: CreateOSClient) -> None:
    project_id = await create(client)
    first = await client.upload_files(project_id, [("a.txt", b"1")])
    second = await client.upload_files(project_id, [("a.txt", b"2")])
    deployments = await client.list_deployments(project_id)
    assert [(d.id, d.version) for d in deployments] == [(second, 2), (first, 1)]


async def test_upload_limits_are_checked_before_sending(
    client: CreateOSClient, simulator: CreateOSSimulator
) -> None:
    with pytest.raises(ValueError, match="101 files"):
        await client.upload_files("p", [(f"f{i}", b"") for i in range(101)])
    with pytest.raises(ValueError, match="at least one"):
        await client.upload_files("p", [])
    for bad in ("not base64!", 'ab"}]', "YWJj\nZGVm", "ünïcode"):
        with pytest.raises(ValueError, match="not base64"):
            await client.upload_files_base64("p", [("a.txt", bad)])
    assert simulator.requests == []


async def test_build_logs_honour_skip(client: CreateOSClient, clock: ManualClock) -> None:
    project_id = await create(client)
    deployment_id = await client.upload_files(project_id, [("a.txt", b"1")])
    early = await client.build_logs(project_id, deployment_id)
    assert [line.line_number for line in early] == [1]
    assert early[0].stage == "queue"
    assert early[0].ts is not None
    clock.advance(ALL_TIMES)
    lines = await client.build_logs(project_id, deployment_id)
    assert [line.line_number for line in lines] == list(range(1, len(lines) + 1))
    rest = await client.build_logs(project_id, deployment_id, skip=3)
    assert rest == lines[3:]
    assert await client.build_logs(project_id, deployment_id, skip=len(lines)) == []


async def test_runtime_logs_are_422_until_deployed(
    client: CreateOSClient, simulator: CreateOSSimulator, clock: ManualClock
) -> None:
    project_id = await create(client)
    deployment_id = await client.upload_files(project_id, [("a.txt", b"1")])
    with pytest.raises(UpstreamRejected) as caught:
        await client.runtime_logs(project_id, deployment_id)
    assert caught.value.upstream_status == 422
    assert len(calls(simulator, "GET", DEPLOYMENT + "/deployment-logs")) == 1  # not retried
    clock.advance(ALL_TIMES)
    logs = await client.runtime_logs(project_id, deployment_id, since_seconds=ALL_TIMES)
    assert "Server started" in logs
    assert calls(simulator, "GET", DEPLOYMENT + "/deployment-logs")[-1].query == {
        "since-seconds": str(ALL_TIMES)
    }


async def test_delete_suspend_and_unsuspend(
    client: CreateOSClient, simulator: CreateOSSimulator
) -> None:
    project_id = await create(client)
    await client.suspend_project(project_id)
    assert simulator.projects()[0].suspended
    await client.unsuspend_project(project_id)
    assert not simulator.projects()[0].suspended
    await client.delete_project(project_id)
    assert (await client.get_project(project_id)).status == "deleting"


async def test_check_health(client: CreateOSClient, simulator: CreateOSSimulator) -> None:
    await client.check_health()
    assert [r.path for r in simulator.requests] == ["/v1/quotas"]


async def test_base_url_may_already_end_in_v1(base_url: str, simulator: CreateOSSimulator) -> None:
    async with CreateOSClient(base_url + "/v1/", KEY) as client:
        await client.check_health()
    assert [r.path for r in simulator.requests] == ["/v1/quotas"]


# --- pagination --------------------------------------------------------------------------


async def test_list_projects_follows_pagination(
    client: CreateOSClient, simulator: CreateOSSimulator
) -> None:
    names = [f"page-{i:02d}" for i in range(45)]
    for name in names:
        await create(client, name)
    projects = await client.list_projects()
    assert sorted(p.unique_name for p in projects) == names
    pages = calls(simulator, "GET", PROJECTS)
    assert [(r.query["limit"], r.query["offset"]) for r in pages] == [
        ("20", "0"),
        ("20", "20"),
        ("20", "40"),
    ]


async def test_find_project_by_name_matches_exactly_across_pages(
    client: CreateOSClient, simulator: CreateOSSimulator
) -> None:
    target = await create(client, "pgx-0000")
    # Newer projects whose names contain the target's push it to the second page.
    for i in range(21):
        await create(client, f"pgx-0000-{i:02d}")
    await create(client, "other")

    found = await client.find_project_by_name("PGX-0000")
    assert found is not None
    assert (found.id, found.unique_name) == (target, "pgx-0000")
    lists = calls(simulator, "GET", PROJECTS)
    assert [r.query["name"] for r in lists] == ["pgx-0000", "pgx-0000"]
    assert await client.find_project_by_name("pgx-000") is None
    assert await client.find_project_by_name("nothing-here") is None


async def test_find_project_by_name_sees_only_our_projects(
    client: CreateOSClient, base_url: str
) -> None:
    async with CreateOSClient(base_url, OTHER_KEY) as other:
        await create(other, "theirs")
    assert await client.find_project_by_name("theirs") is None


# --- errors ------------------------------------------------------------------------------


async def test_taken_name_is_409(client: CreateOSClient, simulator: CreateOSSimulator) -> None:
    await create(client, "taken-name")
    with pytest.raises(UpstreamNameTaken) as caught:
        await create(client, "Taken-Name")
    assert caught.value.upstream_status == 409
    assert not caught.value.may_have_applied
    assert caught.value.operation == "POST /projects"
    assert "already taken" in (caught.value.internal or "")
    assert "taken-name" not in caught.value.public
    assert len(calls(simulator, "POST", PROJECTS)) == 2


async def test_unknown_project_is_404_and_not_retried(
    client: CreateOSClient, simulator: CreateOSSimulator, sleeps: RecordedSleeps
) -> None:
    with pytest.raises(UpstreamNotFound) as caught:
        await client.get_project("00000000-0000-0000-0000-000000000000")
    assert caught.value.upstream_status == 404
    assert caught.value.status == 502  # rendered as a gateway error if nobody catches it
    assert len(simulator.requests) == 1
    assert sleeps.delays == []
    with pytest.raises(UpstreamNotFound):
        await client.delete_project("00000000-0000-0000-0000-000000000000")


async def test_another_keys_project_is_403(client: CreateOSClient, base_url: str) -> None:
    async with CreateOSClient(base_url, OTHER_KEY) as other:
        theirs = await create(other, "their-app")
    with pytest.raises(UpstreamForbidden) as caught:
        await client.get_project(theirs)
    assert caught.value.upstream_status == 403
    with pytest.raises(UpstreamForbidden):
        await client.upload_files(theirs, [("a.txt", b"1")])


async def test_rule_violations_are_rejected(
    client: CreateOSClient, simulator: CreateOSSimulator
) -> None:
    with pytest.raises(UpstreamRejected) as caught:
        await client.create_project(
            unique_name="ok-name", display_name="OK name", description=None, settings={}
        )
    assert caught.value.upstream_status == 400
    assert "framework" in (caught.value.internal or "")
    assert len(calls(simulator, "POST", PROJECTS)) == 1

    project_id = await create(client)
    await client.suspend_project(project_id)
    with pytest.raises(UpstreamRejected) as upload:
        await client.upload_files(project_id, [("a.txt", b"1")])
    assert upload.value.upstream_status == 422


async def test_a_refused_key_is_unauthorized(base_url: str, simulator: CreateOSSimulator) -> None:
    async with CreateOSClient(base_url, "skp_wrong", sleep=RecordedSleeps()) as client:
        with pytest.raises(UpstreamUnauthorized) as caught:
            await client.check_health()
        with pytest.raises(UpstreamUnauthorized):
            await client.list_projects()
    assert caught.value.upstream_status == 401
    assert caught.value.public == "GET /v1/quotas got HTTP 401"
    assert len(simulator.requests) == 2


async def test_200_with_fail_is_a_failure(
    client: CreateOSClient, simulator: CreateOSSimulator
) -> None:
    simulator.ok_with_fail_next("POST", PROJECTS, message="Account has no credits")
    with pytest.raises(UpstreamRejected) as caught:
        await create(client)
    assert caught.value.upstream_status == 200
    assert "no credits" in (caught.value.internal or "")
    assert "credits" not in caught.value.public
    assert simulator.projects() == []

    simulator.ok_with_fail_next("GET", PROJECTS)
    with pytest.raises(UpstreamRejected):
        await client.list_projects()
    assert len(calls(simulator, "GET", PROJECTS)) == 1  # a 200 is not retried


async def test_success_envelope_mode(
    client: CreateOSClient, simulator: CreateOSSimulator, clock: ManualClock
) -> None:
    simulator.config.envelope = "success"
    assert await client.is_name_available("env-app")
    project_id = await create(client, "env-app")
    deployment_id = await client.upload_files(project_id, [("a.txt", b"1")])
    clock.advance(ALL_TIMES)
    deployment = await client.get_deployment(project_id, deployment_id)
    assert deployment.endpoint is not None
    assert deployment.endpoint.startswith("https://")
    assert [p.id for p in await client.list_projects()] == [project_id]
    with pytest.raises(UpstreamNameTaken) as caught:
        await create(client, "env-app")
    assert "already taken" in (caught.value.internal or "")
    simulator.ok_with_fail_next("GET", PROJECT)
    with pytest.raises(UpstreamRejected):
        await client.get_project(project_id)


# --- retries of safe calls ---------------------------------------------------------------


async def test_500_on_get_is_retried(
    client: CreateOSClient, simulator: CreateOSSimulator, sleeps: RecordedSleeps
) -> None:
    project_id = await create(client)
    simulator.fail_next("GET", PROJECT, status=500, times=2)
    project = await client.get_project(project_id)
    assert project.id == project_id
    assert len(calls(simulator, "GET", PROJECT)) == 3
    assert len(sleeps.delays) == 2
    assert 0.1 <= sleeps.delays[0] <= 0.2  # backoff_base 0.2 with jitter in [50%, 100%]
    assert 0.2 <= sleeps.delays[1] <= 0.4


async def test_retries_give_up_after_max_attempts(
    client: CreateOSClient, simulator: CreateOSSimulator, sleeps: RecordedSleeps
) -> None:
    simulator.fail_next("GET", PROJECTS, status=503, times=5)
    with pytest.raises(UpstreamError) as caught:
        await client.list_projects()
    assert type(caught.value) is UpstreamError
    assert caught.value.upstream_status == 503
    assert len(simulator.requests) == 3
    assert len(sleeps.delays) == 2


async def test_safe_writes_are_retried(
    client: CreateOSClient, simulator: CreateOSSimulator
) -> None:
    project_id = await create(client)
    simulator.fail_next("POST", PROJECTS + "/available-unique-name", status=502)
    assert not await client.is_name_available("my-app")
    simulator.fail_next("PUT", PROJECT + "/suspend", status=500)
    await client.suspend_project(project_id)
    assert len(calls(simulator, "PUT", PROJECT + "/suspend")) == 2
    assert simulator.projects()[0].suspended


async def test_delete_404_after_an_ambiguous_attempt_counts_as_done(
    client: CreateOSClient, simulator: CreateOSSimulator
) -> None:
    simulator.config.delete_seconds = 0  # deleted at once: a second DELETE answers 404
    project_id = await create(client)
    simulator.fail_after_apply("DELETE", PROJECT, status=500)
    await client.delete_project(project_id)
    deletes = calls(simulator, "DELETE", PROJECT)
    assert [r.status for r in deletes] == [500, 404]
    assert simulator.projects()[0].status == "deleted"


async def test_read_timeout_on_get_is_retried(
    base_url: str, simulator: CreateOSSimulator, sleeps: RecordedSleeps
) -> None:
    async with CreateOSClient(base_url, KEY, read_timeout=0.3, sleep=sleeps) as client:
        simulator.delay_next("GET", PROJECTS, seconds=1.0)
        assert await client.list_projects() == []
    assert len(sleeps.delays) == 1
    assert len(calls(simulator, "GET", PROJECTS)) == 2


async def test_429_on_a_safe_call_honours_retry_after(
    client: CreateOSClient, simulator: CreateOSSimulator, sleeps: RecordedSleeps
) -> None:
    simulator.fail_next("GET", PROJECTS, status=429, retry_after=2)
    assert await client.list_projects() == []
    assert sleeps.delays == [2.0]


async def test_429_with_a_long_retry_after_is_raised_at_once(
    client: CreateOSClient, simulator: CreateOSSimulator, sleeps: RecordedSleeps
) -> None:
    simulator.fail_next("GET", PROJECTS, status=429, retry_after=120)
    with pytest.raises(UpstreamThrottled) as caught:
        await client.list_projects()
    assert caught.value.retry_after == 120
    assert caught.value.headers == {"Retry-After": "120"}
    assert caught.value.status == 503
    assert sleeps.delays == []
    assert len(simulator.requests) == 1


async def test_429_without_retry_after_backs_off_then_defaults_to_30(
    client: CreateOSClient, simulator: CreateOSSimulator, sleeps: RecordedSleeps
) -> None:
    simulator.fail_next("GET", PROJECTS, status=429, times=3)
    with pytest.raises(UpstreamThrottled) as caught:
        await client.list_projects()
    assert caught.value.retry_after == 30
    assert caught.value.upstream_retry_after is None
    assert len(sleeps.delays) == 2
    assert all(delay < 1 for delay in sleeps.delays)


# --- create and uploads are not retried once sent ----------------------------------------


async def test_500_on_create_is_not_retried(
    client: CreateOSClient, simulator: CreateOSSimulator, sleeps: RecordedSleeps
) -> None:
    simulator.fail_next("POST", PROJECTS, status=500)
    with pytest.raises(UpstreamError) as caught:
        await create(client)
    assert caught.value.upstream_status == 500
    assert caught.value.may_have_applied
    assert len(calls(simulator, "POST", PROJECTS)) == 1
    assert sleeps.delays == []


async def test_create_applied_then_failed_is_recovered_by_name(
    client: CreateOSClient, simulator: CreateOSSimulator
) -> None:
    simulator.fail_after_apply("POST", PROJECTS, status=502)
    with pytest.raises(UpstreamError) as caught:
        await create(client, "Recover-Me")
    assert caught.value.may_have_applied
    assert len(calls(simulator, "POST", PROJECTS)) == 1
    adopted = await client.find_project_by_name("Recover-Me")
    assert adopted is not None
    assert adopted.id == simulator.projects()[0].id


async def test_read_timeout_on_create_is_not_retried(
    base_url: str, simulator: CreateOSSimulator, sleeps: RecordedSleeps
) -> None:
    async with CreateOSClient(base_url, KEY, read_timeout=0.3, sleep=sleeps) as client:
        simulator.delay_next("POST", PROJECTS, seconds=1.0)
        with pytest.raises(UpstreamUnreachable) as caught:
            await create(client, "slow-app")
        assert caught.value.may_have_applied
        assert caught.value.upstream_status is None
        assert caught.value.__cause__ is None  # nothing from httpx comes along
        assert "ReadTimeout" in (caught.value.internal or "")
        assert len(calls(simulator, "POST", PROJECTS)) == 1
        assert sleeps.delays == []
        assert await client.find_project_by_name("slow-app") is not None


async def test_upload_dropped_after_apply_is_not_retried(
    client: CreateOSClient, simulator: CreateOSSimulator, sleeps: RecordedSleeps
) -> None:
    project_id = await create(client)
    simulator.drop_after_apply("PUT", UPLOAD_BASE64)
    with pytest.raises(UpstreamUnreachable) as caught:
        await client.upload_files(project_id, [("a.txt", b"1")])
    assert caught.value.may_have_applied
    assert len(calls(simulator, "PUT", UPLOAD_BASE64)) == 1
    assert sleeps.delays == []
    (deployment,) = await client.list_deployments(project_id)  # the recovery read
    assert deployment.version == 1


async def test_429_on_upload_carries_retry_after(
    client: CreateOSClient, simulator: CreateOSSimulator, sleeps: RecordedSleeps
) -> None:
    simulator.config.upload_limit = 1
    simulator.config.upload_window_seconds = 90
    project_id = await create(client)
    await client.upload_files(project_id, [("a.txt", b"1")])
    with pytest.raises(UpstreamThrottled) as caught:
        await client.upload_files(project_id, [("a.txt", b"2")])
    assert caught.value.retry_after == 90
    assert caught.value.headers == {"Retry-After": "90"}
    assert caught.value.body() == {
        "error": "The deploy service is busy; retry later",
        "retry_after": 90,
    }
    assert len(calls(simulator, "PUT", UPLOAD_BASE64)) == 2
    assert sleeps.delays == []


async def test_project_quota_429_on_create(
    client: CreateOSClient, simulator: CreateOSSimulator
) -> None:
    simulator.config.project_quota = 1
    await create(client, "first-app")
    with pytest.raises(UpstreamThrottled) as caught:
        await create(client, "second-app")
    assert caught.value.retry_after == 30  # no Retry-After from upstream: our default
    assert len(calls(simulator, "POST", PROJECTS)) == 2


# --- connection failures -----------------------------------------------------------------


async def test_unreachable_upstream(sleeps: RecordedSleeps) -> None:
    async with CreateOSClient(f"http://127.0.0.1:{free_port()}", KEY, sleep=sleeps) as client:
        with pytest.raises(UpstreamUnreachable) as caught:
            await create(client)
    assert not caught.value.may_have_applied
    assert caught.value.status == 502
    assert caught.value.__cause__ is None
    assert caught.value.__suppress_context__
    assert "ConnectError" in (caught.value.internal or "")
    assert len(sleeps.delays) == 2  # connect errors are retried even for create


async def test_connect_error_on_create_is_retried(clock: ManualClock) -> None:
    """The first attempt finds the port closed; the server comes up during the backoff."""
    simulator = CreateOSSimulator(config(), clock=clock)
    port = free_port()
    servers: list[ServerThread] = []

    async def start_server_while_backing_off(seconds: float) -> None:
        if not servers:
            servers.append(ServerThread(simulator.app, port=port))
            servers[0].start()

    try:
        async with CreateOSClient(
            f"http://127.0.0.1:{port}", KEY, sleep=start_server_while_backing_off
        ) as client:
            project_id = await create(client)
    finally:
        for server in servers:
            server.stop()
    assert len(servers) == 1  # the first attempt was refused, so the client backed off
    assert [p.id for p in simulator.projects()] == [project_id]
    assert len(calls(simulator, "POST", PROJECTS)) == 1


def test_max_attempts_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        CreateOSClient("http://127.0.0.1:1", KEY, max_attempts=0)
