"""Payments: the 402 quote, the credits decision and on-chain verification (SPEC sections 4, 5).

Three parts, read top to bottom:

- ``make_quote`` / ``decide`` / ``quote_required_error``: pure. What a deploy costs, whether the
  wallet's credits cover it, and the exact 402 body when they do not.
- ``count_payment``: pure. Which logs of a receipt count as a payment (CHAINS.md section 2) and,
  when none do, the precise reason.
- ``PaymentService.accept``: claim the tx, verify it on-chain, credit it once.

Invariants of ``accept``:
- the claim on ``(chain_id, tx)`` is reserved before the first RPC call and released on every
  path that does not credit (failure, pending, not found, RPC down, timeout, cancellation), so a
  tx is never lost to a failed attempt and never credited twice;
- the amount credited is what the token contract says arrived at ``pay_to`` from the
  authenticated wallet (the log's ``from``, never ``tx.from``), never the quote;
- nothing is credited unless the receipt's block is canonical, old enough for the chain's
  finality policy and younger than ``max_payment_age``.

Concurrent submissions of one tx: the claim is one Redis ``SET NX``. The request that holds it
verifies; any other request meanwhile gets a pending-style 402 (``code: verification_in_progress``,
``payment_status: pending``, ``Retry-After``), not a 409: the first attempt may still fail
(a stranger submitting someone else's tx, an RPC outage), and a 409 would tell the real payer
that the payment was taken. Once credited, every later submission gets the 409.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from enum import Enum
from typing import Any, Protocol

from gateway.chains import BlockFacts, Receipt
from gateway.config import ChainConfig, Settings, TokenConfig
from gateway.errors import BadRequest, Conflict, GatewayError, PaymentRequired, Unavailable
from gateway.ledger import ClaimOutcome, CreditOutcome, Ledger
from gateway.metrics import GatewayMetrics
from gateway.types import (
    Clock,
    Finality,
    TxHash,
    Wallet,
    canonical_tx_hash,
    checksum_address,
    micro_to_credits,
    micro_to_usd_number,
    micro_usd_to_token_units,
    token_units_to_micro_usd,
)

log = logging.getLogger("gateway.payments")

#: ``keccak("Transfer(address,address,uint256)")``: topic0 of ERC-20 (and ERC-721) transfers.
TRANSFER_TOPIC = bytes.fromhex("ddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef")
DEFAULT_TOKEN = "usdc"

HEADER_TX = "X-Payment-Tx"
HEADER_CHAIN = "X-Payment-Chain"
HEADER_TOKEN = "X-Payment-Token"


class ChainReader(Protocol):
    """What verification needs from a chain (``gateway.chains.ChainClient`` satisfies it)."""

    async def get_receipt(self, tx_hash: str) -> Receipt | None:
        """The receipt; None when every answering RPC says unknown; 503 if none answers."""
        ...

    async def block_facts(self, block_number: int, *, endpoint: int | None = None) -> BlockFacts:
        """Canonical hash and timestamp at a height, plus latest/safe/finalized, in one batch."""
        ...


# --- the quote and the credits decision (SPEC section 4 steps 2 and 4) -----------------------


@dataclass(frozen=True, slots=True)
class Quote:
    """What a deploy of ``months`` costs, in micro-USD and in the chosen token's base units."""

    amount_micro: int
    amount_token: int  # ceil: a quote never undercharges
    chain: ChainConfig
    token: TokenConfig
    months: int


def resolve_chain(settings: Settings, chain: str | None) -> ChainConfig:
    """The named chain (any case), the default chain when None; 400 naming the header otherwise."""
    name = chain if chain is not None and chain.strip() else settings.default_chain
    found = settings.chain(name.strip())
    if found is None:
        raise BadRequest(
            f"Unknown chain {name!r}; supported: {', '.join(settings.chains)}",
            code="unknown_chain",
            field=HEADER_CHAIN,
        )
    return found


