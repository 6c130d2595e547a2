"""Opening Redis, and the typed operations the domain modules use.

``Store`` is the only door to Redis: its methods take keys from ``KeySpace`` and plain Python
values, return plain Python values, and map every Redis or socket failure to ``Unavailable``
(503 "Storage unavailable") themselves, so no caller sees a Redis exception. Anything that must
be atomic across several keys or a read-and-write is a Lua script (``run``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Mapping
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from gateway.errors import Unavailable
from gateway.headers import RETRY_AFTER
from gateway.store.keys import KeySpace
from gateway.store.scripts import Scripts


@contextlib.contextmanager
def storage_errors() -> Iterator[None]:
    """Turn a Redis or socket failure into a 503 the client can retry."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise Unavailable(
            "Storage unavailable", internal=f"redis: {exc!r}", headers={RETRY_AFTER: "5"}
        ) from exc


class Store:
    """The Redis connection, its key space and its scripts."""

    def __init__(self, redis: Redis, keys: KeySpace, scripts: Scripts) -> None:
        self._redis = redis
        self.keys = keys
        self.scripts = scripts

    async def run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        """Run a Lua script by name (one atomic step)."""
        with storage_errors():
            return await self.scripts.run(script, keys, args)

    # --- strings --------------------------------------------------------------------------

    async def get(self, key: str) -> str | None:
        with storage_errors():
            value = await self.scripts.command("GET", key)
        return None if value is None else str(value)

    async def put(self, key: str, value: str, *, ttl_ms: int) -> None:
        """Write ``value``, expiring after ``ttl_ms``."""
        with storage_errors():
            await self.scripts.command("SET", key, value, "PX", ttl_ms)

    async def put_if_absent(self, key: str, value: str, *, ttl_ms: int) -> bool:
        """``SET NX PX``: True if this call wrote it (the key was free)."""
        with storage_errors():
            return bool(await self.scripts.command("SET", key, value, "PX", ttl_ms, "NX"))

    async def delete(self, key: str) -> None:
        with storage_errors():
            await self.scripts.command("DEL", key)

    # --- hashes, sets, lists ----------------------------------------------------------------

    async def hash(self, key: str) -> dict[str, str]:
        """Every field of a hash; empty when the key does not exist."""
        with storage_errors():
            raw = await self.scripts.command("HGETALL", key)
        return {str(k): str(v) for k, v in raw.items()}

    async def hashes(self, keys: list[str]) -> list[dict[str, str]]:
        """Every field of each hash, in order, in one round trip (a pipeline, no MULTI: each
        read stands alone, as ``hash`` called once per key would)."""
        if not keys:
            return []
        with storage_errors():
            async with self._redis.pipeline(transaction=False) as pipe:
                for key in keys:
                    pipe.hgetall(key)
                raws = await pipe.execute()
        return [{str(k): str(v) for k, v in raw.items()} for raw in raws]

    async def update_hash(
        self,
        key: str,
        fields: Mapping[str, str | int],
        *,
        set_once: Mapping[str, str | int],
        ttl_ms: int,
    ) -> None:
        """Write ``fields``, ``set_once`` only where absent, and renew the TTL, in one MULTI."""
        with storage_errors():
            async with self._redis.pipeline(transaction=True) as pipe:
                for name, value in set_once.items():
                    pipe.hsetnx(key, name, value)
                pipe.hset(key, mapping=dict(fields))  # type: ignore[arg-type]
                pipe.pexpire(key, ttl_ms)
                await pipe.execute()

    async def members(self, key: str) -> set[str]:
        with storage_errors():
            return {str(m) for m in await self.scripts.command("SMEMBERS", key)}

    async def list_range(self, key: str, start: int, stop: int) -> list[str]:
        """``LRANGE``: indexes as Redis takes them (``-1`` is the last)."""
        with storage_errors():
            return [str(item) for item in await self._redis.lrange(key, start, stop)]

    async def get_with_list(self, key: str, list_key: str) -> tuple[str | None, list[str]]:
        """A string and a whole list read in one MULTI: one consistent snapshot of both."""
        with storage_errors():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.get(key)
                pipe.lrange(list_key, 0, -1)
                value, items = await pipe.execute()
        return (None if value is None else str(value)), [str(i) for i in items]

    # --- sorted sets ------------------------------------------------------------------------

    async def lowest(self, key: str, count: int) -> list[tuple[str, int]]:
        """The ``count`` members with the lowest scores, with their (integer) scores."""
        with storage_errors():
            raw = await self._redis.zrange(key, 0, count - 1, withscores=True)
        return [(str(pair[0]), int(pair[1])) for pair in raw]

    async def rescore_existing(self, key: str, member: str, score: int) -> None:
        """Change a member's score; no-op when the member is gone (``ZADD XX``)."""
        with storage_errors():
            await self._redis.zadd(key, {member: score}, xx=True)

    async def remove_member(self, key: str, member: str) -> None:
        with storage_errors():
            await self._redis.zrem(key, member)

    # --- reconciler state (plain reads and writes, no TTL) -------------------------------------

    async def write(self, key: str, value: str) -> None:
        """``SET`` without expiry."""
        with storage_errors():
            await self._redis.set(key, value)

    async def field(self, key: str, name: str) -> str | None:
        with storage_errors():
            value = await self._redis.hget(key, name)
        return None if value is None else str(value)

    async def set_field(self, key: str, name: str, value: str | int) -> None:
        with storage_errors():
            await self._redis.hset(key, name, value)

    async def increment_field(self, key: str, name: str) -> int:
        """``HINCRBY key name 1``: the new count."""
        with storage_errors():
            return int(await self._redis.hincrby(key, name, 1))

    async def set_field_if_absent(self, key: str, name: str, value: str) -> bool:
        with storage_errors():
            return bool(await self._redis.hsetnx(key, name, value))

    async def delete_field(self, key: str, name: str) -> None:
        with storage_errors():
            await self._redis.hdel(key, name)

    async def list_length(self, key: str) -> int:
        with storage_errors():
            return int(await self._redis.llen(key))

    async def memory_usage(self, key: str) -> int:
        """``MEMORY USAGE`` of one key in bytes (0 when absent): benchmarks and operators."""
        with storage_errors():
            used = await self._redis.memory_usage(key, samples=0)
        return int(used or 0)

    # --- the connection ---------------------------------------------------------------------

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        await self._redis.aclose()


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
    return Store(redis, KeySpace(prefix), scripts)
