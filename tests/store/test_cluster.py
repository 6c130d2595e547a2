"""The gateway on a 3-master Redis Cluster (``REDIS_CLUSTER_NODES``), real servers started for
the session: a paid deploy, a top-up (one payer and two in one tx), metering, the payment
re-check and the rate limit. Any script or MULTI whose keys spread over two slots fails here
with CROSSSLOT, so these runs are the proof that keys.py keeps each step in one slot; and the
scripts of one event-loop turn go to each node as one pipeline (redis-py's cluster pipeline
refuses EVALSHA)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from eth_account.signers.local import LocalAccount

from devstack.anvil import AnvilNode
from devstack.redis_topology import RedisClusterStack
from devstack.simulator.server import CreateOSSimulator
from gateway.client.signing import auth_headers
from gateway.config import RedisConnection, Settings, load_settings
from gateway.errors import Unavailable
from gateway.ledger import EntryKind, Ledger
from gateway.store import connect_store
from gateway.store.archive import FileArchive
from gateway.store.keys import KeySpace, slot_tag
from tests.deploy_support import SIM_KEY, deploy, deploy_body
from tests.payment_support import assert_invariants, new_payer, pay, payment_settings, topup
from tests.payments.test_reconcile import reconcile_settings, reconciler_of
from tests.payments.test_two_payers import pull_from_two
from tests.support import LOCAL_CONFIG, USDC, Gateway, SettingsFactory, running_gateway

ARBITRUM = 42161


@pytest.fixture
def make_settings(redis_cluster: RedisClusterStack, key_prefix: str, sim_url: str) -> Any:
    """The root ``make_settings``, on the cluster instead of the session's single Redis."""

    def factory(nodes: dict[str, AnvilNode] | None = None, **overrides: Any) -> Settings:
        env = {"REDIS_CLUSTER_NODES": redis_cluster.nodes_env, "CREATEOS_API_URL": sim_url}
        for name, node in (nodes or {}).items():
            env[f"GATEWAY_RPC_{name.upper()}"] = node.url
        settings = load_settings(LOCAL_CONFIG, env)
        assert settings.redis_connection.topology == "cluster"
        return settings.with_overrides(redis_key_prefix=key_prefix, **overrides)

    return factory


@pytest.fixture
async def cgw(
    make_settings: SettingsFactory, chains: dict[str, AnvilNode], sim: CreateOSSimulator
) -> AsyncIterator[Gateway]:
    settings = payment_settings(make_settings, chains, createos_api_key=SIM_KEY)
    async with running_gateway(settings) as gateway:
        yield gateway
        await assert_invariants(gateway)


def node_clients(cluster: RedisClusterStack) -> list[int]:
    """Connections each node holds right now, from clients other than this probe."""
    counts = []
    for server in cluster.servers:
        probe = server.client()
        counts.append(len(probe.client_list()) - 1)
        probe.close()
    return counts


