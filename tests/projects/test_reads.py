"""A wallet's projects: list, status, logs, delete and redeploy; owners only."""

from __future__ import annotations

import re

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from devstack.anvil import AnvilNode
from devstack.clock import ManualClock
from devstack.latency_proxy import LatencyProxy
from devstack.simulator.server import CreateOSSimulator
from gateway.projects.reads import map_status
from gateway.projects.records import ProjectStatus
from gateway.upstream import BuildLogLine, Deployment
from tests.deploy_support import (
    FINISH_SECONDS,
    ONE_USD,
    deploy,
    deploy_body,
    deploy_settings,
    files_upload,
    signed,
    status,
)
from tests.support import Gateway, running_gateway

DEPLOYMENT = r"/v1/projects/[^/]+/deployments/[^/]+"
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


async def deployed(gw: Gateway, account: LocalAccount, name: str) -> tuple[str, str]:
    response = await deploy(gw, account, deploy_body(name), X_Use_Existing_Credits="true")
    assert response.status_code == 200, response.text
    return response.json()["projectId"], response.json()["deploymentId"]


async def listing(gw: Gateway, account: LocalAccount) -> dict[str, object]:
    response = await gw.client.get("/agent/projects", headers=signed(account))
    assert response.status_code == 200, response.text
    body: dict[str, object] = response.json()
    return body


async def test_list_shows_only_this_wallets_projects_with_live_urls(
    gw: Gateway, sim_clock: ManualClock, agent: LocalAccount
) -> None:
    assert await listing(gw, agent) == {"wallet": agent.address, "count": 0, "projects": []}
    other: LocalAccount = Account.create()
    await gw.credit(agent.address, 5 * ONE_USD)
    await gw.credit(other.address, ONE_USD)
    first, _ = await deployed(gw, agent, "listed-one")
    second, _ = await deployed(gw, agent, "listed-two")
    await deployed(gw, other, "not-mine")

    body = await listing(gw, agent)
    assert body["wallet"] == agent.address and body["count"] == 2
    projects = body["projects"]
    assert isinstance(projects, list)
    assert [p["id"] for p in projects] == [first, second]
    assert projects[0]["name"] == "listed-one" and projects[0]["displayName"] == "My App"
    assert all(p["status"] == "active" and p["url"] is None for p in projects)
    assert all(ISO_MS.match(p["createdAt"]) for p in projects)

    sim_clock.advance(FINISH_SECONDS)
    await gw.services.ownership.set_status(second, ProjectStatus.SUSPENDED)
    projects = (await listing(gw, agent))["projects"]
    assert isinstance(projects, list)
    assert projects[0]["url"].startswith("https://listed-one-")
    assert projects[1]["status"] == "suspended"


async def test_list_survives_an_upstream_failure(
    gw: Gateway, sim: CreateOSSimulator, agent: LocalAccount
) -> None:
    await gw.credit(agent.address, ONE_USD)
    project_id, _ = await deployed(gw, agent, "flaky-list")
    sim.fail_next("GET", r"/v1/projects/[^/]+", status=500, times=3)
    projects = (await listing(gw, agent))["projects"]
    assert isinstance(projects, list)
    assert [(p["id"], p["status"]) for p in projects] == [(project_id, "active")]


async def test_status_maps_every_phase(
    gw: Gateway, sim: CreateOSSimulator, sim_clock: ManualClock, agent: LocalAccount
) -> None:
    await gw.credit(agent.address, ONE_USD)
    project_id, deployment_id = await deployed(gw, agent, "phases")
    seen = []
    for _ in range(6):
        body = (await status(gw, agent, project_id, deployment_id)).json()
        seen.append(body.get("deployment_status", body["status"]))
        sim_clock.advance(1.0)
    assert seen[:4] == ["queue", "building", "building", "deploying"]
    assert seen[-1] == "ready"


async def test_status_reads_the_record_in_the_authentications_round_trip(
    make_settings, chains: dict[str, AnvilNode], sim: CreateOSSimulator, agent: LocalAccount
) -> None:
    """The status route's rate limit + nonce script and its ownership read are one Redis round
    trip; a bad signature still gets its 401 and nothing of the record."""
    settings = deploy_settings(make_settings, chains)
    assert settings.redis_url is not None
    redis_port = int(settings.redis_url.rsplit(":", 1)[1].split("/")[0])
    with LatencyProxy(redis_port, name="redis") as proxy:
        proxied = settings.with_overrides(redis_url=f"redis://127.0.0.1:{proxy.port}/0")
        async with running_gateway(proxied) as gw:
            await gw.credit(agent.address, ONE_USD)
            project_id, deployment_id = await deployed(gw, agent, "one-trip")
            proxy.reset()
            answer = await status(gw, agent, project_id, deployment_id)
            writes = proxy.snapshot()
            headers = signed(agent)
            headers["X-Signature"] = "0x" + "11" * 65
            refused = await gw.client.get(
                f"/agent/deploy/{project_id}/{deployment_id}/status", headers=headers
            )
    assert answer.status_code == 200, answer.text
    assert len(writes) == 1, [e.methods for e in writes]
    assert refused.status_code == 401
    assert project_id not in refused.text


