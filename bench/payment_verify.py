"""Payment verification throughput: receipts verified and credited per second against anvil.

    .venv/bin/python -m bench.payment_verify [--payments 400] [--rounds 3] [--concurrency 1,16]

Set-up (not timed): one anvil chain (chain id 42161, test USDC at the canonical address), an
embedded Redis, one payer wallet holding enough test USDC, and ``--payments`` transfers to
``pay_to``, sent with automine off and mined together so set-up stays short.

Timed: ``PaymentService.accept`` over every transfer, ``concurrency`` at a time, in this process
(the same service the gateway builds: claim in Redis, receipt + one block batch over JSON-RPC,
credit by Lua). Each round uses a fresh Redis key prefix, so every round verifies and credits
every payment anew. Prints the median of ``--rounds`` rounds per concurrency level.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from bench.deploy_stack import machine_summary
from bench.loadgen import median
from devstack.anvil import CANONICAL_TOKENS, AnvilNode
from gateway.chains import ChainClient
from gateway.config import PROJECT_ROOT, Settings, load_settings
from gateway.ledger import Ledger
from gateway.payments.service import PaymentService
from gateway.store import connect_store
from gateway.store.embedded import EmbeddedRedis
from gateway.types import Wallet

PAYER = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"  # anvil account #1 (unlocked)
USDC = CANONICAL_TOKENS[42161]["usdc"]
AMOUNT = 500_000  # 0.50 USDC per payment


def send_payments(node: AnvilNode, pay_to: str, count: int) -> list[str]:
    """``count`` USDC transfers from PAYER to ``pay_to``, mined; their hashes in order."""
    node.mint(USDC, PAYER, AMOUNT * count)
    node.set_automine(False)
    try:
        hashes = [node.transfer(USDC, PAYER, pay_to, AMOUNT) for _ in range(count)]
        while any(node.receipt(h) is None for h in hashes[-1:]):
            node.mine(1)
    finally:
        node.set_automine(True)
    missing = [h for h in hashes if node.receipt(h) is None]
    if missing:
        raise RuntimeError(f"{len(missing)} transfers were not mined")
    return hashes


async def verify_all(
    settings: Settings, redis_url: str, hashes: list[str], concurrency: int
) -> tuple[float, list[float]]:
    """Accept every hash under a fresh key prefix; (seconds, per-payment latencies)."""
    store = await connect_store(redis_url, f"bench-verify:{uuid.uuid4().hex[:8]}:")
    chain = ChainClient(settings.chains["arbitrum"], timeout=settings.rpc_timeout_seconds)
    service = PaymentService(settings, Ledger(store), {"arbitrum": chain}, clock=time.time)
    wallet = Wallet(PAYER)
    queue = list(reversed(hashes))
    latencies: list[float] = []

    async def worker() -> None:
        while queue:
            tx = queue.pop()
            started = time.perf_counter()
            await service.accept(wallet, tx=tx, chain="arbitrum", token="usdc")
            latencies.append(time.perf_counter() - started)

    try:
        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        seconds = time.perf_counter() - started
        balance = await Ledger(store).balance(PAYER)
        if balance != AMOUNT * len(hashes):
            raise RuntimeError(f"credited {balance}, expected {AMOUNT * len(hashes)}")
    finally:
        await chain.close()
        await store.close()
    return seconds, latencies


def run(args: argparse.Namespace) -> None:
    levels = [int(c) for c in args.concurrency.split(",")]
    results: dict[int, list[tuple[float, float, float]]] = {c: [] for c in levels}
    with (
        tempfile.TemporaryDirectory(prefix="bench-verify-") as tmp,
        EmbeddedRedis(Path(tmp) / "redis") as redis_server,
        AnvilNode.start(42161, log_dir=Path(tmp)) as node,
    ):
        node.install_test_tokens()
        settings = load_settings(
            PROJECT_ROOT / "config" / "local.toml",
            {"REDIS_URL": redis_server.url, "GATEWAY_RPC_ARBITRUM": node.url},
        )
        started = time.perf_counter()
        hashes = send_payments(node, settings.chains["arbitrum"].pay_to, args.payments)
        print(f"set-up: {len(hashes)} transfers mined in "
              f"{time.perf_counter() - started:.1f} s", file=sys.stderr)  # fmt: skip
        for round_no in range(args.rounds):
            for level in levels:
                seconds, latencies = asyncio.run(
                    verify_all(settings, redis_server.url, hashes, level)
                )
                ordered = sorted(latencies)
                p50 = statistics.median(ordered)
                p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
                results[level].append((len(hashes) / seconds, p50, p99))
                print(f"round {round_no + 1}/{args.rounds}, concurrency {level}: "
                      f"{len(hashes) / seconds:,.0f} receipts/s", file=sys.stderr)  # fmt: skip

    print(f"\nmachine: {machine_summary()}; {args.payments} payments x {args.rounds} rounds; "
          "anvil, Redis and this process on the same cores")  # fmt: skip
    print("\n| concurrency | receipts/s (median) | p50 ms | p99 ms |")
    print("|---:|---:|---:|---:|")
    for level, runs in results.items():
        rate = median([r[0] for r in runs])
        p50 = median([r[1] for r in runs]) * 1000
        p99 = median([r[2] for r in runs]) * 1000
        print(f"| {level} | {rate:,.0f} | {p50:.2f} | {p99:.2f} |")
    if len(levels) > 1:
        first, last = levels[0], levels[-1]
        ratio = median([r[0] for r in results[last]]) / median([r[0] for r in results[first]])
        print(f"\nratio concurrency {last} / concurrency {first}: {ratio:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--payments", type=int, default=400)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--concurrency", default="1,16", help="comma-separated levels")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