async def test_scripts_of_one_turn_go_to_each_node_as_one_pipeline(
    redis_cluster: RedisClusterStack, key_prefix: str
) -> None:
    nodes = tuple(("127.0.0.1", server.port) for server in redis_cluster.servers)
    store = await connect_store(RedisConnection(cluster_nodes=nodes), key_prefix)
    try:
        ledger = Ledger(store)
        wallets = [f"0x{i:040x}" for i in range(60)]
        before = node_clients(redis_cluster)
        results = await asyncio.gather(
            *(ledger.apply(w, EntryKind.ADJUSTMENT, 5, ref="t", reason="t") for w in wallets)
        )
        assert [r.balance_micro for r in results] == [5] * 60
        # 60 wallets' slots are spread over all three nodes ...
        slots = {store._redis.keyslot(store.keys.balance(w)) for w in wallets}
        assert len({redis_cluster.servers[s * 3 // 16384].port for s in slots}) == 3
        # ... yet each node was sent its share down one connection (and, at most, the one
        # that loaded the scripts at start): not one per call.
        added = [
            after - was for after, was in zip(node_clients(redis_cluster), before, strict=True)
        ]
        assert max(added) <= 2, added
        for wallet in wallets[:5]:
            assert (await ledger.check_consistency(wallet)).ok
    finally:
        await store.close()


async def test_money_keys_of_a_wallet_share_its_slot(key_prefix: str) -> None:
    keys = KeySpace(key_prefix)
    wallet = "0x" + "ab" * 20
    tx = "0x" + "cd" * 32
    in_slot = [
        keys.balance(wallet), keys.ledger(wallet), keys.ledger_seq(wallet),
        keys.claim(ARBITRUM, tx, wallet), keys.payment(ARBITRUM, tx, wallet),
        keys.wallet_payments(wallet), keys.project(wallet, "p1"), keys.metered_hour(wallet, "p1"),
        keys.wallet_projects(wallet), keys.nonce(wallet, "n"), keys.rate("1.2.3.4", wallet),
        keys.ledger_guard(wallet, "g"), keys.deploy_attempt(wallet, "app"),
    ]  # fmt: skip
    assert {slot_tag(key) for key in in_slot} == {"w:" + wallet}
    # The global facts are not in it: they are found without knowing the wallet.
    for key in (keys.wallets(), keys.recheck_queue(), keys.project_owner("p1"),
                keys.name_owner("app"), keys.tx_payers(ARBITRUM, tx)):  # fmt: skip
        assert slot_tag(key) != "w:" + wallet


async def test_paid_deploy_on_a_cluster(
    cgw: Gateway, arbitrum: AnvilNode, agent: LocalAccount, sim: CreateOSSimulator
) -> None:
    tx = pay(arbitrum, agent, 500_000)
    response = await deploy(cgw, agent, deploy_body("on-cluster"), X_Payment_Tx=tx)
    assert response.status_code == 200, response.text
    project_id = response.json()["projectId"]
    record = await cgw.services.ownership.get(project_id)
    assert record is not None and record.wallet == agent.address.lower()
    assert [p.project_id for p in await cgw.services.ownership.projects_of(agent.address)] == [
        project_id
    ]
    again = await deploy(cgw, agent, deploy_body("on-cluster-two"), X_Payment_Tx=tx)
    assert again.status_code == 409 and again.json()["code"] == "payment_already_processed"
    listed = await cgw.client.get("/agent/projects", headers=auth_headers(agent))
    assert [p["id"] for p in listed.json()["projects"]] == [project_id]


async def test_top_up_once_and_two_payers_in_one_tx_on_a_cluster(
    cgw: Gateway, arbitrum: AnvilNode, agent: LocalAccount
) -> None:
    tx = pay(arbitrum, agent, 2 * USDC)
    assert (await topup(cgw, agent, tx)).status_code == 200
    assert (await topup(cgw, agent, tx)).status_code == 409
    assert await cgw.balance(agent.address) == 2 * USDC

    first, second = new_payer(), new_payer()
    shared = pull_from_two(arbitrum, {first.address: USDC, second.address: 4 * USDC})
    assert (await topup(cgw, first, shared)).status_code == 200
    assert (await topup(cgw, second, shared)).status_code == 200
    assert await cgw.balance(first.address) == USDC
    assert await cgw.balance(second.address) == 4 * USDC


async def test_metering_burns_and_suspends_on_a_cluster(
    cgw: Gateway, agent: LocalAccount, sim: CreateOSSimulator
) -> None:
    await cgw.credit(agent.address, cgw.settings.pricing.minimum_micro_usd)
    response = await deploy(cgw, agent, deploy_body("metered-cluster"))
    assert response.status_code == 200, response.text
    project_id = response.json()["projectId"]

    metering = cgw.services.metering
    report = await metering.run_once(now=time.time() + 3600)
    assert {burn.project_id for burn in report.burned} == {project_id}
    left = await cgw.balance(agent.address)
    await cgw.credit(agent.address, 1 - left)  # too little for the next hour
    report = await metering.run_once(now=time.time() + 2 * 3600)
    assert report.suspended == [project_id]
    record = await cgw.services.ownership.get(project_id)
    assert record is not None and record.status == "suspended"
    assert (await cgw.services.ledger.check_consistency(agent.address)).ok


async def test_recheck_confirms_a_payment_on_a_cluster(
    cgw: Gateway, arbitrum: AnvilNode, agent: LocalAccount
) -> None:
    tx = pay(arbitrum, agent, USDC)
    assert (await topup(cgw, agent, tx)).status_code == 200
    queued = f"{ARBITRUM}:{tx}:{agent.address.lower()}"
    rechecker = cgw.services.rechecker
    assert (await rechecker.run_once()).waiting == [queued]  # not final yet
    arbitrum.mine(5)
    assert (await rechecker.run_once()).confirmed == [queued]
    assert await cgw.balance(agent.address) == USDC


async def test_rate_limit_and_failed_auth_budget_on_a_cluster(
    make_settings: SettingsFactory, chains: dict[str, AnvilNode], agent: LocalAccount
) -> None:
    settings = make_settings(chains, rate_limit_requests=3, failed_auth_requests=2)
    async with running_gateway(settings) as gateway:
        codes = [
            (await gateway.client.get("/agent/credits", headers=auth_headers(agent))).status_code
            for _ in range(4)
        ]
        assert codes == [200, 200, 200, 429]
        # Bad signatures from one IP: each counts against its wallet's bucket (that wallet's
        # slot) and the IP's failure budget (another slot): the budget runs out first.
        bad = []
        for _ in range(3):
            headers = auth_headers(new_payer())
            headers["X-Signature"] = "0x" + "11" * 65
            bad.append((await gateway.client.get("/agent/credits", headers=headers)).status_code)
        assert bad == [401, 401, 429]


async def test_durable_writes_wait_on_the_node_that_took_them(
    redis_cluster: RedisClusterStack, key_prefix: str
) -> None:
    """``min_replica_acks`` on a cluster: ``WAIT`` follows each write on its node's connection.
    These masters have no replicas, so every durable write is refused with 503 while the plain
    writes beside it, on the same nodes and in the same batches, go through."""
    nodes = tuple(("127.0.0.1", server.port) for server in redis_cluster.servers)
    connection = RedisConnection(cluster_nodes=nodes, min_replica_acks=1, replica_ack_timeout_ms=50)
    store = await connect_store(connection, key_prefix)
    try:
        ledger = Ledger(store)
        wallets = [f"0x{i:040x}" for i in range(9)]
        tickets = await asyncio.gather(
            *(ledger.claim_payment(ARBITRUM, "0x" + "ab" * 32, w) for w in wallets)
        )
        credits = await asyncio.gather(
            *(
                ledger.credit_payment(t, w, 1, {})
                for (_, t), w in zip(tickets, wallets, strict=True)
            ),
            *(store.run("rate_limit", [store.keys.rate("ip", w)], [1, 60_000, 5]) for w in wallets),
            return_exceptions=True,
        )
        assert all(isinstance(c, Unavailable) for c in credits[:9]), credits[:9]
        for hit in credits[9:]:
            assert isinstance(hit, list) and [int(v) for v in hit] == [1, 0], hit
        with pytest.raises(Unavailable):
            await store.put(store.keys.project_owner("p"), "w", ttl_ms=None, durable=True)
        await store.put(store.keys.project_owner("p"), "w", ttl_ms=None)
    finally:
        await store.close()


async def test_the_reconciler_and_compaction_on_a_cluster(
    make_settings: SettingsFactory,
    chains: dict[str, AnvilNode],
    sim: CreateOSSimulator,
    tmp_path: Path,
) -> None:
    """A tx with transfers from two senders and no request at all is credited by the
    reconciler to each sender, once; a long ledger is compacted, its history intact."""
    settings = reconcile_settings(make_settings, chains, tmp_path)
    async with running_gateway(settings) as gateway:
        reconciler = reconciler_of(gateway)
        await reconciler.run_once()  # the first pass sets the checkpoints at the head
        first, second = new_payer(), new_payer()
        pull_from_two(chains["arbitrum"], {first.address: USDC, second.address: 2 * USDC})
        report = await reconciler.run_once()
        assert sorted(c["wallet"] for c in report.credited) == sorted(
            [first.address, second.address]
        )
        assert await gateway.balance(first.address) == USDC
        assert await gateway.balance(second.address) == 2 * USDC
        assert (await reconciler.run_once()).credited == []

        ledger = gateway.services.ledger
        for _ in range(30):
            await ledger.apply(first.address, EntryKind.ADJUSTMENT, 1, ref="t", reason="t")
        archive = FileArchive(settings.ledger_archive_dir)
        outcome = await ledger.compact(first.address, archive, keep=5)
        assert outcome.archived == 26
        assert (await ledger.check_consistency(first.address)).ok
        history = await ledger.full_history(first.address, archive)
        assert [e.seq for e in history] == list(range(1, 32))
        await assert_invariants(gateway)
