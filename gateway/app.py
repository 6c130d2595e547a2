"""Composition root: ``create_app(settings)`` wires every collaborator from config.

The lifespan opens Redis (registering the Lua scripts), the chain clients and, later, the
upstream client, and closes them on shutdown. Nothing connects at import time.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

from gateway.auth import WalletAuthenticator
from gateway.chains import ChainRegistry
from gateway.config import Settings
from gateway.errors import ConfigError, GatewayError
from gateway.ledger import Ledger
from gateway.ownership import Ownership
from gateway.ratelimit import RateLimiter
from gateway.store import STORAGE_ERRORS, connect_store
from gateway.types import Clock, system_clock
from gateway.web.middleware import BodyLimitMiddleware, RateLimitMiddleware
from gateway.web.responses import (
    handle_gateway_error,
    handle_http_exception,
    handle_storage_error,
)
from gateway.web.routes import routes
from gateway.web.services import Services


def create_app(settings: Settings, *, clock: Clock = system_clock) -> Starlette:
    """The gateway ASGI app. ``settings.redis_url`` must be set (``serve`` starts an
    embedded Redis first when the environment names none)."""
    if not settings.redis_url:
        raise ConfigError("REDIS_URL", "create_app needs a Redis URL")
    redis_url = settings.redis_url

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = await connect_store(redis_url, settings.redis_key_prefix)
        chains = ChainRegistry(settings.chains, timeout=settings.rpc_timeout_seconds, clock=clock)
        default_chain = chains.get(settings.default_chain)
        app.state.services = Services(
            settings=settings,
            store=store,
            chains=chains,
            auth=WalletAuthenticator(
                store,
                default_chain,
                window_seconds=settings.auth_window_seconds,
                nonce_ttl_seconds=settings.nonce_ttl_seconds,
                clock=clock,
            ),
            limiter=RateLimiter(
                store,
                limit=settings.rate_limit_requests,
                window_seconds=settings.rate_limit_window_seconds,
                clock=clock,
            ),
            ledger=Ledger(store, clock=clock),
            ownership=Ownership(store, clock=clock),
            clock=clock,
        )
        try:
            yield
        finally:
            await chains.close()
            await store.close()

    handlers = {
        GatewayError: handle_gateway_error,
        HTTPException: handle_http_exception,
        **{error: handle_storage_error for error in STORAGE_ERRORS},
    }
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(BodyLimitMiddleware, max_upload_body=settings.max_body_bytes),
            Middleware(RateLimitMiddleware, trusted_proxies=settings.trusted_proxies),
        ],
        exception_handlers=handlers,
        lifespan=lifespan,
    )
