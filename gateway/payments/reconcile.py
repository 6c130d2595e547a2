"""The reconciler: the chain, CreateOS and our records compared, and the differences settled
(docs/PAYMENTS.md section 8).

One pass (``Reconciler.run_once``), in the process that holds the lease ``reconcile_lease``:

1. **Scan.** For every configured chain and token, the token's ``Transfer`` logs into the
   chain's ``pay_to`` are read with ``eth_getLogs`` in ranges of ``block_range`` blocks, from
   the checkpoint (``reconcile_checkpoints``: the last block scanned, per chain and token) up to
   the head, at most ``max_blocks_per_pass`` blocks a pass. A transfer whose payment is not
   recorded for its sender is remembered in ``reconcile_found`` *before* the checkpoint moves
   past its block, so a crash mid-pass rescans, never skips (``HSETNX``: found once).
2. **Credit what nobody claimed.** A found transfer at least ``credit_after_seconds`` old (since
   first seen) is credited to its sender, the log's ``from``, through ``PaymentService.accept``:
   the same claim, payer rule, canonical-block and finality checks and the same Lua credit as a
   pushed payment, so it is credited once whoever gets there first (an agent submitting it
   meanwhile gets the usual 409). The service the reconciler is given carries its own age limit
   (``reconcile.max_payment_age_seconds``, 30 days; pushed payments keep 72 h: that limit keeps
   a stranger from presenting a harvested old tx, while the reconciler credits only the sender
   of a transfer it found itself, from its start block on) and its own ledger reason. Pending,
   not found yet, in progress or RPC down: kept for the next pass; refused for good (too old,
   another payer's claim on the tx): reported and dropped.
3. **Reverse credits without their transfer.** Every credited payment is checked on-chain
   once its block is finalized, oldest first per wallet, at most ``AUDIT_BATCH`` a pass
   (``reconcile_audited`` counts how many of a wallet's payments were checked): receipt
   present, canonical, and the recorded transfer (token, payer, ``pay_to``, amount) still
   counts (``recheck.reversal_reason``). If not, the credit is reversed by one ledger entry
   naming the reason (``Ledger.reverse_payment``, at most once) and a negative balance goes to
   ``on_negative_balance`` (metering suspends).
4. **Adopt CreateOS projects without a record.** Every project of our CreateOS account that is
   not deleting and has no record, and is older than ``adopt_after_seconds``: if a wallet holds
   its name (the claim the deploy flow takes before it creates, or keeps for good), the project
   is recorded as that wallet's and active (metered from now on) after a zero-amount ledger
   entry that says so (once per project); otherwise it is reported as unowned (the account may
   hold projects the operator made by hand: never deleted here). A project with no deployment
   is only reported: it is a deploy that failed half-way, which its retry finishes.
5. **Compact ledgers** longer than ``ledger_max_entries`` (``Ledger.compact``).

What the pass found and did is stored as JSON (``reconcile_summary``) for
``python -m gateway reconcile`` and counted in ``gateway_reconcile_total``. Correctness does not
depend on the lease: crediting and reversing are once-only in Lua; the lease saves duplicate
RPC and CreateOS work.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any, Protocol

from gateway.chains import BlockFacts, LoggedTransfer, Receipt
from gateway.config import ChainConfig, Settings, TokenConfig
from gateway.errors import Conflict, GatewayError, PaymentRequired
from gateway.ledger import ApplyOutcome, EntryKind, Ledger, LedgerArchive
from gateway.metrics import GatewayMetrics
from gateway.payments.recheck import reversal_reason
from gateway.payments.service import PaymentService
from gateway.projects.records import NameClaims, Ownership
from gateway.store import Store
from gateway.store.leases import drop_lease, hold_lease, lead_forever
from gateway.types import Clock, Wallet, checksum_address, system_clock
from gateway.upstream.models import Deployment, Project

log = logging.getLogger("gateway.reconcile")

#: Most items of each kind kept in the stored summary (the counts are always whole).
SUMMARY_ITEMS = 50
#: A found transfer whose receipt no RPC has after this long is dropped (reorged out).
FORGET_NOT_FOUND_MS = 24 * 3600 * 1000
#: Most credited payments checked on-chain in one pass.
AUDIT_BATCH = 200
#: What a payment record must hold to be checked against the chain.
AUDIT_FIELDS = ("block_number", "token_address", "pay_to", "payer", "amount_units", "amount_micro")
#: Ledger reason of the reconciler's credits.
CREDIT_REASON = "reconciler: unclaimed transfer credited to its sender"


class TransferScanner(Protocol):
    """What the reconciler needs from a chain (``gateway.chains.ChainClient`` satisfies it)."""

    async def latest_block(self) -> int: ...

    async def transfer_logs(
        self, token: str, recipient: str, from_block: int, to_block: int
    ) -> list[LoggedTransfer]: ...

    async def get_receipt(self, tx_hash: str) -> Receipt | None: ...

    async def block_facts(
        self, block_number: int, *, endpoint: int | None = None
    ) -> BlockFacts: ...


class UpstreamProjects(Protocol):
    """What adoption needs from CreateOS (``gateway.upstream.CreateOSClient``)."""

    async def list_projects(self, *, name: str | None = None) -> list[Project]: ...

    async def list_deployments(self, project_id: str) -> list[Deployment]: ...


@dataclass(slots=True)
class ReconcileReport:
    """What one pass found and did. Lists hold dicts ready for JSON."""

    started_ms: int = 0
    finished_ms: int = 0
    scanned: list[dict[str, Any]] = field(default_factory=list)  # per chain and token
    found: int = 0  # unclaimed transfers newly seen this pass
    credited: list[dict[str, Any]] = field(default_factory=list)
    waiting: int = 0  # found transfers kept for a later pass
    refused: list[dict[str, Any]] = field(default_factory=list)
    audited: int = 0  # credited payments checked on-chain this pass
    reversed: list[dict[str, Any]] = field(default_factory=list)
    adopted: list[dict[str, Any]] = field(default_factory=list)
    unowned: list[dict[str, Any]] = field(default_factory=list)
    compacted: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def as_json(self) -> dict[str, Any]:
        document = asdict(self)
        for name, value in list(document.items()):
            if isinstance(value, list):
                document[f"{name}_count"] = len(value)
                document[name] = value[:SUMMARY_ITEMS]
        return document


class Reconciler:
    """Runs reconciliation passes (module docstring).

    ``payments`` must be the reconciler's own ``PaymentService`` (its age limit and ledger
    reason; ``reconciling_payments`` builds it); ``chains`` maps chain names to scanners.
    """

    def __init__(
        self,
        settings: Settings,
        store: Store,
        ledger: Ledger,
        payments: PaymentService,
        chains: Mapping[str, TransferScanner],
        ownership: Ownership,
        names: NameClaims,
        upstream: UpstreamProjects,
        archive: LedgerArchive,
        *,
        clock: Clock = system_clock,
        metrics: GatewayMetrics | None = None,
        on_negative_balance: Callable[[str], Awaitable[None]] | None = None,
    ) -> None:
        self._settings = settings
        self._config = settings.reconcile
        self._store = store
        self._keys = store.keys
        self._ledger = ledger
        self._payments = payments
        self._chains = chains
        self._ownership = ownership
        self._names = names
        self._upstream = upstream
        self._archive = archive
        self._clock = clock
        self._metrics = metrics or GatewayMetrics()
        self.on_negative_balance = on_negative_balance

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def run_once(self) -> ReconcileReport:
        """One pass (module docstring); stores its summary. A failing part (a chain's RPCs
        down, CreateOS down) is named in ``errors`` and the other parts still run."""
        report = ReconcileReport(started_ms=self._now_ms())
        for chain in self._settings.chains.values():
            if chain.name not in self._chains:
                continue
            for token in chain.tokens.values():
                await self._guarded(
                    report, f"scan {chain.name} {token.key}", self._scan, chain, token, report
                )
        await self._guarded(report, "credit", self._credit_found, report)
        await self._guarded(report, "audit", self._audit_credits, report)
        await self._guarded(report, "adopt", self._adopt_projects, report)
        await self._guarded(report, "compact", self._compact_ledgers, report)
        report.finished_ms = self._now_ms()
        self._count(report)
        await self._store.write(self._keys.reconcile_summary(), json.dumps(report.as_json()))
        return report

    async def last_summary(self) -> dict[str, Any] | None:
        raw = await self._store.get(self._keys.reconcile_summary())
        return None if raw is None else dict(json.loads(raw))

    async def _guarded(
        self, report: ReconcileReport, part: str, run: Callable[..., Awaitable[None]], *args: Any
    ) -> None:
        try:
            await run(*args)
        except GatewayError as exc:
            log.warning("reconcile %s deferred: %s", part, exc.internal or exc.public)
            report.errors.append(f"{part}: {exc.public}")

    def _count(self, report: ReconcileReport) -> None:
        m = self._metrics
        m.reconcile_pass()
        m.reconciled("found", report.found)
        m.reconciled("credited", len(report.credited))
        m.reconciled("reversed", len(report.reversed))
        m.reconciled("adopted", len(report.adopted))
        m.reconciled("unowned", len(report.unowned))
        m.reconciled("compacted", sum(int(c["archived"]) for c in report.compacted))

    # --- 1. scan ---------------------------------------------------------------------------

    async def _scan(self, chain: ChainConfig, token: TokenConfig, report: ReconcileReport) -> None:
        scanner = self._chains[chain.name]
        checkpoints = self._keys.reconcile_checkpoints()
        name = f"{chain.chain_id}:{token.key}"
        latest = await scanner.latest_block()
        raw = await self._store.field(checkpoints, name)
        if raw is None:
            checkpoint = max(0, latest - self._config.lookback_blocks)
            await self._store.set_field(checkpoints, name, checkpoint)
        else:
            checkpoint = int(raw)
        end = min(latest, checkpoint + self._config.max_blocks_per_pass)
        start, seen = checkpoint + 1, 0
        while start <= end:
            stop = min(end, start + self._config.block_range - 1)
            for transfer in await scanner.transfer_logs(token.address, chain.pay_to, start, stop):
                seen += 1
                if await self._remember(chain, token, transfer):
                    report.found += 1
            await self._store.set_field(checkpoints, name, stop)  # only after its logs are kept
            start = stop + 1
        report.scanned.append(
            {
                "chain": chain.name,
                "token": token.key,
                "from_block": checkpoint + 1,
                "to_block": max(checkpoint, end),
                "head": latest,
                "transfers": seen,
            }
        )

    async def _remember(self, chain: ChainConfig, token: TokenConfig, seen: LoggedTransfer) -> bool:
        """Keep a transfer whose payment is not recorded for its sender; True if new."""
        if seen.value <= 0 or await self._recorded_for(chain.chain_id, seen.tx_hash, seen.sender):
            return False
        item = {
            "chain": chain.name,
            "chain_id": chain.chain_id,
            "token": token.key,
            "tx": seen.tx_hash,
            "sender": seen.sender,
            "block": seen.block_number,
            "units": str(seen.value),
            "seen_ms": self._now_ms(),
        }
        ref = f"{chain.chain_id}:{seen.tx_hash}:{seen.sender}:{token.key}"
        return await self._store.set_field_if_absent(
            self._keys.reconcile_found(), ref, json.dumps(item)
        )

    async def _recorded_for(self, chain_id: int, tx_hash: str, sender: str) -> bool:
        """Whether ``sender``'s transfers in the tx were credited (claims are per payer)."""
        return await self._ledger.payment_record(chain_id, tx_hash, sender) is not None

    # --- 2. credit what nobody claimed -----------------------------------------------------

    async def _credit_found(self, report: ReconcileReport) -> None:
        found_key = self._keys.reconcile_found()
        due_before = self._now_ms() - self._config.credit_after_seconds * 1000
        for ref, raw in sorted((await self._store.hash(found_key)).items()):
            item = json.loads(raw)
            if int(item["seen_ms"]) > due_before:
                report.waiting += 1
                continue
            done = await self._credit_one(item, report)
            if done:
                await self._store.delete_field(found_key, ref)
            else:
                report.waiting += 1

    async def _credit_one(self, item: Mapping[str, Any], report: ReconcileReport) -> bool:
        """Credit one found transfer to its sender; True when it is settled for good."""
        if await self._recorded_for(int(item["chain_id"]), item["tx"], item["sender"]):
            return True  # its agent claimed it meanwhile
        summary = {k: item[k] for k in ("chain", "token", "tx", "block")}
        summary["wallet"] = checksum_address(item["sender"])
        try:
            credited = await self._payments.accept(
                Wallet(checksum_address(item["sender"])),
                tx=item["tx"],
                chain=item["chain"],
                token=item["token"],
            )
        except Conflict:
            # Claims are per payer: this sender's transfer was credited to it meanwhile.
            return True
        except PaymentRequired as exc:
            status = exc.fields.get("payment_status")
            if status == "pending":
                return False
            if status == "not_found":
                return self._now_ms() - int(item["seen_ms"]) > FORGET_NOT_FOUND_MS
            reason = str(exc.fields.get("detail") or exc.fields.get("reason") or exc.public)
            report.refused.append({**summary, "reason": reason})
            return True
        except GatewayError as exc:  # RPC down, verification timed out, storage: next pass
            report.errors.append(f"credit {item['chain']} {item['tx']}: {exc.public}")
            return False
        report.credited.append(
            {
                **summary,
                "amount_micro": credited.amount_micro,
                "balance_micro": credited.balance_micro,
            }
        )
        log.warning(
            "reconciler credited an unclaimed payment",
            extra={"ref": f"{credited.chain_id}:{credited.tx_hash}", "wallet": summary["wallet"]},
        )
        return True

    # --- 3. reverse credits without their transfer -----------------------------------------

    async def _audit_credits(self, report: ReconcileReport) -> None:
        """Check credited payments on-chain, oldest first per wallet, at most ``AUDIT_BATCH``
        a pass (the first pass after an upgrade meets the whole history), each counted as
        checked right away so a pass cut off by its lease keeps its progress."""
        audited = self._keys.reconcile_audited()
        budget = AUDIT_BATCH
        for wallet in await self._ledger.wallets():
            if budget <= 0:
                return
            payments = self._keys.wallet_payments(wallet)
            total = await self._store.list_length(payments)
            checked = int(await self._store.field(audited, wallet) or 0)
            if checked >= total:
                continue
            # LPUSH keeps the newest first: the unchecked ones are the first total - checked.
            unchecked = await self._store.list_range(payments, 0, total - checked - 1)
            for ref in list(reversed(unchecked))[:budget]:
                if not await self._audit_one(wallet, ref, report):
                    break  # not final yet (or undecidable): this and the newer ones wait
                checked += 1
                budget -= 1
                report.audited += 1
                await self._store.set_field(audited, wallet, checked)

    async def _audit_one(self, wallet: str, ref: str, report: ReconcileReport) -> bool:
        """Check one credited payment against the chain; False when it cannot be decided
        yet (its block not finalized, an endpoint disagreeing, RPC down)."""
        chain_id_text, _, tx_hash = ref.partition(":")
        chain = self._settings.chain_by_id(int(chain_id_text)) if chain_id_text.isdigit() else None
        record = (
            await self._ledger.payment_record(chain.chain_id, tx_hash, wallet) if chain else None
        )
        if chain is None or chain.name not in self._chains or record is None:
            report.errors.append(f"audit {ref}: no configured chain or no payment record")
            return True
        if record.get("status") != "credited":
            return True
        missing = [name for name in AUDIT_FIELDS if name not in record]
        if missing:
            report.errors.append(f"audit {ref}: the payment record lacks {', '.join(missing)}")
            return True
        reader = self._chains[chain.name]
        block = int(record["block_number"])
        try:
            facts = await reader.block_facts(block)
            if facts.finalized is None or facts.finalized < block:
                return False
            receipt = await reader.get_receipt(tx_hash)
            if receipt is not None:
                at = await reader.block_facts(receipt.block_number, endpoint=receipt.endpoint)
                if at.finalized is None or at.finalized < receipt.block_number:
                    return False
                if at.canonical_hash != receipt.block_hash:
                    return False
        except GatewayError as exc:
            report.errors.append(f"audit {ref}: {exc.public}")
            return False
        why = reversal_reason(record, receipt)
        if why is None:
            return True
        reason = f"reconciler: credit without its on-chain transfer ({why.removeprefix('reorg: ')})"
        wallet = record.get("wallet") or record["payer"]
        amount_micro = int(record["amount_micro"])
        applied = await self._ledger.reverse_payment(
            chain.chain_id, tx_hash, wallet, amount_micro, reason
        )
        if applied.outcome is not ApplyOutcome.APPLIED:
            return True  # reversed by the re-check or another pass first
        self._metrics.payment_reversed(chain.name, amount_micro)
        log.warning(
            "reconciler reversed a credit",
            extra={"ref": ref, "wallet": wallet, "amount_micro": amount_micro, "reason": reason},
        )
        report.reversed.append(
            {
                "ref": ref,
                "wallet": checksum_address(wallet),
                "amount_micro": amount_micro,
                "reason": reason,
                "balance_micro": applied.balance_micro,
            }
        )
        if applied.balance_micro < 0 and self.on_negative_balance is not None:
            await self.on_negative_balance(wallet)
        return True

    # --- 4. adopt CreateOS projects without a record ---------------------------------------

    async def _adopt_projects(self, report: ReconcileReport) -> None:
        now = self._clock()
        for project in await self._upstream.list_projects():
            if project.status in ("deleting", "deleted"):
                continue
            if await self._ownership.get(project.id) is not None:
                continue
            age = _age_seconds(project.created_at, now)
            if self._config.adopt_after_seconds > 0 and (
                age is None or age < self._config.adopt_after_seconds
            ):
                continue  # a deploy in flight records its own project
            described = {"project_id": project.id, "unique_name": project.unique_name}
            owner = await self._names.owner(project.unique_name)
            if owner is None:
                report.unowned.append({**described, "reason": "no wallet holds its name"})
                continue
            deployments = await self._upstream.list_deployments(project.id)
            if not deployments:
                # Half-made: the deploy's own attempt record adopts it when the agent retries,
                # and nothing runs that would be worth metering.
                report.unowned.append(
                    {**described, "reason": "no deployment yet: left to the deploy's retry"}
                )
                continue
            await self._adopt(project, owner, deployments)
            report.adopted.append({**described, "wallet": checksum_address(owner)})

    async def _adopt(self, project: Project, owner: str, deployments: Sequence[Deployment]) -> None:
        """The ledger entry first (once per project), then the record: a crash in between
        leaves a project the next pass records without a second entry."""
        newest = max(deployments, key=lambda d: d.created_at or "", default=None)
        await self._ledger.apply(
            owner,
            EntryKind.ADJUSTMENT,
            0,
            ref=f"project:{project.id}",
            reason=(
                f"reconciler: adopted CreateOS project {project.unique_name} ({project.id}), "
                "found without a record; metered from now on"
            ),
            once_key=self._keys.reconcile_action("adopt", project.id),
        )
        await self._ownership.record_project(
            owner,
            project.id,
            unique_name=project.unique_name,
            display_name=project.display_name or project.unique_name,
            deployment_id=newest.id if newest is not None else None,
        )
        log.warning(
            "reconciler adopted a project",
            extra={"project": project.id, "wallet": owner, "unique_name": project.unique_name},
        )

    # --- 5. compact ledgers ----------------------------------------------------------------

    async def _compact_ledgers(self, report: ReconcileReport) -> None:
        limit = self._settings.ledger_max_entries
        if limit <= 0:
            return
        for wallet in await self._ledger.wallets():
            if await self._ledger.entry_count(wallet) <= limit:
                continue
            try:
                outcome = await self._ledger.compact(wallet, self._archive, keep=max(1, limit // 2))
            except OSError as exc:  # the archive folder is missing, full or read-only
                report.errors.append(f"compact: the ledger archive cannot be written: {exc}")
                return
            entry = {"wallet": checksum_address(wallet), "result": outcome.result.value}
            report.compacted.append({**entry, "archived": outcome.archived, "chunk": outcome.chunk})

    # --- the background loop ---------------------------------------------------------------

    async def run_forever(self) -> None:
        """``run_once`` every ``reconcile.interval_seconds`` in the lease holder (3 intervals
        long, at least 30 s), the first after one interval. Runs until cancelled."""
        interval = self._config.interval_seconds

        async def one_pass() -> None:
            report = await self.run_once()
            if report.credited or report.reversed or report.adopted or report.unowned:
                log.warning(
                    "reconcile: %d credited, %d reversed, %d adopted, %d unowned",
                    len(report.credited),
                    len(report.reversed),
                    len(report.adopted),
                    len(report.unowned),
                )

        # The first pass waits one interval: a process starting up serves first, and a
        # short-lived one (a test, a one-off command) never scans.
        await asyncio.sleep(interval)
        await lead_forever(
            self._store,
            self._keys.reconcile_lease(),
            one_pass,
            interval=interval,
            lease_ms=self.lease_ms,
            log=log,
        )

    @property
    def lease_ms(self) -> int:
        return int(max(self._config.interval_seconds * 3, 30.0) * 1000)

    async def run_once_if_leader(self, holder: str) -> ReconcileReport | None:
        """One pass now if no other process holds the lease (the operator's ``--run``)."""
        key = self._keys.reconcile_lease()
        if not await hold_lease(self._store, key, holder, self.lease_ms):
            return None
        try:
            return await self.run_once()
        finally:
            await drop_lease(self._store, key, holder)


def reconciling_payments(
    settings: Settings,
    ledger: Ledger,
    chains: Mapping[str, Any],
    *,
    clock: Clock,
    after_credit: Callable[[str], Awaitable[None]] | None,
    metrics: GatewayMetrics,
) -> PaymentService:
    """The reconciler's ``PaymentService``: the pushed path's rules with the reconciler's own
    age limit (module docstring) and ledger reason."""
    own = settings.with_overrides(
        max_payment_age_seconds=settings.reconcile.max_payment_age_seconds
    )
    return PaymentService(
        own,
        ledger,
        chains,
        clock=clock,
        after_credit=after_credit,
        metrics=metrics,
        credit_reason=CREDIT_REASON,
    )


def _age_seconds(created_at: str | None, now: float) -> float | None:
    if not created_at:
        return None
    try:
        return now - datetime.fromisoformat(created_at.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


__all__: Sequence[str] = ("ReconcileReport", "Reconciler", "reconciling_payments")
