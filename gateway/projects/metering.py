"""Metering (docs/PAYMENTS.md section 5): active projects burn their wallet's credits hourly; a
wallet that cannot pay is suspended, a top-up resumes it.

Hours. Hour ``h`` is ``[h * 3600, (h + 1) * 3600)`` in Unix seconds, and hours are charged in
advance: hour ``h`` is due from its first second, the hour a project was created in being its
first. A run at ``now`` burns, for each active project, every hour after its marker
(``Ledger.metered_hour``: the last hour burned or skipped; before the first burn, the hour
before its creation) up to ``hour_of(now)``. That is the catch-up after downtime: however long
the gap, each missed hour is burned once, in order.

Amounts. ``price_usd_per_month / 730`` is rarely whole micro-USD (0.50 USD: 684.93...). The
project's hour ``n`` (0 for the hour of its creation) costs
``floor(price * (n + 1) / 730) - floor(price * n / 730)`` (``hour_cost``): 684 or 685 micro-USD
there, and any 730 consecutive hours cost exactly ``price``. Rounding never loses or invents
money over a month, and the cost of an hour depends only on (project, hour), so a retried hour
costs the same.

Once per (project, hour). ``Ledger.burn_hour`` writes the burn entry, the balance and the
marker in one Lua script returning burned / duplicate / insufficient / inactive: two meters
(two processes, or a leader whose lease changed hands mid-round) never burn an hour twice.

Suspension. When a project's due hour cannot be paid (``insufficient``), its wallet cannot pay
the next hour for it: the project is suspended upstream first, then marked ``suspended`` here
(compare-and-set from ``active``). Its unpaid hours are never billed. If CreateOS fails, the
project stays ``active`` unpaid and the next run tries again; a 422 on suspend or unsuspend
means "already so" (docs/UPSTREAM.md section 6) and counts as done. ``suspend_wallet`` (recheck's
``on_negative_balance`` hook) suspends every active project of a wallet whose balance a reorg
reversal left negative.

Resumption. A suspended project resumes when its wallet can pay its current hour: on a credited
payment (``resume_wallet``, PaymentService's ``after_credit`` hook), after an operator
adjustment, and at every run (which retries failed unsuspends). Oldest projects first, while the
balance covers each one's hour: unsuspend upstream, skip the suspended hours, mark ``active``,
burn the current hour.

One leader. ``run_forever`` runs ``run_once`` in the one process holding the metering lease
(``gateway.store.leases``); the hooks run wherever the payment or reversal happened.
Correctness does not depend on the lease: burns are once-only in Lua and status changes are
compare-and-set.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from gateway.config import Settings
from gateway.ledger import BurnOutcome, Ledger
from gateway.metrics import GatewayMetrics
from gateway.projects.records import Ownership, ProjectRecord, ProjectStatus
from gateway.store import Store
from gateway.store.leases import lead_forever
from gateway.types import Clock, system_clock
from gateway.upstream import UpstreamError

log = logging.getLogger("gateway.metering")

HOURS_PER_MONTH = 730
SECONDS_PER_HOUR = 3600


class ProjectSwitch(Protocol):
    """What metering needs from CreateOS (``CreateOSClient`` satisfies it)."""

    async def suspend_project(self, project_id: str) -> None: ...

    async def unsuspend_project(self, project_id: str) -> None: ...


def hour_of(unix_seconds: float) -> int:
    return int(unix_seconds // SECONDS_PER_HOUR)


def hour_cost(price_micro_per_month: int, first_hour: int, hour: int) -> int:
    """Micro-USD burned for ``hour`` of a project whose first hour is ``first_hour`` (pure).

    The cumulative burn after ``n`` hours is ``floor(price * n / 730)``; each hour costs the
    step. Any 730 consecutive hours sum to exactly ``price``.
    """
    n = hour - first_hour
    return (price_micro_per_month * (n + 1)) // HOURS_PER_MONTH - (
        price_micro_per_month * n
    ) // HOURS_PER_MONTH


@dataclass(frozen=True, slots=True)
class Burn:
    project_id: str
    wallet: str
    hour: int
    amount_micro: int


@dataclass(slots=True)
class MeteringReport:
    """What one run (or one hook call) did."""

    burned: list[Burn] = field(default_factory=list)
    suspended: list[str] = field(default_factory=list)  # project ids
    resumed: list[str] = field(default_factory=list)
    upstream_failed: list[str] = field(default_factory=list)  # retried on the next run

    @property
    def burned_micro(self) -> int:
        return sum(b.amount_micro for b in self.burned)


class Metering:
    """Hourly burns, suspension and resumption; see the module docstring for the contract."""

    def __init__(
        self,
        settings: Settings,
        store: Store,
        ledger: Ledger,
        ownership: Ownership,
        upstream: ProjectSwitch,
        *,
        clock: Clock = system_clock,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self._settings = settings
        self._store = store
        self._ledger = ledger
        self._ownership = ownership
        self._upstream = upstream
        self._clock = clock
        self._metrics = metrics or GatewayMetrics()

    @property
    def _price(self) -> int:
        return self._settings.pricing.price_micro_usd_per_month

    def cost_of(self, record: ProjectRecord, hour: int) -> int:
        """What ``hour`` of this project costs (``hour_cost`` from its creation hour)."""
        return hour_cost(self._price, hour_of(record.created_at_ms / 1000), hour)

    # --- the hourly run --------------------------------------------------------------------

    async def run_once(self, now: float | None = None) -> MeteringReport:
        """Burn every due hour of every active project, suspend those their wallet cannot pay,
        resume suspended ones their wallet can pay again. ``now`` defaults to the clock.
        Counted in ``metering_runs_total`` as ``ok``, ``upstream_failed`` or ``error``."""
        try:
            report = await self._run(now)
        except Exception:
            self._metrics.metering_run("error")
            raise
        self._metrics.metering_run("upstream_failed" if report.upstream_failed else "ok")
        return report

    async def _run(self, now: float | None) -> MeteringReport:
        hour = hour_of(self._clock() if now is None else now)
        report = MeteringReport()
        by_wallet: defaultdict[str, list[ProjectRecord]] = defaultdict(list)
        for project_id in await self._ownership.metered_projects():
            record = await self._ownership.get(project_id)
            if record is not None and record.status != ProjectStatus.DELETED.value:
                by_wallet[record.wallet].append(record)
        for wallet, records in sorted(by_wallet.items()):
            for record in _oldest_first(records):
                if record.status != ProjectStatus.ACTIVE.value:
                    continue
                outcome = await self._burn_due(record, hour, report)
                if outcome is BurnOutcome.INSUFFICIENT:
                    await self._suspend(record, report)
            if any(r.status == ProjectStatus.SUSPENDED.value for r in records):
                await self._resume_affordable(wallet, hour, report)
        if report.burned or report.suspended or report.resumed:
            log.info(
                "metering: burned %d hour(s), %d micro-USD; suspended %d; resumed %d",
                len(report.burned),
                report.burned_micro,
                len(report.suspended),
                len(report.resumed),
            )
        return report

    async def run_forever(self, interval: float) -> None:
        """``run_once`` every ``interval`` seconds in the process holding the metering lease
        (``metering_lease_seconds``); runs until cancelled, a failed round is retried."""
        await lead_forever(
            self._store,
            self._store.keys.metering_lease(),
            self.run_once,
            interval=interval,
            lease_ms=self._settings.metering_lease_seconds * 1000,
            log=log,
        )

    # --- hooks -----------------------------------------------------------------------------

    async def on_credit(self, wallet: str) -> None:
        """``PaymentService``'s ``after_credit`` hook."""
        await self.resume_wallet(wallet)

    async def on_negative_balance(self, wallet: str) -> None:
        """``PaymentRechecker``'s hook after a reversal left the balance below zero."""
        await self.suspend_wallet(wallet)

    async def resume_wallet(self, wallet: str) -> MeteringReport:
        """After a credit: resume the wallet's suspended projects its balance can pay."""
        report = MeteringReport()
        await self._resume_affordable(wallet.lower(), hour_of(self._clock()), report)
        return report

    async def suspend_wallet(self, wallet: str) -> MeteringReport:
        """Suspend every active project of the wallet (a reversal left its balance negative)."""
        report = MeteringReport()
        for record in _oldest_first(await self._ownership.projects_of(wallet)):
            if record.status == ProjectStatus.ACTIVE.value:
                await self._suspend(record, report)
        return report

    # --- steps -----------------------------------------------------------------------------

    async def _burn_due(
        self, record: ProjectRecord, hour: int, report: MeteringReport
    ) -> BurnOutcome:
        """Burn the project's hours after its marker through ``hour``, in order. Stops at the
        first hour that cannot be paid or a project no longer active."""
        marker = await self._ledger.metered_hour(record.wallet, record.project_id)
        first = marker + 1 if marker is not None else hour_of(record.created_at_ms / 1000)
        outcome = BurnOutcome.DUPLICATE
        for due in range(first, hour + 1):
            amount = self.cost_of(record, due)
            if amount <= 0:  # a price below 730 micro-USD a month: some hours are free
                await self._ledger.skip_hours(record.wallet, record.project_id, due)
                continue
            applied = await self._ledger.burn_hour(
                record.wallet, record.project_id, due, amount, reason=_burn_reason(due)
            )
            outcome = BurnOutcome(applied.outcome)
            if outcome is BurnOutcome.BURNED:
                report.burned.append(Burn(record.project_id, record.wallet, due, amount))
            elif outcome is not BurnOutcome.DUPLICATE:
                return outcome
        return outcome

    async def _suspend(self, record: ProjectRecord, report: MeteringReport) -> None:
        if not await self._switch_upstream(record.project_id, suspend=True, report=report):
            return
        if await self._ownership.switch_status(
            record.project_id, ProjectStatus.ACTIVE, ProjectStatus.SUSPENDED
        ):
            report.suspended.append(record.project_id)
            log.warning(
                "project suspended: its wallet cannot pay the next hour",
                extra={"project": record.project_id, "wallet": record.wallet},
            )

    async def _resume_affordable(self, wallet: str, hour: int, report: MeteringReport) -> None:
        records = await self._ownership.projects_of(wallet)
        suspended = [r for r in records if r.status == ProjectStatus.SUSPENDED.value]
        if not suspended:
            return
        budget = await self._ledger.balance(wallet)
        for record in _oldest_first(suspended):
            cost = self.cost_of(record, hour)
            if budget < cost:
                break
            if not await self._switch_upstream(record.project_id, suspend=False, report=report):
                continue
            # The hours it spent suspended are not billed; the current one is, right away.
            await self._ledger.skip_hours(wallet, record.project_id, hour - 1)
            if not await self._ownership.switch_status(
                record.project_id, ProjectStatus.SUSPENDED, ProjectStatus.ACTIVE
            ):
                continue  # resumed (or deleted) by someone else meanwhile
            report.resumed.append(record.project_id)
            log.info("project resumed", extra={"project": record.project_id, "wallet": wallet})
            budget -= cost
            outcome = await self._burn_due(record, hour, report)
            if outcome is BurnOutcome.INSUFFICIENT:  # spent elsewhere meanwhile
                await self._suspend(record, report)

    async def _switch_upstream(
        self, project_id: str, *, suspend: bool, report: MeteringReport
    ) -> bool:
        """Suspend or unsuspend on CreateOS; True when done (a 422 means it already was).
        Failures are logged and left for the next run."""
        call = self._upstream.suspend_project if suspend else self._upstream.unsuspend_project
        try:
            await call(project_id)
        except UpstreamError as exc:
            if exc.upstream_status == 422:
                return True
            report.upstream_failed.append(project_id)
            log.warning(
                "%s failed upstream; retried next run: %s",
                "suspend" if suspend else "unsuspend",
                exc.internal or exc.public,
                extra={"project": project_id},
            )
            return False
        return True


def _oldest_first(records: Iterable[ProjectRecord]) -> list[ProjectRecord]:
    return sorted(records, key=lambda r: (r.created_at_ms, r.project_id))


def _burn_reason(hour: int) -> str:
    start = datetime.fromtimestamp(hour * SECONDS_PER_HOUR, UTC)
    return f"hour from {start.strftime('%Y-%m-%dT%H:00Z')}"
