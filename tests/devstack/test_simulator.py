"""The CreateOS simulator, driven over real HTTP through ServerThread with a manual clock."""

from __future__ import annotations

import base64
import io
import zipfile
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from devstack.clock import ManualClock
from devstack.server_thread import ServerThread
from devstack.simulator.server import CreateOSSimulator, SimulatorConfig

KEY = "sim-test-key"
OTHER_KEY = "sim-other-key"
SETTINGS = {"framework": "nextjs", "runtime": "node:20", "port": 3000}
UPLOAD = r"/v1/projects/[^/]+/deployments/files/base64"


def fresh_config(**changes: Any) -> SimulatorConfig:
    return SimulatorConfig(api_keys=(KEY, OTHER_KEY), **changes)


@pytest.fixture(scope="module")
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture(scope="module")
def shared_simulator(clock: ManualClock) -> CreateOSSimulator:
    return CreateOSSimulator(fresh_config(), clock=clock)


@pytest.fixture(scope="module")
def server(shared_simulator: CreateOSSimulator) -> Iterator[ServerThread]:
    with ServerThread(shared_simulator.app) as running:
        yield running


@pytest.fixture
def sim(shared_simulator: CreateOSSimulator, server: ServerThread) -> CreateOSSimulator:
    shared_simulator.reset()
    shared_simulator.config = fresh_config()
    return shared_simulator


@pytest.fixture
def client(sim: CreateOSSimulator, server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"X-Api-Key": KEY}, timeout=5.0) as c:
        yield c


@pytest.fixture
def other(sim: CreateOSSimulator, server: ServerThread) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=server.url, headers={"X-Api-Key": OTHER_KEY}, timeout=5.0) as c:
        yield c


def ok(response: httpx.Response, status: int = 200) -> Any:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == "success"
    return body["data"]


