"""ASGI apps the benchmarks serve under uvicorn (``--factory bench.apps:NAME``)."""

from __future__ import annotations

import os

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from gateway.app import create_app
from gateway.config import PROJECT_ROOT, load_settings
from gateway.web.services import authenticated


async def _bare(request: Request) -> JSONResponse:
    return JSONResponse({"wallet": "0x0000000000000000000000000000000000000000"})


def bare_app() -> Starlette:
    """The floor: a Starlette JSON endpoint with nothing behind it."""
    return Starlette(routes=[Route("/agent/ping", _bare)])


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
