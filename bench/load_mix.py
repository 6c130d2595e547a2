"""A bounded mixed load on two gateway processes sharing one Redis, then a proof of the books.

    .venv/bin/python -m bench.load_mix [--wallets 40] [--reads 12] [--greedy 90]

Starts its own Redis (embedded), an anvil chain (42161) with the test tokens, the CreateOS
simulator and two ``python -m gateway serve`` processes, all on loopback. Every wallet, as its
own task: ``--reads`` signed ``GET /agent/credits`` and one unpaid deploy (a 402 quote) spread
over both processes; then a paid deploy (a real USDC transfer, mined before the clock starts)
on one process and the same tx replayed as a top-up on the other (409). One greedy wallet
fires ``--greedy`` signed requests at once, alternating processes, against the shared rate
limit. Afterwards, read straight from Redis: every payment credited exactly once (one payment
entry per tx, claim used, balance == entries), and the greedy wallet got no more than the limit
plus what the limit refilled during its burst.

The test suite runs a small version (tests/test_load.py); ``--run-slow`` a larger one.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import statistics
import tempfile
import time
from collections import Counter, defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account
from eth_account.signers.local import LocalAccount

from devstack.anvil import CANONICAL_TOKENS, AnvilNode
from devstack.gateway_process import GatewayProcess, write_config
from devstack.server_thread import ServerThread
from devstack.simulator.server import CreateOSSimulator, SimulatorConfig
from gateway.client.signing import auth_headers
from gateway.config import PROJECT_ROOT
from gateway.ledger import EntryKind, Ledger
from gateway.store import connect_store
from gateway.store.embedded import EmbeddedRedis

LOCAL_CONFIG = PROJECT_ROOT / "config" / "local.toml"
PAY_TO = "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720"  # config/local.toml
USDC = CANONICAL_TOKENS[42161]["usdc"]
PRICE = 500_000  # 0.50 USD in USDC base units: the quote for one month
SIM_KEY = "sim-bench-key"
RATE_LIMIT = 30
RATE_WINDOW = 60.0


@dataclass
class MixReport:
    seconds: float = 0.0
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    payments: dict[str, str] = field(default_factory=dict)  # tx -> wallet
    greedy_admitted: int = 0
    greedy_limited: int = 0
    greedy_seconds: float = 0.0
    books: list[str] = field(default_factory=list)  # violations found afterwards

    @property
    def requests(self) -> int:
        return sum(sum(c.values()) for c in self.statuses.values())

    @property
    def server_errors(self) -> int:
        return sum(n for c in self.statuses.values() for s, n in c.items() if s >= 500)

    def table(self) -> str:
        rows = ["| request | count | p50 ms | p99 ms | statuses |", "|---|---:|---:|---:|---|"]
        for kind, lat in self.latencies.items():
            ordered = sorted(lat)
            p99 = ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))]
            codes = ", ".join(f"{s}: {n}" for s, n in sorted(self.statuses[kind].items()))
            rows.append(
                f"| {kind} | {len(lat)} | {statistics.median(lat) * 1000:.1f} "
                f"| {p99 * 1000:.1f} | {codes} |"
            )
        rows.append(
            f"\n{self.requests} requests in {self.seconds:.1f} s: "
            f"{self.requests / self.seconds:.0f} req/s over two processes; "
            f"5xx: {self.server_errors}"
        )
        rows.append(
            f"greedy wallet: {self.greedy_admitted} admitted, {self.greedy_limited} limited "
            f"in {self.greedy_seconds:.1f} s (limit {RATE_LIMIT}/{RATE_WINDOW:.0f} s)"
        )
        rows.append("books: " + ("every payment credited exactly once" if not self.books else
                                 "; ".join(self.books)))  # fmt: skip
        return "\n".join(rows)


def deploy_body(name: str) -> dict[str, Any]:
    return {
        "uniqueName": name,
        "displayName": "Load test",
        "upload": {"type": "files", "files": [{"path": "index.js", "content": "MQ=="}]},
    }


def prepare_payments(node: AnvilNode, wallets: Sequence[LocalAccount]) -> dict[str, str]:
    """One mined USDC transfer of the quote from each wallet to the gateway: wallet -> tx."""
    paid = {}
    for wallet in wallets:
        node.mint(USDC, wallet.address, PRICE)
        paid[wallet.address] = node.transfer(USDC, wallet.address, PAY_TO, PRICE, impersonate=True)
    return paid


async def _timed(
    report: MixReport, kind: str, http: httpx.AsyncClient, method: str, url: str, **kw: Any
) -> httpx.Response:
    started = time.perf_counter()
    response = await http.request(method, url, **kw)
    report.latencies[kind].append(time.perf_counter() - started)
    report.statuses[kind][response.status_code] += 1
    return response


async def _agent(
    report: MixReport,
    http: httpx.AsyncClient,
    gateways: Sequence[str],
    wallet: LocalAccount,
    tx: str,
    reads: int,
    index: int,
) -> None:
    name = f"load-{index:04d}-{os.urandom(3).hex()}"
    for i in range(reads):
        await _timed(report, "authenticated read", http, "GET",
                     f"{gateways[i % 2]}/agent/credits", headers=auth_headers(wallet))  # fmt: skip
    await _timed(report, "402 quote", http, "POST", f"{gateways[index % 2]}/agent/deploy",
                 json=deploy_body(name), headers=auth_headers(wallet))  # fmt: skip
    paid_headers = {**auth_headers(wallet), "X-Payment-Tx": tx}
    await _timed(report, "paid deploy", http, "POST", f"{gateways[index % 2]}/agent/deploy",
                 json=deploy_body(name), headers=paid_headers)  # fmt: skip
    replay = {**auth_headers(wallet), "X-Payment-Tx": tx}
    await _timed(report, "replayed tx", http, "POST",
                 f"{gateways[(index + 1) % 2]}/agent/credits/topup", headers=replay)  # fmt: skip


async def _greedy(
    report: MixReport, http: httpx.AsyncClient, gateways: Sequence[str], count: int
) -> None:
    wallet: LocalAccount = Account.create()
    signed = [auth_headers(wallet) for _ in range(count)]
    started = time.perf_counter()
    answers = await asyncio.gather(
        *(
            _timed(
                report,
                "greedy read",
                http,
                "GET",
                f"{gateways[i % 2]}/agent/credits",
                headers=headers,
            )
            for i, headers in enumerate(signed)
        )
    )
    report.greedy_seconds = time.perf_counter() - started
    report.greedy_admitted = sum(1 for a in answers if a.status_code != 429)
    report.greedy_limited = sum(1 for a in answers if a.status_code == 429)


async def run_mix(
    gateways: Sequence[str],
    node: AnvilNode,
    *,
    wallets: int,
    reads: int,
    greedy: int,
    concurrency: int = 32,
) -> MixReport:
    """The timed part. ``gateways``: two base URLs on one Redis and ``node``'s chain."""
    report = MixReport()
    accounts: list[LocalAccount] = [Account.create() for _ in range(wallets)]
    txs = await asyncio.to_thread(prepare_payments, node, accounts)
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(timeout=120, limits=limits) as http:
        started = time.perf_counter()
        await asyncio.gather(
            _greedy(report, http, gateways, greedy),
            *(
                _agent(report, http, gateways, account, txs[account.address], reads, i)
                for i, account in enumerate(accounts)
            ),
        )
        report.seconds = time.perf_counter() - started
    report.payments = {tx: wallet for wallet, tx in txs.items()}
    return report


