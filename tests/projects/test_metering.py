"""Metering (docs/PAYMENTS.md section 5) against a real Redis and the CreateOS simulator over HTTP.

Time is a ``ManualClock``; ``run_once(now)`` is called directly, so nothing here waits on
the wall clock. Every test ends with the ledger consistency check.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx
import pytest
from eth_account.signers.local import LocalAccount

from devstack.anvil import AnvilNode
from devstack.clock import ManualClock
from devstack.simulator.server import CreateOSSimulator
from gateway.app import create_app
from gateway.client.signing import auth_headers
from gateway.config import Settings
from gateway.ledger import EntryKind, Ledger
from gateway.projects.metering import HOURS_PER_MONTH, Metering, hour_cost, hour_of
from gateway.projects.records import Ownership, ProjectRecord, ProjectStatus
from gateway.store import Store, connect_store
from gateway.store.leases import drop_lease, hold_lease
from gateway.upstream import CreateOSClient
from gateway.web.services import Services
from tests.deploy_support import SIM_KEY, deploy_body
from tests.payment_support import pay
from tests.support import SettingsFactory

WALLET = "0x" + "ab" * 20
HOUR = 3600.0
SUSPEND = r"/v1/projects/[^/]+/suspend"
SIM_SETTINGS = {"runtime": "build-ai", "useBuildAI": True, "port": 3000}


# --- the rounding ---------------------------------------------------------------------------


@pytest.mark.parametrize("price", [500_000, 1, 729, 730, 731, 9_999_999, 123_456_789])
def test_any_730_consecutive_hours_cost_exactly_the_monthly_price(price: int) -> None:
    for first in (0, 17, 489_000):
        for start in (first, first + 1, first + 365, first + 1_000):
            hours = range(start, start + HOURS_PER_MONTH)
            costs = [hour_cost(price, first, h) for h in hours]
            assert sum(costs) == price
            # Each hour is the exact rate rounded down or up: never off by a whole micro-USD.
            assert all(price // HOURS_PER_MONTH <= c <= -(-price // HOURS_PER_MONTH) for c in costs)


# --- fixtures -------------------------------------------------------------------------------


@dataclass
class Meter:
    metering: Metering
    ledger: Ledger
    ownership: Ownership
    store: Store
    upstream: CreateOSClient
    clock: ManualClock

    async def new_project(self, name: str, wallet: str = WALLET) -> ProjectRecord:
        """A project created upstream (the simulator) and recorded as the wallet's."""
        project_id = await self.upstream.create_project(
            unique_name=name,
            display_name="Metered app",
            description=None,
            settings=SIM_SETTINGS,
        )
        return await self.ownership.record_project(
            wallet, project_id, unique_name=name, display_name="Metered app"
        )

    def cost(self, record: ProjectRecord, offset: int) -> int:
        """The cost of the project's hour ``offset`` (0 = its creation hour)."""
        first = hour_of(record.created_at_ms / 1000)
        return self.metering.cost_of(record, first + offset)

    async def burns(self, wallet: str = WALLET) -> list[str]:
        """Refs (``project:hour``) of the wallet's burn entries, oldest first."""
        entries = await self.ledger.entries(wallet)
        return [e.ref for e in reversed(entries) if e.kind == EntryKind.BURN.value]

    async def assert_consistent(self, wallet: str = WALLET) -> None:
        report = await self.ledger.check_consistency(wallet)
        assert report.ok, report


@contextlib.asynccontextmanager
async def meter_on(
    settings: Settings, clock: ManualClock, prefix: str, sim_url: str
) -> AsyncIterator[Meter]:
    store = await connect_store(settings.redis_url or "", prefix)
    upstream = CreateOSClient(sim_url, SIM_KEY, backoff_base=0.0)
    ledger = Ledger(store, clock=clock)
    ownership = Ownership(store, clock=clock)
    metering = Metering(settings, store, ledger, ownership, upstream, clock=clock)
    try:
        yield Meter(metering, ledger, ownership, store, upstream, clock)
    finally:
        await upstream.aclose()
        await store.close()


@pytest.fixture
def clock() -> ManualClock:
    # Two minutes into an hour, so "the hour of creation" is not a boundary case by accident.
    return ManualClock(start=1_800_000_000.0 - 1_800_000_000.0 % HOUR + 120)


@pytest.fixture
async def meter(
    make_settings: SettingsFactory,
    key_prefix: str,
    sim: CreateOSSimulator,
    sim_url: str,
    clock: ManualClock,
) -> AsyncIterator[Meter]:
    async with meter_on(make_settings(), clock, key_prefix, sim_url) as found:
        yield found


def suspended_upstream(sim: CreateOSSimulator, project_id: str) -> bool:
    return next(p for p in sim.projects() if p.id == project_id).suspended


