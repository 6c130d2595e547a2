"""Lua scripts: ``lua/*.lua`` files loaded once at start-up and called by name.

Files named ``_*.lua`` hold shared local functions and are prepended to every script.
Each script is one atomic step that returns an outcome (STYLE rule 5): a tx claim, a credit,
a rate-limit hit. ``Scripts.load`` reads every file and ``register`` sends SCRIPT LOAD so a
broken script fails at start-up; calls go through redis-py's ``AsyncScript`` (EVALSHA with a
transparent reload after a server restart).
"""

from __future__ import annotations

from importlib import resources
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript


class Scripts:
    """All Lua scripts by file stem (``rate_limit``, ``claim_payment``, ...)."""

    def __init__(self, redis: Redis) -> None:
        self._redis = redis
        self._scripts: dict[str, AsyncScript] = {}
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
        return await self._scripts[name](keys=keys, args=args)
