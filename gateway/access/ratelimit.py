"""Rate limit (docs/PROTOCOL.md section 5): N requests per window per (client IP,
X-Wallet-Address), and a budget of failed authentications per client IP.

A GCRA in Lua, so every gateway process on the Redis shares the same budget and a hit is one
atomic step. The window refills smoothly: after a burst of N, one more request is allowed every
``window / N`` seconds, and ``Retry-After`` says when.

Public ``/agent/*`` routes are counted by the middleware. Authenticated routes are counted by
``admit``, which also consumes the request's nonce in the same script: one Redis round trip for
the whole auth path.

Failed authentications also draw on a budget per client IP, whatever wallet they claim
(``count_failure``): rotating ``X-Wallet-Address`` buys a fresh request bucket, not a fresh
failure budget. Honest wallets never touch it (an EOA signature that recovers is admitted by
``admit`` alone), so agents sharing a NAT with an attacker keep their 30 a minute each.
"""

from __future__ import annotations

import math

from gateway.errors import RateLimited
from gateway.metrics import GatewayMetrics
from gateway.store import Store, slot_tag
from gateway.types import Clock, system_clock


class RateLimiter:
    def __init__(
        self,
        store: Store,
        *,
        limit: int = 30,
        window_seconds: int = 60,
        failed_auth_limit: int = 10,
        failed_auth_window_seconds: int = 60,
        clock: Clock = system_clock,
        metrics: GatewayMetrics | None = None,
    ) -> None:
        self._metrics = metrics or GatewayMetrics()
        self._store = store
        self._limit = limit
        self._period_ms = window_seconds * 1000
        self._failed_limit = failed_auth_limit
        self._failed_period_ms = failed_auth_window_seconds * 1000
        self._clock = clock

    def _now_ms(self) -> int:
        return int(self._clock() * 1000)

    async def hit(self, client_ip: str, wallet_key: str) -> None:
        """Count one request; raise RateLimited (429 + Retry-After) when over the limit."""
        allowed, retry_ms = await self._store.run(
            "rate_limit",
            [self._store.keys.rate(client_ip, wallet_key or "-")],
            [self._now_ms(), self._period_ms, self._limit],
        )
        if not int(allowed):
            self._metrics.request_rate_limited("request")
            raise _limited(client_ip, wallet_key, int(retry_ms))

    async def admit(self, client_ip: str, wallet_key: str, nonce_key: str, nonce_ttl: int) -> bool:
        """Count one authenticated request and consume its nonce, atomically.

        Raises RateLimited (nonce untouched) when over the limit; returns False when the
        nonce was used before, True when it is fresh (and now consumed). Both keys carry the
        wallet's hash tag; a bucket named after another header spelling than the signed wallet
        (another slot on a cluster) is counted first, then the nonce consumed."""
        rate_key = self._store.keys.rate(client_ip, wallet_key or "-")
        if slot_tag(rate_key) != slot_tag(nonce_key):
            await self.hit(client_ip, wallet_key)
            return await self._store.put_if_absent(nonce_key, "1", ttl_ms=nonce_ttl * 1000)
        allowed, retry_ms, fresh = await self._store.run(
            "admit",
            [rate_key, nonce_key],
            [self._now_ms(), self._period_ms, self._limit, nonce_ttl],
        )
        if not int(allowed):
            self._metrics.request_rate_limited("authenticated")
            raise _limited(client_ip, wallet_key, int(retry_ms))
        return bool(int(fresh))

    async def count_failure(self, client_ip: str, wallet_key: str) -> None:
        """Count one request whose authentication failed (or is about to cost an RPC call)
        against its request bucket, then, if that admits it, against the IP's failure budget.
        Raises RateLimited when either is spent (then the caller must not spend anything more).
        Two steps: the request bucket is in the wallet's slot, the failure budget in the IP's;
        a bucket only advances when it admits the request, as in one script."""
        allowed, retry_ms = await self._store.run(
            "rate_limit",
            [self._store.keys.rate(client_ip, wallet_key or "-")],
            [self._now_ms(), self._period_ms, self._limit],
        )
        if not int(allowed):
            self._metrics.request_rate_limited("request")
            raise _limited(client_ip, wallet_key, int(retry_ms))
        allowed, retry_ms = await self._store.run(
            "rate_limit",
            [self._store.keys.failed_auth(client_ip)],
            [self._now_ms(), self._failed_period_ms, self._failed_limit],
        )
        if not int(allowed):
            self._metrics.request_rate_limited("failed_auth")
            raise _limited(client_ip, wallet_key, int(retry_ms))

    async def refund_failure(self, client_ip: str) -> None:
        """Give back one ``count_failure`` charge to the IP's failure budget (a contract
        wallet's signature, charged before its RPC call, checked out)."""
        await self._store.run(
            "refund_auth_failure",
            [self._store.keys.failed_auth(client_ip)],
            [self._now_ms(), self._failed_period_ms, self._failed_limit],
        )


def _limited(client_ip: str, wallet_key: str, retry_ms: int) -> RateLimited:
    return RateLimited(
        math.ceil(retry_ms / 1000), internal=f"rate limited {client_ip} {wallet_key}"
    )
