"""A top-up is journalled like a deploy: the client that dies between paying and being credited
is resumed by running the same top-up again, with the same tx, never a second transfer. Real
gateway process (killed and started again), real anvil transfers, credits read back from the
gateway's ledger."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import httpx
from eth_account.signers.local import LocalAccount

from gateway.client.agent import AgentClient
from gateway.client.journal import FileJournal
from gateway.client.models import Progress
from gateway.client.signing import auth_headers
from tests.client.conftest import LocalStack, pay_then_crash
from tests.client.test_never_pays_twice import payment_entries


def top_up_key(stack: LocalStack, agent: LocalAccount, amount_token: int) -> str:
    return f"{stack.gateway.url}|{agent.address.lower()}|topup:arbitrum:usdc:{amount_token}"


async def pay_and_crash(
    stack: LocalStack, agent: LocalAccount, journal_path: Path, *, kill_gateway: bool
) -> str:
    """Top up 1 USD and die as soon as the transfer is mined (``pay_then_crash``)."""
    return await pay_then_crash(
        stack,
        agent,
        journal_path,
        lambda client: client.top_up(Decimal(1)),
        kill_gateway=kill_gateway,
    )


async def test_top_up_resumed_after_client_and_gateway_died_pays_once(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    agent = local_stack.funded_agent()
    journal_path = tmp_path / "payments.json"
    try:
        tx = await pay_and_crash(local_stack, agent, journal_path, kill_gateway=True)
    finally:
        local_stack.gateway.start()
    assert await payment_entries(local_stack, agent) == []  # paid on-chain, not credited yet
    journalled = FileJournal(journal_path).get(top_up_key(local_stack, agent, 1_000_000))
    assert journalled is not None and journalled.tx == tx

    seen: list[Progress] = []
    async with AgentClient(
        local_stack.gateway.url,
        agent,
        rpc_urls=local_stack.rpc_urls,
        journal=FileJournal(journal_path),
        on_progress=seen.append,
    ) as second:
        topped = await second.top_up(Decimal(1))

    assert "paying" not in [p.stage for p in seen]
    assert topped.payment.tx_hash == tx and not topped.credited_earlier
    assert topped.credited_usd == Decimal(1) and topped.balance_usd == Decimal(1)
    assert len(local_stack.transfers_from(agent.address)) == 1
    [entry] = await payment_entries(local_stack, agent)
    assert tx in entry
    assert FileJournal(journal_path).get(top_up_key(local_stack, agent, 1_000_000)) is None


async def test_top_up_credited_by_an_attempt_whose_answer_was_lost_is_not_paid_again(
    local_stack: LocalStack, tmp_path: Path
) -> None:
    """The gateway credited the tx but the client never read the answer: running the same
    top-up again gets 409 "Payment already processed" and reports that credit as its result."""
    agent = local_stack.funded_agent()
    journal_path = tmp_path / "payments.json"
    tx = await pay_and_crash(local_stack, agent, journal_path, kill_gateway=False)
    async with httpx.AsyncClient(base_url=local_stack.gateway.url) as http:
        headers = auth_headers(agent) | {"X-Payment-Tx": tx, "X-Payment-Chain": "arbitrum"}
        lost = await http.post("/agent/credits/topup", headers=headers)
    assert lost.status_code == 200, lost.text

    seen: list[Progress] = []
    async with AgentClient(
        local_stack.gateway.url,
        agent,
        rpc_urls=local_stack.rpc_urls,
        journal=FileJournal(journal_path),
        on_progress=seen.append,
    ) as second:
        topped = await second.top_up(Decimal(1))

    assert "paying" not in [p.stage for p in seen]
    assert topped.credited_earlier and topped.payment.tx_hash == tx
    assert topped.credited_usd == Decimal(1) and topped.balance_usd == Decimal(1)
    assert len(local_stack.transfers_from(agent.address)) == 1
    assert len(await payment_entries(local_stack, agent)) == 1
    assert FileJournal(journal_path).get(top_up_key(local_stack, agent, 1_000_000)) is None
