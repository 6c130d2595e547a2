"""Redis memory of one wallet's ledger per project-year, before and after compaction.

    .venv/bin/python -m bench.ledger_memory [--projects 1] [--max-entries 1000]

On a fresh embedded ``redis-server``, one wallet gets one payment entry and then a year of
hourly burns for each of ``--projects`` active projects (8,760 burn entries a project), each
written by ``Ledger.burn_hour`` (the metering script, with realistic refs and reasons). Then
the same compaction the reconciler runs (``Ledger.compact`` down to ``max_entries / 2``, into a
``FileArchive`` in a temporary folder). Reported: ``MEMORY USAGE`` of the ledger list (bytes,
exact: ``SAMPLES 0``) before and after, per entry and per project-year, and the archive's size
on disk. Memory is counted, not timed: the figures are the same on any machine with the same
Redis version and list encoding settings.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
from pathlib import Path

from gateway.ledger import BurnOutcome, EntryKind, Ledger
from gateway.projects.records import Ownership
from gateway.store import connect_store
from gateway.store.archive import FileArchive
from gateway.store.embedded import EmbeddedRedis

HOURS_A_YEAR = 8_760
WALLET = "0x" + "5e" * 20
BURN_MICRO = 685  # 0.50 USD a month / 730 hours, rounded up


async def measure(projects: int, max_entries: int, workdir: Path) -> dict[str, float]:
    with EmbeddedRedis(workdir / "redis") as server:
        store = await connect_store(server.url, "bench:")
        try:
            ledger = Ledger(store)
            keys = store.keys
            redis_project = [f"{i:08d}-0000-4000-8000-000000000000" for i in range(projects)]
            await ledger.apply(
                WALLET, EntryKind.PAYMENT, 10**12, ref="42161:0x" + "ab" * 32, reason="payment"
            )
            ownership = Ownership(store)
            for project_id in redis_project:
                await ownership.record_project(
                    WALLET, project_id, unique_name=project_id[:8], display_name="Bench"
                )
            start_hour = 480_000
            # Batches under the script pipeline's 256 calls, so the hours of a project land in
            # order (a later hour first would make the earlier ones duplicates).
            step = max(1, 200 // projects)
            for offset in range(0, HOURS_A_YEAR, step):
                hours = range(start_hour + offset, start_hour + min(offset + step, HOURS_A_YEAR))
                outcomes = await asyncio.gather(
                    *(
                        ledger.burn_hour(WALLET, project_id, hour, BURN_MICRO, reason="hourly burn")
                        for hour in hours
                        for project_id in redis_project
                    )
                )
                assert all(o.outcome is BurnOutcome.BURNED for o in outcomes), outcomes
            entries_before = await ledger.entry_count(WALLET)
            before = await store.memory_usage(keys.ledger(WALLET))
            archive = FileArchive(workdir / "archive")
            outcome = await ledger.compact(WALLET, archive, keep=max_entries // 2)
            entries_after = await ledger.entry_count(WALLET)
            after = await store.memory_usage(keys.ledger(WALLET))
            report = await ledger.check_consistency(WALLET)
            assert report.ok, report
            archived = sum(p.stat().st_size for p in (workdir / "archive").rglob("*.gz"))
            return {
                "entries_before": entries_before,
                "bytes_before": before,
                "entries_after": entries_after,
                "bytes_after": after,
                "archived_entries": outcome.archived,
                "archive_bytes": archived,
            }
        finally:
            await store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--projects", type=int, default=1)
    parser.add_argument("--max-entries", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        figures = asyncio.run(measure(args.projects, args.max_entries, Path(folder)))
    years = args.projects
    print(f"{args.projects} project(s) x 1 year of hourly burns, max_entries {args.max_entries}")
    print(f"{'':<22}{'entries':>10}{'bytes':>12}{'bytes/entry':>13}{'bytes/project-year':>20}")
    for label, entries, used in (
        ("before compaction", figures["entries_before"], figures["bytes_before"]),
        ("after compaction", figures["entries_after"], figures["bytes_after"]),
    ):
        print(
            f"{label:<22}{int(entries):>10}{int(used):>12}{used / entries:>13.0f}"
            f"{used / years:>20.0f}"
        )
    print(
        f"archive on disk: {int(figures['archived_entries'])} entries, "
        f"{int(figures['archive_bytes'])} bytes gzip'd "
        f"({figures['archive_bytes'] / figures['archived_entries']:.1f} bytes/entry)"
    )
    print(
        f"Redis memory ratio after/before: {figures['bytes_after'] / figures['bytes_before']:.3f}"
    )


if __name__ == "__main__":
    main()
