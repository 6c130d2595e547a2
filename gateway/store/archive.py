"""The ledger archive: compacted ledger entries, outside Redis (docs/PAYMENTS.md section 9).

Redis holds a bounded hot list per wallet; what compaction folds into a checkpoint entry is
written here first, as one gzip'd JSON-lines file per chunk:
``<root>/<wallet>/<first seq>-<last seq>.jsonl.gz`` (seqs zero-padded, so names sort in ledger
order). A chunk is written to a temporary name, flushed to disk and renamed, so a chunk file is
either whole or absent; its entries are the exact JSON strings the ledger held. Files, not Redis:
the archive grows with history, and the point of compaction is that Redis memory does not.

Operators page a wallet's archive with ``python -m gateway ledger <wallet> --archived``. When
several machines run the gateway, the archive directory must be one shared volume (any process
may hold the reconciler lease that compacts).
"""

from __future__ import annotations

import gzip
import hashlib
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True, slots=True)
class ArchivedChunk:
    name: str  # relative to the archive root: "<wallet>/<first>-<last>.jsonl.gz"
    sha256: str  # of the uncompressed JSON lines
    created: bool  # False when a whole chunk of that name was already there


class FileArchive:
    """Chunks of archived ledger entries under ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def write_chunk(
        self, wallet: str, first_seq: int, last_seq: int, entries: Sequence[str]
    ) -> ArchivedChunk:
        """Write one chunk durably (temp file, fsync, rename, fsync of the folder)."""
        folder = self.root / wallet.lower()
        name = f"{first_seq:012d}-{last_seq:012d}.jsonl.gz"
        body = "".join(line + "\n" for line in entries).encode("utf-8")
        digest = hashlib.sha256(body).hexdigest()
        path = folder / name
        relative = f"{wallet.lower()}/{name}"
        if path.exists():
            return ArchivedChunk(relative, digest, created=False)
        folder.mkdir(parents=True, exist_ok=True)
        temporary = folder / f".{name}.{os.getpid()}.tmp"
        with temporary.open("wb") as raw:
            # mtime=0: the same entries always give the same bytes.
            with gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as packed:
                packed.write(body)
            raw.flush()
            os.fsync(raw.fileno())
        os.replace(temporary, path)
        directory = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)
        return ArchivedChunk(relative, digest, created=True)

    def discard(self, chunk: ArchivedChunk) -> None:
        """Remove a chunk this call created for a compaction refused as inconsistent."""
        if chunk.created:
            (self.root / chunk.name).unlink(missing_ok=True)

    def chunks(self, wallet: str) -> list[str]:
        """A wallet's chunk names, oldest first."""
        folder = self.root / wallet.lower()
        if not folder.is_dir():
            return []
        return [f"{wallet.lower()}/{p.name}" for p in sorted(folder.glob("*.jsonl.gz"))]

    def entries(self, wallet: str) -> Iterator[str]:
        """Every archived entry of a wallet as stored (JSON text), oldest first."""
        for name in self.chunks(wallet):
            with gzip.open(self.root / name, "rt", encoding="utf-8") as lines:
                for line in lines:
                    if line.strip():
                        yield line.rstrip("\n")
