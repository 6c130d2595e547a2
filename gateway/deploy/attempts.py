"""Durable deploy state in Redis: attempts and per-(wallet, name) locks.

- ``DeployAttempts``: one hash per (wallet, uniqueName) that records how far a deploy got
  (``step``), the upstream project once created and the deployment once uploaded. A deploy
  that fails half-way leaves it behind, so the retry adopts the half-made project instead of
  failing on its own name. It expires after ``ATTEMPT_TTL_MS`` and is deleted on success.
- ``DeployLocks``: ``SET NX PX`` with a random token, released only by its holder (Lua), so
  two concurrent deploys of one name by one wallet never both create or upload.

Name claims live with the project records (``gateway.projects.records.NameClaims``).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass
from enum import Enum

from gateway.errors import Conflict
from gateway.headers import RETRY_AFTER
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
        fields = await self._store.hash(self._store.keys.deploy_attempt(wallet, unique_name))
        if not fields:
            return None
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
        fields: dict[str, str | int] = {
            "kind": kind,
            "step": step.value,
            "wallet": wallet.lower(),
            "unique_name": unique_name.lower(),
            "updated_ms": now_ms,
        }
        if project_id is not None:
            fields["project_id"] = project_id
        if deployment_id is not None:
            fields["deployment_id"] = deployment_id
        if known_deployments is not None:
            fields["known"] = ",".join(known_deployments)
        await self._store.update_hash(
            key, fields, set_once={"started_ms": now_ms}, ttl_ms=ATTEMPT_TTL_MS
        )

    async def forget(self, wallet: str, unique_name: str) -> None:
        await self._store.delete(self._store.keys.deploy_attempt(wallet, unique_name))


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
        if not await self._store.put_if_absent(key, token, ttl_ms=self._ttl_ms):
            raise Conflict(
                "A deploy of this project is already in progress for this wallet; "
                "retry when it has finished",
                code="deploy_in_progress",
                headers={RETRY_AFTER: "5"},
            )
        try:
            yield
        finally:
            await self._store.release(key, token)  # retried in the background if Redis is away
