"""Credit routes (docs/PROTOCOL.md section 3): ``GET /agent/credits`` and
``POST /agent/credits/topup``."""

from __future__ import annotations

from decimal import ROUND_HALF_UP, Decimal

from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import BadRequest
from gateway.headers import PAYMENT_CHAIN, PAYMENT_TOKEN, PAYMENT_TX
from gateway.projects.records import ProjectStatus
from gateway.types import micro_to_credits, micro_to_usd_number
from gateway.web.responses import json_response
from gateway.web.services import authenticated, services

#: Ledger entries shown by ``GET /agent/credits``, newest first.
LEDGER_ENTRIES_SHOWN = 20


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
    """Credit an ``X-Payment-Tx`` payment without deploying; 200 with the new balance.

    Same verification and errors as a paid deploy (``PaymentService.accept``).
    """
    wallet = await authenticated(request)
    tx = request.headers.get(PAYMENT_TX)
    if not tx:
        raise BadRequest(
            f"{PAYMENT_TX} header is required", code="missing_payment_tx", field=PAYMENT_TX
        )
    credited = await services(request).payments.accept(
        wallet,
        tx=tx,
        chain=request.headers.get(PAYMENT_CHAIN),
        token=request.headers.get(PAYMENT_TOKEN),
    )
    return json_response(
        {
            "wallet": wallet.address,
            "credited_usd": micro_to_usd_number(credited.amount_micro),
            "balance_usd": micro_to_usd_number(credited.balance_micro),
            "credits": micro_to_credits(credited.balance_micro),
            "chain": credited.chain,
            "token": credited.token,
            "tx": credited.tx_hash,
        }
    )
