"""Durable before irreversible, on a real primary with two replicas and three Sentinels
(``REDIS_SENTINELS``, ``[redis] min_replica_acks = 1``).

The forced window: the replicas are frozen (SIGSTOP) and their links to the primary cut, so the
primary acknowledges writes no replica holds. A write something irreversible depends on is then
refused with 503 (its ``WAIT`` counted 0 replicas) before anything irreversible happens; the
primary is killed, a replica promoted, and the refused work, retried, happens once."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest
from eth_account.signers.local import LocalAccount

from devstack.anvil import AnvilNode
from devstack.redis_topology import SENTINEL_MASTER, RedisServer, ReplicatedRedis
from devstack.simulator.server import CreateOSSimulator
from gateway.config import RedisConnection
from gateway.errors import Unavailable
from gateway.ledger import CreditOutcome, EntryKind, Ledger
from gateway.store import connect_store
from tests.deploy_support import SIM_KEY, deploy, deploy_body
from tests.payment_support import assert_invariants, pay, payment_settings
from tests.support import SettingsFactory, raw_redis, running_gateway

ARBITRUM = 42161
WALLET = "0x" + "ab" * 20
TX = "0x" + "5e" * 32
_T = TypeVar("_T")


def sentinel_connection(replicated: ReplicatedRedis) -> RedisConnection:
    return RedisConnection(
        sentinels=tuple(("127.0.0.1", s.port) for s in replicated.sentinels),
        sentinel_master=SENTINEL_MASTER,
        min_replica_acks=1,
        replica_ack_timeout_ms=200,
    )


def open_the_window(replicated: ReplicatedRedis) -> RedisServer:
    """Freeze the replicas and cut their links: the primary now writes alone. Returns it."""
    primary = replicated.primary()
    for replica in replicated.replicas():
        replica.pause()
    primary.client().client_kill_filter(_type="replica")
    return primary


def fail_over(replicated: ReplicatedRedis, primary: RedisServer) -> RedisServer:
    """Kill the primary (a crash), thaw the replicas, wait for the Sentinels' promotion."""
    frozen = [s for s in replicated.data_servers if s is not primary]
    primary.kill()
    for replica in frozen:
        replica.resume()
    return replicated.wait_for_promotion(primary)


async def served_again(attempt: Callable[[], Awaitable[_T]], within: float = 20.0) -> _T:
    """``attempt()`` until it stops failing with 503 (the clients are finding the new
    primary; a promoted primary needs its remaining replica back before durable writes)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while True:
        try:
            return await attempt()
        except Unavailable:
            if loop.time() > deadline:
                raise
            await asyncio.sleep(0.2)


async def test_a_credit_no_replica_holds_is_refused_and_a_failover_cannot_double_it(
    replicated_redis: ReplicatedRedis, key_prefix: str
) -> None:
    store = await connect_store(sentinel_connection(replicated_redis), key_prefix)
    try:
        ledger = Ledger(store)
        await ledger.apply(WALLET, EntryKind.ADJUSTMENT, 1, ref="op", reason="before")
        await raw_redis(store).execute_command("WAIT", 2, 2000)  # both replicas hold it

        primary = open_the_window(replicated_redis)
        _, ticket = await ledger.claim_payment(ARBITRUM, TX, WALLET)
        with pytest.raises(Unavailable):
            await ledger.credit_payment(ticket, WALLET, 5_000_000, {"tx": TX})
        # The old primary applied it and told nobody: the caller was told 503, not "credited".
        assert await ledger.balance(WALLET) == 5_000_001

        fail_over(replicated_redis, primary)
        # The promoted replica never saw the claim or the credit: the payer's retry is the
        # first credit, and the only one.
        assert await served_again(lambda: ledger.balance(WALLET)) == 1
        assert await ledger.claim_state(ARBITRUM, TX, WALLET) is None
        _, again = await served_again(lambda: ledger.claim_payment(ARBITRUM, TX, WALLET))
        credited = await served_again(
            lambda: ledger.credit_payment(again, WALLET, 5_000_000, {"tx": TX})
        )
        assert credited.outcome is CreditOutcome.CREDITED
        report = await ledger.check_consistency(WALLET)
        assert report.ok and report.balance_micro == 5_000_001 and report.entries == 2
    finally:
        await store.close()


async def test_a_paid_deploy_in_the_window_is_503_and_creates_nothing_then_deploys_once(
    replicated_redis: ReplicatedRedis,
    make_settings: SettingsFactory,
    chains: dict[str, AnvilNode],
    sim: CreateOSSimulator,
    agent: LocalAccount,
) -> None:
    settings = payment_settings(make_settings, chains, createos_api_key=SIM_KEY).with_overrides(
        redis_url=None, redis=sentinel_connection(replicated_redis)
    )
    tx = pay(chains["arbitrum"], agent, 500_000)
    async with running_gateway(settings) as gw:
        primary = open_the_window(replicated_redis)
        refused = await deploy(gw, agent, deploy_body("in-the-window"), X_Payment_Tx=tx)
        assert refused.status_code == 503, refused.text
        assert sim.projects() == []  # nothing irreversible: CreateOS was never asked

        fail_over(replicated_redis, primary)

        async def retry() -> str:
            response = await deploy(gw, agent, deploy_body("in-the-window"), X_Payment_Tx=tx)
            if response.status_code == 503:
                raise Unavailable("not yet")
            assert response.status_code == 200, response.text
            return str(response.json()["projectId"])

        project_id = await served_again(retry)
        assert [p.id for p in sim.projects()] == [project_id]  # created once
        assert await gw.services.ownership.get(project_id) is not None
        assert await gw.services.ledger.claim_state(ARBITRUM, tx, agent.address) == "used"
        again = await deploy(gw, agent, deploy_body("in-the-window-2"), X_Payment_Tx=tx)
        assert again.status_code == 409
        await assert_invariants(gw)
