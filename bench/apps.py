"""ASGI apps the benchmarks serve under uvicorn (``--factory bench.apps:NAME``)."""

from __future__ import annotations

import contextlib
import gc
import os
from collections.abc import AsyncIterator

from redis.asyncio import Redis
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.access.auth import recover_signer
from gateway.app import create_app
from gateway.config import PROJECT_ROOT, load_settings
from gateway.web.services import authenticated

try:
    from gateway.app import freeze_startup_heap
except ImportError:  # a commit before it (A/B runs of this bench against older trees)

    def freeze_startup_heap() -> None:
        gc.collect()
        gc.freeze()


async def _bare(request: Request) -> JSONResponse:
    return JSONResponse({"wallet": "0x0000000000000000000000000000000000000000"})


def bare_app() -> Starlette:
    """The floor: a Starlette JSON endpoint with nothing behind it."""
    return Starlette(routes=[Route("/agent/ping", _bare)])


def floor_app() -> Starlette:
    """The floor of the authenticated route: the bare endpoint plus what no authentication can
    skip, one secp256k1 recovery of the EIP-191 message and one Redis round trip (``SET NX PX``
    of the nonce, a plain redis-py call). No middleware, no rate limit, no error tree."""
    redis = Redis.from_url(os.environ["REDIS_URL"])

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        freeze_startup_heap()  # the gateway's own GC treatment, so pauses compare like for like
        yield
        gc.unfreeze()
        await redis.aclose()

    async def floor(request: Request) -> JSONResponse:
        headers = request.headers
        wallet, nonce = headers["x-wallet-address"], headers["x-nonce"]
        message = f"{wallet}:{headers['x-timestamp']}:{nonce}"
        signer = recover_signer(message, bytes.fromhex(headers["x-signature"][2:]))
        fresh = await redis.set(f"floor:nonce:{wallet}:{nonce}", "1", nx=True, px=300_000)
        if signer != wallet.lower() or not fresh:
            return JSONResponse({"error": "unauthorized"}, status_code=401)
        return JSONResponse({"wallet": wallet})

    return Starlette(routes=[Route("/agent/credits/ping", floor)], lifespan=lifespan)


async def _ping(request: Request) -> JSONResponse:
    wallet = await authenticated(request)
    return JSONResponse({"wallet": wallet.address})


def gateway_app() -> Starlette:
    """The real gateway (middleware, rate limit, auth, nonce) plus one protected route whose
    handler does nothing else. The rate limit is raised so one wallet can be used throughout;
    the Lua script still runs on every request."""
    settings = load_settings(
        PROJECT_ROOT / "config" / "local.toml", {"REDIS_URL": os.environ["REDIS_URL"]}
    ).with_overrides(rate_limit_requests=1_000_000_000, redis_key_prefix="bench:")
    app = create_app(settings)
    # Under /agent/credits/ so it takes the authenticated path of the rate limiter (one round trip).
    app.router.routes.insert(0, Route("/agent/credits/ping", _ping))
    return app