def resolve_token(chain: ChainConfig, token: str | None) -> TokenConfig:
    """The named token of ``chain`` (any case); ``usdc`` (else the first enabled) when None."""
    if token is None or not token.strip():
        return chain.token(DEFAULT_TOKEN) or next(iter(chain.tokens.values()))
    found = chain.token(token.strip())
    if found is None:
        raise BadRequest(
            f"Token {token!r} is not accepted on {chain.name}; accepted: {', '.join(chain.tokens)}",
            code="unknown_token",
            field=HEADER_TOKEN,
        )
    return found


def make_quote(settings: Settings, *, months: int, chain: str | None, token: str | None) -> Quote:
    """``amount_usd = max(minimum_usd, price_usd_per_month * months)``, priced in the token.

    Raises ``BadRequest`` (naming ``months``, ``X-Payment-Chain`` or ``X-Payment-Token``) for a
    month count outside 1..max_months, an unknown chain or a token not accepted on it.
    """
    pricing = settings.pricing
    if (
        isinstance(months, bool)
        or not isinstance(months, int)
        or not 1 <= months <= pricing.max_months
    ):
        raise BadRequest(
            f"months must be an integer from 1 to {pricing.max_months}",
            code="invalid_months",
            field="months",
        )
    chain_config = resolve_chain(settings, chain)
    token_config = resolve_token(chain_config, token)
    amount_micro = max(pricing.minimum_micro_usd, pricing.price_micro_usd_per_month * months)
    return Quote(
        amount_micro=amount_micro,
        amount_token=micro_usd_to_token_units(amount_micro, token_config.decimals),
        chain=chain_config,
        token=token_config,
        months=months,
    )


@dataclass(frozen=True, slots=True)
class DeployOnCredits:
    """The wallet's credits cover the deploy. ``warning`` is set when the wallet opted in to
    spending credits that also fund other live projects (their runtime shrinks)."""

    warning: str | None


@dataclass(frozen=True, slots=True)
class QuoteRequired:
    """The deploy needs a payment first: rendered as the 402 quote by ``quote_required_error``.

    ``warning`` is set when the balance would cover it but other projects depend on it and the
    wallet did not opt in. ``credited_micro`` is set when a payment was just credited by this
    request and still falls short; ``quote`` then asks only the shortfall and ``price_micro``
    is the deploy's whole price.
    """

    quote: Quote
    balance_micro: int
    active_projects: int
    warning: str | None = None
    credited_micro: int | None = None
    price_micro: int | None = None


def _shrink_warning(active_projects: int, quote: Quote) -> str:
    plural = "project" if active_projects == 1 else "projects"
    return (
        f"This wallet has {active_projects} active {plural} funded by the same credits; spending "
        f"{micro_to_usd_number(quote.amount_micro)} USD on this deploy shortens their runtime."
    )


def _shortfall(quote: Quote, balance_micro: int) -> Quote:
    """``quote`` reduced to what the balance lacks (ceil in the token, like every quote)."""
    missing = quote.amount_micro - balance_micro
    return dataclasses.replace(
        quote,
        amount_micro=missing,
        amount_token=micro_usd_to_token_units(missing, quote.token.decimals),
    )


def decide(
    balance_micro: int,
    active_projects: int,
    quote: Quote,
    *,
    opt_in: bool,
    credited_micro: int | None = None,
) -> DeployOnCredits | QuoteRequired:
    """SPEC section 4 step 4, pure. ``credited_micro``: what a payment credited by this very
    request added (None without one).

    - balance >= amount and no active project: deploy;
    - balance >= amount, active projects and either ``opt_in`` (``X-Use-Existing-Credits:
      true``) or a payment credited by this request: deploy, with a warning that the others'
      runtime shrinks. The payment is the agent's answer to the sharing question; asking it
      again would invite a second payment;
    - balance >= amount, active projects, no opt-in and no payment: 402 quote carrying that
      warning and how to opt in;
    - otherwise: 402 quote. After a payment credited by this request it asks only the
      shortfall (amount - balance), never the whole price again, and says what was credited.
    """
    covered = balance_micro >= quote.amount_micro
    if covered and active_projects == 0:
        return DeployOnCredits(warning=None)
    if covered and opt_in:
        return DeployOnCredits(warning=_shrink_warning(active_projects, quote))
    if covered and credited_micro is not None:
        return DeployOnCredits(
            warning="Your payment is credited and deploys this project on credits shared with "
            "the other live projects. " + _shrink_warning(active_projects, quote)
        )
    if credited_micro is not None:
        return QuoteRequired(
            quote=_shortfall(quote, balance_micro),
            balance_micro=balance_micro,
            active_projects=active_projects,
            credited_micro=credited_micro,
            price_micro=quote.amount_micro,
        )
    warning = None
    if covered:
        warning = (
            _shrink_warning(active_projects, quote)
            + " Send X-Use-Existing-Credits: true to deploy on credits anyway, or pay this quote."
        )
    return QuoteRequired(
        quote=quote,
        balance_micro=balance_micro,
        active_projects=active_projects,
        warning=warning,
    )


