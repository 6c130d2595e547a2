"""Rate limit (SPEC section 7): N requests per window per (client IP, X-Wallet-Address).

A GCRA in one Lua script, so every gateway process on the Redis shares the same budget and a
hit is one atomic step. The window refills smoothly: after a burst of N, one more request is
allowed every ``window / N`` seconds, and ``Retry-After`` says when.
"""

from __future__ import annotations

import math

from gateway.errors import RateLimited
from gateway.store import Store
from gateway.types import Clock, system_clock


class RateLimiter:
    def __init__(
        self,
        store: Store,
        *,
        limit: int = 30,
        window_seconds: int = 60,
        clock: Clock = system_clock,
    ) -> None:
        self._store = store
        self._limit = limit
        self._period_ms = window_seconds * 1000
        self._clock = clock

    async def hit(self, client_ip: str, wallet_header: str) -> None:
        """Count one request; raise RateLimited (429 + Retry-After) when over the limit."""
        allowed, retry_ms = await self._store.run(
            "rate_limit",
            [self._store.keys.rate(client_ip, wallet_header or "-")],
            [int(self._clock() * 1000), self._period_ms, self._limit],
        )
        if not int(allowed):
            raise RateLimited(
                math.ceil(int(retry_ms) / 1000),
                internal=f"rate limited {client_ip} {wallet_header}",
            )
