"""Opening Redis: one async client per process and the scripts registered on it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from gateway.errors import Unavailable
from gateway.store.keys import KeySpace
from gateway.store.scripts import Scripts


@dataclass
class Store:
    """The Redis connection, its key space and its scripts."""

    redis: Redis
    keys: KeySpace
    scripts: Scripts

    async def run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        """Run a Lua script; a Redis failure becomes a 503."""
        try:
            return await self.scripts.run(script, keys, args)
        except RedisError as exc:
            raise Unavailable("Storage unavailable", internal=f"redis: {exc!r}") from exc

    async def ping(self) -> bool:
        try:
            return bool(await self.redis.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        await self.redis.aclose()


async def connect_store(url: str, prefix: str) -> Store:
    """Connect, check the server answers and register every script."""
    # retry=0: a command whose reply is lost is never sent again behind our back. Several
    # scripts move money (an adjustment has no guard of its own), so a lost reply must surface
    # as a 503 the client can look into, not as a silent second run.
    redis = Redis.from_url(
        url, decode_responses=True, health_check_interval=30, retry=Retry(NoBackoff(), 0)
    )
    try:
        await redis.ping()
        scripts = Scripts(redis)
        await scripts.register()
    except (RedisError, OSError) as exc:
        await redis.aclose()
        raise Unavailable("Storage unavailable", internal=f"redis at {url}: {exc!r}") from exc
    return Store(redis=redis, keys=KeySpace(prefix), scripts=scripts)