def suspend_calls(sim: CreateOSSimulator, project_id: str, verb: str = "suspend") -> int:
    path = f"/v1/projects/{project_id}/{verb}"
    return sum(1 for r in sim.requests if r.method == "PUT" and r.path == path)


# --- burning --------------------------------------------------------------------------------


async def test_burns_each_hour_once_at_the_hourly_price(meter: Meter) -> None:
    await meter.ledger.apply(WALLET, EntryKind.ADJUSTMENT, 10_000_000, ref="t", reason="seed")
    record = await meter.new_project("burn-hourly")

    first = await meter.metering.run_once(meter.clock())
    assert [(b.project_id, b.amount_micro) for b in first.burned] == [
        (record.project_id, meter.cost(record, 0))
    ]
    for _ in range(5):
        meter.clock.advance(HOUR)
        await meter.metering.run_once(meter.clock())
    again = await meter.metering.run_once(meter.clock())  # same hour: nothing more
    assert again.burned == []

    expected = sum(meter.cost(record, n) for n in range(6))
    assert await meter.ledger.balance(WALLET) == 10_000_000 - expected
    start = hour_of(record.created_at_ms / 1000)
    assert await meter.burns() == [f"{record.project_id}:{start + n}" for n in range(6)]
    # 0.50 USD a month: 684.93 micro-USD an hour, charged as 684 or 685.
    assert {meter.cost(record, n) for n in range(6)} <= {684, 685}
    await meter.assert_consistent()


async def test_two_meters_running_concurrently_never_burn_an_hour_twice(
    meter: Meter, make_settings: SettingsFactory, key_prefix: str, sim_url: str
) -> None:
    await meter.ledger.apply(WALLET, EntryKind.ADJUSTMENT, 10_000_000, ref="t", reason="seed")
    records = [await meter.new_project(f"twin-meter-{i}") for i in range(3)]
    async with meter_on(make_settings(), meter.clock, key_prefix, sim_url) as other:
        for _ in range(12):
            meter.clock.advance(HOUR)
            now = meter.clock()
            await asyncio.gather(meter.metering.run_once(now), other.metering.run_once(now))

    refs = await meter.burns()
    assert len(refs) == len(set(refs)) == 3 * 13
    expected = sum(meter.cost(r, n) for r in records for n in range(13))
    assert await meter.ledger.balance(WALLET) == 10_000_000 - expected
    await meter.assert_consistent()


async def test_two_gateway_apps_on_one_redis_meter_each_hour_once(
    make_settings: SettingsFactory, sim: CreateOSSimulator, clock: ManualClock
) -> None:
    settings = make_settings(createos_api_key=SIM_KEY, metering_interval_seconds=3600.0)
    async with (
        gateway_app(settings, clock) as (_, one),
        gateway_app(settings, clock) as (_, two),
    ):
        await one.ledger.apply(WALLET, EntryKind.ADJUSTMENT, 5_000_000, ref="t", reason="seed")
        project_id = await one.upstream.create_project(
            unique_name="two-apps",
            display_name="Two apps",
            description=None,
            settings=SIM_SETTINGS,
        )
        record = await one.ownership.record_project(
            WALLET, project_id, unique_name="two-apps", display_name="Two apps"
        )
        for _ in range(24):
            clock.advance(HOUR)
            await asyncio.gather(*(s.metering.run_once(clock()) for s in (one, two, one, two)))
        entries = await one.ledger.entries(WALLET)
        burns = [e.ref for e in entries if e.kind == EntryKind.BURN.value]
        assert len(burns) == len(set(burns)) == 25
        first = hour_of(record.created_at_ms / 1000)
        spent = sum(one.metering.cost_of(record, first + n) for n in range(25))
        assert await one.ledger.balance(WALLET) == 5_000_000 - spent
        assert (await one.ledger.check_consistency(WALLET)).ok


async def test_catches_up_every_missed_hour_after_a_pause(meter: Meter) -> None:
    await meter.ledger.apply(WALLET, EntryKind.ADJUSTMENT, 10_000_000, ref="t", reason="seed")
    record = await meter.new_project("catch-up")
    await meter.metering.run_once(meter.clock())
    meter.clock.advance(30 * HOUR + 1_000)  # the gateway was down for 30 hours

    report = await meter.metering.run_once(meter.clock())
    start = hour_of(record.created_at_ms / 1000)
    assert [b.hour for b in report.burned] == [start + n for n in range(1, 31)]
    assert await meter.ledger.metered_hour(record.wallet, record.project_id) == start + 30
    expected = sum(meter.cost(record, n) for n in range(31))
    assert await meter.ledger.balance(WALLET) == 10_000_000 - expected
    await meter.assert_consistent()


