"""Opening Redis, and the typed operations the domain modules use.

``Store`` is the only door to Redis: its methods take keys from ``KeySpace`` and plain Python
values, return plain Python values, and map every Redis or socket failure to ``Unavailable``
(503 "Storage unavailable") themselves, so no caller sees a Redis exception. Anything that must
be atomic across several keys or a read-and-write is a Lua script (``run``).

``connect_store`` opens one of three topologies (``config.RedisConnection``): one server by
URL, the master a set of Sentinels names (redis-py's ``Sentinel.master_for``: the client
follows a promotion), or a Redis Cluster (redis-py's ``RedisCluster``; keys are slot-safe by
``keys.py`` and the scripts batch per node, ``scripts.py``). Password and TLS apply to each.

Durable writes: with ``min_replica_acks`` > 0, a write made with ``durable=True`` or inside
``with store.durable():`` is followed by ``WAIT`` on the same connection and fails with 503
(``Unavailable``) when too few replicas acknowledged it, so the caller does nothing
irreversible (a CreateOS create, an upload, a broadcast, a 200) on a write a failover may drop.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Literal

from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.asyncio.sentinel import Sentinel
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError

from gateway.config import RedisConnection
from gateway.errors import Unavailable
from gateway.headers import RETRY_AFTER
from gateway.store.keys import KeySpace
from gateway.store.scripts import Scripts

#: Set inside ``Store.durable()``: every write of this task (and the tasks it starts) is durable.
_DURABLE: contextvars.ContextVar[bool] = contextvars.ContextVar("durable_writes", default=False)


@contextlib.contextmanager
def storage_errors() -> Iterator[None]:
    """Turn a Redis or socket failure into a 503 the client can retry."""
    try:
        yield
    except (RedisError, OSError) as exc:
        raise _unavailable(exc) from exc


def _unavailable(exc: BaseException) -> Unavailable:
    return Unavailable(
        "Storage unavailable", internal=f"redis: {exc!r}", headers={RETRY_AFTER: "5"}
    )


class _StorageErrors:
    """``Store._errors``: a class, not a ``contextmanager`` generator, because it wraps every
    Redis call of every request (one shared instance; it keeps no state)."""

    __slots__ = ("_store",)

    def __init__(self, store: Store) -> None:
        self._store = store

    def __enter__(self) -> None:
        return None

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> Literal[False]:
        if exc is None or not isinstance(exc, RedisError | OSError):
            return False  # no error, or not the store's: it passes unchanged
        if isinstance(exc, RedisConnectionError | OSError):
            self._store._lost_connection()
        raise _unavailable(exc) from exc


class Store:
    """The Redis connection, its key space and its scripts."""

    def __init__(
        self,
        redis: Redis | RedisCluster,
        keys: KeySpace,
        scripts: Scripts,
        *,
        topology: str = "",
        sentinels: Sequence[Redis] = (),
    ) -> None:
        self._redis = redis
        self._sentinels = tuple(sentinels)
        self._releasing: set[asyncio.Task[None]] = set()
        self.keys = keys
        self.scripts = scripts
        self.topology = topology or ("cluster" if isinstance(redis, RedisCluster) else "single")
        self._guard = _StorageErrors(self)

    # --- durability -------------------------------------------------------------------------

    @property
    def replica_acks(self) -> int:
        """Replicas a durable write must reach (0: none asked, a single server)."""
        return self.scripts.replica_acks

    @contextlib.contextmanager
    def durable(self) -> Iterator[None]:
        """Every write in this block (and in tasks started from it) waits for the replicas."""
        token = _DURABLE.set(True)
        try:
            yield
        finally:
            _DURABLE.reset(token)

    def _errors(self) -> _StorageErrors:
        """``storage_errors``; a lost connection also closes the idle pooled ones, which died
        with it (a restarted or failed-over server), so the next requests open fresh ones
        instead of each meeting a dead socket. Nothing is sent again."""
        return self._guard

    def _lost_connection(self) -> None:
        if isinstance(self._redis, RedisCluster):
            return
        pool = self._redis.connection_pool
        task = asyncio.ensure_future(pool.disconnect(inuse_connections=False))
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    def _is_durable(self, durable: bool) -> bool:
        return self.scripts.replica_acks > 0 and (durable or _DURABLE.get())

    async def run(
        self, script: str, keys: list[str], args: list[Any], *, durable: bool = False
    ) -> Any:
        """Run a Lua script by name (one atomic step); ``durable``: see the module doc."""
        with self._errors():
            return await self.scripts.run(script, keys, args, durable=self._is_durable(durable))

    async def release(self, key: str, token: str) -> None:
        """Delete ``key`` if it still holds ``token`` (a lock, a lease); see ``release_with``."""
        await self.release_with("release_lock", [key], [token])

    async def release_with(self, script: str, keys: list[str], args: list[Any]) -> None:
        """Run a compare-and-delete script (``release_lock``, ``release_deploy``). Re-sending
        one is safe, unlike most writes: if Redis is unreachable now (a failover under way),
        it is retried in the background for up to a minute, so a lock does not outlive its
        holder's request by its whole TTL, and the caller's own error stands."""
        try:
            await self.run(script, keys, args)
        except Unavailable:
            task = asyncio.ensure_future(self._release_later(script, keys, args))
            self._releasing.add(task)
            task.add_done_callback(self._releasing.discard)

    async def _release_later(self, script: str, keys: list[str], args: list[Any]) -> None:
        delay = 0.5
        for _ in range(12):
            await asyncio.sleep(delay)
            try:
                await self.run(script, keys, args)
                return
            except Unavailable:
                delay = min(delay * 2, 8.0)

    # --- strings --------------------------------------------------------------------------

    async def get(self, key: str) -> str | None:
        with self._errors():
            value = await self.scripts.command("GET", key)
        return None if value is None else str(value)

    async def put(self, key: str, value: str, *, ttl_ms: int | None, durable: bool = False) -> None:
        """Write ``value``, expiring after ``ttl_ms`` (None: kept for good)."""
        expiry = () if ttl_ms is None else ("PX", ttl_ms)
        with self._errors():
            if self._is_durable(durable):
                await self.scripts.write(key, "SET", key, value, *expiry)
            else:
                await self.scripts.command("SET", key, value, *expiry)

    async def put_if_absent(
        self, key: str, value: str, *, ttl_ms: int, durable: bool = False
    ) -> bool:
        """``SET NX PX``: True if this call wrote it (the key was free)."""
        with self._errors():
            if self._is_durable(durable):
                return bool(await self.scripts.write(key, "SET", key, value, "NX", "PX", ttl_ms))
            return bool(await self.scripts.command("SET", key, value, "NX", "PX", ttl_ms))

    async def delete(self, key: str) -> None:
        with self._errors():
            await self.scripts.command("DEL", key)

    # --- hashes, sets, lists ----------------------------------------------------------------

    async def hash(self, key: str) -> dict[str, str]:
        """Every field of a hash; empty when the key does not exist."""
        with self._errors():
            raw = await self.scripts.command("HGETALL", key)
        return {str(k): str(v) for k, v in raw.items()}

    async def hashes(self, keys: list[str]) -> list[dict[str, str]]:
        """Every field of each hash, in order, in one round trip on a single server (each read
        stands alone, as ``hash`` called once per key would); on a cluster each goes to its
        node."""
        if not keys:
            return []
        with self._errors():
            raws = await asyncio.gather(*(self.scripts.command("HGETALL", key) for key in keys))
        return [{str(k): str(v) for k, v in raw.items()} for raw in raws]

    async def update_hash(
        self,
        key: str,
        fields: Mapping[str, str | int],
        *,
        set_once: Mapping[str, str | int],
        ttl_ms: int,
    ) -> None:
        """Write ``fields``, ``set_once`` only where absent, and renew the TTL, in one step."""
        args: list[Any] = [ttl_ms, len(set_once)]
        for name, value in set_once.items():
            args += [name, value]
        for name, value in fields.items():
            args += [name, value]
        await self.run("update_hash", [key], args)

    async def members(self, key: str) -> set[str]:
        with self._errors():
            return {str(m) for m in await self.scripts.command("SMEMBERS", key)}

    async def add_member(self, key: str, member: str, *, durable: bool = False) -> None:
        """``SADD``: a global index entry, written outside any money script (``keys.py``);
        coalesced with the scripts of its turn."""
        await self.run("add_member", [key], [member], durable=durable)

    async def drop_member(self, key: str, member: str) -> None:
        """``SREM`` from a set."""
        with self._errors():
            await self._redis.srem(key, member)

    async def list_range(self, key: str, start: int, stop: int) -> list[str]:
        """``LRANGE``: indexes as Redis takes them (``-1`` is the last)."""
        with self._errors():
            return [str(item) for item in await self._redis.lrange(key, start, stop)]

    async def get_with_list(self, key: str, list_key: str) -> tuple[str | None, list[str]]:
        """A string and a whole list read in one MULTI (one slot): one consistent snapshot."""
        with self._errors():
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.get(key)
                pipe.lrange(list_key, 0, -1)
                value, items = await pipe.execute()
        return (None if value is None else str(value)), [str(i) for i in items]

    # --- sorted sets ------------------------------------------------------------------------

    async def lowest(self, key: str, count: int) -> list[tuple[str, int]]:
        """The ``count`` members with the lowest scores, with their (integer) scores."""
        with self._errors():
            raw = await self._redis.zrange(key, 0, count - 1, withscores=True)
        return [(str(pair[0]), int(pair[1])) for pair in raw]

    async def add_scored(self, key: str, member: str, score: int, *, durable: bool = False) -> None:
        """``ZADD``: a member with its score (added or rescored); coalesced like a script."""
        await self.run("add_scored", [key], [member, score], durable=durable)

    async def rescore_existing(self, key: str, member: str, score: int) -> None:
        """Change a member's score; no-op when the member is gone (``ZADD XX``)."""
        with self._errors():
            await self._redis.zadd(key, {member: score}, xx=True)

    async def remove_member(self, key: str, member: str) -> None:
        with self._errors():
            await self._redis.zrem(key, member)

    # --- reconciler state (plain reads and writes, no TTL) -------------------------------------

    async def write(self, key: str, value: str) -> None:
        """``SET`` without expiry."""
        with self._errors():
            await self._redis.set(key, value)

    async def field(self, key: str, name: str) -> str | None:
        with self._errors():
            value = await self._redis.hget(key, name)
        return None if value is None else str(value)

    async def set_field(self, key: str, name: str, value: str | int) -> None:
        with self._errors():
            await self._redis.hset(key, name, value)

    async def increment_field(self, key: str, name: str) -> int:
        """``HINCRBY key name 1``: the new count."""
        with self._errors():
            return int(await self._redis.hincrby(key, name, 1))

    async def set_field_if_absent(self, key: str, name: str, value: str) -> bool:
        with self._errors():
            return bool(await self._redis.hsetnx(key, name, value))

    async def delete_field(self, key: str, name: str) -> None:
        with self._errors():
            await self._redis.hdel(key, name)

    async def list_length(self, key: str) -> int:
        with self._errors():
            return int(await self._redis.llen(key))

    async def memory_usage(self, key: str) -> int:
        """``MEMORY USAGE`` of one key in bytes (0 when absent): benchmarks and operators."""
        with self._errors():
            used = await self._redis.memory_usage(key, samples=0)
        return int(used or 0)

    # --- the connection ---------------------------------------------------------------------

    async def ping(self) -> bool:
        try:
            return bool(await self._redis.ping())
        except (RedisError, OSError):
            return False

    async def close(self) -> None:
        for task in list(self._releasing):
            task.cancel()
        await self._redis.aclose()
        for sentinel in self._sentinels:
            await sentinel.aclose()


