"""Durable deploy state in Redis: attempts, per-(wallet, name) locks and name claims.

- ``DeployAttempts``: one hash per (wallet, uniqueName) that records how far a deploy got
  (``step``), the upstream project once created and the deployment once uploaded. A deploy
  that fails half-way leaves it behind, so the retry adopts the half-made project instead of
  failing on its own name. It expires after ``ATTEMPT_TTL_MS`` and is deleted on success.
- ``DeployLocks``: ``SET NX PX`` with a random token, released only by its holder (Lua), so
  two concurrent deploys of one name by one wallet never both create or upload.
- ``NameClaims``: the ``name_owner`` key. The deploy flow claims a name (with a TTL) right
  before creating it, so two wallets that both passed the availability check cannot both
  create it; ``Ownership.record_project`` rewrites the key without a TTL (the wallet owns the
  name), and deleting the project releases it.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import Enum
from typing import Any

from gateway.errors import Conflict
from gateway.store import Store
from gateway.types import Clock, system_clock

#: How long a half-made deploy waits for its retry.
ATTEMPT_TTL_MS = 7 * 24 * 3600 * 1000


class Step(str, Enum):
    """How far an attempt got. Each write happens *before* the upstream call it announces,
    so after a crash or an ambiguous failure the step says what may have happened."""

    CREATING = "creating"  # a create was sent; its project may exist
    CREATED = "created"  # ``project_id`` exists upstream
    UPLOADING = "uploading"  # an upload was sent; a deployment may exist
    UPLOADED = "uploaded"  # ``deployment_id`` exists upstream


@dataclass(frozen=True, slots=True)
class Attempt:
    """A deploy (``kind`` "deploy") or redeploy ("redeploy") that has not finished.

    ``known_deployments`` are the project's deployments before this attempt uploaded: a
    deployment outside that set, found after an ambiguous upload, is this attempt's.
    """

    kind: str
    step: Step
    project_id: str | None
    deployment_id: str | None
    known_deployments: tuple[str, ...]
    started_ms: int


class DeployAttempts:
    def __init__(self, store: Store, *, clock: Clock = system_clock) -> None:
        self._store = store
        self._clock = clock

    async def load(self, wallet: str, unique_name: str) -> Attempt | None:
        raw = await self._store.redis.hgetall(self._store.keys.deploy_attempt(wallet, unique_name))
        if not raw:
            return None
        fields = {str(k): str(v) for k, v in raw.items()}
        try:
            step = Step(fields.get("step", ""))
        except ValueError:
            return None  # an unreadable record is no evidence of anything upstream
        return Attempt(
            kind=fields.get("kind", "deploy"),
            step=step,
            project_id=fields.get("project_id") or None,
            deployment_id=fields.get("deployment_id") or None,
            known_deployments=tuple(d for d in fields.get("known", "").split(",") if d),
            started_ms=int(fields.get("started_ms") or 0),
        )

    async def record(
        self,
        wallet: str,
        unique_name: str,
        *,
        kind: str,
        step: Step,
        project_id: str | None = None,
        deployment_id: str | None = None,
        known_deployments: tuple[str, ...] | None = None,
    ) -> None:
        """Write the step (and any ids given) and renew the TTL, in one transaction.

        ``project_id``/``deployment_id`` of ``None`` leave the stored value alone; pass ``""``
        to forget one.
        """
        key = self._store.keys.deploy_attempt(wallet, unique_name)
        now_ms = int(self._clock() * 1000)
        mapping: dict[Any, str | int] = {
            "kind": kind,
            "step": step.value,
            "wallet": wallet.lower(),
            "unique_name": unique_name.lower(),
            "updated_ms": now_ms,
        }
        if project_id is not None:
            mapping["project_id"] = project_id
        if deployment_id is not None:
            mapping["deployment_id"] = deployment_id
        if known_deployments is not None:
            mapping["known"] = ",".join(known_deployments)
        async with self._store.redis.pipeline(transaction=True) as pipe:
            pipe.hsetnx(key, "started_ms", now_ms)
            pipe.hset(key, mapping=mapping)
            pipe.pexpire(key, ATTEMPT_TTL_MS)
            await pipe.execute()

    async def forget(self, wallet: str, unique_name: str) -> None:
        await self._store.redis.delete(self._store.keys.deploy_attempt(wallet, unique_name))


class DeployLocks:
    """At most one deploy per (wallet, uniqueName) at a time, across every gateway process."""

    def __init__(self, store: Store, *, ttl_ms: int) -> None:
        self._store = store
        self._ttl_ms = ttl_ms

    @contextlib.asynccontextmanager
    async def hold(self, wallet: str, unique_name: str) -> AsyncIterator[None]:
        """Hold the lock for the block; 409 ``deploy_in_progress`` when another request has it.

        The lock expires after ``ttl_ms`` even if its holder dies; it is sized to outlast the
        slowest deploy (upload timeout included).
        """
        key = self._store.keys.deploy_lock(wallet, unique_name)
        token = secrets.token_hex(16)
        if not await self._store.redis.set(key, token, nx=True, px=self._ttl_ms):
            raise Conflict(
                "A deploy of this project is already in progress for this wallet; "
                "retry when it has finished",
                code="deploy_in_progress",
                headers={"Retry-After": "5"},
            )
        try:
            yield
        finally:
            await self._store.run("release_lock", [key], [token])


class NameOutcome(str, Enum):
    CLAIMED = "claimed"
    MINE = "mine"
    TAKEN = "taken"


class NameClaims:
    """Which wallet holds a uniqueName through this gateway (the ``name_owner`` key)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def owner(self, unique_name: str) -> str | None:
        raw = await self._store.redis.get(self._store.keys.name_owner(unique_name))
        return None if raw is None else str(raw)

    async def claim(self, wallet: str, unique_name: str, *, ttl_ms: int) -> NameOutcome:
        """Claim a free name for ``ttl_ms``, renew this wallet's temporary claim, or report
        that another wallet holds it. A permanent (recorded) claim is never shortened."""
        result = await self._store.run(
            "claim_name", [self._store.keys.name_owner(unique_name)], [wallet.lower(), ttl_ms]
        )
        return NameOutcome(str(result))

    async def release(self, wallet: str, unique_name: str) -> bool:
        """Give the name back if ``wallet`` holds it (after a failed create, or a delete)."""
        released = await self._store.run(
            "release_lock", [self._store.keys.name_owner(unique_name)], [wallet.lower()]
        )
        return bool(int(released))
