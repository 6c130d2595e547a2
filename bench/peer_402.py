"""Our 402 quote beside the peers' 402 challenge paths, on the same server settings and load.

    .venv/bin/python -m bench.peer_402 [--requests 3000] [--concurrency 64] [--rounds 3]

Each server is one uvicorn worker (uvloop, httptools, no access log) in its own process:

- bare Starlette JSON (``bench.apps:bare_app``): the floor of any route;
- the x402 Python SDK's ``PaymentMiddlewareASGI`` (``bench.peer_apps:x402_app``);
- pympp's ``pay`` decorator with its EVM charge method (``bench.peer_apps:mpp_app``);
- our quote: ``POST /agent/deploy`` with a valid body and no credits on ``python -m gateway
  serve`` in front of the CreateOS simulator (``bench.deploy_stack``), every request signed
  with its own nonce (signed before timing), as in ``bench.quote_path``, twice: every request
  for a name never quoted before (each one a CreateOS name check), and as many names as
  connections quoted again and again (the peers' load is one fixed request; a name quoted
  within ``upstream.quote_name_seconds`` reuses CreateOS's answer).

The peers' 402 does less than ours: no signature, no Redis, no body validation, no name check.
Rounds run the five in turn (interleaved), ``--requests`` each on ``--concurrency`` keep-alive
connections from ``bench.loadgen``; prints the median of the rounds and each one's ratio to
the x402 SDK, and the server process's own CPU per request (user + system time from
``/proc/<pid>/stat`` over the round, Linux): on a shared 2-core machine the request rate moves
with everything else running, the CPU a request costs its server much less. Needs the dev
extra (``x402``, ``pympp``, ``fastapi``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys

from bench.auth_throughput import uvicorn_process
from bench.deploy_stack import DeployStack, machine_summary
from bench.loadgen import LoadResult, build_request, median, run_load
from bench.quote_path import quote_body, quote_requests

BARE = "bare Starlette JSON"
X402 = "x402 SDK PaymentMiddlewareASGI 402"
MPP = "pympp pay() 402"
OURS = "ours: POST /agent/deploy 402 quote, a fresh name each"
OURS_AGAIN = "ours: the same, one name per connection quoted again and again"


def peer_requests(count: int) -> list[bytes]:
    body = quote_body("peer-bench")
    headers = {"Content-Type": "application/json"}
    return [build_request("POST", "/agent/deploy", headers, body) for _ in range(count)]


def run(args: argparse.Namespace) -> None:
    names = (BARE, X402, MPP, OURS, OURS_AGAIN)
    results: dict[str, list[LoadResult]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    with (
        DeployStack.start() as stack,
        uvicorn_process("bench.apps:bare_app", {}) as (bare_port, bare_pid),
        uvicorn_process("bench.peer_apps:x402_app", {}) as (x402_port, x402_pid),
        uvicorn_process("bench.peer_apps:mpp_app", {}) as (mpp_port, mpp_pid),
    ):
        ours = (int(stack.gateway_url.rsplit(":", 1)[1]), stack.gateway_pid)
        loads = {
            BARE: (bare_port, bare_pid, lambda n: [build_request("GET", "/agent/ping")] * n),
            X402: (x402_port, x402_pid, peer_requests),
            MPP: (mpp_port, mpp_pid, peer_requests),
            OURS: (*ours, lambda n: quote_requests(n, 4 * args.concurrency)),
            OURS_AGAIN: (
                *ours,
                lambda n: quote_requests(n, 4 * args.concurrency, args.concurrency),
            ),
        }
        for port, _pid, make in loads.values():  # warm-up: connections, pools, scripts
            asyncio.run(run_load("127.0.0.1", port, make(200), args.concurrency))
        for round_no in range(args.rounds):
            line = []
            for name, (port, pid, make) in loads.items():
                requests = make(args.requests)
                before = process_cpu_seconds(pid)
                result = asyncio.run(run_load("127.0.0.1", port, requests, args.concurrency))
                cpu[name].append((process_cpu_seconds(pid) - before) / len(requests))
                results[name].append(result)
                line.append(f"{result.rps:,.0f}")
            print(f"round {round_no + 1}/{args.rounds} (req/s): "
                  + " / ".join(line), file=sys.stderr)  # fmt: skip

    print(f"\nmachine: {machine_summary()}; {args.requests} requests x {args.rounds} rounds, "
          f"{args.concurrency} connections, one uvicorn worker each")  # fmt: skip
    print("\n| server | req/s (median) | p50 ms | p99 ms | statuses | vs x402 | server CPU "
          "per request, µs | x402's CPU / this |")  # fmt: skip
    print("|---|---:|---:|---:|---|---:|---:|---:|")
    x402_rps = median([r.rps for r in results[X402]])
    x402_cpu = median(cpu[X402])
    for name, runs in results.items():
        rps = median([r.rps for r in runs])
        p50 = median([r.percentile(0.50) for r in runs]) * 1000
        p99 = median([r.percentile(0.99) for r in runs]) * 1000
        statuses: dict[int, int] = {}
        for r in runs:
            for status, count in r.statuses.items():
                statuses[status] = statuses.get(status, 0) + count
        spent = median(cpu[name])
        print(f"| {name} | {rps:,.0f} | {p50:.2f} | {p99:.2f} | "
              f"{json.dumps(statuses)} | {rps / x402_rps:.2f} | {spent * 1e6:,.0f} | "
              f"{x402_cpu / spent:.2f} |")  # fmt: skip


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU seconds a process has used so far (Linux ``/proc``)."""
    with open(f"/proc/{pid}/stat") as stat:
        fields = stat.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    run(parser.parse_args())


if __name__ == "__main__":
    main()
