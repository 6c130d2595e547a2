"""Public routes: health, readiness, chains, recipients, on-chain balances."""

from __future__ import annotations

import asyncio

from starlette.requests import Request
from starlette.responses import Response

from gateway.errors import BadRequest, GatewayError
from gateway.payments.receipts import published
from gateway.types import checksum_address, format_token_amount, is_address
from gateway.web.responses import json_response
from gateway.web.services import services


async def health(request: Request) -> Response:
    return json_response({"status": "ok"})


async def ready(request: Request) -> Response:
    """Redis, every chain's RPC and CreateOS; 503 naming what failed."""
    svc = services(request)
    checks: dict[str, str] = {}
    checks["redis"] = "ok" if await svc.store.ping() else "unavailable"

    async def check_chain(name: str) -> tuple[str, str]:
        try:
            await svc.chains.get(name).check()
        except GatewayError as exc:
            return name, f"unavailable: {exc.public}"
        return name, "ok"

    async def check_createos() -> tuple[str, str]:
        try:
            await svc.upstream.check_health()
        except GatewayError as exc:
            return "createos", f"unavailable: {exc.public}"
        return "createos", "ok"

    probes = [check_chain(n) for n in svc.settings.chains]
    for name, state in await asyncio.gather(*probes, check_createos()):
        checks[name if name == "createos" else f"rpc:{name}"] = state
    failing = sorted(k for k, v in checks.items() if v != "ok")
    body: dict[str, object] = {"status": "ok" if not failing else "unavailable", "checks": checks}
    if failing:
        body["failing"] = failing
    if svc.gasless is not None:
        # The settler's gas: short of it, gasless offers stop on that chain, pushed payments
        # go on, so the gateway is degraded, not down.
        gas = await svc.gasless.refresh_gas()
        checks.update({f"settler:{name}": state for name, state in gas.items()})
        body["settler"] = svc.gasless.settler_address
        degraded = sorted(f"settler:{n}" for n, state in gas.items() if state != "ok")
        if degraded:
            body["degraded"] = degraded
            if not failing:
                body["status"] = "degraded"
    return json_response(body, status=200 if not failing else 503)


async def receipts(request: Request) -> Response:
    """The address that signs every paid answer's ``Gateway-Receipt``, and its EIP-712 layout
    (``address`` null when this gateway signs none)."""
    return json_response(published(services(request).receipts))


async def chains(request: Request) -> Response:
    settings = services(request).settings
    return json_response(
        {
            "chains": [
                {"chain": c.name, "chain_id": c.chain_id, "tokens": list(c.tokens)}
                for c in settings.chains.values()
            ]
        }
    )


async def recipients(request: Request) -> Response:
    settings = services(request).settings
    return json_response(
        {
            "recipients": [
                {"chain": c.name, "chain_id": c.chain_id, "address": c.pay_to}
                for c in settings.chains.values()
            ]
        }
    )


async def balance(request: Request) -> Response:
    svc = services(request)
    address = request.path_params["address"]
    if not is_address(address):
        raise BadRequest("address must be 0x followed by 40 hex digits", field="address")
    chain_name = request.query_params.get("chain", svc.settings.default_chain)
    chain = svc.settings.require_chain(chain_name, field="chain")
    tokens = list(chain.tokens.values())
    raw = await svc.chains.get(chain.name).token_balances(address, tokens)
    return json_response(
        {
            "address": checksum_address(address),
            "chain": chain.name,
            "chain_id": chain.chain_id,
            "balances": [
                {
                    "token": t.key,
                    "symbol": t.symbol,
                    "address": t.address,
                    "balance": format_token_amount(raw[t.key], t.decimals),
                    "balance_raw": str(raw[t.key]),
                    "decimals": t.decimals,
                }
                for t in tokens
            ],
        }
    )
