"""Composition root: ``create_app(settings)`` wires every collaborator from config.

The lifespan opens Redis (registering the Lua scripts), the chain clients and, later, the
upstream client, and closes them on shutdown. Nothing connects at import time.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import os
import warnings
from collections.abc import AsyncIterator, Mapping
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware

from gateway.access.auth import WalletAuthenticator
from gateway.access.ratelimit import RateLimiter
from gateway.audit import Audit
from gateway.chains import ChainClient, ChainRegistry
from gateway.config import Settings
from gateway.deploy.flow import DeployFlow, deploy_lock_ttl_ms
from gateway.deploy.idempotency import Idempotency
from gateway.errors import ConfigError, GatewayError
from gateway.ledger import Ledger
from gateway.logs import register_secret
from gateway.metrics import GatewayMetrics
from gateway.payments.gasless import GaslessPayments
from gateway.payments.receipts import ReceiptSigner
from gateway.payments.recheck import PaymentRechecker
from gateway.payments.reconcile import Reconciler, reconciling_payments
from gateway.payments.service import PaymentService
from gateway.payments.settle import SettlementJournal, Settler
from gateway.projects.metering import Metering
from gateway.projects.reads import Projects
from gateway.projects.records import NameClaims, Ownership
from gateway.store import Store, connect_store
from gateway.store.archive import FileArchive
from gateway.types import Clock, system_clock
from gateway.upstream import CreateOSClient
from gateway.web.middleware import (
    BodyLimitMiddleware,
    RateLimitMiddleware,
    RequestContextMiddleware,
)
from gateway.web.responses import (
    handle_gateway_error,
    handle_http_exception,
)
from gateway.web.routes import routes
from gateway.web.services import Services


def create_app(
    settings: Settings,
    *,
    clock: Clock = system_clock,
    upstream: CreateOSClient | None = None,
) -> Starlette:
    """The gateway ASGI app. ``settings`` must name a Redis (``serve`` starts an embedded
    one first when the environment names none).

    ``upstream``: a CreateOS client to use instead of the one built from settings (tests);
    the caller keeps ownership of it and closes it."""
    if not settings.redis_configured:
        raise ConfigError("REDIS_URL", "create_app needs a Redis (URL, Sentinels or Cluster)")
    redis_connection = settings.redis_connection
    metrics = GatewayMetrics()
    register_secret(settings.createos_api_key)  # never in a log line, whatever logs it
    register_secret(settings.admin_token)
    register_secret(settings.settler_key)
    register_secret(settings.receipt_key)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = await connect_store(redis_connection, settings.redis_key_prefix)
        chains = ChainRegistry(
            settings.chains,
            timeout=settings.rpc_timeout_seconds,
            max_answer_bytes=settings.rpc_max_answer_bytes,
            max_receipt_logs=settings.max_receipt_logs,
            clock=clock,
            metrics=metrics,
        )
        default_chain = chains.get(settings.default_chain)
        limiter = RateLimiter(
            store,
            limit=settings.rate_limit_requests,
            window_seconds=settings.rate_limit_window_seconds,
            failed_auth_limit=settings.failed_auth_requests,
            failed_auth_window_seconds=settings.failed_auth_window_seconds,
            clock=clock,
            metrics=metrics,
        )
        ledger = Ledger(store, clock=clock)
        chain_readers = {name: chains.get(name) for name in settings.chains}
        createos = upstream or CreateOSClient(
            settings.createos_api_url,
            settings.createos_api_key,
            connect_timeout=settings.upstream_connect_timeout,
            read_timeout=settings.upstream_read_timeout,
            upload_timeout=settings.upstream_upload_timeout,
            max_answer_bytes=settings.upstream_max_answer_bytes,
            answer_seconds=settings.upstream_answer_seconds,
            metrics=metrics,
        )
        ownership = Ownership(store, clock=clock)
        metering = Metering(
            settings, store, ledger, ownership, createos, clock=clock, metrics=metrics
        )
        payments = PaymentService(
            settings,
            ledger,
            chain_readers,
            clock=clock,
            after_credit=metering.on_credit,
            metrics=metrics,
        )
        gasless = None
        if settings.settler_key is not None:
            settler = Settler(
                settings,
                SettlementJournal(store, lease_seconds=settings.settle_lease_seconds, clock=clock),
                chain_readers,
                payments,
                clock=clock,
                metrics=metrics,
            )
            gasless = GaslessPayments(settings, store, settler, clock=clock, metrics=metrics)
        rechecker = PaymentRechecker(
            settings,
            ledger,
            chain_readers,
            store,
            clock=clock,
            on_negative_balance=metering.on_negative_balance,
            metrics=metrics,
        )
        reconciler = build_reconciler(
            settings, store, ledger, chain_readers, ownership, createos, metering, clock, metrics
        )
        app.state.reconciler = reconciler
        app.state.services = Services(
            settings=settings,
            store=store,
            chains=chains,
            auth=WalletAuthenticator(
                store,
                default_chain,
                limiter,
                window_seconds=settings.auth_window_seconds,
                nonce_ttl_seconds=settings.nonce_ttl_seconds,
                no_code_ttl_seconds=settings.no_code_ttl_seconds,
                clock=clock,
            ),
            limiter=limiter,
            ledger=ledger,
            ownership=ownership,
            clock=clock,
            payments=payments,
            rechecker=rechecker,
            upstream=createos,
            deploys=DeployFlow(
                settings=settings,
                store=store,
                upstream=createos,
                payments=payments,
                ownership=ownership,
                clock=clock,
                metrics=metrics,
                gasless=gasless,
            ),
            projects=Projects(createos, ownership, NameClaims(store)),
            idempotency=Idempotency(store, pending_ttl_ms=deploy_lock_ttl_ms(settings)),
            metering=metering,
            audit=Audit(settings, ledger, ownership),
            metrics=metrics,
            gasless=gasless,
            receipts=None if settings.receipt_key is None else ReceiptSigner(settings.receipt_key),
        )
        recheck_loop = asyncio.create_task(
            rechecker.run_forever(settings.recheck_interval_seconds), name="payment-recheck"
        )
        metering_loop = asyncio.create_task(
            metering.run_forever(settings.metering_interval_seconds), name="metering"
        )
        loops = [metering_loop, recheck_loop]
        if gasless is not None:
            loops.append(
                asyncio.create_task(
                    gasless.watch_gas(settings.settle_gas_check_seconds), name="settler-gas"
                )
            )
        if settings.reconcile.enabled:
            loops.append(asyncio.create_task(reconciler.run_forever(), name="reconcile"))
        freeze_startup_heap()
        try:
            yield
        finally:
            gc.unfreeze()
            for loop in loops:
                loop.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await loop
            if upstream is None:
                await createos.aclose()
            await chains.close()
            await store.close()

    handlers = {
        GatewayError: handle_gateway_error,
        HTTPException: handle_http_exception,
    }
    return Starlette(
        routes=routes,
        middleware=[
            Middleware(RequestContextMiddleware),
            Middleware(BodyLimitMiddleware, max_upload_body=settings.max_body_bytes),
            Middleware(RateLimitMiddleware, trusted_proxies=settings.trusted_proxies),
        ],
        exception_handlers=handlers,
        lifespan=lifespan,
    )


def build_reconciler(
    settings: Settings,
    store: Store,
    ledger: Ledger,
    chain_readers: Mapping[str, ChainClient],
    ownership: Ownership,
    createos: CreateOSClient,
    metering: Metering,
    clock: Clock,
    metrics: GatewayMetrics,
) -> Reconciler:
    """The reconciler on the app's collaborators (its own ``PaymentService``: see
    ``gateway.payments.reconcile``)."""
    return Reconciler(
        settings,
        store,
        ledger,
        reconciling_payments(
            settings,
            ledger,
            chain_readers,
            clock=clock,
            after_credit=metering.on_credit,
            metrics=metrics,
        ),
        chain_readers,
        ownership,
        NameClaims(store),
        createos,
        FileArchive(settings.ledger_archive_dir),
        clock=clock,
        metrics=metrics,
        on_negative_balance=metering.on_negative_balance,
    )


async def reconcile_now(settings: Settings, *, run: bool) -> tuple[bool, dict[str, Any] | None]:
    """For ``python -m gateway reconcile``: with ``run``, one pass now unless another process
    holds the reconciler's lease; then the stored summary of the last pass. Returns (whether
    this call ran a pass, the summary)."""
    store = await connect_store(settings.redis_connection, settings.redis_key_prefix)
    metrics = GatewayMetrics()
    chains = ChainRegistry(
        settings.chains,
        timeout=settings.rpc_timeout_seconds,
        max_answer_bytes=settings.rpc_max_answer_bytes,
        max_receipt_logs=settings.max_receipt_logs,
        metrics=metrics,
    )
    createos = CreateOSClient(
        settings.createos_api_url,
        settings.createos_api_key,
        connect_timeout=settings.upstream_connect_timeout,
        read_timeout=settings.upstream_read_timeout,
        max_answer_bytes=settings.upstream_max_answer_bytes,
        answer_seconds=settings.upstream_answer_seconds,
        metrics=metrics,
    )
    try:
        ledger = Ledger(store)
        ownership = Ownership(store)
        metering = Metering(settings, store, ledger, ownership, createos, metrics=metrics)
        readers = {name: chains.get(name) for name in settings.chains}
        reconciler = build_reconciler(
            settings, store, ledger, readers, ownership, createos, metering, system_clock, metrics
        )
        ran = run and await reconciler.run_once_if_leader(f"cli-{os.getpid()}") is not None
        return ran, await reconciler.last_summary()
    finally:
        await createos.aclose()
        await chains.close()
        await store.close()


def freeze_startup_heap() -> None:
    """Move every object alive after start-up out of the garbage collector's reach.

    Start-up leaves about a hundred thousand long-lived objects (web3, eth-account, Starlette,
    the settings); each full collection walked them all, a pause of about 20 ms on the
    reference machine that landed on whichever requests were in flight and made the
    authenticated route's p99 several times its p50 (docs/PERFORMANCE.md). Frozen objects are
    still freed by reference counting when unreferenced; only the cycle detector skips them.
    The lifespan unfreezes on shutdown.

    The collection first (so no garbage is frozen) may finalize objects that code run earlier
    in the same process leaked, such as a socket a test left open; their ResourceWarnings are
    that code's, not the start-up's, and must not fail it.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    gc.freeze()