def supported_chains(settings: Settings) -> list[dict[str, Any]]:
    """The ``/agent/chains`` list: every chain with its enabled token keys."""
    return [
        {"chain": c.name, "chain_id": c.chain_id, "tokens": list(c.tokens)}
        for c in settings.chains.values()
    ]


def quote_required_error(decision: QuoteRequired, settings: Settings) -> PaymentRequired:
    """The 402 quote of SPEC section 4 step 4 (the renderer adds ``Cache-Control: no-store``)."""
    quote = decision.quote
    fields: dict[str, Any] = {
        "amount_usd": micro_to_usd_number(quote.amount_micro),
        "amount_token": str(quote.amount_token),
        "current_credit_balance_usd": micro_to_usd_number(decision.balance_micro),
        "active_projects": decision.active_projects,
        "pay_to": quote.chain.pay_to,
        "payment_chain": quote.chain.name,
        "token": quote.token.key,
        "decimals": quote.token.decimals,
        "supported_chains": supported_chains(settings),
    }
    if decision.warning is not None:
        fields["warning"] = decision.warning
    if decision.credited_micro is not None:
        fields["credited_usd"] = micro_to_usd_number(decision.credited_micro)
    if decision.price_micro is not None:
        fields["price_usd"] = micro_to_usd_number(decision.price_micro)
    return PaymentRequired("Payment required", **fields)


# --- which logs count (CHAINS.md section 2) ---------------------------------------------------


class FailureReason(str, Enum):
    """The ``reason`` of a 402 "Payment verification failed"."""

    REVERTED = "reverted"  # receipt status 0
    PAYER_MISMATCH = "payer_mismatch"  # right token to pay_to, but from another wallet
    WRONG_RECIPIENT = "wrong_recipient"  # right token from the wallet, but not to pay_to
    WRONG_TOKEN = "wrong_token"  # Transfer events only from other contracts
    NOTHING_TRANSFERRED = "nothing_transferred"  # no Transfer of any kind (or only zero values)
    TOO_OLD = "too_old"  # block older than max_payment_age
    WRONG_CHAIN = "wrong_chain"  # not on the named chain, but on another configured one


@dataclass(frozen=True, slots=True)
class TokenTransfer:
    """An ERC-20 ``Transfer`` log: 3 topics, topic0 = Transfer, 32-byte value. Lowercase hex."""

    contract: str
    sender: str
    recipient: str
    value: int


def _topic_address(topic: bytes) -> str:
    return "0x" + topic[-20:].hex()


def token_transfers(receipt: Receipt) -> list[TokenTransfer]:
    """Every ERC-20-shaped Transfer log of the receipt, from any contract (decoded by hand:
    ERC-721 transfers share topic0 but have 4 topics, look-alikes may carry odd data)."""
    found = []
    for entry in receipt.logs:
        if len(entry.topics) != 3 or entry.topics[0] != TRANSFER_TOPIC or len(entry.data) != 32:
            continue
        found.append(
            TokenTransfer(
                contract=entry.address.lower(),
                sender=_topic_address(entry.topics[1]),
                recipient=_topic_address(entry.topics[2]),
                value=int.from_bytes(entry.data, "big"),
            )
        )
    return found


