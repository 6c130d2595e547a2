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

from devstack.latency_proxy import LatencyProxy
from gateway.errors import Unavailable
from gateway.projects.records import Ownership
from gateway.store import Store, connect_store
from gateway.store.embedded import EmbeddedRedis
from gateway.store.scripts import MAX_BATCH
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


async def test_more_calls_than_one_pipeline_carries_still_run_in_call_order(
    own_redis: str,
) -> None:
    """A turn's calls beyond ``MAX_BATCH`` go in further pipelines; sent side by side on
    several connections, a later pipeline ran first (the first allowed hits were not the first
    calls). Each goes once the one before it is answered."""
    store = await connect_store(own_redis, "t:")
    try:
        calls, limit = 4 * MAX_BATCH, 2 * MAX_BATCH + 7
        key = store.keys.rate("127.0.0.1", "many")
        results = await asyncio.gather(
            *(store.run("rate_limit", [key], [NOW_MS, 60_000, limit]) for _ in range(calls))
        )
        assert [int(r[0]) for r in results] == [1] * limit + [0] * (calls - limit)
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


async def test_a_wallets_projects_are_read_in_two_round_trips(own_redis: str) -> None:
    """``Ownership.projects_of`` (the deploy's quota count, the project list) reads the set of a
    wallet's projects, then every record in one pipeline, however many projects it has."""
    port = int(own_redis.rsplit(":", 1)[1].split("/")[0])
    with LatencyProxy(port, name="redis") as proxy:
        store = await connect_store(f"redis://127.0.0.1:{proxy.port}/0", "t:")
        try:
            ownership = Ownership(store)
            wallet = "0x" + "ab" * 20
            for index in range(5):
                await ownership.record_project(
                    wallet, f"p{index}", unique_name=f"name-{index}", display_name="P"
                )
            proxy.reset()
            records = await ownership.projects_of(wallet)
            writes = proxy.snapshot()
        finally:
            await store.close()
    assert sorted(r.project_id for r in records) == [f"p{i}" for i in range(5)]
    assert len(writes) == 2, [e.methods for e in writes]


async def test_single_commands_of_one_turn_share_one_round_trip(own_redis: str) -> None:
    """GET, SET (NX), HGETALL, SMEMBERS and DEL made together go out as one pipeline with the
    scripts of that turn, in call order, each caller getting its own reply."""
    port = int(own_redis.rsplit(":", 1)[1].split("/")[0])
    with LatencyProxy(port, name="redis") as proxy:
        store = await connect_store(f"redis://127.0.0.1:{proxy.port}/0", "t:")
        try:
            proxy.reset()
            results = await asyncio.gather(
                store.put_if_absent("t:a", "1", ttl_ms=60_000),
                store.put_if_absent("t:a", "2", ttl_ms=60_000),
                store.get("t:a"),
                store.put("t:b", "x", ttl_ms=60_000),
                store.hash("t:none"),
                store.members("t:none"),
                store.delete("t:b"),
                store.get("t:b"),
                hit(store),
            )
            writes = proxy.snapshot()
        finally:
            await store.close()
    assert results[:8] == [True, False, "1", None, {}, set(), None, None]
    assert int(results[8][0]) == 1
    assert len(writes) == 1, [e.methods for e in writes]


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
