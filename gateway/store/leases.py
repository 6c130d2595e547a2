"""One leader among all gateway processes for a background loop: a Redis lease with expiry.

``lead_forever`` runs a round every ``interval`` seconds in whichever process holds the lease
named by ``key``. The lease is a holder token with a ``PX`` expiry (``hold_lease.lua``): taken
when free, renewed by its holder each round, given back on the way out (``drop_lease.lua``), and
expiring on its own when the holder dies. A round is cut off at half the lease, so it never
outlives the lease and two leaders never overlap. Correctness of what a round does must not
depend on the lease anyway (each loop's writes are once-only in Lua): the lease saves work.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
from collections.abc import Awaitable, Callable
from typing import Any

from gateway.store import Store


async def hold_lease(store: Store, key: str, holder: str, lease_ms: int) -> bool:
    """Take or renew the lease ``key`` for ``holder``; True while it is ours."""
    held = await store.run("hold_lease", [key], [holder, lease_ms])
    return bool(int(held))


async def drop_lease(store: Store, key: str, holder: str) -> None:
    """Give the lease back if ``holder`` still holds it."""
    await store.run("drop_lease", [key], [holder])


async def lead_forever(
    store: Store,
    key: str,
    one_round: Callable[[], Awaitable[Any]],
    *,
    interval: float,
    lease_ms: int,
    log: logging.Logger,
) -> None:
    """Every ``interval`` seconds, await ``one_round()`` if this process holds the lease.

    Runs until cancelled. A failed round (Redis down, an RPC or upstream outage, a bug) is
    logged and retried next time: a background loop never dies of one round.
    """
    holder = secrets.token_hex(8)
    try:
        while True:
            try:
                if await hold_lease(store, key, holder, lease_ms):
                    async with asyncio.timeout(lease_ms / 2000):
                        await one_round()
            except Exception:
                log.exception("background round failed")
            if _cancel_requested():
                # redis-py can swallow a CancelledError that lands mid-command
                # (redis/redis-py#2028); the task still records the request.
                raise asyncio.CancelledError
            await asyncio.sleep(interval)
    finally:
        try:
            await drop_lease(store, key, holder)
        except Exception:  # shutting down: the lease expires on its own
            log.debug("could not drop the lease %s", key, exc_info=True)


def _cancel_requested() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0
