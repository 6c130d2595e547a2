"""Lua scripts: ``lua/*.lua`` files loaded once at start-up and called by name.

Files named ``_*.lua`` hold shared local functions and are prepended to every script.
Each script is one atomic step that returns an outcome (STYLE rule 5): a tx claim, a credit,
a rate-limit hit. ``Scripts.load`` reads every file and ``register`` sends SCRIPT LOAD so a
broken script fails at start-up.

Calls are coalesced: every script call made in one turn of the event loop goes to Redis as one
pipeline (EVALSHA each, no MULTI), so N concurrent requests cost one write and one read instead
of N of each. The Store's single commands (GET, SET, HGETALL, SMEMBERS, DEL: ``command``) join
the same pipeline, so the deploy lock of one request, the name owner of another and the
balance of a third share one round trip under load. On a small VM a socket syscall costs more
than the script itself, and this is what keeps the authenticated path close to the bare one
(docs/PERFORMANCE.md). Each script and command stays atomic on its own and the calls run in
the order they were made; nothing else changes for a caller: it gets its own result or its
own exception. A script unknown to the server (Redis was
restarted without persistence of the script cache) is re-run through redis-py's ``AsyncScript``,
which loads it again.
"""

from __future__ import annotations

import asyncio
from importlib import resources
from typing import Any, cast

from redis.asyncio import Redis
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError

#: Most calls one pipeline carries; more wait for the next one.
MAX_BATCH = 256


class Scripts:
    """All Lua scripts by file stem (``rate_limit``, ``claim_payment``, ...)."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._scripts: dict[str, AsyncScript] = {}
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
                self._scripts[entry.name[:-4]] = redis.register_script(source)

    @property
    def names(self) -> list[str]:
        return sorted(self._scripts)

    async def register(self) -> None:
        """SCRIPT LOAD every script: a syntax error fails start-up, not a request."""
        for script in self._scripts.values():
            script.sha = await self._redis.script_load(script.script)

    async def run(self, name: str, keys: list[str], args: list[Any]) -> Any:
        """Run script ``name``; batched with the other calls of this event-loop turn."""
        script = self._scripts[name]
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((script, keys, args, future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        self._flush_scheduled = False
        while self._pending:
            batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
            task = asyncio.ensure_future(self._send(batch))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    async def command(self, *args: Any, **options: Any) -> Any:
        """One plain Redis command (``"GET", key``), batched with the other calls of this
        event-loop turn; the reply is what the redis-py method of that command returns
        (``options`` as ``execute_command`` takes them)."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((None, list(args), [options], future))
        if not self._flush_scheduled:
            self._flush_scheduled = True
            asyncio.get_running_loop().call_soon(self._flush)
        return await future

    async def _send(self, batch: list[_Call]) -> None:
        if len(batch) == 1:  # nothing to coalesce: the plain call, with its NOSCRIPT reload
            script, keys, args, future = batch[0]
            try:
                if script is None:
                    result = await cast(Any, self._redis).execute_command(*keys, **args[0])
                else:
                    result = await script(keys=keys, args=args)
            except Exception as exc:
                _settle(future, exc)
            else:
                _settle(future, result)
            return
        try:
            pipe = self._redis.pipeline(transaction=False)
            for script, keys, args, _ in batch:
                if script is None:
                    cast(Any, pipe).execute_command(*keys, **args[0])  # untyped in redis-py
                else:
                    pipe.evalsha(script.sha, len(keys), *keys, *args)
            results = await pipe.execute(raise_on_error=False)
        except Exception as exc:  # the connection failed: each call fails as it would alone
            for *_, future in batch:
                _settle(future, exc)
            return
        for (script, keys, args, future), result in zip(batch, results, strict=True):
            if isinstance(result, NoScriptError) and script is not None:
                try:
                    result = await script(keys=keys, args=args)  # loads it again
                except Exception as exc:
                    result = exc
            _settle(future, result)


#: (script, keys, args, future); a plain command is (None, its words, [options], future).
_Call = tuple[AsyncScript | None, list[Any], list[Any], "asyncio.Future[Any]"]


def _settle(future: asyncio.Future[Any], outcome: Any) -> None:
    if future.done():  # the caller was cancelled
        return
    if isinstance(outcome, BaseException):
        future.set_exception(outcome)
    else:
        future.set_result(outcome)
