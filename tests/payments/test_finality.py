"""docs/PAYMENTS.md section 2: confirmations, finality tags and RPC failover, on real anvil chains.

anvil runs with ``--slots-in-an-epoch 1``: ``finalized`` trails ``latest`` by 2 blocks, so a
payment is pending under the ``finalized`` policy until 2 more blocks are mined."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from devstack.anvil import AnvilNode
from gateway.chains import ChainClient
from gateway.types import Finality
from tests.payment_support import (
    ARBITRUM,
    assert_invariants,
    pay,
    payment_settings,
    topup,
    with_chain,
)
from tests.support import USDC, SettingsFactory, raw_redis, running_gateway


def dead_url() -> str:
    """A loopback URL nothing listens on (the port was free a moment ago): connection refused."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


@pytest.fixture
def silent_url() -> Iterator[str]:
    """A loopback URL that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(64)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


async def test_payment_below_min_confirmations_is_pending_then_credited(
    make_settings: SettingsFactory,
    chains: dict[str, AnvilNode],
    arbitrum: AnvilNode,
    agent: LocalAccount,
) -> None:
    settings = with_chain(payment_settings(make_settings, chains), "arbitrum", min_confirmations=3)
    tx = pay(arbitrum, agent, USDC)
    async with running_gateway(settings) as gateway:
        pending = await topup(gateway, agent, tx)
        assert pending.status_code == 402, pending.text
        assert pending.json() == {
            "error": "Payment pending confirmation",
            "payment_status": "pending",
            "confirmations": 1,
            "required": 3,
            "finality": "latest",
        }  # no quote in it: the agent must not pay again
        assert int(pending.headers["retry-after"]) >= 1
        assert await gateway.services.ledger.claim_state(ARBITRUM, tx, agent.address) is None
        assert await gateway.balance(agent.address) == 0

        arbitrum.mine(1)
        assert (await topup(gateway, agent, tx)).json()["confirmations"] == 2
        arbitrum.mine(1)
        credited = await topup(gateway, agent, tx)
        assert credited.status_code == 200, credited.text
        assert await gateway.balance(agent.address) == USDC
        record = await gateway.services.ledger.payment_record(ARBITRUM, tx, agent.address)
        assert record is not None and record["confirmations"] == "3"
        await assert_invariants(gateway)


async def test_finalized_policy_waits_for_the_finalized_tag(
    make_settings: SettingsFactory,
    chains: dict[str, AnvilNode],
    arbitrum: AnvilNode,
    agent: LocalAccount,
) -> None:
    settings = with_chain(
        payment_settings(make_settings, chains), "arbitrum", finality=Finality.FINALIZED
    )
    tx = pay(arbitrum, agent, USDC)
    async with running_gateway(settings) as gateway:
        pending = await topup(gateway, agent, tx)
        assert pending.status_code == 402, pending.text
        assert pending.json()["payment_status"] == "pending"
        assert pending.json()["finality"] == "finalized"
        assert await gateway.services.ledger.claim_state(ARBITRUM, tx, agent.address) is None

        arbitrum.mine(2)  # finalized = latest - 2 reaches the payment's block
        credited = await topup(gateway, agent, tx)
        assert credited.status_code == 200, credited.text
        # Credited at finality: nothing left for the re-check.
        store = gateway.services.store
        assert await raw_redis(store).zcard(store.keys.recheck_queue()) == 0
        await assert_invariants(gateway)


async def test_a_payment_above_the_threshold_waits_for_finalized(
    make_settings: SettingsFactory,
    chains: dict[str, AnvilNode],
    arbitrum: AnvilNode,
    agent: LocalAccount,
) -> None:
    """``finalized_above_usd``: a payment worth more waits for the finalized tag on a chain
    whose policy is ``latest``; a smaller one is credited at once (and queued for re-check)."""
    settings = with_chain(
        payment_settings(make_settings, chains), "arbitrum", finalized_above_micro=1_000_000
    )
    small_payer: LocalAccount = Account.create()
    small = pay(arbitrum, small_payer, USDC // 2)
    large = pay(arbitrum, agent, 2 * USDC)
    async with running_gateway(settings) as gateway:
        pending = await topup(gateway, agent, large)
        assert pending.status_code == 402, pending.text
        assert pending.json()["payment_status"] == "pending"
        assert pending.json()["finality"] == "finalized"
        assert "amount_usd" not in pending.json()  # no fresh quote: nothing to pay twice
        assert await gateway.services.ledger.claim_state(ARBITRUM, large, agent.address) is None

        credited_small = await topup(gateway, small_payer, small)
        assert credited_small.status_code == 200, credited_small.text

        arbitrum.mine(2)  # finalized = latest - 2 reaches the large payment's block
        credited = await topup(gateway, agent, large)
        assert credited.status_code == 200, credited.text
        assert await gateway.balance(agent.address) == 2 * USDC
        record = await gateway.services.ledger.payment_record(ARBITRUM, large, agent.address)
        assert record is not None and record["finality"] == "finalized"
        # Only the small one, credited at latest, waits for the re-check.
        store = gateway.services.store
        assert await raw_redis(store).zcard(store.keys.recheck_queue()) == 1
        await assert_invariants(gateway)


async def test_every_rpc_down_is_503_and_the_tx_stays_claimable(
    make_settings: SettingsFactory,
    chains: dict[str, AnvilNode],
    arbitrum: AnvilNode,
    agent: LocalAccount,
) -> None:
    settings = payment_settings(make_settings, chains)
    tx = pay(arbitrum, agent, USDC)
    down = with_chain(settings, "arbitrum", rpc_urls=(dead_url(), dead_url()))
    async with running_gateway(down) as gateway:
        response = await topup(gateway, agent, tx)
        assert response.status_code == 503, response.text
        assert "arbitrum" in response.json()["error"]
        assert "retry-after" in response.headers
        assert await gateway.services.ledger.claim_state(ARBITRUM, tx, agent.address) is None
        assert await gateway.balance(agent.address) == 0
        await assert_invariants(gateway)
    async with running_gateway(settings) as gateway:  # the RPC is back
        credited = await topup(gateway, agent, tx)
        assert credited.status_code == 200, credited.text
        assert await gateway.balance(agent.address) == USDC
        await assert_invariants(gateway)


async def test_a_dead_first_rpc_fails_over_to_the_next(
    make_settings: SettingsFactory,
    chains: dict[str, AnvilNode],
    arbitrum: AnvilNode,
    agent: LocalAccount,
) -> None:
    settings = with_chain(
        payment_settings(make_settings, chains), "arbitrum", rpc_urls=(dead_url(), arbitrum.url)
    )
    tx = pay(arbitrum, agent, USDC)
    async with running_gateway(settings) as gateway:
        credited = await topup(gateway, agent, tx)
        assert credited.status_code == 200, credited.text
        assert await gateway.balance(agent.address) == USDC
        await assert_invariants(gateway)


async def test_a_hanging_rpc_is_503_and_the_tx_stays_claimable(
    make_settings: SettingsFactory,
    chains: dict[str, AnvilNode],
    arbitrum: AnvilNode,
    agent: LocalAccount,
    silent_url: str,
) -> None:
    settings = payment_settings(make_settings, chains)
    tx = pay(arbitrum, agent, USDC)
    hanging = with_chain(settings, "arbitrum", rpc_urls=(silent_url,)).with_overrides(
        rpc_timeout_seconds=0.3
    )
    async with running_gateway(hanging) as gateway:
        response = await topup(gateway, agent, tx)
        assert response.status_code == 503, response.text
        assert await gateway.services.ledger.claim_state(ARBITRUM, tx, agent.address) is None
        await assert_invariants(gateway)
    async with running_gateway(settings) as gateway:
        assert (await topup(gateway, agent, tx)).status_code == 200
        await assert_invariants(gateway)


async def test_a_height_above_the_tip_is_an_answer_not_an_outage(
    make_settings: SettingsFactory, chains: dict[str, AnvilNode], arbitrum: AnvilNode
) -> None:
    # What an unsealed pre-confirmed receipt (Base Flashblocks) or a rollback looks like to
    # the adapter: the payment rules turn it into "pending"; a 503 would be wrong.
    client = ChainClient(payment_settings(make_settings, chains).chains["arbitrum"])
    try:
        tip = await client.latest_block()
        facts = await client.block_facts(tip + 5)
        assert facts.canonical_hash is None and facts.timestamp is None
        assert facts.latest >= tip
    finally:
        await client.close()
