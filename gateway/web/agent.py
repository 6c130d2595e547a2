"""Authenticated agent routes (SPEC section 3)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from gateway.types import micro_to_credits, micro_to_usd_number
from gateway.web.responses import json_response
from gateway.web.services import authenticated, services


async def credits(request: Request) -> Response:
    wallet = await authenticated(request)
    svc = services(request)
    raw = await svc.store.redis.get(svc.store.keys.balance(wallet.address))
    micro = int(raw or 0)
    return json_response(
        {
            "wallet": wallet.address,
            "credits": micro_to_credits(micro),
            "balance_usd": micro_to_usd_number(micro),
        }
    )
