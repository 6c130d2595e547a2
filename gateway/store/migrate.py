"""Moving a Redis written by a gateway before the cluster-safe key layout (``keys.py``) to it,
in place: ``python -m gateway migrate-keys``, with every gateway process stopped.

What moves (old -> new, ``W`` the owning wallet, read from the data itself):

- ``balance:W``, ``ledger:W``, ``wallet:W:payments``, ``wallet:W:projects`` -> the same in
  ``{w:W}``; each wallet's ledger sequence counter starts at its newest entry's number (the old
  counter was global, so a wallet's numbers keep their gaps: only their order matters);
- ``payment:<chain>:<tx>`` -> ``{w:W}:payment:...`` (W = the record's wallet), its ``used``
  claim -> ``{w:W}:claim:...``, and W joins the tx's payers; a ``pending`` claim (a lease of a
  verification that stopped with the gateway) is dropped;
- ``project:<id>`` -> ``{w:W}:project:<id>`` plus the owner index, ``metered:<id>`` with it;
- re-check entries ``<chain>:<tx>`` -> ``<chain>:<tx>:W``;
- nonces, deploy attempts and idempotency answers -> ``{w:W}`` with their remaining TTL; deploy
  locks and rate buckets are dropped (nothing holds them while the gateway is stopped).

Names, the wallets and metered sets, settlements, leases and the reconciler's state keep their
keys. Every step is idempotent: a migration cut off half-way is run again. It reads one server
(or the master Sentinel names): a Cluster is filled from the migrated server afterwards.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import cast

from redis.asyncio import Redis

from gateway.store.connect import Store, storage_errors
from gateway.store.keys import KeySpace


@dataclass
class MigrationReport:
    moved: dict[str, int] = field(default_factory=dict)  # kind -> keys moved
    dropped: dict[str, int] = field(default_factory=dict)  # kind -> keys dropped
    problems: list[str] = field(default_factory=list)

    def count(self, kind: str, *, dropped: bool = False) -> None:
        tally = self.dropped if dropped else self.moved
        tally[kind] = tally.get(kind, 0) + 1


async def migrate_key_layout(store: Store) -> MigrationReport:
    """Move every old-layout key under ``store``'s prefix; see the module docstring."""
    redis = store._redis
    if not isinstance(redis, Redis):
        raise ValueError("migrate one server (or a Sentinel master), not a Cluster")
    with storage_errors():
        return await _Migration(redis, store.keys).run()


class _Migration:
    def __init__(self, redis: Redis, keys: KeySpace) -> None:
        self.redis = redis
        self.keys = keys
        self.p = keys.prefix
        self.report = MigrationReport()

    async def _old(self, pattern: str) -> list[str]:
        """Old-layout keys matching ``prefix + pattern`` (new keys all start ``prefix{``)."""
        return [
            str(key)
            async for key in self.redis.scan_iter(match=self.p + pattern, count=1000)
            if not str(key).startswith(self.p + "{")
        ]

    async def _move(self, old: str, new: str, kind: str) -> None:
        """RENAME keeping the TTL; the old key gone already (a re-run) is fine."""
        if await self.redis.exists(old):
            await self.redis.rename(old, new)
            self.report.count(kind)

    async def run(self) -> MigrationReport:
        k, p = self.keys, self.p
        for old in await self._old("balance:*"):
            await self._move(old, k.balance(old[len(p) + len("balance:") :]), "balance")
        for old in await self._old("ledger:*"):
            wallet = old[len(p) + len("ledger:") :]
            if wallet == "seq":
                continue  # the old global counter: replaced per wallet below
            last = await self.redis.lindex(old, -1)
            await self._move(old, k.ledger(wallet), "ledger")
            if last is not None:
                await self.redis.set(k.ledger_seq(wallet), int(json.loads(last)["seq"]), nx=True)
        await self.redis.delete(p + "ledger:seq")
        for old in await self._old("wallet:*"):
            wallet, _, kind = old[len(p) + len("wallet:") :].rpartition(":")
            if kind == "payments":
                await self._move(old, k.wallet_payments(wallet), "wallet payments")
            elif kind == "projects":
                await self._move(old, k.wallet_projects(wallet), "wallet projects")
        await self._payments()
        await self._projects()
        await self._recheck()
        await self._per_wallet("nonce:*", "nonce", k.nonce)
        await self._per_wallet("deploy:*", "deploy attempt", k.deploy_attempt)
        await self._per_wallet("idem:*", "idempotency answer", k.idempotency)
        for pattern, kind in (("deploylock:*", "deploy lock"), ("rate:*", "rate bucket")):
            for old in await self._old(pattern):
                await self.redis.delete(old)
                self.report.count(kind, dropped=True)
        return self.report

    async def _payments(self) -> None:
        k, p = self.keys, self.p
        for old in await self._old("payment:*"):
            ref = old[len(p) + len("payment:") :]
            chain_text, _, tx = ref.partition(":")
            wallet = str(await self.redis.hget(old, "wallet") or "").lower()
            if not wallet or not chain_text.isdigit():
                self.report.problems.append(f"{old}: no wallet in the record; left as it is")
                continue
            chain_id = int(chain_text)
            await self.redis.sadd(k.tx_payers(chain_id, tx), wallet)
            claim = p + "claim:" + ref
            if await self.redis.get(claim) == "used":
                await self._move(claim, k.claim(chain_id, tx, wallet), "claim")
            await self._move(old, k.payment(chain_id, tx, wallet), "payment record")
        for old in await self._old("claim:*"):  # no record: a verification in flight, or none
            await self.redis.delete(old)
            self.report.count("pending claim", dropped=True)

    async def _projects(self) -> None:
        k, p = self.keys, self.p
        for old in await self._old("project:*"):
            project_id = old[len(p) + len("project:") :]
            if ":" in project_id:
                continue
            wallet = str(await self.redis.hget(old, "wallet") or "").lower()
            if not wallet:
                self.report.problems.append(f"{old}: no wallet in the record; left as it is")
                continue
            await self.redis.set(k.project_owner(project_id), wallet)
            await self._move(old, k.project(wallet, project_id), "project")
            meter = k.metered_hour(wallet, project_id)
            await self._move(p + "metered:" + project_id, meter, "meter")

    async def _recheck(self) -> None:
        queue = self.keys.recheck_queue()
        entries = await self.redis.zrange(queue, 0, -1, withscores=True)
        for member, score in cast("list[tuple[str, float]]", entries):
            ref = str(member)
            if ref.count(":") != 1:
                continue  # already chain:tx:payer
            chain_text, _, tx = ref.partition(":")
            payers = await self.redis.smembers(self.keys.tx_payers(int(chain_text), tx))
            for payer in payers:  # decode_responses: str
                await self.redis.zadd(queue, {f"{ref}:{payer!s}": score})
            await self.redis.zrem(queue, ref)
            self.report.count("re-check entry")

    async def _per_wallet(
        self, pattern: str, kind: str, new_key: Callable[[str, str], str]
    ) -> None:
        """``<kind>:W:<rest>`` keys -> ``new_key(W, rest)``."""
        head = len(self.p) + len(pattern) - 1
        for old in await self._old(pattern):
            wallet, _, rest = old[head:].partition(":")
            if rest:
                await self._move(old, new_key(wallet, rest), kind)
