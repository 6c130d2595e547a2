"""docs/PAYMENTS.md section 8: the reconciler against real anvil chains, a real Redis and the
CreateOS simulator over HTTP.

- a payment sent with no request at all is credited to its sender, once (passes repeated, the
  agent's own submission afterwards a 409);
- a credit with no on-chain transfer is reversed with a ledger entry saying so, a real one kept;
- a project created upstream whose record was lost is adopted (recorded, metered, one ledger
  entry), one no wallet holds the name of is reported;
- scanning resumes from the checkpoint in Redis, in a new process too;
- of two gateways running the loop, one reconciles (the lease).
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from devstack.anvil import AnvilNode
from devstack.gateway_process import write_config
from devstack.simulator.server import CreateOSSimulator
from gateway.config import PROJECT_ROOT, Settings
from gateway.ledger import EntryKind, Ledger
from gateway.payments.reconcile import CREDIT_REASON, Reconciler
from gateway.projects.records import NameClaims
from gateway.store import connect_store
from gateway.upstream import CreateOSClient
from tests.deploy_support import SIM_KEY, deploy, deploy_body
from tests.payment_support import (
    ARBITRUM,
    assert_invariants,
    assert_store_invariants,
    new_payer,
    pay,
    topup,
)
from tests.support import (
    LOCAL_CONFIG,
    USDC,
    Gateway,
    SettingsFactory,
    metric_value,
    raw_redis,
    running_gateway,
    served_gateway,
)

PASSES = "gateway_reconcile_passes_total"


def reconcile_settings(
    make_settings: SettingsFactory, chains: dict[str, AnvilNode], tmp_path: Path, **knobs: Any
) -> Settings:
    """The reconciler acting at once (no grace periods), starting at the head, loop off."""
    base = make_settings(chains, createos_api_key=SIM_KEY, rate_limit_requests=10_000)
    values: dict[str, Any] = {
        "enabled": False,
        "credit_after_seconds": 0,
        "adopt_after_seconds": 0,
        "lookback_blocks": 0,
    }
    values.update(knobs)
    return base.with_overrides(
        reconcile=dataclasses.replace(base.reconcile, **values),
        ledger_archive_dir=tmp_path / "archive",
    )


def reconciler_of(gateway: Gateway) -> Reconciler:
    reconciler: Reconciler = gateway.app.state.reconciler
    return reconciler


async def test_a_payment_nobody_claimed_is_credited_to_its_sender_once(
    make_settings: SettingsFactory,
    chains: dict[str, AnvilNode],
    sim: CreateOSSimulator,
    tmp_path: Path,
) -> None:
    settings = reconcile_settings(make_settings, chains, tmp_path)
    async with running_gateway(settings) as gateway:
        reconciler = reconciler_of(gateway)
        await reconciler.run_once()  # the first pass sets the checkpoints at the head
        payer = new_payer()
        tx = pay(chains["arbitrum"], payer, 3 * USDC)  # no request, ever

        report = await reconciler.run_once()
        assert report.found == 1
        [credited] = report.credited
        assert (credited["wallet"], credited["tx"], credited["amount_micro"]) == (
            payer.address,
            tx,
            3 * USDC,
        )
        assert await gateway.balance(payer.address) == 3 * USDC
        [entry] = await gateway.services.ledger.entries(payer.address)
        assert (entry.kind, entry.ref, entry.reason) == (
            "payment",
            f"{ARBITRUM}:{tx}",
            CREDIT_REASON,
        )

        again = await reconciler.run_once()
        assert (again.found, again.credited) == (0, [])
        assert await gateway.balance(payer.address) == 3 * USDC
        metrics = gateway.services.metrics.render().decode()
        assert metric_value(metrics, 'gateway_reconcile_total{event="found"}') == 1
        assert metric_value(metrics, 'gateway_reconcile_total{event="credited"}') == 1

        # The agent submitting it afterwards is told it is processed, and nothing moves.
        late = await topup(gateway, payer, tx)
        assert late.status_code == 409
        assert late.json()["current_credit_balance_usd"] == 3.0
        assert await gateway.balance(payer.address) == 3 * USDC

        summary = await reconciler.last_summary()
        assert summary is not None and summary["credited_count"] == 0  # the last pass's
        scanned = {(s["chain"], s["token"]) for s in summary["scanned"]}
        assert scanned == {
            ("arbitrum", "usdc"),
            ("arbitrum", "usdt"),
            ("base", "usdc"),
            ("base", "usdt"),
        }
        await assert_invariants(gateway)


async def test_a_pushed_payment_is_not_found_and_a_fresh_one_waits_its_grace(
    make_settings: SettingsFactory,
    chains: dict[str, AnvilNode],
    sim: CreateOSSimulator,
    tmp_path: Path,
) -> None:
    settings = reconcile_settings(make_settings, chains, tmp_path, credit_after_seconds=3600)
    async with running_gateway(settings) as gateway:
        reconciler = reconciler_of(gateway)
        await reconciler.run_once()
        pushed_by, waiting_by = new_payer(), new_payer()
        pushed = pay(chains["base"], pushed_by, 2 * USDC)
        assert (await topup(gateway, pushed_by, pushed, chain="base")).status_code == 200
        pay(chains["base"], waiting_by, 1 * USDC)

        report = await reconciler.run_once()
        assert report.found == 1  # only the unclaimed one
        assert report.credited == [] and report.waiting == 1  # seen now, credited after an hour
        assert await gateway.balance(waiting_by.address) == 0
        assert await gateway.balance(pushed_by.address) == 2 * USDC
        await assert_invariants(gateway)

    # What a pass found is kept in Redis: a later process credits it once its grace is over.
    later = dataclasses.replace(settings.reconcile, credit_after_seconds=0)
    async with running_gateway(settings.with_overrides(reconcile=later)) as gateway:
        report = await reconciler_of(gateway).run_once()
        assert [c["wallet"] for c in report.credited] == [waiting_by.address]
        assert await gateway.balance(waiting_by.address) == 1 * USDC
        await assert_invariants(gateway)


async def test_a_credit_without_its_transfer_is_reversed_and_a_real_one_kept(
    make_settings: SettingsFactory,
    chains: dict[str, AnvilNode],
    sim: CreateOSSimulator,
    tmp_path: Path,
) -> None:
    settings = reconcile_settings(make_settings, chains, tmp_path)
    async with running_gateway(settings) as gateway:
        reconciler, ledger = reconciler_of(gateway), gateway.services.ledger
        honest = new_payer()
        real_tx = pay(chains["arbitrum"], honest, 2 * USDC)
        assert (await topup(gateway, honest, real_tx)).status_code == 200

        # A credit with no transfer behind it (what a restored backup of another chain or a bug
        # could leave): claimed and credited through the ledger directly.
        forged_wallet = new_payer().address
        forged_tx = "0x" + "5a" * 32
        _, ticket = await ledger.claim_payment(ARBITRUM, forged_tx, forged_wallet)
        usdc = settings.chains["arbitrum"].tokens["usdc"]
        await ledger.credit_payment(
            ticket,
            forged_wallet,
            4 * USDC,
            {
                "chain": "arbitrum",
                "chain_id": ARBITRUM,
                "tx": forged_tx,
                "token": "usdc",
                "token_address": usdc.address,
                "wallet": forged_wallet.lower(),
                "payer": forged_wallet,
                "pay_to": settings.chains["arbitrum"].pay_to,
                "amount_units": str(4 * USDC),
                "amount_micro": 4 * USDC,
                "block_number": 0,  # final from the start (finalized trails latest by 2)
            },
        )
        report = await reconciler.run_once()
        assert report.audited == 1  # the real payment's block is not finalized yet: it waits
        chains["arbitrum"].mine(3)  # finalized passes the real payment's block
        kept = await reconciler.run_once()
        assert (kept.audited, kept.reversed) == (1, [])
        [reversal] = report.reversed
        assert reversal["ref"] == f"{ARBITRUM}:{forged_tx}"
        assert reversal["reason"] == (
            "reconciler: credit without its on-chain transfer (transaction no longer in the chain)"
        )
        assert await gateway.balance(forged_wallet) == 0
        assert await gateway.balance(honest.address) == 2 * USDC
        newest = (await ledger.entries(forged_wallet))[0]
        assert (newest.kind, newest.amount_micro) == ("reversal", -4 * USDC)
        assert newest.reason == reversal["reason"]

        again = await reconciler.run_once()  # every payment checked once
        assert (again.audited, again.reversed) == (0, [])
        await assert_invariants(gateway)


async def test_an_upstream_project_whose_record_was_lost_is_adopted(
    make_settings: SettingsFactory,
    chains: dict[str, AnvilNode],
    sim: CreateOSSimulator,
    sim_url: str,
    tmp_path: Path,
) -> None:
    settings = reconcile_settings(make_settings, chains, tmp_path)
    async with running_gateway(settings) as gateway:
        svc = gateway.services
        agent = new_payer()
        await gateway.credit(agent.address, 5 * USDC)
        answer = await deploy(gateway, agent, deploy_body("lost-record"))
        assert answer.status_code == 200, answer.text
        project_id, deployment_id = answer.json()["projectId"], answer.json()["deploymentId"]

        # What a failover that lost the record's write leaves: the project upstream, the
        # temporary name claim taken before the create, no record.
        keys, redis = svc.store.keys, raw_redis(svc.store)
        await redis.delete(keys.project(agent.address, project_id))
        await redis.srem(keys.wallet_projects(agent.address), project_id)
        await redis.srem(keys.active_projects(), project_id)
        await redis.set(keys.name_owner("lost-record"), agent.address.lower(), px=3_600_000)
        assert await svc.ownership.get(project_id) is None
        # One the operator made by hand on the same account: nobody's. And a deploy that
        # failed half-way (created, never uploaded): its retry finishes it, nothing is metered.
        upload_settings = {"runtime": "build-ai", "useBuildAI": True}
        async with CreateOSClient(sim_url, SIM_KEY) as createos:
            by_hand = await createos.create_project(
                unique_name="by-hand",
                display_name="By hand",
                description=None,
                settings=upload_settings,
            )
            await NameClaims(svc.store).claim(agent.address, "half-made", ttl_ms=3_600_000)
            half_made = await createos.create_project(
                unique_name="half-made",
                display_name="Half made",
                description=None,
                settings=upload_settings,
            )

        report = await reconciler_of(gateway).run_once()
        assert report.adopted == [
            {"project_id": project_id, "unique_name": "lost-record", "wallet": agent.address}
        ]
        assert sorted(report.unowned, key=lambda u: u["unique_name"]) == [
            {"project_id": by_hand, "unique_name": "by-hand", "reason": "no wallet holds its name"},
            {
                "project_id": half_made,
                "unique_name": "half-made",
                "reason": "no deployment yet: left to the deploy's retry",
            },
        ]
        assert await svc.ownership.get(half_made) is None
        record = await svc.ownership.get(project_id)
        assert record is not None and record.wallet == agent.address.lower()
        assert record.status == "active" and record.last_deployment == deployment_id
        assert project_id in await svc.ownership.metered_projects()
        assert await svc.store.get(keys.name_owner("lost-record")) == agent.address.lower()
        assert await redis.pttl(keys.name_owner("lost-record")) == -1  # the name is its for good
        adoption = (await svc.ledger.entries(agent.address))[0]
        assert (adoption.kind, adoption.amount_micro, adoption.ref) == (
            "adjustment",
            0,
            f"project:{project_id}",
        )
        assert "adopted" in adoption.reason and "lost-record" in adoption.reason

        again = await reconciler_of(gateway).run_once()
        assert again.adopted == [] and len(await svc.ledger.entries(agent.address)) == 2
        assert len(again.unowned) == 2  # still reported, never deleted
        await assert_invariants(gateway)


async def test_scanning_resumes_from_the_checkpoint_in_a_new_process(
    make_settings: SettingsFactory,
    chains: dict[str, AnvilNode],
    sim: CreateOSSimulator,
    tmp_path: Path,
) -> None:
    settings = reconcile_settings(
        make_settings, chains, tmp_path, block_range=1, max_blocks_per_pass=2
    )
    payers = [new_payer() for _ in range(3)]
    async with running_gateway(settings) as first:
        await reconciler_of(first).run_once()
        start = chains["arbitrum"].rpc("eth_blockNumber")
        for payer in payers:  # mint + transfer: two blocks each
            pay(chains["arbitrum"], payer, USDC)
        partial = await reconciler_of(first).run_once()
        [arbitrum_usdc] = [
            s for s in partial.scanned if s["chain"] == "arbitrum" and s["token"] == "usdc"
        ]
        assert arbitrum_usdc["from_block"] == int(start, 16) + 1
        assert arbitrum_usdc["to_block"] == int(start, 16) + 2  # at most two blocks a pass
        assert [c["wallet"] for c in partial.credited] == [payers[0].address]

    async with running_gateway(settings) as second:  # a new process, the same Redis
        credited = []
        for _ in range(3):
            report = await reconciler_of(second).run_once()
            credited += [c["wallet"] for c in report.credited]
        assert credited == [payers[1].address, payers[2].address]
        for payer in payers:
            assert await second.balance(payer.address) == USDC
        await assert_invariants(second)


async def test_of_two_gateway_processes_one_reconciles(
    chains: dict[str, AnvilNode],
    sim: CreateOSSimulator,
    sim_url: str,
    redis_url: str,
    key_prefix: str,
    tmp_path: Path,
) -> None:
    """Two served processes with the loop on: one holds the lease and runs every pass, and a
    payment sent meanwhile is credited once."""
    changes = {
        "reconcile.interval_seconds": 0.2,
        "reconcile.credit_after_seconds": 0,
        "reconcile.lookback_blocks": 0,
        "ledger.archive_dir": str(tmp_path / "archive"),
    }
    rpc = {name: node.url for name, node in chains.items()}
    (tmp_path / "one").mkdir()
    (tmp_path / "two").mkdir()
    with (
        served_gateway(tmp_path / "one", redis_url, key_prefix, sim_url, rpc, changes) as one,
        served_gateway(tmp_path / "two", redis_url, key_prefix, sim_url, rpc, changes) as two,
    ):

        async def passes() -> list[float]:
            found = []
            for process in (one, two):
                async with httpx.AsyncClient(base_url=process.url) as http:
                    text = (await http.get("/metrics")).text
                found.append(metric_value(text, PASSES))
            return found

        store = await connect_store(redis_url, key_prefix)
        try:
            ledger = Ledger(store)
            payer, tx = new_payer(), ""
            for _ in itertools.count():  # the loops run in the background: wait on them
                counts = await passes()
                if not tx and sum(counts) >= 1:  # checkpoints set: pay now
                    tx = pay(chains["arbitrum"], payer, USDC)
                if tx and sum(counts) >= 6 and await ledger.balance(payer.address) > 0:
                    break
                await asyncio.sleep(0.1)
            assert sorted(counts)[0] == 0  # one process ran every pass
            [entry] = await ledger.entries(payer.address)
            assert (entry.ref, entry.amount_micro) == (f"{ARBITRUM}:{tx}", USDC)
            await asyncio.sleep(0.5)  # more passes: still one credit
            assert len(await ledger.entries(payer.address)) == 1
            await assert_store_invariants(store, ledger)
        finally:
            await store.close()


def run_cli(config: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gateway", "--config", str(config), *args],
        cwd=PROJECT_ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


async def test_operator_cli_runs_a_pass_shows_it_and_pages_a_compacted_ledger(
    chains: dict[str, AnvilNode],
    sim: CreateOSSimulator,
    sim_url: str,
    redis_url: str,
    key_prefix: str,
    tmp_path: Path,
) -> None:
    config = write_config(
        tmp_path / "gateway.toml",
        LOCAL_CONFIG,
        {
            "gateway.redis_key_prefix": key_prefix,
            "upstream.api_url": sim_url,
            "reconcile.credit_after_seconds": 0,
            "reconcile.lookback_blocks": 0,
            "ledger.max_entries": 6,
            "ledger.archive_dir": str(tmp_path / "archive"),
        },
    )
    env = {"REDIS_URL": redis_url}
    env.update({f"GATEWAY_RPC_{name.upper()}": node.url for name, node in chains.items()})
    assert run_cli(config, env, "reconcile", "--run").returncode == 0  # checkpoints at the head
    payer = new_payer()
    tx = pay(chains["arbitrum"], payer, 2 * USDC)
    store = await connect_store(redis_url, key_prefix)
    try:
        ledger = Ledger(store)
        for i in range(9):
            await ledger.apply(payer.address, EntryKind.BURN, -1, ref=f"p:{i}", reason="hour")

        ran = run_cli(config, env, "reconcile", "--run", "--json")
        assert ran.returncode == 0, ran.stderr
        summary = json.loads(ran.stdout)
        assert [(c["wallet"], c["tx"]) for c in summary["credited"]] == [(payer.address, tx)]
        assert [c["wallet"] for c in summary["compacted"]] == [payer.address]
        report = await ledger.check_consistency(payer.address)
        assert report.ok and report.entries == 4 and report.compacted == 7
        assert await ledger.balance(payer.address) == 2 * USDC - 9

        shown = run_cli(config, env, "reconcile")
        assert shown.returncode == 0, shown.stderr
        assert "credited      1" in shown.stdout and tx in shown.stdout

        paged = run_cli(config, env, "ledger", payer.address, "--json", "--offset", "8")
        assert paged.returncode == 0, paged.stderr
        document = json.loads(paged.stdout)
        assert document["total"] == 10  # nine burns and the payment, archived or not
        assert [e["kind"] for e in document["entries"]] == ["burn", "payment"]
    finally:
        await store.close()


async def test_an_unwritable_archive_compacts_nothing_and_says_so(
    make_settings: SettingsFactory,
    chains: dict[str, AnvilNode],
    sim: CreateOSSimulator,
    tmp_path: Path,
) -> None:
    blocked = tmp_path / "not-a-folder"
    blocked.write_text("in the way")
    settings = reconcile_settings(make_settings, chains, tmp_path).with_overrides(
        ledger_max_entries=4, ledger_archive_dir=blocked
    )
    async with running_gateway(settings) as gateway:
        wallet = new_payer().address
        for _ in range(6):
            await gateway.credit(wallet, 1)
        report = await reconciler_of(gateway).run_once()
        assert any("ledger archive cannot be written" in e for e in report.errors)
        consistency = await gateway.services.ledger.check_consistency(wallet)
        assert consistency.ok and consistency.entries == 6 and consistency.compacted == 0


async def test_the_reconciler_credits_past_the_pushed_age_limit_up_to_its_own(
    make_settings: SettingsFactory,
    chains: dict[str, AnvilNode],
    sim: CreateOSSimulator,
    tmp_path: Path,
) -> None:
    """A transfer 4 days old is refused when pushed (72 h) and credited by the reconciler
    (30 days); one 31 days old is refused by both and reported."""
    settings = reconcile_settings(make_settings, chains, tmp_path)
    payer = new_payer()
    async with running_gateway(settings) as gateway:
        await reconciler_of(gateway).run_once()
    tx = pay(chains["base"], payer, 2 * USDC)

    def days_ahead(days: int) -> Callable[[], float]:
        return lambda: time.time() + days * 86_400

    async with running_gateway(settings, clock=days_ahead(4)) as gateway:
        pushed = await topup(gateway, payer, tx, chain="base", clock=days_ahead(4))
        assert pushed.status_code == 402 and pushed.json()["reason"] == "too_old"
        report = await reconciler_of(gateway).run_once()
        assert [c["tx"] for c in report.credited] == [tx]
        assert await gateway.balance(payer.address) == 2 * USDC
        await assert_invariants(gateway)

    older_payer = new_payer()
    async with running_gateway(settings) as gateway:
        await reconciler_of(gateway).run_once()  # moves the checkpoints past the first transfer
    old_tx = pay(chains["base"], older_payer, USDC)
    async with running_gateway(settings, clock=days_ahead(31)) as gateway:
        report = await reconciler_of(gateway).run_once()
        [refused] = report.refused
        assert refused["tx"] == old_tx and "old" in refused["reason"]
        assert await gateway.balance(older_payer.address) == 0
        again = await reconciler_of(gateway).run_once()
        assert again.refused == [] and again.waiting == 0  # reported once, then dropped