async def test_crashing_deployment_is_failed_with_a_reason(
    gw: Gateway, sim_clock: ManualClock, agent: LocalAccount
) -> None:
    await gw.credit(agent.address, ONE_USD)
    upload = files_upload({"index.js": b"1", "SIMULATE_CRASH": b""})
    answer = (await deploy(gw, agent, deploy_body("crashy", upload=upload))).json()
    sim_clock.advance(FINISH_SECONDS)
    body = (await status(gw, agent, answer["projectId"], answer["deploymentId"])).json()
    assert body["status"] == "failed" and body["deployment_status"] == "crashing"
    assert "crashing" in body["reason"]


async def test_another_wallet_gets_403_everywhere(gw: Gateway, agent: LocalAccount) -> None:
    await gw.credit(agent.address, ONE_USD)
    project_id, deployment_id = await deployed(gw, agent, "owned-app")
    stranger: LocalAccount = Account.create()
    await gw.credit(stranger.address, ONE_USD)
    base = f"/agent/deploy/{project_id}/{deployment_id}"
    calls = [
        gw.client.get(f"{base}/status", headers=signed(stranger)),
        gw.client.get(f"{base}/logs?kind=build", headers=signed(stranger)),
        gw.client.delete(f"/agent/projects/{project_id}", headers=signed(stranger)),
        gw.client.post(
            f"/agent/projects/{project_id}/deploy",
            json={"upload": files_upload()},
            headers=signed(stranger),
        ),
    ]
    for call in calls:
        response = await call
        assert response.status_code == 403, response.text
        assert response.json()["code"] == "not_owner"
    assert (await status(gw, agent, project_id, deployment_id)).status_code == 200


async def test_unknown_project_or_deployment_is_404(gw: Gateway, agent: LocalAccount) -> None:
    await gw.credit(agent.address, ONE_USD)
    project_id, deployment_id = await deployed(gw, agent, "known-app")
    other_project, other_deployment = await deployed(gw, agent, "other-app")
    assert (await status(gw, agent, "no-such-project", deployment_id)).status_code == 404
    wrong = await status(gw, agent, project_id, other_deployment)  # not this project's
    assert wrong.status_code == 404 and wrong.json()["code"] == "unknown_deployment"
    assert (await status(gw, agent, other_project, other_deployment)).status_code == 200
    missing = await gw.client.delete("/agent/projects/nope", headers=signed(agent))
    assert missing.status_code == 404


async def test_logs(gw: Gateway, sim_clock: ManualClock, agent: LocalAccount) -> None:
    await gw.credit(agent.address, ONE_USD)
    project_id, deployment_id = await deployed(gw, agent, "logged-app")
    base = f"/agent/deploy/{project_id}/{deployment_id}/logs"

    early = await gw.client.get(f"{base}?kind=runtime", headers=signed(agent))
    assert early.status_code == 409 and early.json()["code"] == "not_live"

    sim_clock.advance(FINISH_SECONDS + 30)
    build = (await gw.client.get(base, headers=signed(agent))).json()
    assert build["kind"] == "build" and build["deployment_id"] == deployment_id
    assert build["lines"][0]["lineNumber"] == 1
    assert any("Build succeeded" in line["log"] for line in build["lines"])
    skipped = (await gw.client.get(f"{base}?kind=build&skip=2", headers=signed(agent))).json()
    assert skipped["lines"] == build["lines"][2:]

    runtime = (await gw.client.get(f"{base}?kind=runtime", headers=signed(agent))).json()
    assert runtime["kind"] == "runtime" and "GET /health 200" in runtime["text"]

    for query in ("kind=stdout", "kind=build&skip=-1", "kind=runtime&since=0"):
        bad = await gw.client.get(f"{base}?{query}", headers=signed(agent))
        assert bad.status_code == 400, query


async def test_delete_stops_metering_and_frees_the_name(
    gw: Gateway, sim: CreateOSSimulator, sim_clock: ManualClock, agent: LocalAccount
) -> None:
    await gw.credit(agent.address, ONE_USD)
    project_id, deployment_id = await deployed(gw, agent, "doomed-app")
    response = await gw.client.delete(f"/agent/projects/{project_id}", headers=signed(agent))
    assert response.status_code == 200, response.text
    assert response.json() == {"projectId": project_id, "status": "deleted"}

    assert sim.projects()[0].status == "deleting"
    assert project_id not in await gw.services.ownership.metered_projects()
    assert await gw.services.ownership.active_count(agent.address) == 0
    assert (await listing(gw, agent))["count"] == 0
    assert (await status(gw, agent, project_id, deployment_id)).status_code == 404
    again = await gw.client.delete(f"/agent/projects/{project_id}", headers=signed(agent))
    assert again.status_code == 404

    sim_clock.advance(5)  # CreateOS finishes deleting; the name is free for anyone
    newcomer: LocalAccount = Account.create()
    await gw.credit(newcomer.address, ONE_USD)
    assert (await deploy(gw, newcomer, deploy_body("doomed-app"))).status_code == 200


