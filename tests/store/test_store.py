"""The Redis store's script calls (gateway/store/scripts.py): calls made together are coalesced
into one pipeline, yet each caller gets its own result or error, in call order, and a script
the server forgot is loaded again. Against a Redis server of the test's own, so the connection
count is this client's alone."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from gateway.errors import Unavailable
from gateway.store import Store, connect_store
from gateway.store.embedded import EmbeddedRedis
from tests.support import raw_redis

NOW_MS = 1_700_000_000_000
LIMIT = 30


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[str]:
    server = EmbeddedRedis(tmp_path / "redis").start()
    try:
        yield server.url
    finally:
        server.stop()


def hit(store: Store, key: str = "k") -> asyncio.Future[list[int]]:
    return asyncio.ensure_future(
        store.run("rate_limit", [store.keys.rate("127.0.0.1", key)], [NOW_MS, 60_000, LIMIT])
    )


async def connected_clients(url: str) -> int:
    probe = aioredis.Redis.from_url(url)
    try:
        info = await probe.info("clients")
        return int(info["connected_clients"]) - 1  # not the probe itself
    finally:
        await probe.aclose()


async def test_concurrent_calls_share_one_connection_and_keep_their_order(own_redis: str) -> None:
    store = await connect_store(own_redis, "t:")
    try:
        results = await asyncio.gather(*(hit(store) for _ in range(50)))
        # One pipeline: one connection. Fifty separate commands in flight at once would have
        # made the pool open a connection each.
        assert await connected_clients(own_redis) == 1
        allowed = [int(r[0]) for r in results]
        assert allowed == [1] * LIMIT + [0] * (50 - LIMIT)  # in call order
    finally:
        await store.close()


async def test_each_caller_gets_its_own_error(own_redis: str) -> None:
    store = await connect_store(own_redis, "t:")
    try:
        good = hit(store, "a")
        bad = asyncio.ensure_future(store.run("rate_limit", ["x"], ["not a number", 1, 1]))
        other = hit(store, "b")
        done = await asyncio.gather(good, bad, other, return_exceptions=True)
        assert [int(v) for v in done[0]] == [1, 0]
        assert isinstance(done[1], Unavailable) and "ResponseError" in done[1].internal
        assert [int(v) for v in done[2]] == [1, 0]
    finally:
        await store.close()


async def test_a_script_the_server_forgot_is_loaded_again(own_redis: str) -> None:
    store = await connect_store(own_redis, "t:")
    try:
        await raw_redis(store).script_flush()
        alone = await hit(store, "alone")
        together = await asyncio.gather(*(hit(store, f"k{i}") for i in range(5)))
        assert [int(v) for v in alone] == [1, 0]
        assert all([int(v) for v in r] == [1, 0] for r in together)
    finally:
        await store.close()


async def test_a_lost_connection_fails_every_call_of_the_batch_as_unavailable(
    tmp_path: Path,
) -> None:
    server = EmbeddedRedis(tmp_path / "redis").start()
    store = await connect_store(server.url, "t:")
    try:
        server.stop()
        outcomes = await asyncio.gather(*(hit(store) for _ in range(3)), return_exceptions=True)
        assert [type(o).__name__ for o in outcomes] == ["Unavailable"] * 3
    finally:
        await store.close()


async def test_a_lock_released_while_redis_is_away_is_released_when_it_is_back(
    tmp_path: Path,
) -> None:
    """``Store.release`` (compare-and-delete, safe to send again) does not fail its caller when
    Redis is unreachable, and deletes the lock once Redis answers again, long before its TTL."""
    server = EmbeddedRedis(tmp_path / "redis").start()
    store = await connect_store(server.url, "t:")
    try:
        assert await store.put_if_absent("t:lock", "mine", ttl_ms=600_000)
        server.stop()  # SHUTDOWN flushes the AOF: the lock comes back with the server
        await store.release("t:lock", "mine")  # no error for the caller
        server.restart()
        for _ in range(100):
            if await store.get("t:lock") is None:
                break
            await asyncio.sleep(0.1)
        assert await store.get("t:lock") is None
    finally:
        await store.close()
        server.stop()
