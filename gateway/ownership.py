"""Which wallet owns which project, and which projects are active (SPEC sections 3, 6).

A project record is a Redis hash written when the deploy flow has created the upstream project.
Status: ``active`` (burns credits), ``suspended`` (the wallet ran out; resumes on top-up),
``deleted``. "Active projects" of a wallet, for quotes, counts ``active`` and ``suspended``.
"""

from __future__ import annotations

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
        """Record a newly created project as ``wallet``'s and active, in one transaction."""
        k = self._keys
        now_ms = int(self._clock() * 1000)
        async with self._store.redis.pipeline(transaction=True) as pipe:
            pipe.hset(
                k.project(project_id),
                mapping={
                    "wallet": wallet.lower(),
                    "unique_name": unique_name.lower(),
                    "display_name": display_name,
                    "status": ProjectStatus.ACTIVE.value,
                    "created_at_ms": now_ms,
                    "deployments": deployment_id or "",
                },
            )
            pipe.sadd(k.wallet_projects(wallet), project_id)
            pipe.sadd(k.active_projects(), project_id)
            pipe.set(k.name_owner(unique_name), wallet.lower())
            await pipe.execute()
        record = await self.get(project_id)
        assert record is not None
        return record

    async def add_deployment(self, project_id: str, deployment_id: str) -> None:
        """Append a deployment id (redeploys) to the project's list, atomically."""
        key = self._keys.project(project_id)
        redis = self._store.redis
        async with redis.pipeline(transaction=True) as pipe:
            while True:
                try:
                    await pipe.watch(key)
                    current = await pipe.hget(key, "deployments") or ""
                    ids = [d for d in str(current).split(",") if d]
                    if deployment_id not in ids:
                        ids.append(deployment_id)
                    pipe.multi()  # type: ignore[no-untyped-call]
                    pipe.hset(key, "deployments", ",".join(ids))
                    await pipe.execute()
                    return
                except Exception as exc:  # WatchError: someone else wrote; try again
                    if type(exc).__name__ != "WatchError":
                        raise

    async def get(self, project_id: str) -> ProjectRecord | None:
        raw = await self._store.redis.hgetall(self._keys.project(project_id))
        if not raw:
            return None
        return _record(project_id, {str(k): str(v) for k, v in raw.items()})

    async def require_owner(self, project_id: str, wallet: str) -> ProjectRecord:
        """The record if ``wallet`` owns it; 404 if unknown (or deleted), 403 if another's."""
        record = await self.get(project_id)
        if record is None or record.status == ProjectStatus.DELETED.value:
            raise NotFound("Unknown project", code="unknown_project")
        if record.wallet != wallet.lower():
            raise Forbidden("This project belongs to another wallet", code="not_owner")
        return record

    async def projects_of(
        self, wallet: str, *, include_deleted: bool = False
    ) -> list[ProjectRecord]:
        ids = await self._store.redis.smembers(self._keys.wallet_projects(wallet))
        records = []
        for project_id in sorted(str(i) for i in ids):
            record = await self.get(project_id)
            if record and (include_deleted or record.status != ProjectStatus.DELETED.value):
                records.append(record)
        return sorted(records, key=lambda r: r.created_at_ms)

    async def active_count(self, wallet: str) -> int:
        return sum(1 for r in await self.projects_of(wallet) if r.status in LIVE_STATUSES)

    async def set_status(self, project_id: str, status: ProjectStatus) -> None:
        k = self._keys
        async with self._store.redis.pipeline(transaction=True) as pipe:
            pipe.hset(k.project(project_id), "status", status.value)
            if status is ProjectStatus.DELETED:
                pipe.srem(k.active_projects(), project_id)
            else:
                pipe.sadd(k.active_projects(), project_id)
            await pipe.execute()

    async def switch_status(
        self, project_id: str, expected: ProjectStatus, new: ProjectStatus
    ) -> bool:
        """Set ``new`` only if the status is still ``expected`` (one Lua compare-and-set):
        suspending never revives a project deleted meanwhile. Between ``active`` and
        ``suspended`` only: both stay in the metered set. True if this call switched it."""
        if ProjectStatus.DELETED in (expected, new):
            raise ValueError("switch_status moves between active and suspended only")
        result = await self._store.run(
            "switch_status", [self._keys.project(project_id)], [expected.value, new.value]
        )
        return bool(result == "switched")

    async def name_owner(self, unique_name: str) -> str | None:
        owner = await self._store.redis.get(self._keys.name_owner(unique_name))
        return None if owner is None else str(owner)

    async def metered_projects(self) -> list[str]:
        """Projects that are not deleted (active or suspended): what metering looks at."""
        return sorted(
            str(p) for p in await self._store.redis.smembers(self._keys.active_projects())
        )


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
