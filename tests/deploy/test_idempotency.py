"""Idempotency-Key on POST /agent/deploy: the first successful answer, once per wallet and key."""

from __future__ import annotations

import asyncio

from eth_account import Account
from eth_account.signers.local import LocalAccount

from devstack.simulator.server import CreateOSSimulator
from tests.deploy_support import ONE_USD, UPLOAD_FILES, deploy, deploy_body, files_upload, signed
from tests.support import Gateway


def creates(sim: CreateOSSimulator) -> int:
    return sum(1 for r in sim.requests if r.method == "POST" and r.path == "/v1/projects")


async def test_replay_returns_the_first_answer_and_deploys_once(
    gw: Gateway, sim: CreateOSSimulator, agent: LocalAccount
) -> None:
    await gw.credit(agent.address, ONE_USD)
    first = await deploy(gw, agent, deploy_body("once-only"), Idempotency_Key="key-1")
    assert first.status_code == 200, first.text
    assert "idempotent-replayed" not in first.headers
    second = await deploy(gw, agent, deploy_body("once-only"), Idempotency_Key="key-1")
    assert second.status_code == 200
    assert second.json() == first.json()
    assert second.headers["idempotent-replayed"] == "true"
    assert len(sim.projects()) == 1 and creates(sim) == 1


async def test_same_key_with_another_body_is_409(gw: Gateway, agent: LocalAccount) -> None:
    await gw.credit(agent.address, ONE_USD)
    assert (await deploy(gw, agent, deploy_body("first-body"), Idempotency_Key="k")).is_success
    other = await deploy(gw, agent, deploy_body("other-body"), Idempotency_Key="k")
    assert other.status_code == 409
    assert other.json()["code"] == "idempotency_key_reused"


async def test_keys_are_scoped_to_the_wallet(
    gw: Gateway, sim: CreateOSSimulator, agent: LocalAccount
) -> None:
    other: LocalAccount = Account.create()
    await gw.credit(agent.address, ONE_USD)
    await gw.credit(other.address, ONE_USD)
    mine = await deploy(gw, agent, deploy_body("scoped-one"), Idempotency_Key="shared:key.1")
    theirs = await deploy(gw, other, deploy_body("scoped-two"), Idempotency_Key="shared:key.1")
    assert mine.status_code == theirs.status_code == 200
    assert mine.json()["projectId"] != theirs.json()["projectId"]
    assert len(sim.projects()) == 2


async def test_error_answers_are_not_replayed(
    gw: Gateway, sim: CreateOSSimulator, agent: LocalAccount
) -> None:
    """A 402 (then credits arrive) or a 502 (then CreateOS recovers) is re-evaluated."""
    quote = await deploy(gw, agent, deploy_body("after-quote"), Idempotency_Key="retry-me")
    assert quote.status_code == 402
    await gw.credit(agent.address, ONE_USD)
    sim.fail_next("PUT", UPLOAD_FILES, status=422)
    failed = await deploy(gw, agent, deploy_body("after-quote"), Idempotency_Key="retry-me")
    assert failed.status_code == 502
    done = await deploy(gw, agent, deploy_body("after-quote"), Idempotency_Key="retry-me")
    assert done.status_code == 200, done.text
    replay = await deploy(gw, agent, deploy_body("after-quote"), Idempotency_Key="retry-me")
    assert replay.json() == done.json()
    assert len(sim.projects()) == 1


async def test_concurrent_requests_with_one_key_deploy_once(
    gw: Gateway, sim: CreateOSSimulator, agent: LocalAccount
) -> None:
    """The second waits for the first and replays its answer."""
    await gw.credit(agent.address, ONE_USD)
    sim.delay_next("PUT", UPLOAD_FILES, seconds=0.5)
    first, second = await asyncio.gather(
        deploy(gw, agent, deploy_body("together"), Idempotency_Key="together-1"),
        deploy(gw, agent, deploy_body("together"), Idempotency_Key="together-1"),
    )
    assert first.status_code == second.status_code == 200, (first.text, second.text)
    assert first.json() == second.json()
    replayed = [r.headers.get("idempotent-replayed") for r in (first, second)]
    assert sorted(str(v) for v in replayed) == ["None", "true"]
    assert len(sim.projects()) == 1 and creates(sim) == 1


async def test_a_key_still_in_progress_after_the_wait_is_409(
    gw: Gateway, sim: CreateOSSimulator, agent: LocalAccount
) -> None:
    await gw.credit(agent.address, ONE_USD)
    gw.services.idempotency._wait_seconds = 0.2
    sim.delay_next("PUT", UPLOAD_FILES, seconds=1.0)
    slow = asyncio.create_task(deploy(gw, agent, deploy_body("slowpoke"), Idempotency_Key="s"))
    await asyncio.sleep(0.2)
    busy = await deploy(gw, agent, deploy_body("slowpoke"), Idempotency_Key="s")
    assert busy.status_code == 409
    assert busy.json()["code"] == "request_in_progress"
    assert busy.headers["retry-after"] == "5"
    assert (await slow).status_code == 200


async def test_redeploy_honours_the_key(
    gw: Gateway, sim: CreateOSSimulator, agent: LocalAccount
) -> None:
    await gw.credit(agent.address, ONE_USD)
    project_id = (await deploy(gw, agent, deploy_body("redeploy-key"))).json()["projectId"]

    async def redeploy() -> dict[str, str]:
        response = await gw.client.post(
            f"/agent/projects/{project_id}/deploy",
            json={"upload": files_upload({"index.js": b"v2"})},
            headers=signed(agent, Idempotency_Key="v2"),
        )
        assert response.status_code == 200, response.text
        body: dict[str, str] = response.json()
        return body

    assert await redeploy() == await redeploy()
    assert len(sim.projects()[0].deployments) == 2
