"""Credit routes (docs/PROTOCOL.md section 3): ``GET /agent/credits`` and
``POST /agent/credits/topup``."""

from __future__ import annotations

import hashlib
from decimal import ROUND_HALF_UP, Decimal

from starlette.requests import Request
from starlette.responses import Response

from gateway.config import Settings
from gateway.errors import BadRequest, PaymentRequired
from gateway.headers import CACHE_CONTROL, PAYMENT_TX
from gateway.payments.quote import resolve_chain
from gateway.payments.service import PaymentCredited
from gateway.projects.records import ProjectStatus
from gateway.types import checksum_address, micro_to_credits, micro_to_usd_number, usd_to_micro
from gateway.web.payment import (
    offering,
    payment_headers,
    protocol_receipts,
    request_context,
    requester,
    signed_receipt,
)
from gateway.web.responses import json_response
from gateway.web.services import authenticated, services

#: Ledger entries shown by ``GET /agent/credits``, newest first.
LEDGER_ENTRIES_SHOWN = 20
#: The most one protocol top-up may ask for (``?amount_usd=``), in micro-USD.
MAX_TOPUP_MICRO = 10_000 * 1_000_000


def runway_hours(balance_micro: int, burn_micro_per_hour: int) -> float | None:
    """Hours the balance lasts at the current burn (2 decimals); None when nothing burns."""
    if burn_micro_per_hour <= 0:
        return None
    if balance_micro <= 0:
        return 0
    hours = (Decimal(balance_micro) / burn_micro_per_hour).quantize(
        Decimal("0.01"), rounding=ROUND_HALF_UP
    )
    return float(hours)


async def credits(request: Request) -> Response:
    """The wallet's credits, live projects, burn per hour, runway and last ledger entries.

    ``active_projects`` counts live projects (active or suspended, as quotes do); the burn counts
    only those that burn now (``active``), each at ``price_usd_per_month / 730``.
    """
    wallet = await authenticated(request)
    svc = services(request)
    balance = await svc.ledger.balance(wallet.address)
    projects = await svc.ownership.projects_of(wallet.address)
    live = await svc.ownership.active_count(wallet.address)
    burning = sum(1 for p in projects if p.status == ProjectStatus.ACTIVE.value)
    burn = burning * svc.settings.pricing.burn_micro_usd_per_hour
    entries = await svc.ledger.entries(wallet.address, limit=LEDGER_ENTRIES_SHOWN)
    return json_response(
        {
            "wallet": wallet.address,
            "credits": micro_to_credits(balance),
            "balance_usd": micro_to_usd_number(balance),
            "active_projects": live,
            "burn_usd_per_hour": micro_to_usd_number(burn),
            "runway_hours": runway_hours(balance, burn),
            "ledger": [entry.as_wire() for entry in entries],
        }
    )


async def topup(request: Request) -> Response:
    """Credit a payment without deploying; 200 with the new balance.

    ``X-Payment-Tx``: the same verification and errors as a paid deploy
    (``PaymentService.accept``). A protocol payment (MPP, x402) pays the offers of this
    route's 402, made for ``?amount_usd=`` (default: the minimum price); without wallet
    headers its payer is the wallet credited.
    """
    svc = services(request)
    payment = payment_headers(request.headers)
    wallet = await requester(request, svc, payment)
    if payment.tx is not None:
        assert wallet is not None
        credited = await svc.payments.accept(
            wallet, tx=payment.tx, chain=payment.chain, token=payment.token
        )
        return _credited(wallet.address, credited, signed_receipt(svc, wallet.address, credited))
    if svc.gasless is None:
        raise BadRequest(
            f"{PAYMENT_TX} header is required", code="missing_payment_tx", field=PAYMENT_TX
        )
    amount_micro = _topup_amount(request, svc.settings)
    chain = resolve_chain(svc.settings, payment.chain).name
    context = request_context(request, svc, hashlib.sha256(await request.body()).digest())
    with offering(svc, context):
        if payment.credential is None:
            raise PaymentRequired(
                "Payment required",
                amount_usd=micro_to_usd_number(amount_micro),
                payment_chain=chain,
                hint=f"Pay with {PAYMENT_TX}, or with one of the offers in this answer's "
                "headers; ?amount_usd= sets the amount",
            ).offering(amount_micro, chain)
        paid = await svc.gasless.top_up(
            payment.credential,
            context,
            wallet,
            amount_micro=amount_micro,
            preferred_chain=chain,
        )
    payer = paid.payment.authorization.payer
    headers = protocol_receipts(paid.payment, paid.credited.tx_hash, svc.clock())
    headers.update(signed_receipt(svc, payer, paid.credited))
    return _credited(payer, paid.credited, headers)


def _topup_amount(request: Request, settings: Settings) -> int:
    """``?amount_usd=``: a positive USD decimal with at most 6 places, at most 10,000."""
    text = request.query_params.get("amount_usd")
    if text is None:
        return settings.pricing.minimum_micro_usd
    try:
        micro = usd_to_micro(text)
    except ValueError:
        micro = 0
    if not 0 < micro <= MAX_TOPUP_MICRO:
        raise BadRequest(
            "amount_usd must be a USD amount above 0 and at most 10000, at most 6 decimals",
            code="invalid_amount",
            field="amount_usd",
        )
    return micro


def _credited(wallet: str, credited: PaymentCredited, headers: dict[str, str]) -> Response:
    return json_response(
        {
            "wallet": checksum_address(wallet),
            "credited_usd": micro_to_usd_number(credited.amount_micro),
            "balance_usd": micro_to_usd_number(credited.balance_micro),
            "credits": micro_to_credits(credited.balance_micro),
            "chain": credited.chain,
            "token": credited.token,
            "tx": credited.tx_hash,
        },
        headers={CACHE_CONTROL: "private", **headers},
    )
