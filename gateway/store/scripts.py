"""Lua scripts: ``lua/*.lua`` files loaded once at start-up and called by name.

Files named ``_*.lua`` hold shared local functions and are prepended to every script.
Each script is one atomic step that returns an outcome (STYLE rule 5): a tx claim, a credit,
a rate-limit hit. ``Scripts`` reads every file and ``register`` sends SCRIPT LOAD (to every
primary of a cluster) so a broken script fails at start-up.

Calls are coalesced: every script call made in one turn of the event loop goes to Redis as one
pipeline (EVALSHA each, no MULTI), so N concurrent requests cost one write and one read instead
of N of each. The Store's single reads and writes (GET, SET, HGETALL, SMEMBERS, DEL:
``command``) join the same pipeline on a single server, so the deploy lock of one request, the
name owner of another and the balance of a third share one round trip under load (on a cluster
they go straight to their node). On a small VM a socket syscall costs more than the script
itself, and this is what keeps the authenticated path close to the bare one
(docs/PERFORMANCE.md). Each script stays atomic on its own and the calls of one turn run in the
order they were made (more than ``MAX_BATCH`` of them go as consecutive pipelines, each sent
once the one before it is answered); nothing else changes for a caller: it gets its own result
or its own exception. Calls of different turns are ordered only by their callers: one that
needs its call to run after another awaits the other first. A
script unknown to the server (Redis was restarted without persistence of the script cache, or a
replica was promoted: SCRIPT LOAD is not replicated) is loaded again and the calls it refused
are sent again (NOSCRIPT means they did not run).

On a Redis Cluster the batch is split by the node that serves each call's slot (every key of one
call shares a slot, ``keys.py``) and each node's share goes down one of that node's connections:
redis-py's own cluster pipeline refuses EVALSHA (redis/redis-py#2914, not in 8.1). A call
answered MOVED or ASK (slots moving) did not run either: the slot map is refreshed and it is
sent once more.

Durable calls (``durable=True`` with ``replica_acks`` > 0): ``WAIT replica_acks timeout`` is
pipelined after the batch on the same connection, so it covers exactly those writes; a durable
call whose ``WAIT`` counted fewer replicas fails with ``NotReplicated`` (its effect happened on
the primary but may not survive a failover: the caller must do nothing irreversible on it).
A lost reply is never re-sent (the store's connections have no retries): several scripts move
money, and a second run behind the caller's back could apply a change twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
from collections import defaultdict
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from hiredis import pack_command
from redis.asyncio import Redis
from redis.asyncio.cluster import ClusterNode, PipelineCommand, RedisCluster
from redis.exceptions import (
    AskError,
    DataError,
    MovedError,
    NoScriptError,
    RedisError,
    ResponseError,
)

#: Most calls one pipeline carries; more wait for the next one.
MAX_BATCH = 256


class NotReplicated(RedisError):
    """``WAIT`` counted fewer replicas than required: the write may not survive a failover."""


@dataclass(frozen=True, slots=True)
class _Script:
    source: str
    sha: str


@dataclass(slots=True)
class _Call:
    script: _Script | None  # None: the plain command ``words`` (single server only)
    keys: list[str]
    args: list[Any]
    durable: bool
    future: asyncio.Future[Any]
    resends: int = field(default=0)  # sent again after NOSCRIPT, MOVED or ASK
    words: tuple[Any, ...] = ()
    options: dict[str, Any] = field(default_factory=dict)


class Scripts:
    """All Lua scripts by file stem (``rate_limit``, ``claim_payment``, ...)."""

    def __init__(
        self, redis: Redis | RedisCluster, *, replica_acks: int = 0, replica_timeout_ms: int = 500
    ) -> None:
        self._redis = redis
        self._cluster = redis if isinstance(redis, RedisCluster) else None
        self.replica_acks = replica_acks
        self.replica_timeout_ms = replica_timeout_ms
        self._scripts: dict[str, _Script] = {}
        self._pending: list[_Call] = []
        self._flush_scheduled = False
        self._in_flight: set[asyncio.Future[None]] = set()
        folder = resources.files("gateway.store") / "lua"
        entries = sorted(folder.iterdir(), key=lambda e: e.name)
        # Files starting with "_" are libraries of local functions, prepended to every script.
        library = "\n".join(
            e.read_text("utf-8")
            for e in entries
            if e.name.startswith("_") and e.name.endswith(".lua")
        )
        for entry in entries:
            if entry.name.endswith(".lua") and not entry.name.startswith("_"):
                source = library + "\n" + entry.read_text("utf-8")
                sha = hashlib.sha1(source.encode("utf-8")).hexdigest()
                self._scripts[entry.name[:-4]] = _Script(source, sha)

    @property
    def names(self) -> list[str]:
        return sorted(self._scripts)

    async def register(self) -> None:
        """SCRIPT LOAD every script: a syntax error fails start-up, not a request."""
        for script in self._scripts.values():
            await self._redis.script_load(script.source)

    async def run(
        self, name: str, keys: list[str], args: list[Any], *, durable: bool = False
    ) -> Any:
        """Run script ``name``; batched with the other calls of this event-loop turn.
        ``durable``: acknowledged by ``replica_acks`` replicas, or ``NotReplicated``."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        durable = durable and self.replica_acks > 0
        self._queue(_Call(self._scripts[name], keys, args, durable, future))
        return await future

    async def command(self, *words: Any, **options: Any) -> Any:
        """One plain command (``"GET", key``), batched with the other calls of this event-loop
        turn on a single server; the reply is what redis-py's method of that command returns
        (``options`` as ``execute_command`` takes them). On a cluster it goes straight to the
        node of its key."""
        if self._cluster is not None:
            return await self._cluster.execute_command(*words, **options)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._queue(_Call(None, [], [], False, future, words=words, options=options))
        return await future

    async def write(self, key: str, *command: Any) -> Any:
        """One plain write command on ``key``, followed by ``WAIT`` on the same connection;
        ``NotReplicated`` when too few replicas acknowledged it."""
        wait = ("WAIT", self.replica_acks, self.replica_timeout_ms)
        if self._cluster is None:
            assert isinstance(self._redis, Redis)
            pipe = self._redis.pipeline(transaction=False)
            pipe.execute_command(*command)
            pipe.execute_command(*wait)
            result, acked = await pipe.execute()
        else:
            node = self._cluster.get_node_from_key(key)
            assert node is not None
            commands = [PipelineCommand(0, *command), PipelineCommand(1, *wait)]
            await node.execute_pipeline(commands)
            for sent in commands:
                if isinstance(sent.result, Exception):
                    raise sent.result
            result, acked = commands[0].result, commands[1].result
        if int(acked) < self.replica_acks:
            raise NotReplicated(_not_replicated(int(acked), self.replica_acks))
        return result

    def _queue(self, call: _Call) -> None:
        self._pending.append(call)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        pending, self._pending = self._pending, []
        task = asyncio.ensure_future(self._send_in_order(pending))
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _send_in_order(self, calls: list[_Call]) -> None:
        """A turn's calls, ``MAX_BATCH`` per pipeline, each pipeline sent once the one before
        it is answered: sent side by side on two connections, a later pipeline could run
        first, and calls made in one turn would not run in the order they were made."""
        for start in range(0, len(calls), MAX_BATCH):
            await self._send(calls[start : start + MAX_BATCH])

    async def _send(self, batch: list[_Call]) -> None:
        if self._cluster is None:
            await self._send_single(batch)
            return
        by_node: dict[ClusterNode, list[_Call]] = defaultdict(list)
        for call in batch:
            try:
                node = self._cluster.get_node_from_key(call.keys[0])
            except RedisError as exc:  # no slot map for it yet
                _settle(call.future, exc)
                continue
            assert node is not None
            by_node[node].append(call)
        await asyncio.gather(*(self._send_node(node, calls) for node, calls in by_node.items()))

    async def _send_single(self, batch: list[_Call]) -> None:
        """The batch down one pooled connection as one write, its replies read in order.

        Straight on the connection, not through redis-py's ``Pipeline`` or
        ``execute_command``: those add, per call, a retry wrapper (the store has none), an
        operation-duration record and the HIMPORT preflight, which cost more than the command
        on this path (docs/PERFORMANCE.md). The commands are packed by hiredis (the packer
        redis-py itself calls here) straight from their words: every word is a str, an int or
        bytes, so redis-py's per-argument encoding pass adds nothing but its cost. Each reply
        goes through the client's own ``parse_response``, so every command's reply is what its
        redis-py method returns."""
        redis = self._redis
        assert isinstance(redis, Redis)
        durable = any(call.durable for call in batch)
        commands: list[tuple[Any, ...]] = [
            call.words
            if call.script is None
            else ("EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args)
            for call in batch
        ]
        if durable:
            commands.append(("WAIT", self.replica_acks, self.replica_timeout_ms))
        pool = redis.connection_pool
        results: list[Any] = []
        try:
            packed = _packed(commands)
            connection = await pool.get_connection()  # type: ignore[no-untyped-call]
            try:
                await connection.send_packed_command(packed)
                for call, command in zip(batch, commands, strict=False):
                    try:
                        options = call.options if call.script is None else {}
                        reply = await redis.parse_response(connection, command[0], **options)
                        results.append(reply)
                    except ResponseError as exc:  # this call's own error; the rest stand
                        results.append(exc)
                if durable:
                    try:
                        results.append(await redis.parse_response(connection, "WAIT"))
                    except ResponseError as exc:
                        results.append(exc)
            except BaseException:
                # Replies may be left unread on the socket: it must not serve another batch.
                await connection.disconnect()
                raise
            finally:
                await pool.release(connection)
        except Exception as exc:  # the connection failed: each call fails as it would alone
            for call in batch:
                _settle(call.future, exc)
            return
        await self._deliver(batch, results, durable)

    async def _send_node(self, node: ClusterNode, batch: list[_Call]) -> None:
        durable = any(call.durable for call in batch)
        commands = [
            PipelineCommand(i, "EVALSHA", call.script.sha, len(call.keys), *call.keys, *call.args)
            for i, call in enumerate(batch)
            if call.script is not None  # plain commands never queue on a cluster (``command``)
        ]
        if durable:
            commands.append(
                PipelineCommand(len(batch), "WAIT", self.replica_acks, self.replica_timeout_ms)
            )
        try:
            await node.execute_pipeline(commands)
        except Exception as exc:  # the connection failed: each call fails as it would alone
            for call in batch:
                _settle(call.future, exc)
            # The node may be gone (a cluster failover): read the slot map again, as redis-py's
            # own commands do, so the next calls go to whoever serves the slots now.
            assert self._cluster is not None
            with contextlib.suppress(RedisError, OSError):
                await self._cluster.nodes_manager.initialize()
            return
        await self._deliver(batch, [c.result for c in commands], durable)

    async def _deliver(self, batch: list[_Call], results: list[Any], durable: bool) -> None:
        """Settle each call with its result; send again what did not run (NOSCRIPT, a slot
        that moved); fail durable calls that too few replicas acknowledged."""
        shortfall: NotReplicated | None = None
        if durable:
            acked = results[len(batch)]
            if isinstance(acked, Exception):
                shortfall = NotReplicated(f"WAIT failed: {acked!r}")
            elif int(acked) < self.replica_acks:
                shortfall = NotReplicated(_not_replicated(int(acked), self.replica_acks))
        again: list[tuple[_Call, Exception]] = []
        for call, result in zip(batch, results[: len(batch)], strict=True):
            if isinstance(result, NoScriptError | MovedError | AskError):
                again.append((call, result))
            elif call.durable and shortfall is not None and not isinstance(result, Exception):
                _settle(call.future, shortfall)
            else:
                _settle(call.future, result)
        if again:
            await self._send_again(again)

    async def _send_again(self, calls: list[tuple[_Call, Exception]]) -> None:
        """Calls that did not run: load the scripts again (NOSCRIPT) or refresh the slot map
        (MOVED, ASK), then queue them once more (twice at most)."""
        try:
            if any(isinstance(cause, NoScriptError) for _, cause in calls):
                await self._load_all()
            if self._cluster is not None and any(
                isinstance(cause, MovedError | AskError) for _, cause in calls
            ):
                await self._cluster.nodes_manager.initialize()
        except Exception as exc:
            for call, _ in calls:
                _settle(call.future, exc)
            return
        for call, cause in calls:
            if call.resends >= 2:
                _settle(call.future, cause)
                continue
            call.resends += 1
            self._queue(call)

    async def _load_all(self) -> None:
        for script in self._scripts.values():
            await self._redis.script_load(script.source)


def _packed(commands: list[tuple[Any, ...]]) -> bytes:
    """The commands in the Redis protocol, as one buffer."""
    try:
        return b"".join([pack_command(command) for command in commands])
    except TypeError as exc:  # a word that is not str, int, float or bytes: a bug of ours
        raise DataError(f"cannot send {exc}") from exc


def _not_replicated(acked: int, required: int) -> str:
    return f"WAIT: {acked} of {required} replica(s) acknowledged the write"


def _settle(future: asyncio.Future[Any], outcome: Any) -> None:
    if future.done():  # the caller was cancelled
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
