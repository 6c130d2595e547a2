"""Discovery for agents: ``GET /llms.txt`` and the price facts the OpenAPI document carries
(``x-payment-info`` on paid operations, ``x-service-info`` on the document), all built from the
running configuration, so what an agent reads is what the gateway charges.
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response

from gateway.config import Settings
from gateway.headers import (
    AUTHORIZATION,
    CACHE_CONTROL,
    MPP_SCHEME,
    NONCE,
    PAYMENT_CHAIN,
    PAYMENT_REQUIRED,
    PAYMENT_SIGNATURE,
    PAYMENT_TOKEN,
    PAYMENT_TX,
    SIGNATURE,
    TIMESTAMP,
    USE_EXISTING_CREDITS,
    WALLET_ADDRESS,
    WWW_AUTHENTICATE,
)
from gateway.types import micro_to_usd_string
from gateway.web.services import services

#: Always offered: an ERC-20 transfer by the agent, named by its hash.
TRANSFER_METHOD = {
    "method": "erc20-transfer",
    "header": PAYMENT_TX,
    "description": f"Send the quoted token amount to pay_to with a plain ERC-20 transfer from "
    f"the signing wallet, then retry the same request with {PAYMENT_TX} (and "
    f"{PAYMENT_CHAIN}, {PAYMENT_TOKEN} when not the defaults).",
}
#: Offered with a settler key: USDC authorizations (EIP-3009) the gateway settles, no gas.
GASLESS_METHODS = [
    {
        "method": "mpp",
        "header": f"{AUTHORIZATION}: {MPP_SCHEME}",
        "challenge": f"{WWW_AUTHENTICATE}: {MPP_SCHEME}",
        "description": "MPP (method evm, intent charge, credential type authorization): sign "
        "the EIP-3009 authorization of a challenge, nonce keccak256(id || realm); the token's "
        "EIP-712 domain is USD Coin / 2. The gateway settles it and pays the gas.",
    },
    {
        "method": "x402",
        "header": PAYMENT_SIGNATURE,
        "challenge": PAYMENT_REQUIRED,
        "description": "x402 v2, scheme exact, EIP-3009 (USDC). The gateway settles it and "
        "pays the gas; the 200 carries PAYMENT-RESPONSE.",
    },
]


def payment_methods(settings: Settings) -> list[dict[str, str]]:
    """How this gateway's paid operations can be paid, as configured."""
    return [TRANSFER_METHOD, *(GASLESS_METHODS if settings.settler_key else [])]


def payment_info(settings: Settings) -> dict[str, Any]:
    """What a paid operation costs and how to pay it (the ``x-payment-info`` extension)."""
    pricing = settings.pricing
    return {
        "currency": "USD",
        "price_usd_per_month": micro_to_usd_string(pricing.price_micro_usd_per_month),
        "minimum_usd": micro_to_usd_string(pricing.minimum_micro_usd),
        "max_months": pricing.max_months,
        "formula": "amount_usd = max(minimum_usd, price_usd_per_month * months)",
        "burn_usd_per_hour_per_project": micro_to_usd_string(pricing.burn_micro_usd_per_hour),
        "default_chain": settings.default_chain,
        "chains": [
            {
                "chain": chain.name,
                "chain_id": chain.chain_id,
                "pay_to": chain.pay_to,
                "tokens": [
                    {
                        "token": token.key,
                        "symbol": token.symbol,
                        "address": token.address,
                        "decimals": token.decimals,
                    }
                    for token in chain.tokens.values()
                ],
            }
            for chain in settings.chains.values()
        ],
        "methods": payment_methods(settings),
    }


def service_info(settings: Settings) -> dict[str, Any]:
    """The service as a whole (the document-level ``x-service-info`` extension)."""
    return {
        "name": "Agent deploy gateway",
        "description": "Deploys an agent's code to CreateOS, paid per deploy in USDC/USDT, "
        "authenticated by the agent's EVM wallet signature; no account, no API key.",
        "guide": "/llms.txt",
        "authentication": {
            "scheme": "EIP-191 personal_sign of '{wallet}:{timestamp}:{nonce}'",
            "headers": [WALLET_ADDRESS, SIGNATURE, TIMESTAMP, NONCE],
        },
        "payment": payment_info(settings),
    }


