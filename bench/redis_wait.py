"""The cost of durable writes (``[redis] min_replica_acks``): the paid path's Redis writes with
and without ``WAIT 1`` pipelined behind them, on a real primary with two replicas.

    .venv/bin/python -m bench.redis_wait [--payments 600] [--rounds 3] [--concurrency 1,16]

Set-up (not timed): a primary and two replicas (``devstack.redis_topology``; no Sentinels:
the benchmark talks to the primary by URL, which is what a Sentinel-discovered client does
between failovers), AOF everysec as the gateway's embedded Redis.

Timed, per variant (A: ``min_replica_acks = 0``, B: ``= 1``), ``concurrency`` at a time:
- ``credit``: one payment's claim (``claim_payment``) then its credit (``credit_payment``:
  the wallets and payers indexes, then the credit script), as ``PaymentService.accept`` does;
- ``record``: a deploy's project record (``Ownership.record_project``: owner index, metered
  set, the record script, the permanent name hold), which a deploy's 200 rests on.
Every payment and project is new (a fresh key prefix per round). Prints the median over
``--rounds`` rounds of the median and p99 latency per operation, and the B / A ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path

from bench.deploy_stack import machine_summary
from bench.loadgen import median
from devstack.redis_topology import ReplicatedRedis
from gateway.config import RedisConnection
from gateway.ledger import Ledger
from gateway.projects.records import Ownership
from gateway.store import Store, connect_store


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def timed(
    count: int, concurrency: int, operation: Callable[[int], Awaitable[object]]
) -> list[float]:
    """Run ``operation(i)`` for every i, ``concurrency`` at a time; each one's latency in ms."""
    latencies: list[float] = []
    queue = iter(range(count))

    async def worker() -> None:
        for i in queue:
            start = time.perf_counter()
            await operation(i)
            latencies.append((time.perf_counter() - start) * 1000)

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return latencies


async def one_round(
    url: str, acks: int, scenario: str, count: int, concurrency: int
) -> list[float]:
    connection = RedisConnection(url=url, min_replica_acks=acks, replica_ack_timeout_ms=1000)
    store: Store = await connect_store(connection, f"bench:{uuid.uuid4().hex[:8]}:")
    try:
        ledger, ownership = Ledger(store), Ownership(store)

        async def credit(i: int) -> None:
            wallet = f"0x{i:040x}"
            tx = f"0x{i:064x}"
            _, ticket = await ledger.claim_payment(42161, tx, wallet)
            await ledger.credit_payment(ticket, wallet, 500_000, {"tx": tx})

        async def record(i: int) -> None:
            wallet = f"0x{i:040x}"
            await ownership.record_project(
                wallet, f"project-{i}", unique_name=f"app-{i}", display_name="App"
            )

        operation = credit if scenario == "credit" else record
        return await timed(count, concurrency, operation)
    finally:
        await store.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--payments", type=int, default=600)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", default="1,16")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    print(machine_summary())
    with tempfile.TemporaryDirectory() as tmp:
        replicated = ReplicatedRedis(Path(tmp), replicas=2, sentinels=0).start()
        try:
            url = f"redis://{replicated.data_servers[0].address}/0"
            print("| scenario | concurrency | A: no WAIT p50 / p99 ms | B: WAIT 1 p50 / p99 ms "
                  "| B / A (p50) |")  # fmt: skip
            print("|---|---:|---:|---:|---:|")
            for scenario in ("credit", "record"):
                for concurrency in levels:
                    figures: dict[int, tuple[float, float]] = {}
                    for acks in (0, 1):
                        p50s, p99s = [], []
                        for _ in range(args.rounds):
                            latencies = asyncio.run(
                                one_round(url, acks, scenario, args.payments, concurrency)
                            )
                            p50s.append(median(latencies))
                            p99s.append(percentile(latencies, 0.99))
                        figures[acks] = (median(p50s), median(p99s))
                    (a50, a99), (b50, b99) = figures[0], figures[1]
                    print(f"| {scenario} | {concurrency} | {a50:.3f} / {a99:.3f} "
                          f"| {b50:.3f} / {b99:.3f} | {b50 / a50:.2f} |")  # fmt: skip
        finally:
            replicated.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
