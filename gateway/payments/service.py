"""The payment service: ``PaymentService.accept`` claims a pushed payment's tx, verifies it
on-chain and credits it once (docs/PAYMENTS.md section 2).

The quote and the credits decision live in ``gateway.payments.quote``, which logs count in
``gateway.payments.verify``; both are pure.

Invariants of ``accept``:
- the claim on ``(chain_id, tx, wallet)`` is reserved before the first RPC call and released on
  every path that does not credit (failure, pending, not found, RPC down, timeout,
  cancellation), so a tx is never lost to a failed attempt and never credited twice;
- the amount credited is what the token contract says arrived at ``pay_to`` from the
  authenticated wallet (the log's ``from``, never ``tx.from``), never the quote;
- nothing is credited unless the receipt's block is canonical, old enough for the chain's
  finality policy and younger than ``max_payment_age``.

Concurrent submissions of one tx by one wallet: the claim is one Redis ``SET NX`` (another
wallet has its own claim on the tx and counts only its own transfers: ``ledger`` module doc).
The request that holds it verifies; any other request meanwhile gets a pending-style 402
(``code: verification_in_progress``, ``payment_status: pending``, ``Retry-After``), not a 409:
the first attempt may still fail (a stranger submitting someone else's tx, an RPC outage), and
a 409 would tell the real payer that the payment was taken. Once credited, every later
submission gets the 409.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from gateway.chains import BlockFacts, Receipt
from gateway.config import ChainConfig, Settings, TokenConfig
from gateway.errors import BadRequest, Conflict, GatewayError, PaymentRequired, Unavailable
from gateway.headers import PAYMENT_CHAIN, PAYMENT_TX, RETRY_AFTER
from gateway.ledger import ClaimOutcome, CreditOutcome, Ledger
from gateway.metrics import GatewayMetrics
from gateway.payments.quote import resolve_chain, resolve_token
from gateway.payments.verify import FailureReason, count_payment
from gateway.types import (
    Clock,
    Finality,
    TxHash,
    Wallet,
    canonical_tx_hash,
    checksum_address,
    micro_to_credits,
    micro_to_usd_number,
    token_units_to_micro_usd,
)

log = logging.getLogger("gateway.payments")


class ChainReader(Protocol):
    """What verification needs from a chain (``gateway.chains.ChainClient`` satisfies it)."""

    async def get_receipt(self, tx_hash: str) -> Receipt | None:
        """The receipt; None when every answering RPC says unknown; 503 if none answers."""
        ...

    async def block_facts(self, block_number: int, *, endpoint: int | None = None) -> BlockFacts:
        """Canonical hash and timestamp at a height, plus latest/safe/finalized, in one batch."""
        ...


# --- verification and crediting (docs/PAYMENTS.md section 2) ---------------------------------


@dataclass(frozen=True, slots=True)
class PaymentCredited:
    """A payment verified and credited by this request."""

    chain: str
    chain_id: int
    tx_hash: str
    token: str
    amount_micro: int  # credited: what arrived, scaled to micro-USD
    balance_micro: int  # the wallet's balance right after


@dataclass(frozen=True, slots=True)
class _Verified:
    units: int
    amount_micro: int
    receipt: Receipt
    record: dict[str, str | int]
    finality: Finality  # what it reached (a large payment: finalized; see finality_for)


class PaymentService:
    """Verifies ``X-Payment-Tx`` payments and credits them exactly once.

    ``chains`` maps each configured chain name to its reader. ``after_credit(wallet_address)``
    is awaited after every successful credit (metering resumes suspended projects there); its
    failure is logged and never undoes or hides the credit.
    """

    def __init__(
        self,
        settings: Settings,
        ledger: Ledger,
        chains: Mapping[str, ChainReader],
        *,
        clock: Clock,
        after_credit: Callable[[str], Awaitable[None]] | None = None,
        metrics: GatewayMetrics | None = None,
        credit_reason: str = "payment received",
    ) -> None:
        self._credit_reason = credit_reason  # the ledger entry's reason (the reconciler's own)
        self._settings = settings
        self._ledger = ledger
        self._chains = chains
        self._clock = clock
        self._after_credit = after_credit
        self._metrics = metrics or GatewayMetrics()

    async def accept(
        self,
        wallet: Wallet,
        *,
        tx: str,
        chain: str | None,
        token: str | None,
        before_credit: Callable[[], Awaitable[None]] | None = None,
    ) -> PaymentCredited:
        """``_accept``, counted in the payment funnel of ``gateway.metrics`` (every submission
        is seen once and ends in exactly one of verified, pending, rejected, conflict or
        unavailable).

        ``before_credit``: awaited once the payment is verified and before it is credited; if
        it raises, nothing is credited, the claim is released and its error propagates. The
        deploy flow passes its name check, so the check and the verification's RPC calls run
        concurrently while a payment still never moves for a name that turns out taken."""
        chain_label = self._chain_label(chain)
        self._metrics.payment_seen(chain_label)
        try:
            credited = await self._accept(
                wallet, tx=tx, chain=chain, token=token, before_credit=before_credit
            )
        except GatewayError as error:
            _count_refusal(self._metrics, chain_label, error)
            raise
        self._metrics.payment_verified(credited.chain, credited.token, credited.amount_micro)
        return credited

    def _chain_label(self, chain: str | None) -> str:
        """The configured chain a header names, or ``invalid`` (raw header text never
        becomes a label)."""
        name = (chain or "").strip() or self._settings.default_chain
        found = self._settings.chain(name)
        return found.name if found is not None else "invalid"

    async def _accept(
        self,
        wallet: Wallet,
        *,
        tx: str,
        chain: str | None,
        token: str | None,
        before_credit: Callable[[], Awaitable[None]] | None,
    ) -> PaymentCredited:
        """Verify the tx named by ``X-Payment-Tx`` and credit it to ``wallet``.

        Raises (wire shape in the module and docs/PROTOCOL.md section 4 (payment)):
        ``BadRequest`` malformed hash, unknown chain or token; ``Conflict`` already credited;
        ``PaymentRequired`` verification failed (``reason``), pending, not found, or being
        verified by another request right now; ``Unavailable`` no RPC answered or the
        verification timed out. In every raising case the claim is released (or was never ours).
        """
        tx_hash = canonical_tx_hash(tx.strip())
        if tx_hash is None:
            raise BadRequest(
                "X-Payment-Tx must be 0x followed by 64 hex digits",
                code="malformed_tx",
                field=PAYMENT_TX,
            )
        chain_config = resolve_chain(self._settings, chain)
        token_config = resolve_token(chain_config, token)

        outcome, ticket = await self._ledger.claim_payment(
            chain_config.chain_id, tx_hash, wallet.address
        )
        if outcome is ClaimOutcome.USED:
            raise await self._already_processed(wallet, chain_config, tx_hash)
        if outcome is ClaimOutcome.BUSY:
            raise self._in_progress(tx_hash)

        credited = False
        try:
            try:
                async with asyncio.timeout(self._settings.verify_timeout_seconds):
                    verified = await self._verify(wallet, tx_hash, chain_config, token_config)
            except TimeoutError as exc:
                raise Unavailable(
                    "Payment verification timed out; retry with the same X-Payment-Tx",
                    internal=f"verifying {chain_config.name} {tx_hash} exceeded "
                    f"{self._settings.verify_timeout_seconds} s",
                    headers={RETRY_AFTER: str(self._settings.pending_retry_after_seconds)},
                    code="verification_timeout",
                ) from exc
            if before_credit is not None:
                await before_credit()
            recheck = (
                None if verified.finality is Finality.FINALIZED else verified.receipt.block_number
            )
            applied = await self._ledger.credit_payment(
                ticket,
                wallet.address,
                verified.amount_micro,
                verified.record,
                recheck_block=recheck,
                reason=self._credit_reason,
            )
            if applied.outcome is CreditOutcome.USED:
                raise await self._already_processed(wallet, chain_config, tx_hash)
            if applied.outcome is CreditOutcome.LOST:
                # Our lease ran out while verifying; whoever claims it next verifies afresh.
                raise Unavailable(
                    "Payment verification took too long; retry with the same X-Payment-Tx",
                    internal=f"claim on {chain_config.name} {tx_hash} expired before crediting",
                    headers={RETRY_AFTER: str(self._settings.pending_retry_after_seconds)},
                    code="verification_timeout",
                )
            credited = True
        finally:
            if not credited:
                await self._ledger.release_claim(ticket)

        log.info(
            "payment credited",
            extra={
                "chain": chain_config.name,
                "tx": tx_hash,
                "wallet": wallet.address,
                "amount_micro": verified.amount_micro,
            },
        )
        if self._after_credit is not None:
            try:
                await self._after_credit(wallet.address)
            except Exception:  # the credit stands; resuming projects is retried by metering
                log.exception("after_credit hook failed", extra={"wallet": wallet.address})
        return PaymentCredited(
            chain=chain_config.name,
            chain_id=chain_config.chain_id,
            tx_hash=tx_hash,
            token=token_config.key,
            amount_micro=verified.amount_micro,
            balance_micro=applied.balance_micro,
        )

    async def _verify(
        self, wallet: Wallet, tx_hash: TxHash, chain: ChainConfig, token: TokenConfig
    ) -> _Verified:
        """Receipt, logs, canonical block, age, finality; raises the 402 of the first miss."""
        reader = self._chains[chain.name]
        receipt = await reader.get_receipt(tx_hash)
        if receipt is None:
            elsewhere = await self._find_on_other_chain(tx_hash, chain)
            if elsewhere is not None:
                raise _verification_failed(
                    FailureReason.WRONG_CHAIN,
                    f"The transaction is on {elsewhere}, not {chain.name}; "
                    f"send {PAYMENT_CHAIN}: {elsewhere}",
                    found_on_chain=elsewhere,
                )
            raise self._not_found()

        counted = count_payment(
            receipt, token_address=token.address, pay_to=chain.pay_to, payer=wallet.address
        )
        if counted.reason is not None:
            raise _verification_failed(counted.reason, _reason_detail(counted.reason, chain, token))

        facts = await reader.block_facts(receipt.block_number, endpoint=receipt.endpoint)
        if (
            facts.canonical_hash != receipt.block_hash
            or facts.timestamp is None
            or receipt.block_number > facts.latest
        ):
            # A receipt from a block that is not (or not yet) the canonical one at its height:
            # reorged out, or a pre-confirmation of an unsealed block. Never credited as is.
            raise self._pending(0, chain)

        age = int(self._clock()) - facts.timestamp
        if age > self._settings.max_payment_age_seconds:
            hours = self._settings.max_payment_age_seconds // 3600
            raise _verification_failed(
                FailureReason.TOO_OLD,
                f"The payment is {age // 3600} h old; the limit is {hours} h",
            )

        amount_micro = token_units_to_micro_usd(counted.units, token.decimals)
        finality = chain.finality_for(amount_micro)
        confirmations = facts.latest - receipt.block_number + 1
        if confirmations < chain.min_confirmations or not _reached_finality(
            finality, receipt.block_number, facts
        ):
            raise self._pending(confirmations, chain, finality)

        record: dict[str, str | int] = {
            "chain": chain.name,
            "chain_id": chain.chain_id,
            "tx": tx_hash,
            "token": token.key,
            "token_address": token.address,
            "wallet": wallet.address,
            "payer": checksum_address(wallet.address),
            "pay_to": chain.pay_to,
            "amount_units": str(counted.units),
            "amount_micro": amount_micro,
            "block_number": receipt.block_number,
            "block_hash": receipt.block_hash,
            "block_timestamp": facts.timestamp,
            "confirmations": confirmations,
            "finality": finality.value,
            "verified_at": int(self._clock() * 1000),
        }
        return _Verified(
            units=counted.units,
            amount_micro=amount_micro,
            receipt=receipt,
            record=record,
            finality=finality,
        )

    async def _find_on_other_chain(self, tx_hash: TxHash, named: ChainConfig) -> str | None:
        """The other configured chain that has this receipt, if any (best effort: a chain
        whose RPCs are down counts as not having it)."""
        for name, reader in self._chains.items():
            if name == named.name:
                continue
            try:
                if await reader.get_receipt(tx_hash) is not None:
                    return name
            except GatewayError:
                continue
        return None

    def _retry_after(self) -> dict[str, str]:
        return {RETRY_AFTER: str(self._settings.pending_retry_after_seconds)}

    def _not_found(self) -> PaymentRequired:
        return PaymentRequired(
            "Payment transaction not found", headers=self._retry_after(), payment_status="not_found"
        )

    def _pending(
        self, confirmations: int, chain: ChainConfig, finality: Finality | None = None
    ) -> PaymentRequired:
        return PaymentRequired(
            "Payment pending confirmation",
            headers=self._retry_after(),
            payment_status="pending",
            confirmations=max(0, confirmations),
            required=chain.min_confirmations,
            finality=(finality or chain.finality).value,
        )

    def _in_progress(self, tx_hash: TxHash) -> PaymentRequired:
        return PaymentRequired(
            "Payment is being verified by another request; retry with the same X-Payment-Tx",
            headers=self._retry_after(),
            payment_status="pending",
            code="verification_in_progress",
            tx=tx_hash,
        )

    async def credited_to(
        self, wallet: Wallet, chain: ChainConfig, tx: str
    ) -> PaymentCredited | None:
        """The credit already recorded for ``tx`` if it went to ``wallet`` (credited by another
        path: the settlement sweeper or the reconciler), with the wallet's balance now."""
        tx_hash = canonical_tx_hash(tx)
        if tx_hash is None:
            return None
        record = await self._ledger.payment_record(chain.chain_id, tx_hash, wallet.address)
        if record is None:  # records are per payer: only this wallet's own
            return None
        return PaymentCredited(
            chain=chain.name,
            chain_id=chain.chain_id,
            tx_hash=tx_hash,
            token=record.get("token", ""),
            amount_micro=int(record.get("amount_micro", 0)),
            balance_micro=await self._ledger.balance(wallet.address),
        )

    async def _already_processed(
        self, wallet: Wallet, chain: ChainConfig, tx_hash: TxHash
    ) -> Conflict:
        balance = await self._ledger.balance(wallet.address)
        return Conflict(
            "Payment already processed",
            code="payment_already_processed",
            chain=chain.name,
            tx=tx_hash,
            credits=micro_to_credits(balance),
            current_credit_balance_usd=micro_to_usd_number(balance),
        )


