"""Durable deploy state in Redis: attempts and per-(wallet, name) locks.

- ``DeployAttempts``: one hash per (wallet, uniqueName) that records how far a deploy got
  (``step``) and the upstream project once created. A deploy
  that fails half-way leaves it behind, so the retry adopts the half-made project instead of
  failing on its own name. It expires after ``ATTEMPT_TTL_MS`` and is deleted on success.
- ``DeployLocks``: ``SET NX PX`` with a random token, released only by its holder (Lua), so
  two concurrent deploys of one name by one wallet never both create or upload. Taking the
  lock reads, in the same script, what the deploy decides on (``Held``: the attempt, the
  balance, the project ids), and releasing it forgets a finished attempt: one command each,
  where a quote would otherwise send four before its answer and two after it.

Name claims live with the project records (``gateway.projects.records.NameClaims``).
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Mapping
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
    CREATED = "created"  # ``project_id`` exists upstream; no upload was sent since
    UPLOADING = "uploading"  # ``project_id`` exists; an upload may have been sent
    #: ``deployment_id`` exists upstream. Only records of earlier versions say it: a successful
    #: upload is no longer written down (the record of the project follows at once, and a retry
    #: after it failed finds the deployment by listing), but such a record is still honoured.
    UPLOADED = "uploaded"


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
        return parse_attempt(
            await self._store.hash(self._store.keys.deploy_attempt(wallet, unique_name))
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


def parse_attempt(fields: Mapping[str, str]) -> Attempt | None:
    """The attempt a record's fields describe; ``None`` for no record or an unreadable one."""
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


@dataclass(slots=True)
class Held:
    """A held deploy lock and what was read when it was taken, in the same atomic step.

    ``balance_micro`` and ``project_ids`` are the wallet's as of the lock: the decision of a
    request without payment rests on them (a payment's credit returns the balance after it).
    ``finished()`` marks the deploy done: the release then forgets its attempt too."""

    attempt: Attempt | None
    balance_micro: int
    project_ids: tuple[str, ...]
    forget_attempt: bool = False

    def finished(self) -> None:
        self.forget_attempt = True


class DeployLocks:
    """At most one deploy per (wallet, uniqueName) at a time, across every gateway process."""

    def __init__(self, store: Store, *, ttl_ms: int) -> None:
        self._store = store
        self._ttl_ms = ttl_ms

    @contextlib.asynccontextmanager
    async def hold(self, wallet: str, unique_name: str) -> AsyncIterator[Held]:
        """Hold the lock for the block; 409 ``deploy_in_progress`` when another request has it.

        The lock expires after ``ttl_ms`` even if its holder dies; it is sized to outlast the
        slowest deploy (upload timeout included). Released when the block ends, however it
        ends; with the attempt record too after ``Held.finished()`` (only while the lock is
        still this request's: a deploy that outlived its lock leaves the record to expire).
        """
        keys = self._store.keys
        lock = keys.deploy_lock(wallet, unique_name)
        attempt_key = keys.deploy_attempt(wallet, unique_name)
        token = secrets.token_hex(16)
        taken = await self._store.run(
            "hold_deploy",
            [lock, attempt_key, keys.balance(wallet), keys.wallet_projects(wallet)],
            [token, self._ttl_ms],
        )
        if not taken[0]:
            raise Conflict(
                "A deploy of this project is already in progress for this wallet; "
                "retry when it has finished",
                code="deploy_in_progress",
                headers={RETRY_AFTER: "5"},
            )
        flat = taken[1]
        held = Held(
            attempt=parse_attempt(dict(zip(flat[::2], flat[1::2], strict=True))),
            balance_micro=int(taken[2] or 0),
            project_ids=tuple(sorted(taken[3])),
        )
        try:
            yield held
        finally:
            # Retried in the background if Redis is away (compare-and-delete: safe to resend).
            await self._store.release_with(
                "release_deploy", [lock, attempt_key], [token, int(held.forget_attempt)]
            )
