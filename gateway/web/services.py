"""What the handlers reach: the collaborators built once by ``app.create_app``."""

from __future__ import annotations

from dataclasses import dataclass

from starlette.requests import Request

from gateway.auth import WalletAuthenticator
from gateway.chains import ChainRegistry
from gateway.config import Settings
from gateway.ledger import Ledger
from gateway.ownership import Ownership
from gateway.ratelimit import RateLimiter
from gateway.store import Store
from gateway.types import Clock, Wallet


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


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


async def authenticated(request: Request) -> Wallet:
    """The wallet of a protected request (SPEC section 2), or AuthFailed."""
    return await services(request).auth.authenticate(request.headers)
