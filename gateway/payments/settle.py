"""Gasless settlement: the gateway sends a payer's EIP-3009 authorization itself, pays the gas,
and credits the payment by the pushed-payment rules (docs/PAYMENTS.md section 7).

``Settler.settle`` runs, in this order, and nothing moves before the last check passes:

1. the terms (``authorization.check_terms``): recipient is ``pay_to``, value covers the
   quote, ``validAfter`` passed, ``validBefore`` leaves the settle margin; the token has an
   EIP-712 domain configured;
2. the signature: it recovers to ``from`` (account key, low s), or ``from`` is a contract whose
   EIP-1271 ``isValidSignature`` accepts the digest; when the request is authenticated, ``from``
   is that wallet;
3. the claim on (chain, token, payer, nonce): one Lua step, permanent (``SettlementJournal``);
4. on-chain: an authorization already used on-chain is looked up (its ``AuthorizationUsed``
   log) and that tx is credited instead; otherwise the call is simulated from the settler
   (a revert, e.g. missing funds, refuses it and releases the claim);
5. the settlement tx is signed with a nonce handed out by Redis (shared by every process) and
   recorded with its hash *before* it is sent; then sent, and its receipt awaited;
6. the credit: ``PaymentService.accept`` with the payer as wallet and the tx that used the
   authorization, i.e. the token's own Transfer log, finality policy and re-check, one ledger.

Exactly once: a retry of the same authorization (after a crash, a timeout or a lost answer)
finds the recorded tx and re-sends the same signed bytes if the chain does not know them,
never a second transaction; the credit itself is once per tx (the payment claim). A claim
held by a live request answers pending. The settler key pays gas only and never holds funds.

Errors (``GatewayError``): ``PaymentRequired`` with ``reason`` (a ``Refusal``) when refused
before anything was broadcast (``settlement: "refused"``), or with ``payment_status: pending``
and ``Retry-After`` while a settlement is in flight (never a reason to sign a new payment);
``Conflict`` when the authorization's payment was already credited; ``Unavailable`` when no
RPC answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_account.typed_transactions.typed_transaction import TypedTransaction
from eth_typing import HexStr
from hexbytes import HexBytes

from gateway.chains import FeeCaps, Receipt, Simulation
from gateway.config import ChainConfig, Settings, TokenConfig
from gateway.errors import Conflict, GatewayError, PaymentRequired
from gateway.headers import RETRY_AFTER
from gateway.metrics import GatewayMetrics
from gateway.payments.authorization import (
    Authorization,
    Refusal,
    check_terms,
    digest,
    recover_signer,
    transfer_calldata,
)
from gateway.payments.service import PaymentCredited, PaymentService
from gateway.store import Store
from gateway.types import Clock, Wallet, checksum_address

log = logging.getLogger("gateway.payments.settle")

#: Gas limit headroom over the estimate, in percent.
GAS_HEADROOM_PERCENT = 25
#: A settlement still unmined after this many sweeper re-sends is replaced: same nonce, both
#: fee caps raised by at least this percent (nodes require +10 % to replace a pending tx).
REPLACE_AFTER_RESENDS = 2
REPLACE_BUMP_PERCENT = 25
RECEIPT_POLL_SECONDS = 0.1


class SettlementChain(Protocol):
    """What settling needs from a chain (``gateway.chains.ChainClient`` satisfies it)."""

    async def get_code(self, address: str) -> bytes: ...

    async def is_valid_digest_signature(
        self, wallet: str, digest: bytes, signature: bytes
    ) -> bool: ...

    async def simulate(self, sender: str, to: str, data: bytes) -> Simulation: ...

    async def pending_nonce(self, address: str) -> int: ...

    async def fee_caps(self) -> FeeCaps: ...

    async def send_raw_transaction(self, raw: bytes) -> str: ...

    async def get_receipt(self, tx_hash: str) -> Receipt | None: ...

    async def authorization_used(self, token: str, authorizer: str, nonce: bytes) -> bool: ...

    async def authorization_used_tx(
        self, token: str, authorizer: str, nonce: bytes, *, lookback_blocks: int
    ) -> str | None: ...

    async def eth_balance(self, address: str) -> int: ...


@dataclass(frozen=True, slots=True)
class Claimed:
    """This request holds the claim and must settle (``holder`` identifies it)."""

    holder: str


@dataclass(frozen=True, slots=True)
class Busy:
    """Another live request holds the claim and has recorded no tx yet."""


@dataclass(frozen=True, slots=True)
class Recorded:
    """A tx is recorded for this authorization: reconcile against it, never sign another."""

    tx: str
    raw: bytes  # empty for someone else's tx
    credit_tx: str
    state: str  # signed | foreign | settled | reverted


ClaimResult = Claimed | Busy | Recorded


class SettlementJournal:
    """The settlement records in Redis, every change one Lua script (``store/lua``)."""

    def __init__(self, store: Store, *, lease_seconds: int, clock: Clock) -> None:
        self._store = store
        self._keys = store.keys
        self._lease_ms = lease_seconds * 1000
        self._clock = clock

    def key_of(self, chain_id: int, token: TokenConfig, authorization: Authorization) -> str:
        return self._key(chain_id, token, authorization.payer, authorization.nonce)

    def _key(self, chain_id: int, token: TokenConfig, payer: str, nonce: bytes) -> str:
        return self._keys.settlement(chain_id, token.address, payer, nonce.hex())

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def claim(
        self, chain_id: int, token: TokenConfig, authorization: Authorization
    ) -> ClaimResult:
        holder = secrets.token_hex(8)
        answer = await self._store.run(
            "claim_settlement",
            [self._key(chain_id, token, authorization.payer, authorization.nonce)],
            [
                holder,
                self._now_ms(),
                self._lease_ms,
                authorization.payer,
                token.address,
                str(authorization.value),
            ],
        )
        outcome = str(answer[0])
        if outcome == "claimed":
            return Claimed(holder)
        if outcome == "busy":
            return Busy()
        tx, raw, credit_tx, state = (str(v) for v in answer[1:5])
        return Recorded(
            tx=tx, raw=bytes.fromhex(raw[2:]) if raw else b"", credit_tx=credit_tx, state=state
        )

    async def record(
        self,
        chain_id: int,
        token: TokenConfig,
        authorization: Authorization,
        holder: str,
        *,
        tx: str,
        raw: bytes,
        settler_nonce: int | None,
        chain_name: str = "",
    ) -> bool:
        """Record the tx before it is sent; False when the claim is no longer ours."""
        recorded = await self._store.run(
            "record_settlement",
            [
                self._key(chain_id, token, authorization.payer, authorization.nonce),
                self._keys.settlements_in_flight(),
            ],
            [
                holder,
                tx,
                "0x" + raw.hex() if raw else "",
                "" if settler_nonce is None else settler_nonce,
                "signed" if raw else "foreign",
                self._now_ms(),
                chain_name,
            ],
            durable=True,  # the broadcast rests on it
        )
        return bool(int(recorded))

    async def release(
        self, chain_id: int, token: TokenConfig, authorization: Authorization, holder: str
    ) -> None:
        await self._store.run(
            "release_settlement",
            [self._key(chain_id, token, authorization.payer, authorization.nonce)],
            [holder],
        )

    async def finish(
        self,
        chain_id: int,
        token: TokenConfig,
        authorization: Authorization,
        *,
        state: str,
        credit_tx: str,
        gas_wei: int | None = None,
    ) -> None:
        await self.finish_key(
            self._key(chain_id, token, authorization.payer, authorization.nonce),
            state=state,
            credit_tx=credit_tx,
            gas_wei=gas_wei,
        )

    async def finish_key(
        self, key: str, *, state: str, credit_tx: str, gas_wei: int | None = None
    ) -> None:
        await self._store.run(
            "finish_settlement",
            [key, self._keys.settlements_in_flight()],
            [state, credit_tx, self._now_ms(), "" if gas_wei is None else gas_wei],
        )

    async def has_tx(self, chain_id: int, token: TokenConfig, authorization: Authorization) -> bool:
        """Whether a tx is recorded for the authorization (signed, someone else's, settled or
        reverted): past the point where a refusal could be answered with a new challenge."""
        state = await self._store.field(self.key_of(chain_id, token, authorization), "state")
        return state not in (None, "claimed")

    async def consume(
        self, chain_id: int, token: TokenConfig, authorization: Authorization
    ) -> bool:
        """Mark the authorization's credit as taken by a request (once): True for the first.
        Tells a request whose payment another path credited (the sweeper, the reconciler)
        from a replay of a credential an earlier request already used."""
        return await self._store.set_field_if_absent(
            self._key(chain_id, token, authorization.payer, authorization.nonce),
            "consumed_at",
            str(self._now_ms()),
        )

    async def in_flight(self, *, older_than_ms: int, limit: int = 50) -> list[str]:
        """Settlement keys with a signed tx unfinished since before ``older_than_ms``."""
        found = await self._store.lowest(self._keys.settlements_in_flight(), limit)
        return [key for key, recorded in found if recorded <= older_than_ms]

    async def record_at(self, key: str) -> dict[str, str]:
        return await self._store.hash(key)

    async def touch(self, key: str) -> None:
        """Push a swept record back in the sweeper's queue (re-sent just now)."""
        await self._store.rescore_existing(self._keys.settlements_in_flight(), key, self._now_ms())

    async def count_resend(self, key: str) -> int:
        """One more re-send of the record's current tx; how many so far."""
        return await self._store.increment_field(key, "resends")

    async def replace(self, key: str, *, old_tx: str, new_tx: str, raw: bytes) -> bool:
        """Record ``new_tx`` (same nonce, higher fees) in place of ``old_tx``; False when the
        record moved on meanwhile."""
        replaced = await self._store.run(
            "replace_settlement", [key], [old_tx, new_tx, "0x" + raw.hex(), self._now_ms()]
        )
        return bool(int(replaced))

    async def forget_in_flight(self, key: str) -> None:
        await self._store.remove_member(self._keys.settlements_in_flight(), key)

    async def next_settler_nonce(self, chain_id: int, settler: str, chain_pending: int) -> int:
        nonce = await self._store.run(
            "next_settler_nonce",
            [self._keys.settler_nonce(chain_id, settler)],
            [chain_pending],
            durable=True,  # a signed tx rests on it
        )
        return int(nonce)

    async def record_of(
        self, chain_id: int, token: TokenConfig, authorization: Authorization
    ) -> dict[str, str]:
        """The stored record (operator reads and tests)."""
        return await self._store.hash(
            self._key(chain_id, token, authorization.payer, authorization.nonce)
        )