async def connect_store(target: str | RedisConnection, prefix: str) -> Store:
    """Connect (a URL, or a ``RedisConnection`` naming any topology), check the server
    answers and register every script."""
    connection = RedisConnection(url=target) if isinstance(target, str) else target
    if "{" in prefix or "}" in prefix:
        raise ValueError("a key prefix must not contain a hash tag brace")
    redis, sentinels = _client(connection)
    try:
        await redis.ping()
        scripts = Scripts(
            redis,
            replica_acks=connection.min_replica_acks,
            replica_timeout_ms=connection.replica_ack_timeout_ms,
        )
        await scripts.register()
    except (RedisError, OSError) as exc:
        await redis.aclose()
        for sentinel in sentinels:
            await sentinel.aclose()
        raise Unavailable(
            "Storage unavailable", internal=f"redis at {connection.describe()}: {exc!r}"
        ) from exc
    return Store(
        redis, KeySpace(prefix), scripts, topology=connection.topology, sentinels=sentinels
    )


def _client(connection: RedisConnection) -> tuple[Redis | RedisCluster, list[Redis]]:
    """The redis-py client of one topology (and the Sentinels' clients, to close).

    No retries anywhere: a command whose reply is lost is never sent again behind our back.
    Several scripts move money (an adjustment has no guard of its own), so a lost reply must
    surface as a 503 the client can look into, not as a silent second run."""
    no_retry = Retry(NoBackoff(), 0)
    common: dict[str, Any] = {
        "decode_responses": True,
        "health_check_interval": 30,
        "retry": no_retry,
    }
    auth: dict[str, Any] = {}
    if connection.username:
        auth["username"] = connection.username
    if connection.password:
        auth["password"] = connection.password
    tls: dict[str, Any] = {}
    if connection.tls:
        tls["ssl"] = True
        if connection.tls_ca_file:
            tls["ssl_ca_certs"] = connection.tls_ca_file
    if connection.sentinels:
        sentinel_kwargs: dict[str, Any] = {"decode_responses": True, "retry": no_retry, **tls}
        if connection.sentinel_password:
            sentinel_kwargs["password"] = connection.sentinel_password
        sentinel = Sentinel(  # type: ignore[no-untyped-call,unused-ignore]  # typed from redis 8.2
            list(connection.sentinels),
            sentinel_kwargs=sentinel_kwargs,
            socket_timeout=5,
            socket_connect_timeout=2,
        )
        assert connection.sentinel_master is not None
        master: Redis = sentinel.master_for(connection.sentinel_master, **common, **auth, **tls)
        return master, list(sentinel.sentinels)
    if connection.cluster_nodes:
        nodes = [ClusterNode(host, port) for host, port in connection.cluster_nodes]
        return RedisCluster(startup_nodes=nodes, **common, **auth, **tls), []
    assert connection.url is not None
    url_tls = {k: v for k, v in tls.items() if k != "ssl"}  # the scheme says rediss://
    return Redis.from_url(connection.url, **common, **auth, **url_tls), []
