"""Durable before irreversible, on a real primary with two replicas and three Sentinels
(``REDIS_SENTINELS``, ``[redis] min_replica_acks = 1``).

The forced window: the replicas are frozen (SIGSTOP) and their links to the primary cut, so the
primary acknowledges writes no replica holds. A write something irreversible depends on is then
refused with 503 (its ``WAIT`` counted 0 replicas) before anything irreversible happens; the
primary is killed, a replica promoted, and the refused work, retried, happens once."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

import httpx
import pytest
from eth_account.signers.local import LocalAccount

from devstack.anvil import AnvilNode
from devstack.gateway_process import GatewayProcess, write_config
from devstack.redis_topology import SENTINEL_MASTER, RedisServer, ReplicatedRedis
from devstack.simulator.server import CreateOSSimulator
from gateway.client.signing import auth_headers
from gateway.config import RedisConnection
from gateway.errors import Unavailable
from gateway.ledger import CreditOutcome, EntryKind, Ledger
from gateway.projects.records import Ownership
from gateway.store import connect_store
from tests.deploy_support import SIM_KEY, deploy, deploy_body
from tests.payment_support import assert_invariants, new_payer, pay, payment_settings
from tests.support import LOCAL_CONFIG, SettingsFactory, raw_redis, running_gateway

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


# --- two gateway processes under load, the primary killed mid-way ------------------------------

AGENTS = 10
READS_PER_AGENT = 4


@dataclass
class AgentRun:
    """One agent's story: pay, deploy (retrying as an agent would), read."""

    account: LocalAccount
    tx: str
    deployed: list[str] = field(default_factory=list)  # project ids answered with 200
    answers: list[int] = field(default_factory=list)  # every status seen
    served_at: list[float] = field(default_factory=list)  # loop time of each 200
    progress: asyncio.Event = field(default_factory=asyncio.Event)  # set on each deploy


async def run_agent(run: AgentRun, urls: list[str], name: str, deadline: float) -> None:
    """Deploy ``name`` paying with ``run.tx`` and read credits and projects, against both
    processes in turn. Retries what a real agent retries: a 503 (same request again), a 409
    ``payment_already_processed`` after a lost answer (then on its credits, without the tx), a
    409 ``deploy_in_progress`` (later); a 409 ``name_taken`` naming its own project is its
    deploy, done by an attempt whose answer was lost."""
    loop = asyncio.get_running_loop()
    pay_header: dict[str, str] = {"X-Payment-Tx": run.tx}
    async with httpx.AsyncClient(timeout=30.0) as client:
        for attempt in range(200):
            url = urls[attempt % len(urls)]
            headers = {**auth_headers(run.account), **pay_header}
            try:
                response = await client.post(
                    f"{url}/agent/deploy", json=deploy_body(name), headers=headers
                )
            except httpx.HTTPError:
                await asyncio.sleep(0.2)
                continue
            run.answers.append(response.status_code)
            if response.status_code == 200:
                run.deployed.append(str(response.json()["projectId"]))
                run.served_at.append(loop.time())
                run.progress.set()
                break
            code = response.json().get("code") if response.status_code == 409 else None
            if code == "payment_already_processed":
                pay_header = {}  # credited by an attempt whose answer was lost: use the credits
                continue
            if code == "deploy_in_progress":  # a cut attempt's lock, released in the background
                await asyncio.sleep(0.5)
                continue
            if code == "name_taken" and "projectId" in response.json():
                # An earlier attempt recorded the project, then lost its answer to the kill:
                # the 409 names the agent's own project (docs/PROTOCOL.md), as a 200 would.
                run.deployed.append(str(response.json()["projectId"]))
                run.served_at.append(loop.time())
                run.progress.set()
                break
            assert response.status_code in (502, 503), response.text
            if loop.time() > deadline:
                return
            await asyncio.sleep(0.2)
        for i in range(READS_PER_AGENT):
            url = urls[i % len(urls)]
            path = "/agent/credits" if i % 2 else "/agent/projects"
            while loop.time() < deadline:
                response = await client.get(url + path, headers=auth_headers(run.account))
                run.answers.append(response.status_code)
                if response.status_code == 200:
                    run.served_at.append(loop.time())
                    break
                assert response.status_code == 503, response.text
                await asyncio.sleep(0.2)


async def test_two_gateways_under_load_survive_killing_the_primary(
    replicated_redis: ReplicatedRedis,
    chains: dict[str, AnvilNode],
    sim: CreateOSSimulator,
    sim_url: str,
    key_prefix: str,
    tmp_path: Path,
) -> None:
    arbitrum = chains["arbitrum"]
    runs = [
        AgentRun(account := new_payer(), pay(arbitrum, account, 500_000)) for _ in range(AGENTS)
    ]
    config = write_config(tmp_path / "gateway.toml", LOCAL_CONFIG, {
        "gateway.redis_key_prefix": key_prefix,
        "upstream.api_url": sim_url,
        "rate_limit.requests": 10_000,
        "redis.min_replica_acks": 1,
        "redis.replica_ack_timeout_ms": 300,
    })  # fmt: skip
    env = {
        "REDIS_SENTINELS": replicated_redis.sentinels_env,
        "REDIS_SENTINEL_MASTER": SENTINEL_MASTER,
        **{f"GATEWAY_RPC_{name.upper()}": node.url for name, node in chains.items()},
    }
    with contextlib.ExitStack() as stack:
        gateways = [
            stack.enter_context(GatewayProcess(config, env, tmp_path / f"gateway{i}.log"))
            for i in range(2)
        ]
        urls = [g.url for g in gateways]
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 40.0
        agents = [
            asyncio.create_task(run_agent(run, urls, f"load-{i}", deadline))
            for i, run in enumerate(runs)
        ]
        # Mid-load: once three deploys have answered, the primary dies (SIGKILL).
        for run in runs[:3]:
            await run.progress.wait()
        primary = replicated_redis.primary()
        primary.kill()
        killed_at = loop.time()
        await asyncio.to_thread(replicated_redis.wait_for_promotion, primary)
        promoted_at = loop.time()
        await asyncio.gather(*agents)
        after = [t for run in runs for t in run.served_at if t > promoted_at]
        print(f"promoted {promoted_at - killed_at:.1f} s after the kill; first 200 after it "
              f"{min(after) - promoted_at:.2f} s after the promotion")  # fmt: skip
        for gateway in gateways:
            assert gateway.process is not None and gateway.process.poll() is None

    # Every agent got its deploy (the gateway served again after the promotion) ...
    assert all(len(run.deployed) == 1 for run in runs), [r.answers for r in runs]
    store = await connect_store(sentinel_connection(replicated_redis), key_prefix)
    try:
        ledger, ownership = Ledger(store), Ownership(store)
        for run in runs:
            wallet = run.account.address
            report = await ledger.check_consistency(wallet)
            assert report.ok, report  # sum(entries) == balance
            payments = [e for e in await ledger.entries(wallet) if e.kind == "payment"]
            assert [e.ref for e in payments] == [f"{ARBITRUM}:{run.tx}"]  # credited once
            for project_id in run.deployed:  # every 200 has its record
                record = await ownership.get(project_id)
                assert record is not None and record.wallet == wallet.lower()
        # Every project CreateOS holds has its record, owned by a wallet that paid.
        paid = {run.account.address.lower() for run in runs}
        live = [p.id for p in sim.projects() if p.status != "deleted"]
        assert sorted(live) == sorted(p for run in runs for p in run.deployed)
        for project_id in live:
            record = await ownership.get(project_id)
            assert record is not None and record.wallet in paid
    finally:
        await store.close()