@dataclass(frozen=True, slots=True)
class PaymentCount:
    """``units`` received (> 0 when it counts as a payment), else the ``reason`` it does not."""

    units: int
    reason: FailureReason | None


def count_payment(receipt: Receipt, *, token_address: str, pay_to: str, payer: str) -> PaymentCount:
    """Sum the token's Transfer logs from ``payer`` to ``pay_to`` (SPEC section 5).

    Only logs emitted by ``token_address`` count. When the sum is 0 the reason is the closest
    miss, most specific first: reverted, payer_mismatch, wrong_recipient, wrong_token,
    nothing_transferred.
    """
    if receipt.status != 1:
        return PaymentCount(0, FailureReason.REVERTED)
    token, to, sender = token_address.lower(), pay_to.lower(), payer.lower()
    transfers = token_transfers(receipt)
    of_token = [t for t in transfers if t.contract == token and t.value > 0]
    units = sum(t.value for t in of_token if t.recipient == to and t.sender == sender)
    if units > 0:
        return PaymentCount(units, None)
    if any(t.recipient == to for t in of_token):
        return PaymentCount(0, FailureReason.PAYER_MISMATCH)
    if any(t.sender == sender for t in of_token):
        return PaymentCount(0, FailureReason.WRONG_RECIPIENT)
    other_contracts = any(
        entry.topics and entry.topics[0] == TRANSFER_TOPIC and entry.address.lower() != token
        for entry in receipt.logs
    )
    if other_contracts:
        return PaymentCount(0, FailureReason.WRONG_TOKEN)
    return PaymentCount(0, FailureReason.NOTHING_TRANSFERRED)


# --- verification and crediting (SPEC section 5) ----------------------------------------------


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
    ) -> None:
        self._settings = settings
        self._ledger = ledger
        self._chains = chains
        self._clock = clock
        self._after_credit = after_credit
        self._metrics = metrics or GatewayMetrics()

    async def accept(
        self, wallet: Wallet, *, tx: str, chain: str | None, token: str | None
    ) -> PaymentCredited:
        """``_accept``, counted in the payment funnel of ``gateway.metrics`` (every submission
        is seen once and ends in exactly one of verified, pending, rejected, conflict or
        unavailable)."""
        chain_label = self._chain_label(chain)
        self._metrics.payment_seen(chain_label)
        try:
            credited = await self._accept(wallet, tx=tx, chain=chain, token=token)
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
        self, wallet: Wallet, *, tx: str, chain: str | None, token: str | None
    ) -> PaymentCredited:
        """Verify the tx named by ``X-Payment-Tx`` and credit it to ``wallet``.

        Raises (wire shape in the module and SPEC section 4 step 3):
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
                field=HEADER_TX,
            )
        chain_config = resolve_chain(self._settings, chain)
        token_config = resolve_token(chain_config, token)

        outcome, ticket = await self._ledger.claim_payment(chain_config.chain_id, tx_hash)
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
                    headers={"Retry-After": str(self._settings.pending_retry_after_seconds)},
                    code="verification_timeout",
                ) from exc
            recheck = (
                None if verified.finality is Finality.FINALIZED else verified.receipt.block_number
            )
            applied = await self._ledger.credit_payment(
                ticket,
                wallet.address,
                verified.amount_micro,
                verified.record,
                recheck_block=recheck,
            )
            if applied.outcome is CreditOutcome.USED:
                raise await self._already_processed(wallet, chain_config, tx_hash)
            if applied.outcome is CreditOutcome.LOST:
                # Our lease ran out while verifying; whoever claims it next verifies afresh.
                raise Unavailable(
                    "Payment verification took too long; retry with the same X-Payment-Tx",
                    internal=f"claim on {chain_config.name} {tx_hash} expired before crediting",
                    headers={"Retry-After": str(self._settings.pending_retry_after_seconds)},
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
                    f"send {HEADER_CHAIN}: {elsewhere}",
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
        return {"Retry-After": str(self._settings.pending_retry_after_seconds)}

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