async def check_books(report: MixReport, redis_url: str, prefix: str, chain_id: int) -> None:
    """Append to ``report.books`` every violation found in Redis after the run."""
    store = await connect_store(redis_url, prefix)
    try:
        ledger = Ledger(store)
        for tx, wallet in report.payments.items():
            entries = await ledger.entries(wallet)
            credits = [e for e in entries if e.kind == EntryKind.PAYMENT.value]
            if len(credits) != 1 or credits[0].amount_micro != PRICE:
                report.books.append(f"{wallet}: payment entries {credits}")
            if await ledger.claim_state(chain_id, tx, wallet) != "used":
                report.books.append(f"{tx}: claim not used")
            consistency = await ledger.check_consistency(wallet)
            if not consistency.ok:
                report.books.append(f"{wallet}: {consistency}")
    finally:
        await store.close()
    # GCRA: a burst of the limit, then one more every window / limit seconds.
    allowed = RATE_LIMIT + int(report.greedy_seconds / (RATE_WINDOW / RATE_LIMIT)) + 1
    if report.greedy_admitted > allowed:
        report.books.append(f"greedy wallet admitted {report.greedy_admitted} > {allowed}")


def gateway_config(folder: Path, *, prefix: str, sim_url: str, api_key: str = SIM_KEY) -> Path:
    return write_config(
        folder / "gateway.toml",
        LOCAL_CONFIG,
        {
            "gateway.redis_key_prefix": prefix,
            "upstream.api_url": sim_url,
            "upstream.api_key": api_key,
            "rate_limit.requests": RATE_LIMIT,
            "rate_limit.window_seconds": int(RATE_WINDOW),
        },
    )


@contextlib.contextmanager
def two_gateways(config: Path, env: dict[str, str], logs: Path) -> Iterator[list[str]]:
    with (
        GatewayProcess(config, env, logs / "gateway-a.log") as a,
        GatewayProcess(config, env, logs / "gateway-b.log") as b,
    ):
        yield [a.url, b.url]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--wallets", type=int, default=40)
    parser.add_argument("--reads", type=int, default=12)
    parser.add_argument("--greedy", type=int, default=90)
    args = parser.parse_args()
    if args.reads > RATE_LIMIT - 4:
        parser.error(f"--reads must leave room in the rate limit ({RATE_LIMIT - 4} at most)")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        simulator = CreateOSSimulator(SimulatorConfig(api_keys=(SIM_KEY,)))
        with (
            EmbeddedRedis(folder / "redis") as redis,
            AnvilNode.start(42161, log_dir=folder) as node,
            ServerThread(simulator.app) as sim,
        ):
            node.install_test_tokens()
            prefix = "loadmix:"
            env = {"REDIS_URL": redis.url, "GATEWAY_RPC_ARBITRUM": node.url}
            with two_gateways(gateway_config(folder, prefix=prefix, sim_url=sim.url), env,
                              folder) as gateways:  # fmt: skip
                report = asyncio.run(
                    run_mix(
                        gateways, node, wallets=args.wallets, reads=args.reads, greedy=args.greedy
                    )
                )
            asyncio.run(check_books(report, redis.url, prefix, 42161))
    print(f"machine: {os.cpu_count()} cores, {platform.machine()}, Python "
          f"{platform.python_version()}; {args.wallets} wallets x ({args.reads} reads + quote + "
          f"paid deploy + replay), greedy burst of {args.greedy}\n")  # fmt: skip
    print(report.table())
    if report.books or report.server_errors:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
