"""Re-check of payments credited before finality (docs/PAYMENTS.md section 3, docs/CHAINS.md
section 3).

A payment credited at ``latest`` or ``safe`` is queued by ``Ledger.credit_payment`` in the recheck
sorted set (member ``chain_id:tx``, score = its block number). Once the chain's ``finalized``
height passes that block, ``PaymentRechecker.run_once`` reads the receipt again and applies the
payment rules of ``gateway.payments.verify.count_payment`` with the payer, recipient and
token recorded at credit time:

- the same amount still arrives, in a canonical finalized block: final, dropped from the queue;
- the receipt vanished, reverted, or the counted amount changed: the whole credit is reversed by
  one ledger entry whose reason says why (``Ledger.reverse_payment``, at most once per payment,
  which also drops it from the queue); a balance left below zero is handed to
  ``on_negative_balance(wallet)`` (metering suspends the wallet's projects);
- anything undecidable this round (RPC down, a block not yet final, an endpoint disagreeing
  about the canonical block) stays queued for the next round.

A reversed tx keeps its claim (``used``): if a reorged-out tx is mined again later, the operator
re-credits it with an adjustment; the payment record names the reversal.

``run_forever`` runs ``run_once`` every ``interval`` seconds in the process that holds the Redis
lease ``keys.recheck_lease()``. The lease only saves duplicate RPC work: correctness does not
depend on it, since a reversal is once-only in Lua and "final" is a plain ``ZREM``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import cast

from gateway.chains import Receipt
from gateway.config import Settings
from gateway.errors import GatewayError
from gateway.ledger import ApplyOutcome, Ledger
from gateway.metrics import GatewayMetrics
from gateway.payments.service import ChainReader
from gateway.payments.verify import count_payment
from gateway.store import Store
from gateway.store.leases import lead_forever
from gateway.types import Clock, system_clock

log = logging.getLogger("gateway.recheck")

#: Most queued payments looked at per round (lowest blocks first, the likeliest to be final).
BATCH = 500


@dataclass(frozen=True, slots=True)
class Reversal:
    ref: str  # chain_id:tx
    wallet: str
    amount_micro: int
    reason: str
    balance_micro: int  # the wallet's balance after the reversal


@dataclass(slots=True)
class RecheckReport:
    """What one round did, by ``chain_id:tx``."""

    confirmed: list[str] = field(default_factory=list)  # final and unchanged: dequeued
    reversed: list[Reversal] = field(default_factory=list)
    waiting: list[str] = field(default_factory=list)  # block not final yet
    skipped: list[str] = field(default_factory=list)  # undecidable this round (RPC, unknown)


def reversal_reason(record: Mapping[str, str], receipt: Receipt | None) -> str | None:
    """Why a credited payment no longer holds, or None when it still does (pure).

    ``record`` is the verification stored at credit time (``payer``, ``pay_to``,
    ``token_address``, ``amount_units``); ``receipt`` the one read now from a finalized block.
    """
    if receipt is None:
        return "reorg: transaction no longer in the chain"
    if receipt.status != 1:
        return "reorg: transaction now reverted"
    counted = count_payment(
        receipt,
        token_address=record["token_address"],
        pay_to=record["pay_to"],
        payer=record["payer"],
    )
    credited_units = int(record["amount_units"])
    if counted.reason is not None:
        return f"reorg: the transfer no longer counts ({counted.reason.value})"
    if counted.units != credited_units:
        return (
            f"reorg: amount changed from {credited_units} to {counted.units} base units "
            f"of {record.get('token', 'the token')}"
        )
    return None


class PaymentRechecker:
    """Re-verifies early credits once final and reverses those a reorg removed or changed."""

    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        chains: Mapping[str, ChainReader],
        store: Store,
        *,
        clock: Clock = system_clock,
        on_negative_balance: Callable[[str], Awaitable[None]] | None = None,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self._metrics = metrics or GatewayMetrics()
        self._settings = settings
        self._ledger = ledger
        self._chains = chains
        self._store = store
        self._clock = clock
        self.on_negative_balance = on_negative_balance

    async def run_once(self) -> RecheckReport:
        """One pass over the queue (at most ``BATCH`` payments); see the module docstring."""
        report = RecheckReport()
        queue = self._store.keys.recheck_queue()
        # decode_responses=True and withscores: (member, score) pairs.
        queued = cast(
            "list[tuple[str, float]]",
            await self._store.lowest(queue, BATCH),
        )
        finalized_by_chain: dict[int, int | None] = {}
        for ref, score in queued:
            try:
                await self._recheck(ref, int(score), finalized_by_chain, report)
            except GatewayError as exc:
                log.warning("recheck deferred: %s", exc.internal or exc.public, extra={"ref": ref})
                report.skipped.append(ref)
        return report

    async def _recheck(
        self,
        ref: str,
        block: int,
        finalized_by_chain: dict[int, int | None],
        report: RecheckReport,
    ) -> None:
        queue = self._store.keys.recheck_queue()
        chain_id_text, _, rest = ref.partition(":")
        tx_hash, _, payer = rest.partition(":")  # chain_id:tx:payer (gateway/store/keys.py)
        chain = self._settings.chain_by_id(int(chain_id_text)) if chain_id_text.isdigit() else None
        if chain is None or chain.name not in self._chains:
            log.error("recheck queue names an unconfigured chain", extra={"ref": ref})
            report.skipped.append(ref)
            return
        record = await self._ledger.payment_record(chain.chain_id, tx_hash, payer)
        if record is None and await self._ledger.claim_state(chain.chain_id, tx_hash, payer):
            report.waiting.append(ref)  # queued before its credit, which is in flight
            return
        if record is None or record.get("status") != "credited":
            await self._store.remove_member(queue, ref)  # reversed already, or nothing to check
            return

        reader = self._chains[chain.name]
        if chain.chain_id not in finalized_by_chain:
            finalized_by_chain[chain.chain_id] = (await reader.block_facts(block)).finalized
        finalized = finalized_by_chain[chain.chain_id]
        if finalized is None or finalized < block:
            report.waiting.append(ref)
            return

        receipt = await reader.get_receipt(tx_hash)
        if receipt is not None:
            facts = await reader.block_facts(receipt.block_number, endpoint=receipt.endpoint)
            if facts.finalized is None or facts.finalized < receipt.block_number:
                # Mined again in a later block: wait for that one to be final.
                await self._store.rescore_existing(queue, ref, receipt.block_number)
                report.waiting.append(ref)
                return
            if facts.canonical_hash != receipt.block_hash:
                report.skipped.append(ref)  # this endpoint disagrees with itself; ask again later
                return

        reason = reversal_reason(record, receipt)
        if reason is None:
            await self._store.remove_member(queue, ref)
            report.confirmed.append(ref)
            return

        wallet = record.get("wallet") or record["payer"]
        amount_micro = int(record["amount_micro"])
        applied = await self._ledger.reverse_payment(
            chain.chain_id, tx_hash, wallet, amount_micro, reason
        )
        if applied.outcome is not ApplyOutcome.APPLIED:
            return  # another process reversed it first
        self._metrics.payment_reversed(chain.name, amount_micro)
        log.warning(
            "payment reversed",
            extra={"ref": ref, "wallet": wallet, "amount_micro": amount_micro, "reason": reason},
        )
        report.reversed.append(
            Reversal(
                ref=ref,
                wallet=wallet,
                amount_micro=amount_micro,
                reason=reason,
                balance_micro=applied.balance_micro,
            )
        )
        if applied.balance_micro < 0 and self.on_negative_balance is not None:
            await self.on_negative_balance(wallet)

    # --- the background loop ---------------------------------------------------------------

    async def run_forever(self, interval: float) -> None:
        """Every ``interval`` seconds, ``run_once`` if this process holds the lease (3 intervals
        long, at least 10 s, renewed each round; ``gateway.store.leases``). Runs until cancelled; a
        failed round is logged and retried next time."""

        async def one_round() -> None:
            report = await self.run_once()
            if report.reversed:
                log.warning("recheck reversed %d payment(s)", len(report.reversed))

        await lead_forever(
            self._store,
            self._store.keys.recheck_lease(),
            one_round,
            interval=interval,
            lease_ms=int(max(interval * 3, 10.0) * 1000),
            log=log,
        )