class Settler:
    """Settles EIP-3009 authorizations with the ``GATEWAY_SETTLER_KEY`` account and credits
    them through ``PaymentService``; see the module docstring for the order of steps."""

    def __init__(
        self,
        settings: Settings,
        journal: SettlementJournal,
        chains: Mapping[str, SettlementChain],
        payments: PaymentService,
        *,
        clock: Clock,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        if settings.settler_key is None:
            raise ValueError("Settler needs GATEWAY_SETTLER_KEY")
        self._metrics = metrics or GatewayMetrics()
        self._settings = settings
        self._journal = journal
        self._chains = chains
        self._payments = payments
        self._clock = clock
        self._account: LocalAccount = Account.from_key(settings.settler_key)

    @property
    def address(self) -> str:
        """The settler account's address (it pays the gas)."""
        return str(self._account.address)

    async def settle(
        self,
        authorization: Authorization,
        *,
        chain: ChainConfig,
        token: TokenConfig,
        min_units: int,
        wallet: Wallet | None = None,
        signature_checked: bool = False,
    ) -> PaymentCredited:
        """Verify, settle once and credit ``authorization`` (paying ``token`` on ``chain``,
        at least ``min_units``); ``wallet``, when the request is authenticated, must be the
        payer. Raises as the module docstring says.

        An authorization whose tx is already recorded (sent, maybe mined) is reconciled even
        if its validity window or the price has moved on since: refusing it now would invite
        the client to sign a second payment for one that exists. Its signature, recipient and
        payer are still checked: the record is found by payer and nonce alone."""
        in_hand = await self._journal.has_tx(chain.chain_id, token, authorization)
        await self._verify(
            authorization,
            chain,
            token,
            min_units,
            wallet,
            window=not in_hand,
            signature=not signature_checked,
        )
        claim = await self._journal.claim(chain.chain_id, token, authorization)
        if isinstance(claim, Busy):
            raise self._pending("Payment settlement is in progress; retry with the same payment")
        if isinstance(claim, Recorded):
            return await self._reconcile(authorization, chain, token, claim)
        recorded = await self._settle_claimed(authorization, chain, token, claim.holder)
        return await self._reconcile(authorization, chain, token, recorded, unsent=True)

    async def _verify(
        self,
        authorization: Authorization,
        chain: ChainConfig,
        token: TokenConfig,
        min_units: int,
        wallet: Wallet | None,
        *,
        window: bool = True,
        signature: bool = True,
    ) -> None:
        """``window``: the amount and validity terms too (not for a recorded settlement);
        ``signature``: the signature too (not when the caller has just proved it)."""
        if not token.gasless:
            raise _refused(Refusal.TOKEN_NOT_GASLESS, f"{token.symbol} cannot be paid gasless")
        refusal = check_terms(
            authorization,
            pay_to=chain.pay_to,
            min_units=min_units if window else 0,
            now=int(self._clock()),
            margin_seconds=self._settings.settle_margin_seconds,
        )
        if not window and refusal in (Refusal.NOT_YET_VALID, Refusal.EXPIRED):
            refusal = None
        if refusal is not None:
            raise _refused(refusal, _terms_detail(refusal, chain, min_units, self._settings))
        if wallet is not None and wallet.lower != authorization.payer.lower():
            raise _refused(
                Refusal.PAYER_MISMATCH,
                "The authorization's payer is not the wallet that signed this request",
            )
        if signature:
            await self.check_signature(authorization, chain, token)

    async def check_signature(
        self, authorization: Authorization, chain: ChainConfig, token: TokenConfig
    ) -> None:
        """The signature is the payer's: an account key's (recovered, low s), or a contract
        wallet's EIP-1271 answer. Refused (402 ``bad_signature``) otherwise. This is what makes
        the payer the wallet of a request that carries no wallet-signature headers."""
        if not token.gasless:
            raise _refused(Refusal.TOKEN_NOT_GASLESS, f"{token.symbol} cannot be paid gasless")
        message_digest = digest(authorization, chain.chain_id, token)
        if recover_signer(authorization, message_digest) == authorization.payer:
            return
        reader = self._chains[chain.name]
        if await reader.get_code(authorization.payer) and await reader.is_valid_digest_signature(
            authorization.payer, message_digest, authorization.signature
        ):
            return
        raise _refused(
            Refusal.BAD_SIGNATURE,
            f"The signature is not {authorization.payer}'s over this authorization "
            f"(EIP-712 domain {token.eip712_name!r} version {token.eip712_version!r}, "
            f"chain {chain.chain_id}, token {token.address})",
        )

    async def _settle_claimed(
        self, authorization: Authorization, chain: ChainConfig, token: TokenConfig, holder: str
    ) -> Recorded:
        """Steps 4 and 5 under our claim; the claim is released on every path that recorded
        nothing."""
        reader = self._chains[chain.name]
        recorded = False
        call = transfer_calldata(authorization)
        try:
            # Four reads that need nothing from each other, in one round trip of time: is the
            # nonce used, would the call succeed, the fees, the settler's pending nonce.
            used, simulation, fees, pending = await asyncio.gather(
                reader.authorization_used(token.address, authorization.payer, authorization.nonce),
                reader.simulate(self.address, token.address, call),
                reader.fee_caps(),
                reader.pending_nonce(self.address),
            )
            if used:
                foreign = await reader.authorization_used_tx(
                    token.address,
                    authorization.payer,
                    authorization.nonce,
                    lookback_blocks=self._settings.settle_log_lookback_blocks,
                )
                if foreign is None:  # cancelled, or used longer ago than we search
                    raise _refused(
                        Refusal.AUTHORIZATION_USED,
                        "The authorization's nonce is already used or cancelled on-chain",
                    )
                recorded = await self._journal.record(
                    chain.chain_id,
                    token,
                    authorization,
                    holder,
                    tx=foreign,
                    raw=b"",
                    settler_nonce=None,
                )
                if not recorded:
                    raise self._pending(
                        "Payment settlement is in progress; retry with the same payment"
                    )
                log.info(
                    "authorization settled by someone else",
                    extra={"chain": chain.name, "tx": foreign},
                )
                self._metrics.settlement_finished(chain.name, "foreign", 0)
                return Recorded(tx=foreign, raw=b"", credit_tx=foreign, state="foreign")

            if simulation.gas is None:
                reason = (simulation.revert_reason or "").lower()
                if "balance" in reason:
                    raise _refused(
                        Refusal.INSUFFICIENT_FUNDS,
                        f"{authorization.payer} does not hold {authorization.value} "
                        f"{token.symbol} base units",
                    )
                raise _refused(
                    Refusal.SIMULATION_FAILED,
                    f"The settlement would revert: {simulation.revert_reason}",
                )
            nonce = await self._journal.next_settler_nonce(chain.chain_id, self.address, pending)
            signed = self._account.sign_transaction(
                {
                    "type": 2,
                    "chainId": chain.chain_id,
                    "nonce": nonce,
                    "to": HexStr(token.address),
                    "value": 0,
                    "data": call,
                    "gas": simulation.gas * (100 + GAS_HEADROOM_PERCENT) // 100,
                    "maxFeePerGas": fees.max_fee_per_gas,
                    "maxPriorityFeePerGas": fees.max_priority_fee_per_gas,
                }
            )
            tx_hash = "0x" + bytes(signed.hash).hex()
            raw = bytes(signed.raw_transaction)
            recorded = await self._journal.record(
                chain.chain_id,
                token,
                authorization,
                holder,
                tx=tx_hash,
                raw=raw,
                settler_nonce=nonce,
                chain_name=chain.name,
            )
            if not recorded:
                # Our lease ran out and another request took the claim over; it settles.
                raise self._pending(
                    "Payment settlement is in progress; retry with the same payment"
                )
            log.info(
                "settlement signed",
                extra={"chain": chain.name, "tx": tx_hash, "settler_nonce": nonce},
            )
            return Recorded(tx=tx_hash, raw=raw, credit_tx=tx_hash, state="signed")
        finally:
            if not recorded:
                await self._journal.release(chain.chain_id, token, authorization, holder)

    async def _reconcile(
        self,
        authorization: Authorization,
        chain: ChainConfig,
        token: TokenConfig,
        record: Recorded,
        *,
        unsent: bool = False,
    ) -> PaymentCredited:
        """Bring a recorded settlement to its credit: send the recorded bytes if the chain
        has no receipt for them (``unsent``: this request just signed them, so it has none),
        wait for the receipt, then credit the tx that used the authorization."""
        if record.state == "reverted":
            raise _refused(
                Refusal.SETTLEMENT_REVERTED,
                "The settlement of this authorization failed on-chain; sign a new one",
                sent=True,
            )
        reader = self._chains[chain.name]
        credit_tx = record.credit_tx or record.tx
        if record.state == "signed":
            receipt = None
            if not unsent:
                key = self._journal.key_of(chain.chain_id, token, authorization)
                mined = await self._mined(reader, await self._journal.record_at(key), record.tx)
                if mined is not None:
                    credit_tx, receipt = mined
                    record = Recorded(credit_tx, record.raw, credit_tx, record.state)
            if receipt is None:
                await reader.send_raw_transaction(record.raw)
                receipt = await self._await_receipt(reader, record.tx)
            if receipt.status != 1:
                self._metrics.settlement_finished(chain.name, "reverted", receipt.gas_cost_wei)
                credit_tx = await self._after_revert(authorization, chain, token, record.tx)
            else:
                await self._journal.finish(
                    chain.chain_id,
                    token,
                    authorization,
                    state="settled",
                    credit_tx=record.tx,
                    gas_wei=receipt.gas_cost_wei,
                )
                self._metrics.settlement_finished(chain.name, "settled", receipt.gas_cost_wei)
                log.info(
                    "settlement mined",
                    extra={"chain": chain.name, "tx": record.tx, "gas_wei": receipt.gas_cost_wei},
                )
        return await self._credit(authorization, chain, token, credit_tx)

    async def _credit(
        self, authorization: Authorization, chain: ChainConfig, token: TokenConfig, tx: str
    ) -> PaymentCredited:
        """Credit the settled tx to the payer, once per credential: the first request to get
        here takes it (``consume``). If the sweeper or the reconciler credited the payer first,
        that request still gets the credit as its own; a later replay of the credential gets
        the 409 "Payment already processed"."""
        wallet = Wallet(authorization.payer)
        first = await self._journal.consume(chain.chain_id, token, authorization)
        try:
            return await self._payments.accept(wallet, tx=tx, chain=chain.name, token=token.key)
        except Conflict:
            if first:
                credited = await self._payments.credited_to(wallet, chain, tx)
                if credited is not None:
                    return credited
            raise

    async def _mined(
        self, reader: SettlementChain, stored: Mapping[str, str], current: str
    ) -> tuple[str, Receipt] | None:
        """The one of a record's txs (the current one first, then any it replaced) that has a
        receipt, with it; None when none is mined yet."""
        hashes = [current] + [t for t in stored.get("txs", "").split(",") if t and t != current]
        for tx in hashes:
            receipt = await reader.get_receipt(tx)
            if receipt is not None:
                return tx, receipt
        return None

    async def _replacement(self, chain: ChainConfig, raw: bytes) -> tuple[str, bytes]:
        """``raw`` signed again with the same nonce and fees raised past the replacement rule
        (at least +12.5 % on both caps, and at least what the chain asks now)."""
        fields = TypedTransaction.from_bytes(HexBytes(raw)).as_dict()
        fresh = await self._chains[chain.name].fee_caps()
        tip = max(
            fresh.max_priority_fee_per_gas,
            fields["maxPriorityFeePerGas"] * (100 + REPLACE_BUMP_PERCENT) // 100 + 1,
        )
        max_fee = max(
            fresh.max_fee_per_gas, fields["maxFeePerGas"] * (100 + REPLACE_BUMP_PERCENT) // 100 + 1
        )
        signed = self._account.sign_transaction(
            {
                "type": 2,
                "chainId": fields["chainId"],
                "nonce": fields["nonce"],
                "to": HexStr(checksum_address("0x" + bytes(fields["to"]).hex())),
                "value": fields["value"],
                "data": bytes(fields["data"]),
                "gas": fields["gas"],
                "maxFeePerGas": max(max_fee, tip),
                "maxPriorityFeePerGas": tip,
            }
        )
        return "0x" + bytes(signed.hash).hex(), bytes(signed.raw_transaction)

    async def sweep(self, *, older_than_seconds: float) -> int:
        """Re-send every settlement tx recorded more than ``older_than_seconds`` ago and still
        unmined (dropped from a mempool, or a node restarted): the same signed bytes, so never
        a second tx, and the settler's later nonces are not blocked behind it. A tx found mined
        is credited to its payer (the request that sent it may never come back). Returns how
        many were re-sent."""
        cutoff = int((self._clock() - older_than_seconds) * 1000)
        resent = 0
        for key in await self._journal.in_flight(older_than_ms=cutoff):
            record = await self._journal.record_at(key)
            chain = self._settings.chain(record.get("chain", ""))
            if record.get("state") != "signed" or chain is None or not record.get("raw"):
                await self._journal.forget_in_flight(key)
                continue
            reader = self._chains[chain.name]
            mined = await self._mined(reader, record, record["tx"])
            if mined is None:
                raw = bytes.fromhex(record["raw"][2:])
                tx = record["tx"]
                if await self._journal.count_resend(key) > REPLACE_AFTER_RESENDS:
                    # Still unmined after several re-sends: underpriced. Same nonce, more fee.
                    new_tx, new_raw = await self._replacement(chain, raw)
                    if await self._journal.replace(key, old_tx=tx, new_tx=new_tx, raw=new_raw):
                        log.info(
                            "settlement replaced with higher fees",
                            extra={"chain": chain.name, "tx": tx, "replacement": new_tx},
                        )
                        tx, raw = new_tx, new_raw
                try:
                    await reader.send_raw_transaction(raw)
                except GatewayError as exc:
                    log.warning("settlement re-send failed", extra={"tx": tx, "error": exc.public})
                else:
                    resent += 1
                    log.info("settlement re-sent", extra={"chain": chain.name, "tx": tx})
                await self._journal.touch(key)
                continue
            tx, receipt = mined
            if receipt.status != 1:  # the payer's retry works out who used it (_after_revert)
                await self._journal.forget_in_flight(key)
                continue
            await self._journal.finish_key(
                key, state="settled", credit_tx=tx, gas_wei=receipt.gas_cost_wei
            )
            self._metrics.settlement_finished(chain.name, "settled", receipt.gas_cost_wei)
            token = next(
                (
                    t
                    for t in chain.tokens.values()
                    if t.address.lower() == record.get("token_address", "").lower()
                ),
                None,
            )
            if token is not None:
                with contextlib.suppress(GatewayError):  # credited already, or refused: logged
                    await self._payments.accept(
                        Wallet(record["payer"]), tx=tx, chain=chain.name, token=token.key
                    )
        return resent

    async def recorded(
        self, authorization: Authorization, chain: ChainConfig, token: TokenConfig
    ) -> bool:
        """Whether the authorization already has a settlement tx (sent, maybe mined)."""
        return await self._journal.has_tx(chain.chain_id, token, authorization)

    async def gas_balance(self, chain: ChainConfig) -> int:
        """The settler's native balance on ``chain`` (wei)."""
        return await self._chains[chain.name].eth_balance(self.address)

    async def _after_revert(
        self, authorization: Authorization, chain: ChainConfig, token: TokenConfig, tx: str
    ) -> str:
        """Our settlement reverted: someone used the authorization first (credit theirs), or
        it is refused for good."""
        reader = self._chains[chain.name]
        foreign = None
        if await reader.authorization_used(token.address, authorization.payer, authorization.nonce):
            foreign = await reader.authorization_used_tx(
                token.address,
                authorization.payer,
                authorization.nonce,
                lookback_blocks=self._settings.settle_log_lookback_blocks,
            )
        if foreign is not None and foreign != tx:
            await self._journal.finish(
                chain.chain_id, token, authorization, state="foreign", credit_tx=foreign
            )
            return foreign
        await self._journal.finish(
            chain.chain_id, token, authorization, state="reverted", credit_tx=tx
        )
        raise _refused(
            Refusal.SETTLEMENT_REVERTED,
            f"The settlement transaction {tx} reverted; sign a new authorization",
            sent=True,
        )

    async def _await_receipt(self, reader: SettlementChain, tx_hash: str) -> Receipt:
        try:
            async with asyncio.timeout(self._settings.settle_wait_seconds):
                # The chain is polled: a JSON-RPC receipt has nothing to wait on.
                while (receipt := await reader.get_receipt(tx_hash)) is None:  # noqa: ASYNC110
                    await asyncio.sleep(RECEIPT_POLL_SECONDS)
        except TimeoutError:
            raise self._pending(
                "Payment settlement sent, not yet mined; retry with the same payment", tx=tx_hash
            ) from None
        return receipt

    def _pending(self, message: str, *, tx: str | None = None) -> PaymentRequired:
        extra: dict[str, Any] = {} if tx is None else {"tx": tx}
        return PaymentRequired(
            message,
            headers={RETRY_AFTER: str(self._settings.pending_retry_after_seconds)},
            payment_status="pending",
            code="settlement_pending",
            **extra,
        )


def _refused(reason: Refusal, detail: str, *, sent: bool = False) -> PaymentRequired:
    """``settlement: "refused"`` when nothing was broadcast (the route then offers fresh
    challenges); ``"reverted"`` when our tx was sent and failed (it offers none: a new
    challenge is only ever the answer to a payment that moved nothing)."""
    return PaymentRequired(
        "Payment authorization refused",
        reason=reason.value,
        detail=detail,
        settlement="reverted" if sent else "refused",
    )


def _terms_detail(reason: Refusal, chain: ChainConfig, min_units: int, settings: Settings) -> str:
    return {
        Refusal.WRONG_RECIPIENT: f"The authorization must pay {chain.pay_to} on {chain.name}",
        Refusal.UNDERPAID: f"The authorization must be worth at least {min_units} base units",
        Refusal.NOT_YET_VALID: "The authorization's validAfter has not passed",
        Refusal.EXPIRED: (
            "The authorization's validBefore must leave at least "
            f"{settings.settle_margin_seconds} s to settle"
        ),
    }[reason]
