"""How many requests one Redis primary serves, against the number of gateway processes.

    .venv/bin/python -m bench.redis_ceiling [--processes 1,2,3] [--requests 6000] [--rounds 3]

Each round starts the given number of ``python -m gateway serve`` processes on one embedded
``redis-server`` and drives authenticated ``GET /agent/credits`` (a fresh signature each, so
every request runs the nonce-and-rate-limit script and reads the balance, the projects and the
ledger) spread evenly over them, 32 connections per process. Redis's own CPU time is read from
``INFO cpu`` before and after: on a 2-core machine the gateway processes run out of CPU long
before Redis does, so the ceiling is the extrapolation ``1 / (Redis CPU seconds per request)``:
the request rate at which Redis's single thread would be busy all the time. The counts of
commands per request come from ``INFO stats``.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import uuid
from contextlib import ExitStack
from pathlib import Path

import redis
from eth_account import Account

from bench.deploy_stack import machine_summary
from bench.loadgen import LoadResult, build_request, run_load
from devstack.gateway_process import GatewayProcess, write_config
from gateway.client.signing import auth_headers
from gateway.config import PROJECT_ROOT
from gateway.store.embedded import EmbeddedRedis

CONNECTIONS_PER_PROCESS = 32


def redis_cpu_and_commands(client: redis.Redis) -> tuple[float, int]:
    cpu = client.info("cpu")
    stats = client.info("stats")
    return (
        float(cpu["used_cpu_user"]) + float(cpu["used_cpu_sys"]),
        int(stats["total_commands_processed"]),
    )


def requests_for(count: int) -> list[bytes]:
    wallets = [Account.create() for _ in range(16)]
    return [
        build_request(
            "GET",
            "/agent/credits",
            auth_headers(wallets[i % len(wallets)], nonce=uuid.uuid4().hex),
        )
        for i in range(count)
    ]


async def drive(ports: list[int], requests: list[bytes]) -> tuple[float, list[LoadResult]]:
    shares = [requests[i :: len(ports)] for i in range(len(ports))]
    loop = asyncio.get_running_loop()
    started = loop.time()
    results = await asyncio.gather(
        *(
            run_load("127.0.0.1", port, share, CONNECTIONS_PER_PROCESS)
            for port, share in zip(ports, shares, strict=True)
        )
    )
    return loop.time() - started, list(results)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--processes", default="1,2,3")
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    counts = [int(n) for n in args.processes.split(",")]
    rows: dict[int, list[tuple[float, float, float]]] = {n: [] for n in counts}
    with tempfile.TemporaryDirectory(prefix="bench-ceiling-") as tmp_name:
        tmp = Path(tmp_name)
        with EmbeddedRedis(tmp / "redis") as server:
            client = redis.Redis.from_url(server.url)
            config = write_config(
                tmp / "bench.toml",
                PROJECT_ROOT / "config" / "local.toml",
                {
                    "gateway.redis_key_prefix": "ceiling:",
                    "rate_limit.requests": 100_000_000,
                    "reconcile.enabled": False,
                },
            )
            env = {"REDIS_URL": server.url}
            with ExitStack() as stack:
                gateways = [
                    stack.enter_context(
                        GatewayProcess(config, env, tmp / f"gateway-{i}.log", log_level="warning")
                    )
                    for i in range(max(counts))
                ]
                ports = [g.port for g in gateways]
                asyncio.run(drive(ports, requests_for(500)))  # warm-up
                for _ in range(args.rounds):
                    for n in counts:  # interleaved, round by round
                        requests = requests_for(args.requests)
                        cpu0, commands0 = redis_cpu_and_commands(client)
                        seconds, results = asyncio.run(drive(ports[:n], requests))
                        cpu1, commands1 = redis_cpu_and_commands(client)
                        bad = sum(
                            count for r in results for s, count in r.statuses.items() if s != 200
                        )
                        if bad:
                            raise RuntimeError(f"{bad} requests did not get a 200")
                        total = len(requests)
                        rows[n].append(
                            (
                                total / seconds,
                                (cpu1 - cpu0) / total,
                                (commands1 - commands0) / total,
                            )
                        )
            client.close()
    print(
        f"\nauthenticated GET /agent/credits, {args.requests} per round, {args.rounds} rounds "
        f"interleaved, {CONNECTIONS_PER_PROCESS} connections per process "
        f"({machine_summary()})\n"
    )
    print("| gateway processes | req/s (median) | Redis CPU µs per request | Redis commands per "
          "request | ceiling: req/s at a busy Redis core |")  # fmt: skip
    print("|---:|---:|---:|---:|---:|")
    for n in counts:
        rps = statistics.median(r[0] for r in rows[n])
        cpu = statistics.median(r[1] for r in rows[n])
        commands = statistics.median(r[2] for r in rows[n])
        print(f"| {n} | {rps:,.0f} | {cpu * 1e6:.1f} | {commands:.1f} | {1 / cpu:,.0f} |")


if __name__ == "__main__":
    main()