async def test_a_project_never_metered_before_is_billed_from_its_creation_hour(
    meter: Meter,
) -> None:
    await meter.ledger.apply(WALLET, EntryKind.ADJUSTMENT, 10_000_000, ref="t", reason="seed")
    record = await meter.new_project("late-first")
    meter.clock.advance(5 * HOUR)
    report = await meter.metering.run_once(meter.clock())
    start = hour_of(record.created_at_ms / 1000)
    assert [b.hour for b in report.burned] == [start + n for n in range(6)]
    await meter.assert_consistent()


async def test_deleted_projects_burn_nothing(meter: Meter) -> None:
    await meter.ledger.apply(WALLET, EntryKind.ADJUSTMENT, 10_000_000, ref="t", reason="seed")
    record = await meter.new_project("deleted-one")
    await meter.metering.run_once(meter.clock())
    await meter.ownership.set_status(record.project_id, ProjectStatus.DELETED)
    meter.clock.advance(10 * HOUR)
    assert (await meter.metering.run_once(meter.clock())).burned == []
    assert len(await meter.burns()) == 1
    await meter.assert_consistent()


async def test_one_leader_holds_the_metering_lease(meter: Meter) -> None:
    key = meter.store.keys.metering_lease()
    assert await hold_lease(meter.store, key, "leader-a", 60_000)
    assert not await hold_lease(meter.store, key, "leader-b", 60_000)
    assert await hold_lease(meter.store, key, "leader-a", 60_000)  # renewal
    await drop_lease(meter.store, key, "leader-b")  # not the holder: no effect
    assert not await hold_lease(meter.store, key, "leader-b", 60_000)
    await drop_lease(meter.store, key, "leader-a")
    assert await hold_lease(meter.store, key, "leader-b", 60_000)


# --- suspension and resumption --------------------------------------------------------------


async def test_runs_out_suspends_upstream_skips_suspended_hours_and_resumes_on_credit(
    meter: Meter, sim: CreateOSSimulator
) -> None:
    record = await meter.new_project("runs-out")
    pid = record.project_id
    two_hours = meter.cost(record, 0) + meter.cost(record, 1)
    await meter.ledger.apply(WALLET, EntryKind.ADJUSTMENT, two_hours, ref="t", reason="seed")

    await meter.metering.run_once(meter.clock())
    meter.clock.advance(HOUR)
    await meter.metering.run_once(meter.clock())
    assert await meter.ledger.balance(WALLET) == 0 and not suspended_upstream(sim, pid)

    meter.clock.advance(HOUR)
    report = await meter.metering.run_once(meter.clock())
    assert report.suspended == [pid] and report.burned == []
    assert suspended_upstream(sim, pid) and suspend_calls(sim, pid) == 1
    assert (await meter.ownership.get(pid)).status == ProjectStatus.SUSPENDED.value  # type: ignore[union-attr]

    meter.clock.advance(5 * HOUR)  # suspended hours: nothing burned, nothing called again
    quiet = await meter.metering.run_once(meter.clock())
    assert quiet.burned == [] and quiet.suspended == [] and suspend_calls(sim, pid) == 1

    await meter.ledger.apply(WALLET, EntryKind.ADJUSTMENT, 1_000_000, ref="t", reason="top-up")
    resumed = await meter.metering.resume_wallet(WALLET)
    now_hour = hour_of(meter.clock())
    assert resumed.resumed == [pid] and [b.hour for b in resumed.burned] == [now_hour]
    assert not suspended_upstream(sim, pid)
    assert (await meter.ownership.get(pid)).status == ProjectStatus.ACTIVE.value  # type: ignore[union-attr]
    start = hour_of(record.created_at_ms / 1000)
    assert await meter.burns() == [f"{pid}:{start}", f"{pid}:{start + 1}", f"{pid}:{now_hour}"]
    await meter.assert_consistent()


async def test_upstream_failure_while_suspending_is_retried_on_the_next_run(
    meter: Meter, sim: CreateOSSimulator
) -> None:
    record = await meter.new_project("flaky-suspend")
    sim.fail_next("PUT", SUSPEND, status=500, times=3)  # every attempt of one client call
    failed = await meter.metering.run_once(meter.clock())
    assert failed.upstream_failed == [record.project_id] and failed.suspended == []
    assert (await meter.ownership.get(record.project_id)).status == "active"  # type: ignore[union-attr]

    retried = await meter.metering.run_once(meter.clock())
    assert retried.suspended == [record.project_id]
    assert suspended_upstream(sim, record.project_id)
    await meter.assert_consistent()


