"""POST /agent/deploy end to end: the gateway in-process, the CreateOS simulator over HTTP,
payments on a real anvil chain, state in the real Redis."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from gateway.devstack.anvil import AnvilNode
from gateway.devstack.clock import ManualClock
from gateway.devstack.simulator import CreateOSSimulator
from tests.conftest import PAY_TO
from tests.deploy_support import (
    FINISH_SECONDS,
    ONE_USD,
    UPLOAD_FILES,
    Gateway,
    b64,
    deploy,
    deploy_body,
    files_upload,
    pay,
    signed,
    status,
    zip_bytes,
)


def creates(sim: CreateOSSimulator) -> list[str]:
    return [r.path for r in sim.requests if r.method == "POST" and r.path == "/v1/projects"]


async def test_paid_deploy_from_a_fresh_wallet_end_to_end(
    gw: Gateway,
    sim: CreateOSSimulator,
    sim_clock: ManualClock,
    arbitrum: AnvilNode,
    agent: LocalAccount,
) -> None:
    quote = await deploy(gw, agent, deploy_body("paid-app"))
    assert quote.status_code == 402, quote.text
    assert quote.headers["cache-control"] == "no-store"
    body = quote.json()
    assert body["error"] == "Payment required"
    assert body["amount_usd"] == 0.5
    assert body["amount_token"] == "500000"
    assert body["current_credit_balance_usd"] == 0
    assert body["active_projects"] == 0
    assert body["pay_to"] == PAY_TO
    assert body["payment_chain"] == "arbitrum"
    assert body["token"] == "usdc" and body["decimals"] == 6
    assert creates(sim) == []  # only the name was checked

    tx = pay(arbitrum, agent, int(body["amount_token"]))
    deployed = await deploy(gw, agent, deploy_body("paid-app"), X_Payment_Tx=tx)
    assert deployed.status_code == 200, deployed.text
    answer = deployed.json()
    assert answer["status"] == "deploying"
    assert answer["message"] == "Deployment started. Poll status for updates."
    project_id, deployment_id = answer["projectId"], answer["deploymentId"]
    assert await gw.balance(agent.address) == 500_000  # credited, not debited up front

    [project] = sim.projects()
    assert project.id == project_id and project.unique_name == "paid-app"
    assert project.settings["runtime"] == "build-ai" and project.settings["port"] == 3000
    assert [d.id for d in project.deployments] == [deployment_id]

    polled = await status(gw, agent, project_id, deployment_id)
    assert polled.status_code == 200, polled.text
    assert polled.json() == {
        "status": "deploying",
        "deployment_id": deployment_id,
        "deployment_status": "queue",
        "message": "Waiting in the build queue",
    }
    sim_clock.advance(FINISH_SECONDS)
    ready = (await status(gw, agent, project_id, deployment_id)).json()
    assert ready["status"] == "ready"
    assert ready["deployment_id"] == deployment_id
    assert ready["endpoint"].startswith("https://paid-app-")

    record = await gw.services.ownership.get(project_id)
    assert record is not None and record.wallet == agent.address.lower()
    assert record.deployments == (deployment_id,)


async def test_deploy_on_existing_credits(
    gw: Gateway, sim: CreateOSSimulator, agent: LocalAccount
) -> None:
    await gw.credit(agent.address, 2 * ONE_USD)
    response = await deploy(gw, agent, deploy_body("on-credits"))
    assert response.status_code == 200, response.text
    assert "warning" not in response.json()
    assert await gw.balance(agent.address) == 2 * ONE_USD
    assert len(sim.projects()) == 1


async def test_credits_below_the_quote_get_the_quote(gw: Gateway, agent: LocalAccount) -> None:
    await gw.credit(agent.address, 400_000)
    response = await deploy(gw, agent, deploy_body("short-app", months=2))
    assert response.status_code == 402
    assert response.json()["amount_usd"] == 1
    assert response.json()["current_credit_balance_usd"] == 0.4


async def test_other_active_projects_need_the_opt_in(
    gw: Gateway, sim: CreateOSSimulator, agent: LocalAccount
) -> None:
    await gw.credit(agent.address, 5 * ONE_USD)
    assert (await deploy(gw, agent, deploy_body("first-app"))).status_code == 200

    warned = await deploy(gw, agent, deploy_body("second-app"))
    assert warned.status_code == 402
    body = warned.json()
    assert body["active_projects"] == 1
    assert "X-Use-Existing-Credits" in body["warning"]
    assert len(sim.projects()) == 1

    opted = await deploy(gw, agent, deploy_body("second-app"), X_Use_Existing_Credits="true")
    assert opted.status_code == 200, opted.text
    answer = opted.json()
    assert answer["warning"] and answer["warning"] in answer["message"]
    assert answer["message"].startswith("Deployment started.")
    assert len(sim.projects()) == 2


async def test_payment_that_falls_short_says_it_was_credited(
    gw: Gateway, sim: CreateOSSimulator, arbitrum: AnvilNode, agent: LocalAccount
) -> None:
    tx = pay(arbitrum, agent, 300_000)
    response = await deploy(gw, agent, deploy_body("short-paid"), X_Payment_Tx=tx)
    assert response.status_code == 402
    assert response.json()["credited_usd"] == 0.3
    assert response.json()["current_credit_balance_usd"] == 0.3
    assert creates(sim) == []


async def test_name_taken_by_another_wallet_is_409_before_payment(
    gw: Gateway, sim: CreateOSSimulator, arbitrum: AnvilNode, agent: LocalAccount
) -> None:
    await gw.credit(agent.address, ONE_USD)
    assert (await deploy(gw, agent, deploy_body("popular"))).status_code == 200

    other: LocalAccount = Account.create()
    tx = pay(arbitrum, other, 500_000)
    response = await deploy(gw, other, deploy_body("popular"), X_Payment_Tx=tx)
    assert response.status_code == 409
    assert response.json()["error"] == "Project name already taken"
    assert await gw.services.ledger.claim_state(42161, tx) is None  # payment untouched
    assert await gw.balance(other.address) == 0
    assert len(creates(sim)) == 1


async def test_name_taken_upstream_is_409_before_payment(
    gw: Gateway, sim: CreateOSSimulator, sim_url: str, agent: LocalAccount
) -> None:
    async with httpx.AsyncClient(base_url=sim_url, headers={"X-Api-Key": "sim-other-key"}) as c:
        created = await c.post(
            "/v1/projects",
            json={
                "uniqueName": "elsewhere",
                "displayName": "Elsewhere",
                "type": "upload",
                "settings": {"runtime": "build-ai", "useBuildAI": True},
            },
        )
        assert created.status_code == 201
    await gw.credit(agent.address, ONE_USD)
    response = await deploy(gw, agent, deploy_body("Elsewhere"))
    assert response.status_code == 409
    assert response.json() == {"error": "Project name already taken", "code": "name_taken"}
    assert len(creates(sim)) == 1


async def test_own_project_name_is_409_with_a_hint(gw: Gateway, agent: LocalAccount) -> None:
    await gw.credit(agent.address, ONE_USD)
    first = await deploy(gw, agent, deploy_body("mine-already"))
    again = await deploy(gw, agent, deploy_body("mine-already"), X_Use_Existing_Credits="true")
    assert again.status_code == 409
    assert again.json()["projectId"] == first.json()["projectId"]


async def test_concurrent_deploys_of_one_name_create_once(
    gw: Gateway, sim: CreateOSSimulator, agent: LocalAccount
) -> None:
    await gw.credit(agent.address, ONE_USD)
    sim.delay_next("PUT", UPLOAD_FILES, seconds=1.0)
    first = asyncio.create_task(deploy(gw, agent, deploy_body("racy-app")))
    await asyncio.sleep(0.3)
    second = await deploy(gw, agent, deploy_body("racy-app"))
    assert second.status_code == 409
    assert second.json()["code"] == "deploy_in_progress"
    assert (await first).status_code == 200
    assert len(sim.projects()) == 1


async def test_build_error_is_reported_with_its_log_lines(
    gw: Gateway, sim_clock: ManualClock, agent: LocalAccount
) -> None:
    await gw.credit(agent.address, ONE_USD)
    upload = files_upload({"index.js": b"x", "SIMULATE_BUILD_ERROR": b"missing module 'left-pad'"})
    answer = (await deploy(gw, agent, deploy_body("broken-app", upload=upload))).json()
    sim_clock.advance(FINISH_SECONDS)
    failed = (await status(gw, agent, answer["projectId"], answer["deploymentId"])).json()
    assert failed["status"] == "failed"
    assert failed["deployment_status"] == "build_error"
    assert "missing module 'left-pad'" in failed["reason"]
    assert "Build finished with status build_error" in failed["reason"]
    assert len(failed["reason"].splitlines()) <= 20


async def test_more_than_100_files_go_through_the_zip_route(
    gw: Gateway, sim: CreateOSSimulator, agent: LocalAccount
) -> None:
    await gw.credit(agent.address, ONE_USD)
    files = {f"src/file{i:03}.js": f"export const n = {i};\n".encode() for i in range(150)}
    response = await deploy(gw, agent, deploy_body("many-files", upload=files_upload(files)))
    assert response.status_code == 200, response.text
    [upload] = [r for r in sim.requests if r.method == "PUT"]
    assert upload.path.endswith("/deployments/upload-zip")
    assert upload.file_count == 150
    assert set(upload.file_names or ()) == set(files)


async def test_zip_upload_is_forwarded_as_is(
    gw: Gateway, sim: CreateOSSimulator, agent: LocalAccount
) -> None:
    await gw.credit(agent.address, ONE_USD)
    archive = zip_bytes({"index.js": b"1", "lib/a.js": b"2"})
    upload = {"type": "zip", "data": b64(archive), "filename": "site.zip"}
    response = await deploy(gw, agent, deploy_body("zipped-app", upload=upload))
    assert response.status_code == 200, response.text
    [put] = [r for r in sim.requests if r.method == "PUT"]
    assert put.path.endswith("/deployments/upload-zip")
    assert sorted(put.file_names or ()) == ["index.js", "lib/a.js"]


async def test_an_upload_of_45_mb_is_accepted(
    gw: Gateway, sim: CreateOSSimulator, agent: LocalAccount
) -> None:
    await gw.credit(agent.address, ONE_USD)
    size = 45 * 1024 * 1024
    big = bytes(range(256)) * (size // 256)
    upload = files_upload({"assets/blob.bin": big, "index.js": b"1"})
    del big
    response = await deploy(gw, agent, deploy_body("big-app", upload=upload))
    assert response.status_code == 200, response.text
    [project] = sim.projects()
    sizes = {f.path: f.size for f in project.deployments[0].files}
    assert sizes == {"assets/blob.bin": size, "index.js": 1}


async def test_ready_check_includes_createos(gw: Gateway) -> None:
    response = await gw.client.get("/health/ready")
    assert response.status_code == 200, response.text
    assert response.json()["checks"]["createos"] == "ok"


@pytest.mark.parametrize("status", [404, 401, 500])
async def test_ready_says_what_the_createos_probe_got(
    gw: Gateway, sim: CreateOSSimulator, status: int
) -> None:
    """The probe's own answer, not the meaning a deploy gives that status ("does not know
    this project or deployment" for a 404 was misleading: it is a wrong API URL)."""
    sim.fail_next("GET", "/v1/quotas", status=status)
    response = await gw.client.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["failing"] == ["createos"]
    assert response.json()["checks"]["createos"] == (
        f"unavailable: GET /v1/quotas got HTTP {status}"
    )


