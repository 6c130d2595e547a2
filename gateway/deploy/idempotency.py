"""``Idempotency-Key`` (docs/PROTOCOL.md section 4): the same key from the same wallet within 24 h
returns the first answer and never deploys twice.

Contract:

- A key is 1-128 characters of ``[A-Za-z0-9_-:.]``, scoped to the authenticated wallet.
- ``begin`` atomically reserves the key (``SET NX``, a *pending* record holding the request's
  fingerprint: a hash of method, path and body) before any work starts.
- Only a *successful* deploy is stored (``finish``): 24 h, status and body replayed verbatim.
  Every error answer releases the key (``abandon``) instead, because each one is safe and
  useful to re-evaluate: a 402 quote must not be replayed to an agent that has since paid,
  nor a 502 to one whose retry would now succeed. The money side is protected anyway: a
  payment tx is credited once whatever the key.
- The same key with a different fingerprint is a 409 ``idempotency_key_reused``.
- Concurrency: a request that finds the key *pending* waits up to ``wait_seconds`` (polling)
  for the first one. If the first finishes, the stored answer is replayed; if it failed and
  released the key, the waiter takes the key and runs itself; if it is still running, the
  waiter gets 409 ``request_in_progress`` with ``Retry-After``. A pending record expires after
  ``pending_ttl_ms`` so a crashed process cannot hold a key forever.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from gateway.errors import BadRequest, Conflict
from gateway.headers import IDEMPOTENCY_KEY, RETRY_AFTER
from gateway.store import Store

ANSWER_TTL_MS = 24 * 3600 * 1000
_KEY_RE = re.compile(r"[A-Za-z0-9_\-:.]{1,128}")


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """The first answer given for a key, replayed as is."""

    status: int
    body: dict[str, Any]


@dataclass(frozen=True, slots=True)
class Reservation:
    """Proof that this request holds the key: ``finish`` or ``abandon`` it."""

    redis_key: str
    pending_value: str
    fingerprint: str


def parse_key(value: str | None) -> str | None:
    """The header's key, ``None`` when absent; 400 naming the header when malformed."""
    if value is None:
        return None
    if not _KEY_RE.fullmatch(value):
        raise BadRequest(
            f"{IDEMPOTENCY_KEY} must be 1-128 characters of letters, digits, '_', '-', ':' and '.'",
            field=IDEMPOTENCY_KEY,
        )
    return value


def fingerprint(method: str, path: str, body_digest: str) -> str:
    """What makes two requests "the same": method, path and a digest of the body."""
    return hashlib.sha256(f"{method} {path} {body_digest}".encode()).hexdigest()


class Idempotency:
    def __init__(
        self,
        store: Store,
        *,
        pending_ttl_ms: int,
        wait_seconds: float = 5.0,
        poll_seconds: float = 0.1,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._store = store
        self._pending_ttl_ms = pending_ttl_ms
        self._wait_seconds = wait_seconds
        self._poll_seconds = poll_seconds
        self._sleep = sleep

    async def begin(
        self, wallet: str, key: str, request_fingerprint: str
    ) -> Reservation | StoredAnswer:
        """Reserve ``key`` for this request, or return the answer already stored for it.

        Raises ``Conflict`` for a reused key (different request) or one still in progress
        after the wait (see the module docstring).
        """
        redis_key = self._store.keys.idempotency(wallet, key)
        pending = json.dumps(
            {"state": "pending", "fp": request_fingerprint, "token": secrets.token_hex(8)}
        )
        waited = 0.0
        while True:
            if await self._store.put_if_absent(redis_key, pending, ttl_ms=self._pending_ttl_ms):
                return Reservation(redis_key, pending, request_fingerprint)
            raw = await self._store.get(redis_key)
            if raw is None:
                continue  # released between our SET and GET: try to take it again
            record = json.loads(raw)
            if record.get("fp") != request_fingerprint:
                raise Conflict(
                    f"This {IDEMPOTENCY_KEY} was already used for a different request",
                    code="idempotency_key_reused",
                )
            if record.get("state") == "done":
                return StoredAnswer(status=int(record["status"]), body=record["body"])
            if waited >= self._wait_seconds:
                raise Conflict(
                    f"A request with this {IDEMPOTENCY_KEY} is still in progress; retry shortly",
                    code="request_in_progress",
                    headers={RETRY_AFTER: "5"},
                )
            await self._sleep(self._poll_seconds)
            waited += self._poll_seconds

    async def finish(self, reservation: Reservation, status: int, body: dict[str, Any]) -> None:
        """Store the answer for 24 h (it replaces the pending record)."""
        record = {"state": "done", "fp": reservation.fingerprint, "status": status, "body": body}
        await self._store.put(reservation.redis_key, json.dumps(record), ttl_ms=ANSWER_TTL_MS)

    async def abandon(self, reservation: Reservation) -> None:
        """Release the key after an error answer (only if it still holds our pending record)."""
        await self._store.run("release_lock", [reservation.redis_key], [reservation.pending_value])
