"""Authenticated requests per second vs a bare Starlette endpoint, one uvicorn worker each.

    .venv/bin/python -m bench.auth_throughput [--requests 6000] [--concurrency 32] [--rounds 3]

Three servers, each in its own process (one uvicorn worker, httptools, uvloop): the bare route,
the floor (the bare route plus one signature recovery and one Redis round trip,
``bench.apps.floor_app``) and the gateway's authenticated route; the client is this process.
Signed requests carry a fresh signature and nonce each (signed before timing). Rounds run the
three in turn; prints the median of ``--rounds`` rounds, each route's p99 / p50 and the ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import platform
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
from eth_account import Account

from bench.loadgen import LoadResult, build_request, median, run_load
from gateway.client.signing import auth_headers
from gateway.store.embedded import EmbeddedRedis

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextlib.contextmanager
def uvicorn_server(factory: str, env: dict[str, str]) -> Iterator[int]:
    with uvicorn_process(factory, env) as (port, _pid):
        yield port


@contextlib.contextmanager
def uvicorn_process(factory: str, env: dict[str, str]) -> Iterator[tuple[int, int]]:
    """One uvicorn worker serving ``factory``: its port and its process id."""
    port = _free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", factory, "--port", str(port),
         "--workers", "1", "--no-access-log", "--log-level", "warning",
         "--loop", "uvloop", "--http", "httptools"],
        cwd=ROOT, env={**os.environ, **env},
    )  # fmt: skip
    try:
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                httpx.get(f"http://127.0.0.1:{port}/health", timeout=0.5)
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        yield port, process.pid
    finally:
        process.terminate()
        process.wait(10)


def signed_requests(count: int) -> list[bytes]:
    account = Account.create()
    return [
        build_request("GET", "/agent/credits/ping", auth_headers(account, nonce=uuid.uuid4().hex))
        for _ in range(count)
    ]


def bare_requests(count: int) -> list[bytes]:
    return [build_request("GET", "/agent/ping") for _ in range(count)]


def run(args: argparse.Namespace) -> None:
    redis_url = os.environ.get("REDIS_URL")
    embedded = None
    if not redis_url:
        embedded = EmbeddedRedis(
            Path(os.environ.get("TMPDIR", "/tmp")) / f"bench-redis-{os.getpid()}"
        )
        embedded.start()
        redis_url = embedded.url
    env = {"REDIS_URL": redis_url}
    names = ("bare Starlette JSON", "floor: bare + recovery + 1 Redis", "gateway, authenticated")
    results: dict[str, list[LoadResult]] = {name: [] for name in names}
    try:
        with (
            uvicorn_server("bench.apps:bare_app", env) as bare_port,
            uvicorn_server("bench.apps:floor_app", env) as floor_port,
            uvicorn_server("bench.apps:gateway_app", env) as gw_port,
        ):
            for round_no in range(args.rounds):
                # Sign before timing: the signature's cost belongs to the agent, not the gateway.
                loads = {
                    names[0]: (bare_port, bare_requests(args.requests)),
                    names[1]: (floor_port, signed_requests(args.requests)),
                    names[2]: (gw_port, signed_requests(args.requests)),
                }
                line = []
                for name, (port, requests) in loads.items():
                    result = asyncio.run(run_load("127.0.0.1", port, requests, args.concurrency))
                    results[name].append(result)
                    line.append(f"{result.rps:,.0f}")
                print(f"round {round_no + 1}/{args.rounds}: bare / floor / gateway req/s "
                      + " / ".join(line), file=sys.stderr)  # fmt: skip
    finally:
        if embedded:
            embedded.stop()

    print(f"\nmachine: {os.cpu_count()} cores, {platform.processor() or platform.machine()}, "
          f"Python {platform.python_version()}; {args.requests} requests x {args.rounds} rounds, "
          f"{args.concurrency} connections")  # fmt: skip
    print("\n| route | req/s (median) | p50 ms | p99 ms | p99 / p50 | non-2xx |")
    print("|---|---:|---:|---:|---:|---:|")
    medians = {}
    for name, runs in results.items():
        rps = median([r.rps for r in runs])
        medians[name] = rps
        p50 = median([r.percentile(0.50) for r in runs]) * 1000
        p99 = median([r.percentile(0.99) for r in runs]) * 1000
        bad = sum(sum(c for s, c in r.statuses.items() if not 200 <= s < 300) for r in runs)
        print(f"| {name} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | {p99 / p50:.1f}x | {bad} |")
    gateway = medians[names[2]]
    print(
        f"\nratio authenticated / bare: {gateway / medians[names[0]]:.2f}; "
        f"authenticated / floor: {gateway / medians[names[1]]:.2f} (target >= 0.90)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=3)
    run(parser.parse_args())


if __name__ == "__main__":
    main()