@pytest.mark.parametrize("value", ["", "x" * 129, "has space", "semi;colon"])
async def test_malformed_idempotency_key_is_400(
    gw: Gateway, sim: CreateOSSimulator, agent: LocalAccount, value: str
) -> None:
    response = await deploy(gw, agent, deploy_body(), Idempotency_Key=value)
    assert response.status_code == 400
    assert response.json()["field"] == "Idempotency-Key"
    assert sim.requests == []


async def test_redeploy_has_no_warning_about_itself(
    gw: Gateway, sim: CreateOSSimulator, agent: LocalAccount
) -> None:
    await gw.credit(agent.address, ONE_USD)
    answer = (await deploy(gw, agent, deploy_body("redeployed"))).json()
    project_id = answer["projectId"]
    response = await gw.client.post(
        f"/agent/projects/{project_id}/deploy",
        json={"upload": files_upload({"index.js": b"v2"})},
        headers=signed(agent),
    )
    assert response.status_code == 200, response.text
    second = response.json()
    assert second["projectId"] == project_id
    assert second["deploymentId"] != answer["deploymentId"]
    assert "warning" not in second
    record = await gw.services.ownership.get(project_id)
    assert record is not None
    assert record.deployments == (answer["deploymentId"], second["deploymentId"])
    assert len(sim.projects()[0].deployments) == 2
    polled = await status(gw, agent, project_id, second["deploymentId"])
    assert polled.json()["status"] == "deploying"