async def test_a_suspend_that_already_applied_upstream_counts_as_done(
    meter: Meter, sim: CreateOSSimulator
) -> None:
    record = await meter.new_project("already-done")
    await meter.upstream.suspend_project(record.project_id)  # an earlier attempt's lost answer
    report = await meter.metering.run_once(meter.clock())  # CreateOS answers 422
    assert report.suspended == [record.project_id] and report.upstream_failed == []
    await meter.assert_consistent()


async def test_a_negative_balance_after_a_reversal_suspends_the_wallet(
    meter: Meter, sim: CreateOSSimulator
) -> None:
    await meter.ledger.apply(WALLET, EntryKind.ADJUSTMENT, 5_000_000, ref="t", reason="seed")
    records = [await meter.new_project(f"reversed-{i}") for i in range(2)]
    await meter.metering.run_once(meter.clock())
    await meter.ledger.apply(WALLET, EntryKind.REVERSAL, -6_000_000, ref="t", reason="reorg")

    await meter.metering.on_negative_balance(WALLET)
    for record in records:
        assert suspended_upstream(sim, record.project_id)
        assert (await meter.ownership.get(record.project_id)).status == "suspended"  # type: ignore[union-attr]
    # Still negative: the next run resumes nothing.
    meter.clock.advance(HOUR)
    assert (await meter.metering.run_once(meter.clock())).resumed == []
    await meter.assert_consistent()


async def test_resumes_only_as_many_projects_as_the_balance_pays(meter: Meter) -> None:
    records = []
    for i in range(3):
        records.append(await meter.new_project(f"partial-{i}"))
        meter.clock.advance(1)  # oldest first: the first one resumes
    await meter.metering.run_once(meter.clock())  # nothing to pay with: all suspended
    hour = hour_of(meter.clock())
    one_and_a_bit = meter.metering.cost_of(records[0], hour) + 100
    await meter.ledger.apply(WALLET, EntryKind.ADJUSTMENT, one_and_a_bit, ref="t", reason="top")
    report = await meter.metering.run_once(meter.clock())
    assert report.resumed == [records[0].project_id]
    assert await meter.ledger.balance(WALLET) == 100
    await meter.assert_consistent()


# --- through the app: a real payment resumes ------------------------------------------------


@contextlib.asynccontextmanager
async def gateway_app(
    settings: Settings, clock: ManualClock
) -> AsyncIterator[tuple[httpx.AsyncClient, Services]]:
    app = create_app(settings, clock=clock)
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app, client=("127.0.0.1", 40000))
        async with httpx.AsyncClient(
            transport=transport, base_url="http://gateway", timeout=60.0
        ) as client:
            yield client, app.state.services


async def test_a_topup_payment_resumes_a_suspended_project(
    make_settings: SettingsFactory,
    chains: dict[str, AnvilNode],
    sim: CreateOSSimulator,
    agent: LocalAccount,
) -> None:
    clock = ManualClock(start=time.time())
    settings = make_settings(
        chains,
        createos_api_key=SIM_KEY,
        rate_limit_requests=10_000,
        metering_interval_seconds=3600.0,  # this test drives run_once itself
    )
    async with gateway_app(settings, clock) as (client, svc):
        await svc.ledger.apply(
            agent.address, EntryKind.ADJUSTMENT, 1_000_000, ref="t", reason="seed"
        )
        name = f"topup-{uuid.uuid4().hex[:8]}"
        deployed = await client.post(
            "/agent/deploy", json=deploy_body(name), headers=auth_headers(agent, clock=clock)
        )
        assert deployed.status_code == 200, deployed.text
        pid = deployed.json()["projectId"]
        # Spend the credits elsewhere, then let an hour pass: the project cannot pay it.
        await svc.ledger.apply(
            agent.address, EntryKind.ADJUSTMENT, -1_000_000, ref="t", reason="spent"
        )
        clock.advance(HOUR)
        report = await svc.metering.run_once(clock())
        assert report.suspended == [pid] and suspended_upstream(sim, pid)

        tx = pay(chains["arbitrum"], agent, 2_000_000)
        topup = await client.post(
            "/agent/credits/topup",
            headers={**auth_headers(agent, clock=clock), "X-Payment-Tx": tx},
        )
        assert topup.status_code == 200, topup.text
        assert not suspended_upstream(sim, pid)
        record = await svc.ownership.get(pid)
        assert record is not None and record.status == ProjectStatus.ACTIVE.value
        # The current hour was burned on resumption; the suspended one never.
        entries = await svc.ledger.entries(agent.address)
        burns = [e.ref for e in entries if e.kind == EntryKind.BURN.value]
        assert burns == [f"{pid}:{hour_of(clock())}"]
        assert (await svc.ledger.check_consistency(agent.address)).ok