def failed(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["status"] == "fail"
    assert isinstance(body["data"], str)
    return str(body["data"])


def create_body(name: str = "my-app", **changes: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "uniqueName": name,
        "displayName": "My App",
        "type": "upload",
        "source": {},
        "settings": SETTINGS,
    }
    body.update(changes)
    return body


def create(client: httpx.Client, name: str = "my-app", **changes: Any) -> str:
    project_id = ok(client.post("/v1/projects", json=create_body(name, **changes)), 201)["id"]
    assert isinstance(project_id, str)
    return project_id


def b64_files(files: dict[str, bytes]) -> dict[str, Any]:
    return {
        "files": [{"path": p, "content": base64.b64encode(c).decode()} for p, c in files.items()]
    }


def upload(client: httpx.Client, project_id: str, files: dict[str, bytes] | None = None) -> str:
    body = b64_files(files or {"index.js": b"console.log('hi')"})
    reply = ok(client.put(f"/v1/projects/{project_id}/deployments/files/base64", json=body))
    assert list(reply) == ["id"]
    deployment_id = reply["id"]
    assert isinstance(deployment_id, str)
    return deployment_id


def make_zip(files: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", method) as archive:
        for path, content in files.items():
            archive.writestr(path, content)
    return buffer.getvalue()


def deployment(client: httpx.Client, project_id: str, deployment_id: str) -> dict[str, Any]:
    found = ok(client.get(f"/v1/projects/{project_id}/deployments/{deployment_id}"))
    assert isinstance(found, dict)
    return found


def build_logs(client: httpx.Client, pid: str, did: str, skip: int = 0) -> list[dict[str, Any]]:
    path = f"/v1/projects/{pid}/deployments/{did}/build-logs"
    lines = ok(client.get(path, params={"skip": skip}))
    assert isinstance(lines, list)
    return lines


# -- auth, naming, creation ------------------------------------------------------------------


def test_requests_without_or_with_a_wrong_key_are_401(
    sim: CreateOSSimulator, server: ServerThread
) -> None:
    with httpx.Client(base_url=server.url) as anonymous:
        failed(anonymous.get("/v1/projects"), 401)
        failed(anonymous.post("/v1/projects", json=create_body()), 401)
        failed(anonymous.get("/v1/quotas", headers={"X-Api-Key": "skp_wrong"}), 401)
    assert [r.api_key_present for r in sim.requests] == [False, False, True]
    assert sim.projects() == []


def test_name_check_agrees_with_create(client: httpx.Client) -> None:
    check = "/v1/projects/available-unique-name"
    assert ok(client.post(check, json={"uniqueName": "shop-front"})) == {"isAvailable": True}
    create(client, "Shop-Front")
    for spelling in ("shop-front", "SHOP-FRONT", "Shop-Front"):
        assert ok(client.post(check, json={"uniqueName": spelling})) == {"isAvailable": False}
        failed(client.post("/v1/projects", json=create_body(spelling)), 409)
    failed(client.post(check, json={"uniqueName": "no"}), 400)


def test_names_are_stored_lowercase_and_global_across_keys(
    sim: CreateOSSimulator, client: httpx.Client, other: httpx.Client
) -> None:
    project_id = create(client, "MixedCase")
    assert ok(client.get(f"/v1/projects/{project_id}"))["uniqueName"] == "mixedcase"
    failed(other.post("/v1/projects", json=create_body("mixedCASE")), 409)
    assert [p.unique_name for p in sim.projects()] == ["mixedcase"]


@pytest.mark.parametrize(
    "changes",
    [
        {"uniqueName": "abc"},
        {"uniqueName": "a" * 33},
        {"uniqueName": "has_underscore"},
        {"uniqueName": "has.dot"},
        {"displayName": "abc"},
        {"displayName": "x" * 49},
        {"displayName": "bad/char"},
        {"description": "abc"},
        {"description": "x" * 2049},
        {"settings": {**SETTINGS, "port": 0}},
        {"settings": {**SETTINGS, "port": 65536}},
        {"settings": {"runtime": "node:20"}},
        {"settings": {"framework": "nextjs", "runtime": "dockerfile"}},
        {"settings": {"runtime": "build-ai"}},
        {"type": "lambda"},
    ],
)
def test_naming_and_settings_rules_are_400(
    sim: CreateOSSimulator, client: httpx.Client, changes: dict[str, Any]
) -> None:
    failed(client.post("/v1/projects", json=create_body(**changes)), 400)
    assert sim.projects() == []


def test_rule_edges_are_accepted(client: httpx.Client) -> None:
    create(client, "a" * 32, displayName="x_y -" + "z" * 43, description="d" * 2048)
    create(client, "abcd", settings={"runtime": "dockerfile", "hasDockerfile": True, "port": 1})
    create(client, "efgh", settings={"runtime": "build-ai", "useBuildAI": True, "port": 65535})


def test_create_answers_201_with_an_active_upload_project(client: httpx.Client) -> None:
    project_id = create(client, description="a shop front")
    project = ok(client.get(f"/v1/projects/{project_id}"))
    assert project["id"] == project_id
    assert project["type"] == "upload"
    assert project["status"] == "active"
    assert project["displayName"] == "My App"
    assert project["createdAt"].endswith("Z")


# -- uploads and the deployment lifecycle ----------------------------------------------------


def test_base64_upload_moves_through_every_state_to_a_schemeless_endpoint(
    client: httpx.Client, clock: ManualClock
) -> None:
    project_id = create(client, "state-walk")
    deployment_id = upload(client, project_id)
    seen = []
    for _ in range(5):
        current = deployment(client, project_id, deployment_id)
        seen.append(current["status"])
        if current["status"] != "deployed":
            assert current["extra"] == {}
        clock.advance(1.0)
    assert seen == ["queue", "building", "building", "deploying", "deployed"]
    final = deployment(client, project_id, deployment_id)
    endpoint = final["extra"]["endpoint"]
    assert endpoint == f"state-walk-{deployment_id[:8]}.sim.createos.local"
    assert "://" not in endpoint
    assert final["versionNumber"] == 1
    assert final["projectId"] == project_id


def test_each_upload_is_a_new_deployment_listed_newest_first(
    sim: CreateOSSimulator, client: httpx.Client
) -> None:
    project_id = create(client)
    first = upload(client, project_id)
    text = {"files": [{"path": "src/app.py", "content": "print('hi')"}]}
    second = ok(client.put(f"/v1/projects/{project_id}/deployments/files", json=text))["id"]
    listed = ok(client.get(f"/v1/projects/{project_id}/deployments"))
    assert [d["id"] for d in listed["data"]] == [second, first]
    assert [d["versionNumber"] for d in listed["data"]] == [2, 1]
    assert listed["pagination"] == {"total": 2, "limit": 10, "offset": 0, "count": 2}
    (project,) = sim.projects()
    assert project.deployments[1].files[0].path == "src/app.py"
    assert project.deployments[1].files[0].size == len("print('hi')")


def test_zip_upload_lists_files_and_records_names_not_contents(
    sim: CreateOSSimulator, client: httpx.Client, clock: ManualClock
) -> None:
    project_id = create(client)
    archive = make_zip({"package.json": b"{}", "src/index.js": b"x" * 5000, "src/": b""})
    reply = client.put(
        f"/v1/projects/{project_id}/deployments/upload-zip",
        files={"file": ("app.zip", archive, "application/zip")},
    )
    deployment_id = ok(reply)["id"]
    record = sim.requests[-1]
    assert record.json is None
    assert record.file_count == 2
    assert record.file_names == ("package.json", "src/index.js")
    (project,) = sim.projects()
    assert [(f.path, f.size) for f in project.deployments[0].files] == [
        ("package.json", 2),
        ("src/index.js", 5000),
    ]
    clock.advance(10)
    assert deployment(client, project_id, deployment_id)["status"] == "deployed"


def test_bad_upload_bodies_are_400(client: httpx.Client) -> None:
    project_id = create(client)
    base = f"/v1/projects/{project_id}/deployments"
    bad_b64 = {"files": [{"path": "a.txt", "content": "not base64!"}]}
    failed(client.put(f"{base}/files/base64", json=bad_b64), 400)
    zip_bytes = make_zip({"a.txt": b"hello world"}, zipfile.ZIP_STORED)
    bad_crc = zip_bytes.replace(b"hello", b"HELLO", 1)
    assert bad_crc != zip_bytes
    for broken in (b"not a zip", zip_bytes[:-30], bad_crc):
        failed(client.put(f"{base}/upload-zip", files={"file": ("a.zip", broken)}), 400)
    failed(client.put(f"{base}/upload-zip", files={"other": ("a.zip", zip_bytes)}), 400)
    failed(client.put(f"{base}/upload-zip", content=zip_bytes), 400)
    failed(client.put(f"{base}/upload-zip", files={"file": ("a.zip", make_zip({}))}), 400)
    for path in ("/etc/passwd", "../up.txt", "a//b", "a\\b"):
        body = {"files": [{"path": path, "content": "x"}]}
        failed(client.put(f"{base}/files", json=body), 400)
    failed(client.put(f"{base}/files", json={"files": []}), 400)
    failed(client.put(f"{base}/files", content=b"{not json"), 400)
    assert ok(client.get(f"{base}"))["pagination"]["total"] == 0


def test_more_than_100_files_in_a_json_upload_is_400(client: httpx.Client) -> None:
    project_id = create(client)
    many = {f"f{i}.txt": b"x" for i in range(101)}
    path = f"/v1/projects/{project_id}/deployments/files/base64"
    message = failed(client.put(path, json=b64_files(many)), 400)
    assert "100" in message
    del many["f100.txt"]
    ok(client.put(path, json=b64_files(many)))


def test_build_error_marker_fails_the_build_with_logs_honouring_skip(
    client: httpx.Client, clock: ManualClock
) -> None:
    project_id = create(client)
    files = {"index.js": b"x", "deep/dir/SIMULATE_BUILD_ERROR": b"npm ERR! missing script: build\n"}
    deployment_id = upload(client, project_id, files)
    assert len(build_logs(client, project_id, deployment_id)) == 1
    clock.advance(1.0)
    partial = build_logs(client, project_id, deployment_id)
    clock.advance(2.0)
    assert deployment(client, project_id, deployment_id)["status"] == "build_error"
    everything = build_logs(client, project_id, deployment_id)
    assert len(partial) < len(everything)
    assert [line["lineNumber"] for line in everything] == list(range(1, len(everything) + 1))
    assert set(everything[0]) == {"lineNumber", "log", "stage", "ts"}
    text = [line["log"] for line in everything]
    assert any("SIMULATE_BUILD_ERROR" in line for line in text)
    assert "npm ERR! missing script: build" in text
    rest = build_logs(client, project_id, deployment_id, skip=len(partial))
    assert rest == everything[len(partial) :]
    assert build_logs(client, project_id, deployment_id, skip=1000) == []
    clock.advance(100)
    assert deployment(client, project_id, deployment_id)["extra"] == {}


@pytest.mark.parametrize(
    ("marker", "status"), [("SIMULATE_ERROR", "error"), ("SIMULATE_CRASH", "crashing")]
)
def test_runtime_markers_end_in_their_status(
    client: httpx.Client, clock: ManualClock, marker: str, status: str
) -> None:
    project_id = create(client)
    archive = make_zip({"index.js": b"x", f"app/{marker}": b"exit 1"})
    reply = client.put(
        f"/v1/projects/{project_id}/deployments/upload-zip", files={"file": ("a.zip", archive)}
    )
    deployment_id = ok(reply)["id"]
    clock.advance(3.5)
    assert deployment(client, project_id, deployment_id)["status"] == "deploying"
    clock.advance(1.0)
    final = deployment(client, project_id, deployment_id)
    assert final["status"] == status
    assert final["extra"] == {}
    text = [line["log"] for line in build_logs(client, project_id, deployment_id)]
    assert any(marker in line for line in text)
    assert "exit 1" in text


def test_runtime_logs_are_422_until_deployed(client: httpx.Client, clock: ManualClock) -> None:
    project_id = create(client)
    deployment_id = upload(client, project_id)
    path = f"/v1/projects/{project_id}/deployments/{deployment_id}/deployment-logs"
    failed(client.get(path), 422)
    clock.advance(3.75)
    failed(client.get(path), 422)
    clock.advance(0.25)
    assert "Server started" in ok(client.get(path))
    clock.advance(120)
    recent = ok(client.get(path, params={"since-seconds": 20}))
    assert isinstance(recent, str)
    assert [line.split(" ", 1)[1] for line in recent.splitlines()] == ["GET /health 200"] * 2
    failed(client.get(path, params={"since-seconds": "soon"}), 400)


def test_wakeup_is_422_unless_sleeping(
    sim: CreateOSSimulator, client: httpx.Client, clock: ManualClock
) -> None:
    project_id = create(client)
    deployment_id = upload(client, project_id)
    wake = f"/v1/projects/{project_id}/deployments/{deployment_id}/wakeup"
    failed(client.post(wake), 422)
    clock.advance(4)
    failed(client.post(wake), 422)
    sim.put_to_sleep(deployment_id)
    assert deployment(client, project_id, deployment_id)["status"] == "sleeping"
    assert isinstance(ok(client.post(wake)), str)
    assert deployment(client, project_id, deployment_id)["status"] == "deployed"


def test_deployments_fall_asleep_after_the_configured_time(
    sim: CreateOSSimulator, client: httpx.Client, clock: ManualClock
) -> None:
    sim.config.sleep_after_seconds = 30
    project_id = create(client)
    deployment_id = upload(client, project_id)
    clock.advance(4 + 30)
    asleep = deployment(client, project_id, deployment_id)
    assert asleep["status"] == "sleeping"
    assert asleep["extra"]["endpoint"]
    ok(client.post(f"/v1/projects/{project_id}/deployments/{deployment_id}/wakeup"))
    assert deployment(client, project_id, deployment_id)["status"] == "deployed"


# -- ownership, lookups, deletion, listing ---------------------------------------------------


def test_another_keys_project_is_403_and_not_listed(
    client: httpx.Client, other: httpx.Client
) -> None:
    project_id = create(client)
    deployment_id = upload(client, project_id)
    base = f"/v1/projects/{project_id}"
    failed(other.get(base), 403)
    failed(other.get(f"{base}/deployments"), 403)
    failed(other.get(f"{base}/deployments/{deployment_id}"), 403)
    failed(other.put(f"{base}/deployments/files/base64", json=b64_files({"a": b"b"})), 403)
    failed(other.put(f"{base}/suspend"), 403)
    failed(other.delete(base), 403)
    assert ok(other.get("/v1/projects"))["data"] == []
    assert ok(client.get(base))["status"] == "active"


def test_unknown_ids_and_routes_are_404(client: httpx.Client) -> None:
    unknown = "00000000-0000-4000-8000-000000000000"
    failed(client.get(f"/v1/projects/{unknown}"), 404)
    failed(client.delete(f"/v1/projects/{unknown}"), 404)
    failed(client.put(f"/v1/projects/{unknown}/deployments/files", json={"files": []}), 404)
    project_id = create(client)
    failed(client.get(f"/v1/projects/{project_id}/deployments/{unknown}"), 404)
    failed(client.get(f"/v1/projects/{project_id}/deployments/{unknown}/build-logs"), 404)
    failed(client.get("/v1/no-such-route"), 404)
    failed(client.post("/v1/quotas"), 405)


def test_delete_passes_deleting_then_deleted_and_lists_omit_deleted(
    client: httpx.Client, clock: ManualClock
) -> None:
    keep = create(client, "keeper")
    gone = create(client, "goner")
    assert isinstance(ok(client.delete(f"/v1/projects/{gone}")), str)
    assert ok(client.get(f"/v1/projects/{gone}"))["status"] == "deleting"
    failed(client.put(f"/v1/projects/{gone}/deployments/files/base64", json=b64_files({})), 422)
    listed = ok(client.get("/v1/projects"))["data"]
    assert {p["id"]: p["status"] for p in listed} == {keep: "active", gone: "deleting"}
    assert isinstance(ok(client.delete(f"/v1/projects/{gone}")), str)
    failed(client.post("/v1/projects", json=create_body("goner")), 409)
    clock.advance(1.0)
    assert ok(client.get(f"/v1/projects/{gone}"))["status"] == "deleted"
    assert [p["id"] for p in ok(client.get("/v1/projects"))["data"]] == [keep]
    deleted = ok(client.get("/v1/projects", params={"status": "deleted"}))["data"]
    assert [p["id"] for p in deleted] == [gone]
    failed(client.delete(f"/v1/projects/{gone}"), 404)
    failed(client.put(f"/v1/projects/{gone}/deployments/files", json={"files": []}), 422)
    check = client.post("/v1/projects/available-unique-name", json={"uniqueName": "goner"})
    assert ok(check) == {"isAvailable": True}
    create(client, "goner")


def test_list_pagination_caps_limit_at_20(client: httpx.Client) -> None:
    created = [create(client, f"proj-{i:02d}") for i in range(25)]
    first = ok(client.get("/v1/projects", params={"limit": 50}))
    assert first["pagination"] == {"total": 25, "limit": 20, "offset": 0, "count": 20}
    assert [p["id"] for p in first["data"]] == created[::-1][:20]
    second = ok(client.get("/v1/projects", params={"limit": 50, "offset": 20}))
    assert second["pagination"] == {"total": 25, "limit": 20, "offset": 20, "count": 5}
    default = ok(client.get("/v1/projects"))["pagination"]
    assert default == {"total": 25, "limit": 10, "offset": 0, "count": 10}
    seen: list[str] = []
    offset = 0
    while True:
        page = ok(client.get("/v1/projects", params={"limit": 7, "offset": offset}))
        seen += [p["id"] for p in page["data"]]
        offset += page["pagination"]["count"]
        if offset >= page["pagination"]["total"]:
            break
    assert sorted(seen) == sorted(created)
    for bad in ({"limit": 0}, {"limit": "x"}, {"offset": -1}, {"status": "gone"}, {"type": "x"}):
        failed(client.get("/v1/projects", params=bad), 400)


def test_list_filters_by_partial_name_and_type(client: httpx.Client) -> None:
    shop = create(client, "shop-front")
    create(client, "blog-site")
    vcs = create(client, "shop-vcs", type="vcs", settings={})
    by_name = ok(client.get("/v1/projects", params={"name": "SHOP"}))["data"]
    assert [p["id"] for p in by_name] == [vcs, shop]
    exact = ok(client.get("/v1/projects", params={"name": "shop-front", "type": "upload"}))
    assert [p["id"] for p in exact["data"]] == [shop]


# -- quotas, limits, suspension --------------------------------------------------------------


def test_project_quota_is_429_and_quotas_show_real_counts(
    sim: CreateOSSimulator, client: httpx.Client, other: httpx.Client, clock: ManualClock
) -> None:
    sim.config.project_quota = 2
    first = create(client, "quota-one")
    create(client, "quota-two")
    failed(client.post("/v1/projects", json=create_body("quota-three")), 429)
    assert ok(client.get("/v1/quotas")) == {"projects": {"current": 2, "max": 2, "remaining": 0}}
    assert ok(other.get("/v1/quotas"))["projects"]["current"] == 0
    ok(client.delete(f"/v1/projects/{first}"))
    clock.advance(1.0)
    assert ok(client.get("/v1/quotas"))["projects"]["remaining"] == 1
    create(client, "quota-three")


def test_upload_limit_is_429_with_retry_after_until_the_window_passes(
    sim: CreateOSSimulator, client: httpx.Client, clock: ManualClock
) -> None:
    sim.config.upload_limit = 2
    sim.config.upload_window_seconds = 60
    project_id = create(client)
    upload(client, project_id)
    clock.advance(10)
    upload(client, project_id)
    path = f"/v1/projects/{project_id}/deployments/files/base64"
    refused = client.put(path, json=b64_files({"a.txt": b"a"}))
    failed(refused, 429)
    assert refused.headers["Retry-After"] == "50"
    clock.advance(50)
    upload(client, project_id)
    assert len(sim.projects()[0].deployments) == 3


def test_uploads_to_non_upload_or_suspended_projects_are_422(client: httpx.Client) -> None:
    vcs = create(client, "from-git", type="vcs", settings={})
    failed(client.put(f"/v1/projects/{vcs}/deployments/files/base64", json=b64_files({})), 422)
    project_id = create(client)
    assert isinstance(ok(client.put(f"/v1/projects/{project_id}/suspend")), str)
    assert ok(client.get(f"/v1/projects/{project_id}"))["suspendedAt"] is not None
    failed(client.put(f"/v1/projects/{project_id}/suspend"), 422)
    body = b64_files({"a.txt": b"a"})
    failed(client.put(f"/v1/projects/{project_id}/deployments/files/base64", json=body), 422)
    ok(client.put(f"/v1/projects/{project_id}/unsuspend"))
    failed(client.put(f"/v1/projects/{project_id}/unsuspend"), 422)
    assert ok(client.get(f"/v1/projects/{project_id}"))["suspendedAt"] is None
    upload(client, project_id)


# -- fault injection -------------------------------------------------------------------------


def test_fail_next_answers_errors_without_applying(
    sim: CreateOSSimulator, client: httpx.Client
) -> None:
    sim.fail_next("POST", "/v1/projects", times=2)
    sim.fail_next("GET", "/v1/quotas", status=429, retry_after=7, message="slow down")
    check = client.post("/v1/projects/available-unique-name", json={"uniqueName": "my-app"})
    ok(check)  # the pattern matches the whole path only
    for _ in range(2):
        reply = client.post("/v1/projects", json=create_body())
        assert reply.status_code == 500
        assert reply.json() == {"status": "error", "message": "simulated failure"}
    assert sim.projects() == []
    throttled = client.get("/v1/quotas")
    assert failed(throttled, 429) == "slow down"
    assert throttled.headers["Retry-After"] == "7"
    create(client)
    ok(client.get("/v1/quotas"))
    assert [r.fault for r in sim.requests] == [None, "fail", "fail", "fail", None, None]


def test_delay_next_applies_then_answers_too_late(
    sim: CreateOSSimulator, server: ServerThread
) -> None:
    sim.delay_next("POST", "/v1/projects", seconds=0.6)
    impatient = httpx.Timeout(5.0, read=0.2)
    with httpx.Client(base_url=server.url, headers={"X-Api-Key": KEY}, timeout=impatient) as c:
        with pytest.raises(httpx.ReadTimeout):
            c.post("/v1/projects", json=create_body("slow-one"))
        assert [p.unique_name for p in sim.projects()] == ["slow-one"]
        found = ok(c.get("/v1/projects", params={"name": "slow-one"}))["data"]
        assert [p["uniqueName"] for p in found] == ["slow-one"]
    with httpx.Client(base_url=server.url, headers={"X-Api-Key": KEY}, timeout=5.0) as patient:
        sim.delay_next("GET", "/v1/quotas", seconds=0.2)
        assert ok(patient.get("/v1/quotas"))["projects"]["current"] == 1


def test_fail_after_apply_is_an_ambiguous_failure(
    sim: CreateOSSimulator, client: httpx.Client
) -> None:
    project_id = create(client)
    sim.fail_after_apply("PUT", UPLOAD, status=502)
    reply = client.put(
        f"/v1/projects/{project_id}/deployments/files/base64", json=b64_files({"a": b"b"})
    )
    assert reply.status_code == 502
    assert reply.json()["status"] == "error"
    listed = ok(client.get(f"/v1/projects/{project_id}/deployments"))
    assert listed["pagination"]["total"] == 1
    assert sim.requests[-2].fault == "fail_after_apply"
    assert sim.requests[-2].status == 502


def test_ok_with_fail_next_is_http_200_with_a_fail_status(
    sim: CreateOSSimulator, client: httpx.Client
) -> None:
    sim.ok_with_fail_next("POST", "/v1/projects", message="no credits")
    reply = client.post("/v1/projects", json=create_body())
    assert reply.status_code == 200
    assert reply.json() == {"status": "fail", "data": "no credits"}
    assert sim.projects() == []


def test_drop_after_apply_closes_the_connection_after_applying(
    sim: CreateOSSimulator, client: httpx.Client
) -> None:
    sim.drop_after_apply("POST", "/v1/projects")
    with pytest.raises(httpx.RemoteProtocolError):
        client.post("/v1/projects", json=create_body("dropped"))
    assert [p.unique_name for p in sim.projects()] == ["dropped"]
    failed(client.post("/v1/projects", json=create_body("dropped")), 409)


def test_success_envelope_mode(sim: CreateOSSimulator, client: httpx.Client) -> None:
    sim.config.envelope = "success"
    created = client.post("/v1/projects", json=create_body())
    assert created.status_code == 201
    assert created.json()["success"] is True
    assert "id" in created.json()["data"]
    taken = client.post("/v1/projects", json=create_body())
    assert taken.status_code == 409
    assert taken.json() == {"success": False, "message": "uniqueName my-app is already taken"}
    sim.ok_with_fail_next("GET", "/v1/quotas")
    assert client.get("/v1/quotas").json() == {"success": False, "message": "simulated failure"}


# -- recording and the server thread ---------------------------------------------------------


def test_requests_are_recorded(sim: CreateOSSimulator, client: httpx.Client) -> None:
    project_id = create(client)
    upload(client, project_id, {"a.txt": b"secret contents", "b/c.txt": b"more"})
    client.get("/v1/projects", params={"name": "my", "limit": "5"})
    create_record, upload_record, list_record = sim.requests
    assert create_record.method == "POST"
    assert create_record.path == "/v1/projects"
    assert create_record.json == create_body()
    assert create_record.status == 201
    assert create_record.api_key_present
    assert upload_record.json is None
    assert upload_record.file_count == 2
    assert upload_record.file_names == ("a.txt", "b/c.txt")
    assert "secret" not in repr(upload_record)
    assert list_record.query == {"name": "my", "limit": "5"}
    assert [r.method for r in sim.writes()] == ["POST", "PUT"]
    sim.clear_requests()
    assert sim.requests == []


def test_server_thread_reports_a_failed_startup() -> None:
    @asynccontextmanager
    async def broken(app: Starlette) -> AsyncIterator[None]:
        raise RuntimeError("no database")
        yield

    server = ServerThread(Starlette(lifespan=broken))
    with pytest.raises(RuntimeError, match="failed to start"):
        server.start()
