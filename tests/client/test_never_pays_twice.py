"""The client never pays twice for one deploy: not when the gateway process is killed between
the payment and the retry, not when the client itself dies after paying (its journal on disk
remembers the tx), not after a 502 or a 409 for its own tx (it deploys on the credits).
Real gateway process, real anvil transfers, credits read back from the gateway's ledger."""

from __future__ import annotations

from pathlib import Path

import httpx
from eth_account.signers.local import LocalAccount

from gateway.client.agent import AgentClient
from gateway.client.bundle import Bundle
from gateway.client.journal import FileJournal
from gateway.client.models import Progress
from gateway.client.signing import auth_headers
from tests.client.conftest import LocalStack, pay_then_crash


def small_upload() -> dict[str, object]:
    return Bundle(files={"index.js": b"console.log('restart')\n"}).upload()


async def payment_entries(stack: LocalStack, agent: LocalAccount) -> list[str]:
    """The refs (chain:tx) of the wallet's payment ledger entries, from the gateway."""
    async with AgentClient(stack.gateway.url, agent) as reader:
        credits = await reader.credits()
    return [entry.ref or "" for entry in credits.ledger if entry.kind == "payment"]


async def test_gateway_killed_between_payment_and_retry(local_stack: LocalStack) -> None:
    agent = local_stack.funded_agent()
    gateway = local_stack.gateway
    seen: list[Progress] = []

    def on_progress(progress: Progress) -> None:
        seen.append(progress)
        if progress.stage == "confirmed":
            gateway.kill()  # the transfer is mined; the retry with X-Payment-Tx is next
        elif (
            progress.stage == "retrying" and gateway.process and gateway.process.poll() is not None
        ):
            gateway.start()  # only once the client has found the gateway gone

    async with AgentClient(
        gateway.url,
        agent,
        rpc_urls=local_stack.rpc_urls,
        on_progress=on_progress,
        poll_seconds=0.2,
    ) as client:
        deployment = await client.deploy(small_upload(), name="restart-app")

    assert deployment.status.status == "ready"
    assert deployment.started.payment is not None
    stages = [p.stage for p in seen]
    assert stages.index("confirmed") < stages.index("retrying") < stages.index("started")
    transfers = local_stack.transfers_from(agent.address)
    assert len(transfers) == 1
    assert transfers[0]["transactionHash"] == deployment.started.payment.tx_hash
    entries = await payment_entries(local_stack, agent)
    assert len(entries) == 1 and deployment.started.payment.tx_hash in entries[0]


async def test_client_restarted_after_paying_reuses_the_journalled_tx(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    agent = local_stack.funded_agent()
    journal_path = tmp_path / "payments.json"

    tx = await pay_then_crash(
        local_stack,
        agent,
        journal_path,
        lambda client: client.deploy(small_upload(), name="journal-app"),
    )

    seen: list[Progress] = []
    async with AgentClient(
        local_stack.gateway.url,
        agent,
        rpc_urls=local_stack.rpc_urls,
        journal=FileJournal(journal_path),
        on_progress=seen.append,
        poll_seconds=0.2,
    ) as second:
        deployment = await second.deploy(small_upload(), name="journal-app")

    assert deployment.status.status == "ready"
    assert "paying" not in [p.stage for p in seen]
    assert deployment.started.payment is not None
    assert deployment.started.payment.tx_hash == tx
    assert len(local_stack.transfers_from(agent.address)) == 1
    assert len(await payment_entries(local_stack, agent)) == 1
    assert (
        FileJournal(journal_path).get(
            f"{local_stack.gateway.url}|{agent.address.lower()}|deploy:journal-app"
        )
        is None
    )


async def test_after_a_502_the_client_retries_on_credits_without_paying(
    local_stack: LocalStack,
) -> None:
    agent = local_stack.funded_agent()
    # CreateOS fails the create once: the gateway has credited the payment and answers 502.
    local_stack.simulator.fail_next("POST", r"/v1/projects", status=500)
    seen: list[Progress] = []
    async with AgentClient(
        local_stack.gateway.url,
        agent,
        rpc_urls=local_stack.rpc_urls,
        on_progress=seen.append,
        poll_seconds=0.2,
    ) as client:
        deployment = await client.deploy(small_upload(), name="upstream-502-app")

    assert deployment.status.status == "ready"
    stages = [p.stage for p in seen]
    assert stages.count("paying") == 1
    assert stages.index("confirmed") < stages.index("retrying") < stages.index("started")
    assert len(local_stack.transfers_from(agent.address)) == 1
    assert len(await payment_entries(local_stack, agent)) == 1


async def test_a_409_for_its_own_credited_tx_makes_it_deploy_on_credits(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    """The tx was credited by an attempt whose answer never arrived (here: a top-up with it);
    the resumed deploy gets "Payment already processed" and deploys on those credits."""
    agent = local_stack.funded_agent()
    journal_path = tmp_path / "payments.json"

    tx = await pay_then_crash(
        local_stack,
        agent,
        journal_path,
        lambda client: client.deploy(small_upload(), name="credited-app"),
    )
    async with httpx.AsyncClient(base_url=local_stack.gateway.url) as http:
        headers = auth_headers(agent)
        headers.update({"X-Payment-Tx": tx, "X-Payment-Chain": "arbitrum"})
        topped = await http.post("/agent/credits/topup", headers=headers)
    assert topped.status_code == 200, topped.text

    seen: list[Progress] = []
    async with AgentClient(
        local_stack.gateway.url,
        agent,
        rpc_urls=local_stack.rpc_urls,
        journal=FileJournal(journal_path),
        on_progress=seen.append,
        poll_seconds=0.2,
    ) as second:
        deployment = await second.deploy(small_upload(), name="credited-app")

    assert deployment.status.status == "ready"
    assert deployment.started.payment is None  # started on credits
    assert "credits" in [p.stage for p in seen] and "paying" not in [p.stage for p in seen]
    assert len(local_stack.transfers_from(agent.address)) == 1
    assert len(await payment_entries(local_stack, agent)) == 1