def _count_refusal(metrics: GatewayMetrics, chain: str, error: GatewayError) -> None:
    """Which funnel step a refused submission ends in, read from the error's wire fields."""
    if isinstance(error, Conflict):
        metrics.payment_conflict(chain)
    elif isinstance(error, Unavailable):
        metrics.payment_unavailable(chain)
    elif isinstance(error, PaymentRequired) and error.fields.get("payment_status") is not None:
        status = str(error.fields["payment_status"])
        if error.fields.get("code") == "verification_in_progress":
            status = "in_progress"
        metrics.payment_pending(chain, status)
    else:
        reason = error.fields.get("reason") or error.fields.get("code") or "other"
        metrics.payment_rejected(chain, str(reason))


def _reached_finality(finality: Finality, block_number: int, facts: BlockFacts) -> bool:
    if finality is Finality.SAFE:
        return facts.safe is not None and facts.safe >= block_number
    if finality is Finality.FINALIZED:
        return facts.finalized is not None and facts.finalized >= block_number
    return True  # latest: the canonical-hash check above is the whole rule


def _verification_failed(reason: FailureReason, detail: str, **fields: Any) -> PaymentRequired:
    return PaymentRequired(
        "Payment verification failed", reason=reason.value, detail=detail, **fields
    )


def _reason_detail(reason: FailureReason, chain: ChainConfig, token: TokenConfig) -> str:
    symbol, pay_to = token.symbol, chain.pay_to
    details = {
        FailureReason.REVERTED: "The transaction failed on-chain (receipt status 0)",
        FailureReason.PAYER_MISMATCH: (
            f"The {symbol} transfer to {pay_to} was sent by another wallet than "
            "X-Wallet-Address; only the payer can claim a payment"
        ),
        FailureReason.WRONG_RECIPIENT: (
            f"The {symbol} transfer did not go to the payment address {pay_to} on {chain.name}"
        ),
        FailureReason.WRONG_TOKEN: (
            f"The transaction moved no {symbol} ({token.address}) on {chain.name}; "
            "only that contract's Transfer events count"
        ),
        FailureReason.NOTHING_TRANSFERRED: (f"The transaction transferred no {symbol} to {pay_to}"),
    }
    return details[reason]
