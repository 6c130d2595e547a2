"""What the client must not forget between attempts: the tx it paid (or the gasless
authorization it signed) for a deploy, a redeploy or a top-up, and the deploy's
``Idempotency-Key``.

An entry is written right after the transfer is sent (before its receipt), and removed once the
gateway has started the deploy or credited the top-up. A retry of the same request, after a
gateway restart, a lost answer or a crash of the client itself, finds the entry and sends the
same ``X-Payment-Tx`` instead of paying again. ``MemoryJournal`` lives as long as the client;
``FileJournal`` survives the process (the CLI uses it).
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol


@dataclass(frozen=True, slots=True)
class PendingRequest:
    """One paid request in flight. ``tx`` is None until a transfer was sent for it; a top-up's
    ``idempotency_key`` is never sent (the gateway's tx claim already makes it happen once)."""

    idempotency_key: str
    tx: str | None = None
    chain: str | None = None
    token: str | None = None
    amount_token: int | None = None
    #: A gasless payment's ``PAYMENT-SIGNATURE``, written before it is sent: a retry sends the
    #: same authorization (the gateway settles it once), never a second one.
    credential: str | None = None


class Journal(Protocol):
    def get(self, key: str) -> PendingRequest | None: ...

    def put(self, key: str, entry: PendingRequest) -> None: ...

    def remove(self, key: str) -> None: ...


class MemoryJournal:
    def __init__(self) -> None:
        self._entries: dict[str, PendingRequest] = {}

    def get(self, key: str) -> PendingRequest | None:
        return self._entries.get(key)

    def put(self, key: str, entry: PendingRequest) -> None:
        self._entries[key] = entry

    def remove(self, key: str) -> None:
        self._entries.pop(key, None)


class FileJournal:
    """A JSON file of entries; every write replaces the file atomically (write, fsync, rename)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()

    def _read(self) -> dict[str, PendingRequest]:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        return {key: PendingRequest(**value) for key, value in raw.items()}

    def _write(self, entries: dict[str, PendingRequest]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        temporary = self.path.with_suffix(".tmp")
        with temporary.open("w", encoding="utf-8") as file:
            json.dump({key: asdict(value) for key, value in entries.items()}, file, indent=1)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, self.path)

    def get(self, key: str) -> PendingRequest | None:
        with self._lock:
            return self._read().get(key)

    def put(self, key: str, entry: PendingRequest) -> None:
        with self._lock:
            entries = self._read()
            entries[key] = entry
            self._write(entries)

    def remove(self, key: str) -> None:
        with self._lock:
            entries = self._read()
            if entries.pop(key, None) is not None:
                self._write(entries)
