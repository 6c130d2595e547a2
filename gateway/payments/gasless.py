"""Protocol payments end to end (docs/PAYMENTS.md section 6): the offers a 402 carries, and a
credential (MPP or x402) bound to this request, its payer authenticated, its challenge used
once, then settled and credited by ``Settler``.

Refusals are 402 ``PaymentRequired`` with ``reason`` and ``settlement: "refused"`` (nothing was
broadcast), marked to carry fresh challenges for ``offer_micro``; a settlement in flight is a
402 ``payment_status: pending`` that offers nothing (a fresh challenge would make a client
sign a second payment).
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass

from gateway.config import Settings
from gateway.errors import GatewayError, PaymentRequired
from gateway.headers import PAYMENT_REQUIRED, WWW_AUTHENTICATE
from gateway.metrics import GatewayMetrics
from gateway.payments.protocols import (
    GASLESS_TOKEN,
    BoundPayment,
    Credential,
    CredentialRefusal,
    CredentialRefused,
    RequestContext,
    bind_mpp,
    bind_x402,
    challenge_secret,
    gasless_offers,
    payment_required_header,
    www_authenticate,
)
from gateway.payments.service import PaymentCredited
from gateway.payments.settle import Settler
from gateway.store import Store
from gateway.types import Clock, Wallet

log = logging.getLogger("gateway.payments.gasless")


@dataclass(frozen=True, slots=True)
class GaslessPaid:
    """A protocol payment settled and credited by this request."""

    payment: BoundPayment
    credited: PaymentCredited


class GaslessPayments:
    def __init__(
        self,
        settings: Settings,
        store: Store,
        settler: Settler,
        *,
        clock: Clock,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        if settings.settler_key is None:
            raise ValueError("GaslessPayments needs GATEWAY_SETTLER_KEY")
        self._metrics = metrics or GatewayMetrics()
        self._low_gas: set[str] = set()  # chains where the settler cannot pay gas
        self._settings = settings
        self._store = store
        self._settler = settler
        self._clock = clock
        self._secret = challenge_secret(settings.settler_key)

    @property
    def settler_address(self) -> str:
        return self._settler.address

    async def refresh_gas(self) -> dict[str, str]:
        """Read the settler's gas balance on every chain it settles on: a chain below
        ``settle_min_gas_wei`` (or whose RPC does not answer) is offered no gasless payment
        until a later read finds it funded. Returns each chain's state for readiness."""
        states: dict[str, str] = {}
        low: set[str] = set()
        floor = self._settings.settle_min_gas_wei
        for chain in self._settings.chains.values():
            token = chain.token(GASLESS_TOKEN)
            if token is None or not token.gasless:
                continue
            try:
                wei = await self._settler.gas_balance(chain)
            except GatewayError as exc:
                low.add(chain.name)
                states[chain.name] = f"unknown: {exc.public}"
                continue
            self._metrics.settler_balance(chain.name, wei)
            if wei < floor:
                low.add(chain.name)
                states[chain.name] = f"low: {wei} wei, below the floor of {floor}"
            else:
                states[chain.name] = "ok"
        self._low_gas = low
        return states

    async def watch_gas(self, interval_seconds: float) -> None:
        """``refresh_gas`` and the stuck-settlement sweep (``Settler.sweep``) every
        ``interval_seconds``, forever (the app runs it)."""
        while True:
            try:
                await self.refresh_gas()
                await self._settler.sweep(older_than_seconds=max(interval_seconds, 30.0))
            except Exception:  # a broken read must not stop the watch
                log.exception("settler gas check or sweep failed")
            await asyncio.sleep(interval_seconds)

    def offer_headers(
        self, amount_micro: int, preferred_chain: str, context: RequestContext
    ) -> Mapping[str, str]:
        """``WWW-Authenticate`` (MPP) and ``PAYMENT-REQUIRED`` (x402) for this amount."""
        offers = [
            offer
            for offer in gasless_offers(self._settings, amount_micro, preferred_chain)
            if offer.chain.name not in self._low_gas
        ]
        if not offers:
            return {}
        ttl = self._settings.challenge_ttl_seconds
        return {
            WWW_AUTHENTICATE: www_authenticate(
                offers, context, self._secret, expires_at=self._clock() + ttl
            ),
            PAYMENT_REQUIRED: payment_required_header(offers, context, ttl),
        }

    async def bind(
        self,
        credential: Credential,
        context: RequestContext,
        *,
        amount_micro: int,
        preferred_chain: str,
    ) -> BoundPayment:
        """The credential checked by its protocol's rules against this request's offers. One
        refused only for having gone stale (its challenge expired, or the offer changed) whose
        authorization already has a settlement tx is that payment, reconciled: answering it
        with a new challenge would have the client sign a second payment."""
        try:
            if credential.protocol == "mpp":
                return bind_mpp(
                    credential.value,
                    self._settings,
                    context,
                    self._secret,
                    min_micro=amount_micro,
                    now=self._clock(),
                )
            return bind_x402(
                credential.value,
                self._settings,
                context,
                min_micro=amount_micro,
                preferred_chain=preferred_chain,
                max_timeout_seconds=self._settings.challenge_ttl_seconds,
            )
        except CredentialRefused as refused:
            stale = refused.bound
            if stale is not None and await self._settler.recorded(
                stale.authorization, stale.chain, stale.token
            ):
                return stale
            raise refusal(refused.reason.value, refused.detail) from None

    async def payer(self, payment: BoundPayment) -> BoundPayment:
        """For a request with no wallet-signature headers: the payment once its signature is
        proved to be its ``from``'s, who is then the request's wallet."""
        await self._settler.check_signature(payment.authorization, payment.chain, payment.token)
        return dataclasses.replace(payment, signature_proved=True)

    async def settle(self, payment: BoundPayment, wallet: Wallet) -> GaslessPaid:
        """Settle and credit (``use_challenge`` first)."""
        credited = await self._settler.settle(
            payment.authorization,
            chain=payment.chain,
            token=payment.token,
            min_units=payment.min_units,
            wallet=wallet,
            signature_checked=payment.signature_proved,
        )
        return GaslessPaid(payment, credited)

    async def use_challenge(self, payment: BoundPayment) -> None:
        """An MPP challenge pays once: the first payer to use it owns it. The same payer again
        is a retry of the same payment (its nonce is the challenge's hash, so the settlement
        record reconciles it); anyone else is refused. x402 has no challenge: its random
        nonce is claimed by the settlement itself."""
        if payment.challenge_id is None:
            return
        key = self._store.keys.challenge(payment.challenge_id)
        payer = payment.authorization.payer.lower()
        ttl_ms = (self._settings.challenge_ttl_seconds + 24 * 3600) * 1000
        if await self._store.put_if_absent(key, payer, ttl_ms=ttl_ms):
            return
        if await self._store.get(key) != payer:
            raise refusal(
                CredentialRefusal.CHALLENGE_USED.value,
                "This challenge has already been used by another payment",
            )

    async def top_up(
        self,
        credential: Credential,
        context: RequestContext,
        wallet: Wallet | None,
        *,
        amount_micro: int,
        preferred_chain: str,
    ) -> GaslessPaid:
        """A protocol payment credited without a deploy: bound to the top-up's offers for
        ``amount_micro``, its payer the wallet (or proved to be it), settled and credited.
        A refusal offers fresh challenges for the same amount."""
        try:
            payment = await self.bind(
                credential, context, amount_micro=amount_micro, preferred_chain=preferred_chain
            )
            if wallet is None:
                payment = await self.payer(payment)
                wallet = Wallet(payment.authorization.payer)
            await self.use_challenge(payment)
            return await self.settle(payment, wallet)
        except PaymentRequired as refused:
            if refused.fields.get("settlement") == "refused":
                raise refused.offering(amount_micro, preferred_chain) from None
            raise


def refusal(reason: str, detail: str) -> PaymentRequired:
    return PaymentRequired(
        "Payment authorization refused", reason=reason, detail=detail, settlement="refused"
    )
