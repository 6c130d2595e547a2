"""POST /agent/deploy end to end: the gateway in-process, the CreateOS simulator over HTTP,
payments on a real anvil chain, state in the real Redis."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from devstack.anvil import AnvilNode
from devstack.clock import ManualClock
from devstack.simulator.server import CreateOSSimulator
from gateway.ledger import EntryKind
from tests.deploy_support import (
    FINISH_SECONDS,
    ONE_USD,
    UPLOAD_FILES,
    b64,
    deploy,
    deploy_body,
    files_upload,
    signed,
    status,
    zip_bytes,
)
from tests.payment_support import pay
from tests.support import PAY_TO, Gateway


def creates(sim: CreateOSSimulator) -> list[str]:
    return [r.path for r in sim.requests if r.method == "POST" and r.path == "/v1/projects"]


async def take_name_upstream(sim_url: str, name: str) -> None:
    """Another CreateOS account (not through this gateway) creates a project named ``name``."""
    async with httpx.AsyncClient(base_url=sim_url, headers={"X-Api-Key": "sim-other-key"}) as c:
        created = await c.post(
            "/v1/projects",
            json={
                "uniqueName": name,
                "displayName": "Taken Elsewhere",
                "type": "upload",
                "settings": {"runtime": "build-ai", "useBuildAI": True},
            },
        )
        assert created.status_code == 201


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


async def test_paid_deploy_from_a_wallet_with_a_live_project_needs_no_opt_in(
    gw: Gateway, sim: CreateOSSimulator, arbitrum: AnvilNode, agent: LocalAccount
) -> None:
    """The payment is the agent's answer to the sharing question: the paid request deploys
    (one credit, one project) instead of asking again, which invited a second payment."""
    await gw.credit(agent.address, ONE_USD // 2)
    assert (await deploy(gw, agent, deploy_body("live-app"))).status_code == 200
    warned = await deploy(gw, agent, deploy_body("paid-second"))
    assert warned.status_code == 402 and "X-Use-Existing-Credits" in warned.json()["warning"]

    tx = pay(arbitrum, agent, int(warned.json()["amount_token"]))
    response = await deploy(gw, agent, deploy_body("paid-second"), X_Payment_Tx=tx)

    assert response.status_code == 200, response.text
    answer = response.json()
    assert answer["message"].startswith("Deployment started. Poll status for updates. Warning: ")
    assert "credits shared with the other live projects" in answer["message"]
    assert "1 active project funded by the same credits" in answer["warning"]
    payments = [e for e in await gw.services.ledger.entries(agent.address) if e.kind == "payment"]
    assert [(e.amount_micro, tx in e.ref) for e in payments] == [(500_000, True)]
    assert await gw.balance(agent.address) == ONE_USD
    assert [p.unique_name for p in sim.projects()].count("paid-second") == 1
    assert len(creates(sim)) == 2  # live-app, then paid-second once


async def test_payment_that_falls_short_is_quoted_only_the_shortfall(
    gw: Gateway, sim: CreateOSSimulator, arbitrum: AnvilNode, agent: LocalAccount
) -> None:
    """After a credited payment, the 402 never asks for the same money again: 0.30 of a 0.50
    quote arrived, so it asks 0.20, and paying that deploys."""
    tx = pay(arbitrum, agent, 300_000)
    response = await deploy(gw, agent, deploy_body("short-paid"), X_Payment_Tx=tx)
    assert response.status_code == 402
    body = response.json()
    assert body["credited_usd"] == 0.3 and body["current_credit_balance_usd"] == 0.3
    assert body["amount_usd"] == 0.2 and body["amount_token"] == "200000"
    assert body["price_usd"] == 0.5
    assert "warning" not in body
    assert creates(sim) == []

    rest = pay(arbitrum, agent, int(body["amount_token"]))
    deployed = await deploy(gw, agent, deploy_body("short-paid"), X_Payment_Tx=rest)
    assert deployed.status_code == 200, deployed.text
    assert await gw.balance(agent.address) == 500_000
    assert len(creates(sim)) == 1


async def test_short_payment_next_to_a_live_project_asks_the_shortfall_without_warning(
    gw: Gateway, sim: CreateOSSimulator, arbitrum: AnvilNode, agent: LocalAccount
) -> None:
    await gw.credit(agent.address, ONE_USD // 2)
    assert (await deploy(gw, agent, deploy_body("live-one"))).status_code == 200
    await gw.services.ledger.apply(
        agent.address, EntryKind.ADJUSTMENT, -400_000, ref="test", reason="burnt"
    )
    tx = pay(arbitrum, agent, 300_000)  # 0.10 + 0.30 of a 0.50 quote
    short = await deploy(gw, agent, deploy_body("short-two"), X_Payment_Tx=tx)
    assert short.status_code == 402
    body = short.json()
    assert body["amount_token"] == "100000" and body["credited_usd"] == 0.3
    assert body["active_projects"] == 1 and "warning" not in body

    rest = pay(arbitrum, agent, 100_000)
    deployed = await deploy(gw, agent, deploy_body("short-two"), X_Payment_Tx=rest)
    assert deployed.status_code == 200, deployed.text  # the paid request needs no opt-in
    assert "warning" in deployed.json()
    assert len(creates(sim)) == 2


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
    # the payment untouched
    assert await gw.services.ledger.claim_state(42161, tx, agent.address) is None
    assert await gw.balance(other.address) == 0
    assert len(creates(sim)) == 1


async def test_name_taken_upstream_is_409_before_payment(
    gw: Gateway, sim: CreateOSSimulator, sim_url: str, agent: LocalAccount
) -> None:
    await take_name_upstream(sim_url, "elsewhere")
    await gw.credit(agent.address, ONE_USD)
    response = await deploy(gw, agent, deploy_body("Elsewhere"))
    assert response.status_code == 409
    assert response.json() == {"error": "Project name already taken", "code": "name_taken"}
    assert len(creates(sim)) == 1


NAME_CHECK = r"/v1/projects/available-unique-name"


async def test_name_taken_upstream_with_a_payment_leaves_the_tx_unclaimed(
    gw: Gateway, sim: CreateOSSimulator, sim_url: str, arbitrum: AnvilNode, agent: LocalAccount
) -> None:
    """The name check runs beside the payment's verification, but a taken name still moves
    no money: the verified payment is not credited and its tx stays claimable."""
    await take_name_upstream(sim_url, "taken-upstream")
    tx = pay(arbitrum, agent, 500_000)
    response = await deploy(gw, agent, deploy_body("taken-upstream"), X_Payment_Tx=tx)
    assert response.status_code == 409
    assert response.json()["code"] == "name_taken"
    assert await gw.services.ledger.claim_state(42161, tx, agent.address) is None
    assert await gw.balance(agent.address) == 0
    retry = await deploy(gw, agent, deploy_body("free-instead"), X_Payment_Tx=tx)
    assert retry.status_code == 200, retry.text  # the same payment deploys another name


async def test_payment_is_verified_while_the_name_check_is_in_flight(
    gw: Gateway, sim: CreateOSSimulator, arbitrum: AnvilNode, agent: LocalAccount
) -> None:
    """The name check and the verification need nothing from each other: the tx is claimed
    and verified while CreateOS has not answered the name check yet (held 2 s here), and the
    payment is credited only after the answer."""
    sim.delay_next("POST", NAME_CHECK, seconds=2.0)
    tx = pay(arbitrum, agent, 500_000)
    request = asyncio.create_task(deploy(gw, agent, deploy_body("side-by-side"), X_Payment_Tx=tx))
    claimed_during_check = False
    while not request.done():
        checks = [r for r in sim.requests if r.path == NAME_CHECK]
        unanswered = bool(checks) and checks[-1].status is None
        state = await gw.services.ledger.claim_state(42161, tx, agent.address)
        if unanswered and state == "pending":
            claimed_during_check = True
            assert await gw.balance(agent.address) == 0  # verified, not credited yet
        await asyncio.sleep(0.02)
    assert (await request).status_code == 200
    assert claimed_during_check
    assert await gw.services.ledger.claim_state(42161, tx, agent.address) == "used"


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
