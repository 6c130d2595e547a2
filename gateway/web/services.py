"""What the handlers reach: the collaborators built once by ``app.create_app``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import overload

from starlette.requests import Request

from gateway.access.auth import WalletAuthenticator
from gateway.access.ratelimit import RateLimiter
from gateway.audit import Audit
from gateway.chains import ChainRegistry
from gateway.config import Settings
from gateway.deploy.flow import DeployFlow
from gateway.deploy.idempotency import Idempotency
from gateway.ledger import Ledger
from gateway.logs import current_request
from gateway.metrics import GatewayMetrics
from gateway.payments.gasless import GaslessPayments
from gateway.payments.receipts import ReceiptSigner
from gateway.payments.recheck import PaymentRechecker
from gateway.payments.service import PaymentService
from gateway.projects.metering import Metering
from gateway.projects.reads import Projects
from gateway.projects.records import Ownership
from gateway.store import Store
from gateway.types import Clock, Wallet
from gateway.upstream import CreateOSClient
from gateway.web.middleware import RateBucket


@dataclass
class Services:
    settings: Settings
    store: Store
    chains: ChainRegistry
    auth: WalletAuthenticator
    limiter: RateLimiter
    ledger: Ledger
    ownership: Ownership
    clock: Clock
    payments: PaymentService
    rechecker: PaymentRechecker
    upstream: CreateOSClient
    deploys: DeployFlow
    projects: Projects
    idempotency: Idempotency
    metering: Metering
    audit: Audit
    metrics: GatewayMetrics
    #: Protocol (MPP, x402) payments settled gasless; None without a settler key.
    gasless: GaslessPayments | None = None
    #: Signs the receipt of every paid answer; None without a receipt key.
    receipts: ReceiptSigner | None = None


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


@overload
async def authenticated(request: Request) -> Wallet: ...


@overload
async def authenticated(request: Request, *, anonymous: bool) -> Wallet | None: ...


async def authenticated(request: Request, *, anonymous: bool = False) -> Wallet | None:
    """The wallet of a protected request (docs/PROTOCOL.md section 2), or AuthFailed / RateLimited.

    The request is counted against the rate limit here (see ``RateLimitMiddleware``).
    ``anonymous``: the request is only counted (it carries no wallet headers and the route
    answers it without a wallet)."""
    bucket: RateBucket | None = request.scope.get("state", {}).get("rate_bucket")
    if bucket is None:  # a route outside /agent/*: still counted, by the client's address
        peer = request.client.host if request.client else "unknown"
        bucket = RateBucket(peer, "-")
    bucket.counted = True
    if anonymous:
        await services(request).limiter.hit(bucket.client_ip, bucket.wallet_key)
        return None
    wallet = await services(request).auth.authenticate(
        request.headers, client_ip=bucket.client_ip, wallet_key=bucket.wallet_key
    )
    context = current_request()
    if context is not None:
        context.wallet = wallet.address  # every later log line of this request names it
    return wallet
