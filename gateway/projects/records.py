"""Project and name records: the only module that writes them (docs/PROTOCOL.md section 3,
docs/PAYMENTS.md section 5).

- ``NameClaims``: the ``name_owner`` key. The deploy flow claims a name with a TTL right before
  creating it, so two wallets that both passed the availability check cannot both create it;
  a failed create or a delete releases it.
- ``Ownership``: a project record is a Redis hash in its owner's slot, written when the deploy
  flow has created the upstream project; recording it also makes the name claim permanent (the
  wallet owns the name). The global facts around it are written in a safe order for a Redis
  Cluster (``store/keys.py``): the project's owner and its place in the metered set before the
  record, the permanent name hold after it, all durably (a 200 rests on them). Status:
  ``active`` (burns credits), ``suspended`` (the wallet ran out; resumes on top-up),
  ``deleted``. "Active projects" of a wallet, for quotes, counts ``active`` and ``suspended``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum

from gateway.errors import Forbidden, NotFound
from gateway.store import Store
from gateway.types import Clock, system_clock


class ProjectStatus(str, Enum):
    ACTIVE = "active"
    SUSPENDED = "suspended"
    DELETED = "deleted"


LIVE_STATUSES = (ProjectStatus.ACTIVE.value, ProjectStatus.SUSPENDED.value)


@dataclass(frozen=True, slots=True)
class ProjectRecord:
    project_id: str
    wallet: str  # lowercase
    unique_name: str
    display_name: str
    status: str
    created_at_ms: int
    deployments: tuple[str, ...]  # oldest first

    @property
    def last_deployment(self) -> str | None:
        return self.deployments[-1] if self.deployments else None


class NameOutcome(str, Enum):
    CLAIMED = "claimed"
    MINE = "mine"
    TAKEN = "taken"


class NameClaims:
    """Which wallet holds a uniqueName through this gateway (the ``name_owner`` key)."""

    def __init__(self, store: Store) -> None:
        self._store = store

    async def owner(self, unique_name: str) -> str | None:
        return await self._store.get(self._store.keys.name_owner(unique_name))

    async def claim(self, wallet: str, unique_name: str, *, ttl_ms: int) -> NameOutcome:
        """Claim a free name for ``ttl_ms``, renew this wallet's temporary claim, or report
        that another wallet holds it. A permanent (recorded) claim is never shortened."""
        result = await self._store.run(
            "claim_name",
            [self._store.keys.name_owner(unique_name)],
            [wallet.lower(), ttl_ms],
            durable=True,  # a CreateOS create follows
        )
        return NameOutcome(str(result))

    async def release(self, wallet: str, unique_name: str) -> bool:
        """Give the name back if ``wallet`` holds it (after a failed create, or a delete)."""
        released = await self._store.run(
            "release_lock", [self._store.keys.name_owner(unique_name)], [wallet.lower()]
        )
        return bool(int(released))


class Ownership:
    def __init__(self, store: Store, *, clock: Clock = system_clock) -> None:
        self._store = store
        self._keys = store.keys
        self._clock = clock

    async def record_project(
        self,
        wallet: str,
        project_id: str,
        *,
        unique_name: str,
        display_name: str,
        deployment_id: str | None = None,
    ) -> ProjectRecord:
        """Record a newly created project as ``wallet``'s and active."""
        k = self._keys
        now_ms = int(self._clock() * 1000)
        await asyncio.gather(  # the indexes first, together
            self._store.put(k.project_owner(project_id), wallet.lower(), ttl_ms=None, durable=True),
            self._store.add_member(k.active_projects(), project_id, durable=True),
        )
        await self._store.run(
            "record_project",
            [k.project(wallet, project_id), k.wallet_projects(wallet)],
            [
                project_id,
                wallet.lower(),
                unique_name.lower(),
                display_name,
                now_ms,
                deployment_id or "",
            ],
            durable=True,
        )
        await self._store.put(k.name_owner(unique_name), wallet.lower(), ttl_ms=None, durable=True)
        return ProjectRecord(  # what the script wrote: no read back
            project_id=project_id,
            wallet=wallet.lower(),
            unique_name=unique_name.lower(),
            display_name=display_name,
            status=ProjectStatus.ACTIVE.value,
            created_at_ms=now_ms,
            deployments=(deployment_id,) if deployment_id else (),
        )

    async def add_deployment(self, project_id: str, deployment_id: str) -> None:
        """Append a deployment id (redeploys) to the project's list, atomically."""
        owner = await self._owner(project_id)
        if owner is None:
            raise NotFound("Unknown project", code="unknown_project")
        await self._store.run(
            "add_deployment", [self._keys.project(owner, project_id)], [deployment_id], durable=True
        )

    async def _owner(self, project_id: str) -> str | None:
        return await self._store.get(self._keys.project_owner(project_id))

    async def get(self, project_id: str) -> ProjectRecord | None:
        """The record, found through the global owner index (an owner with no record yet, a
        create whose record was never written, reads as no record)."""
        owner = await self._owner(project_id)
        if owner is None:
            return None
        raw = await self._store.hash(self._keys.project(owner, project_id))
        return _record(project_id, raw) if raw else None

    async def get_as(self, project_id: str, wallet: str) -> ProjectRecord | None:
        """The record as ``wallet`` would own it, read straight from that wallet's slot (no
        owner-index lookup first, so it can share a round trip with the caller's other reads);
        when ``wallet`` has no such record, the record of whoever owns it (for the 404/403)."""
        raw = await self._store.hash(self._keys.project(wallet, project_id))
        if raw:
            return _record(project_id, raw)
        return await self.get(project_id)

    async def require_project(self, project_id: str) -> ProjectRecord:
        """The record of a live project; 404 if unknown (or deleted)."""
        return self.check_project(await self.get(project_id))

    async def require_owner(self, project_id: str, wallet: str) -> ProjectRecord:
        """The record if ``wallet`` owns it; 404 if unknown (or deleted), 403 if another's."""
        return self.check_owner(await self.get(project_id), wallet)

    @staticmethod
    def check_project(record: ProjectRecord | None) -> ProjectRecord:
        if record is None or record.status == ProjectStatus.DELETED.value:
            raise NotFound("Unknown project", code="unknown_project")
        return record

    @staticmethod
    def check_owner(record: ProjectRecord | None, wallet: str) -> ProjectRecord:
        """``require_owner``'s rules on a record already read."""
        record = Ownership.check_project(record)
        if record.wallet != wallet.lower():
            raise Forbidden("This project belongs to another wallet", code="not_owner")
        return record

    async def projects_of(
        self,
        wallet: str,
        *,
        include_deleted: bool = False,
        among: Sequence[str] | None = None,
    ) -> list[ProjectRecord]:
        """The wallet's project records, oldest first. ``among``: its project ids as already
        read (the deploy lock reads them), instead of reading the set again."""
        if among is None:
            ids = sorted(await self._store.members(self._keys.wallet_projects(wallet)))
        else:
            ids = sorted(among)
        raws = await self._store.hashes(
            [self._keys.project(wallet, project_id) for project_id in ids]
        )
        records = []
        for project_id, raw in zip(ids, raws, strict=True):
            record = _record(project_id, raw) if raw else None
            if record and (include_deleted or record.status != ProjectStatus.DELETED.value):
                records.append(record)
        return sorted(records, key=lambda r: r.created_at_ms)

    async def active_count(self, wallet: str, *, among: Sequence[str] | None = None) -> int:
        """Projects that count as sharing the wallet's credits (active or suspended)."""
        records = await self.projects_of(wallet, among=among)
        return sum(1 for r in records if r.status in LIVE_STATUSES)

    async def set_status(self, project_id: str, status: ProjectStatus) -> None:
        """Set the status and keep the metered set in step: a live project joins it before its
        status says so, a deleted one leaves it after (a stale member is never burned: the burn
        reads the record's status in the same script)."""
        owner = await self._owner(project_id)
        if owner is None:
            return
        active = self._keys.active_projects()
        if status is not ProjectStatus.DELETED:
            await self._store.add_member(active, project_id)
        await self._store.run("set_status", [self._keys.project(owner, project_id)], [status.value])
        if status is ProjectStatus.DELETED:
            await self._store.drop_member(active, project_id)

    async def switch_status(
        self, project_id: str, expected: ProjectStatus, new: ProjectStatus
    ) -> bool:
        """Set ``new`` only if the status is still ``expected`` (one Lua compare-and-set):
        suspending never revives a project deleted meanwhile. Between ``active`` and
        ``suspended`` only: both stay in the metered set. True if this call switched it."""
        if ProjectStatus.DELETED in (expected, new):
            raise ValueError("switch_status moves between active and suspended only")
        owner = await self._owner(project_id)
        if owner is None:
            return False
        result = await self._store.run(
            "switch_status", [self._keys.project(owner, project_id)], [expected.value, new.value]
        )
        return bool(result == "switched")

    async def metered_projects(self) -> list[str]:
        """Projects that are not deleted (active or suspended): what metering looks at."""
        return sorted(await self._store.members(self._keys.active_projects()))


def _record(project_id: str, raw: dict[str, str]) -> ProjectRecord:
    return ProjectRecord(
        project_id=project_id,
        wallet=raw.get("wallet", ""),
        unique_name=raw.get("unique_name", ""),
        display_name=raw.get("display_name", ""),
        status=raw.get("status", ProjectStatus.ACTIVE.value),
        created_at_ms=int(raw.get("created_at_ms", 0)),
        deployments=tuple(d for d in raw.get("deployments", "").split(",") if d),
    )