async def test_delete_of_a_project_already_gone_upstream(
    gw: Gateway, sim: CreateOSSimulator, sim_clock: ManualClock, agent: LocalAccount
) -> None:
    await gw.credit(agent.address, ONE_USD)
    project_id, _ = await deployed(gw, agent, "gone-app")
    async with httpx.AsyncClient(base_url=str(gw.settings.createos_api_url)) as c:
        c.headers["X-Api-Key"] = gw.settings.createos_api_key
        assert (await c.delete(f"/v1/projects/{project_id}")).status_code == 200
    sim_clock.advance(5)
    response = await gw.client.delete(f"/agent/projects/{project_id}", headers=signed(agent))
    assert response.status_code == 200


async def test_redeploy_of_a_suspended_project_is_409(gw: Gateway, agent: LocalAccount) -> None:
    await gw.credit(agent.address, ONE_USD)
    project_id, _ = await deployed(gw, agent, "sleepy-app")
    await gw.services.ownership.set_status(project_id, ProjectStatus.SUSPENDED)
    response = await gw.client.post(
        f"/agent/projects/{project_id}/deploy",
        json={"upload": files_upload()},
        headers=signed(agent),
    )
    assert response.status_code == 409 and response.json()["code"] == "project_suspended"


async def test_redeploy_without_credits_gets_a_quote(
    gw: Gateway, sim: CreateOSSimulator, agent: LocalAccount
) -> None:
    await gw.credit(agent.address, ONE_USD)
    project_id, _ = await deployed(gw, agent, "quoted-app")
    response = await gw.client.post(
        f"/agent/projects/{project_id}/deploy",
        json={"upload": files_upload(), "months": 3},
        headers=signed(agent),
    )
    assert response.status_code == 402
    assert response.json()["amount_usd"] == 1.5
    assert response.json()["active_projects"] == 0  # itself does not count
    assert len(sim.projects()[0].deployments) == 1


@pytest.mark.parametrize(
    ("upstream_status", "ours", "retry_after"), [(500, 502, None), (429, 503, "60")]
)
async def test_status_upstream_failures_are_ours(
    gw: Gateway,
    sim: CreateOSSimulator,
    agent: LocalAccount,
    upstream_status: int,
    ours: int,
    retry_after: str | None,
) -> None:
    await gw.credit(agent.address, ONE_USD)
    project_id, deployment_id = await deployed(gw, agent, "status-fails")
    sim.fail_next(
        "GET",
        DEPLOYMENT,
        status=upstream_status,
        times=3,
        message="internal stack trace here",
        retry_after=60 if retry_after else None,
    )
    response = await status(gw, agent, project_id, deployment_id)
    assert response.status_code == ours
    assert "stack trace" not in response.text
    assert set(response.json()) <= {"error", "code", "retry_after"}
    assert response.headers.get("retry-after") == retry_after


@pytest.mark.parametrize(
    ("raw", "endpoint", "status", "detail"),
    [
        ("deployed", "https://a.example", "ready", "https://a.example"),
        ("deployed", None, "deploying", "Deployed; waiting for its URL"),
        ("queue", None, "deploying", "Waiting in the build queue"),
        ("queued", None, "deploying", "Waiting in the build queue"),
        ("pending", None, "deploying", "Waiting in the build queue"),
        ("building", None, "deploying", "Building the app"),
        ("deploying", None, "deploying", "Starting the app"),
        ("promoting", None, "deploying", "Making the new version live"),
        ("error", None, "failed", "The deployment failed"),
        ("cancelled", None, "failed", "The deployment was cancelled"),
        ("sleeping", "https://a.example", "failed", "The deployment is asleep and not serving"),
        ("exploded", None, "failed", "The deployment ended in the state 'exploded'"),
    ],
)
def test_status_mapping(raw: str, endpoint: str | None, status: str, detail: str) -> None:
    mapped = map_status(Deployment("d1", raw, endpoint, None, 1)).as_wire()
    assert mapped["status"] == status and mapped["deployment_id"] == "d1"
    if status == "ready":
        assert mapped == {"status": "ready", "deployment_id": "d1", "endpoint": detail}
    elif status == "deploying":
        assert mapped["deployment_status"] == raw and mapped["message"] == detail
    else:
        assert mapped["deployment_status"] == raw and mapped["reason"] == detail


def test_build_error_reason_is_the_last_20_log_lines() -> None:
    lines = [BuildLogLine(n, f"line {n}", "build", None) for n in range(1, 31)]
    mapped = map_status(Deployment("d1", "build_error", None, None, 1), lines)
    assert mapped.reason == "\n".join(f"line {n}" for n in range(11, 31))
    assert map_status(Deployment("d1", "build_error", None, None, 1)).reason == "The build failed"