def llms_text(settings: Settings) -> str:
    """The agent's guide, with every figure taken from ``settings``."""
    info = payment_info(settings)
    chains = "\n".join(
        f"- {c['chain']} (chain id {c['chain_id']}): pay to {c['pay_to']}; tokens "
        + ", ".join(f"{t['token']} {t['address']} ({t['decimals']} decimals)" for t in c["tokens"])
        for c in info["chains"]
    )
    window = settings.auth_window_seconds
    return f"""# Agent deploy gateway

> Deploy code to CreateOS from an autonomous agent that holds an EVM wallet. No account and no
> API key: the wallet's signature authenticates every request, and a USDC/USDT payment on
> Arbitrum or Base pays for the deploy. Machine-readable contract: /openapi.json.

## Price

- {info["price_usd_per_month"]} USD per month of runtime, at least {info["minimum_usd"]} USD per \
deploy, 1 to {info["max_months"]} months:
  amount_usd = max(minimum_usd, price_usd_per_month * months).
- Payments become credits (1 USD = 100 credits); each live project burns \
{info["burn_usd_per_hour_per_project"]} USD an hour from them.
- Default chain: {info["default_chain"]}. Accepted:
{chains}

## Authenticate every request

Sign the exact text "{{wallet}}:{{timestamp}}:{{nonce}}" with EIP-191 personal_sign and send:

    {WALLET_ADDRESS}: 0xYourWallet
    {TIMESTAMP}: <Unix time in milliseconds, within {window} s of the server's clock>
    {NONCE}: <8-128 characters of A-Z a-z 0-9 _ -, never reused>
    {SIGNATURE}: 0x<65-byte signature>

## Deploy and pay

1. Ask:

       curl -X POST $GATEWAY/agent/deploy -H "Content-Type: application/json" \\
         -H "{WALLET_ADDRESS}: ..." -H "{TIMESTAMP}: ..." -H "{NONCE}: ..." -H "{SIGNATURE}: ..." \\
         -d '{{"uniqueName":"my-app","displayName":"My App","months":1,
              "upload":{{"type":"files","files":[{{"path":"index.js","content":"<base64>"}}]}}}}'

   Without enough credits the answer is 402 with the quote: amount_token (base units),
   token, decimals, payment_chain, pay_to.
2. Pay: an ERC-20 transfer of amount_token of that token from the signing wallet to pay_to.
3. Retry the same request (fresh signature headers) with {PAYMENT_TX}: 0x<tx hash> (and
   {PAYMENT_CHAIN} / {PAYMENT_TOKEN} when not the defaults). The answer is 200 with projectId and
   deploymentId, or 402 with payment_status "pending" and Retry-After: retry the same tx, never
   pay again.
4. If the wallet already funds live projects and its credits cover the quote, the 402 carries a
   warning instead: send {USE_EXISTING_CREDITS}: true to deploy on those credits.
{_gasless_text(settings)}
## Follow the build

    GET /agent/deploy/{{projectId}}/{{deploymentId}}/status  -> deploying | ready | failed
    GET /agent/deploy/{{projectId}}/{{deploymentId}}/logs?kind=build|runtime
    GET /agent/projects        DELETE /agent/projects/{{projectId}}
    GET /agent/credits         POST /agent/credits/topup ({PAYMENT_TX})

Poll status every few seconds. Rate limit: {settings.rate_limit_requests} requests per \
{settings.rate_limit_window_seconds} s per client IP and wallet (429 with Retry-After).
"""


def _gasless_text(settings: Settings) -> str:
    if settings.settler_key is None:
        return ""
    return f"""
## Pay without gas (USDC): x402 or MPP

The same 402 also carries {PAYMENT_REQUIRED} (x402 v2, standard base64) and
{WWW_AUTHENTICATE}: {MPP_SCHEME} challenges (MPP), one offer per chain. Sign the EIP-3009
authorization they describe (domain "USD Coin", version "2", the chain id, the USDC address)
and retry the same request with {PAYMENT_SIGNATURE} (x402) or {AUTHORIZATION}: {MPP_SCHEME}
(MPP); the gateway settles it, pays the gas and deploys. Wallet headers are optional then:
without them the authorization's payer is the wallet and owns the project. Send one payment
header, never two. A 402 with payment_status "pending" means the payment is being settled: send
the same payment again after Retry-After, do not sign a new one. Stock clients work as they
are: x402 clients need their $1 default spend cap raised; mppx needs
authorization {{name: "USD Coin", version: "2"}} in its config.
"""


async def llms_txt(request: Request) -> Response:
    return PlainTextResponse(
        llms_text(services(request).settings),
        media_type="text/markdown; charset=utf-8",
        headers={CACHE_CONTROL: "public, max-age=300"},
    )
