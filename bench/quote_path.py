"""The 402 quote path: ``POST /agent/deploy`` with a valid body and no credits, at 64 clients.

    .venv/bin/python -m bench.quote_path [--requests 3000] [--concurrency 64] [--rounds 3]

One real gateway process (``python -m gateway serve``: one uvicorn worker, uvloop, httptools)
in front of a CreateOS simulator process, both from ``bench.deploy_stack``. Each client is an
agent with a wallet of its own; every request has its own nonce and project name (signed before
timing: the signature's cost is the agent's) and carries a small valid files upload, so each one
pays for what a real quote costs: body limit, rate limit + nonce script in Redis, signature
recovery, validation of every field and the upload, the name check at CreateOS over HTTP, the
wallet's balance and active projects, and the 402 body. Prints the median of ``--rounds``
rounds; anything but a 402 is counted and shown.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import sys
import uuid

from eth_account import Account

from bench.deploy_stack import DeployStack, machine_summary
from bench.loadgen import LoadResult, build_request, median, run_load
from gateway.client.signing import auth_headers


def quote_body(name: str) -> bytes:
    index = base64.b64encode(b"console.log('hello from the benchmark')\n").decode()
    return json.dumps(
        {
            "uniqueName": name,
            "displayName": "Quote Bench",
            "description": "A deploy that is quoted and never paid",
            "months": 2,
            "upload": {"type": "files", "files": [{"path": "index.js", "content": index}]},
        }
    ).encode()


def quote_requests(count: int, wallets: int, names: int = 0) -> list[bytes]:
    """``count`` signed quote requests from ``wallets`` agents.

    ``names`` 0: each request for a name of its own, never asked before (every quote costs a
    CreateOS name check). ``names`` N: the agents quote N names again and again (N must divide
    ``wallets``; agent k always quotes name k mod N, as an agent polling its quote or the
    peers' one fixed request does). One wallet's concurrent deploys of one name would meet its
    deploy lock instead of the quote: pass four times the connections as ``wallets``, so the
    same wallet comes round again only after ``wallets`` other requests."""
    if names and wallets % names:
        raise ValueError("names must divide wallets")
    accounts = [Account.create() for _ in range(wallets)]
    tag = uuid.uuid4().hex[:8]
    requests = []
    for i in range(count):
        headers = auth_headers(accounts[i % wallets], nonce=uuid.uuid4().hex)
        headers["Content-Type"] = "application/json"
        name = f"quote-{uuid.uuid4().hex[:12]}" if not names else f"quote-{tag}-{i % names}"
        requests.append(build_request("POST", "/agent/deploy", headers, quote_body(name)))
    return requests


def run(args: argparse.Namespace) -> None:
    runs: list[LoadResult] = []
    with DeployStack.start() as stack:
        port = int(stack.gateway_url.rsplit(":", 1)[1])
        # Warm-up: connections, the Lua scripts, the upstream client's pool.
        warm_up = quote_requests(200, 4 * args.concurrency)
        asyncio.run(run_load("127.0.0.1", port, warm_up, args.concurrency))
        for round_no in range(args.rounds):
            requests = quote_requests(args.requests, 4 * args.concurrency, args.names)
            result = asyncio.run(run_load("127.0.0.1", port, requests, args.concurrency))
            runs.append(result)
            print(f"round {round_no + 1}/{args.rounds}: {result.rps:,.0f} req/s, "
                  f"statuses {dict(result.statuses)}", file=sys.stderr)  # fmt: skip

    print(f"\nmachine: {machine_summary()}; {args.requests} requests x {args.rounds} rounds, "
          f"{args.concurrency} connections; gateway, simulator, Redis and client share "
          "the cores")  # fmt: skip
    print("\n| path | req/s (median) | p50 ms | p99 ms | non-402 |")
    print("|---|---:|---:|---:|---:|")
    rps = median([r.rps for r in runs])
    p50 = median([r.percentile(0.50) for r in runs]) * 1000
    p99 = median([r.percentile(0.99) for r in runs]) * 1000
    other = sum(sum(c for s, c in r.statuses.items() if s != 402) for r in runs)
    shape = "a fresh name each" if not args.names else f"{args.names} names, quoted again"
    print(f"| POST /agent/deploy -> 402 quote ({shape}) | {rps:,.0f} | {p50:.2f} | {p99:.2f} "
          f"| {other} |")  # fmt: skip
    spread = [f"{r.rps:,.0f}" for r in runs]
    print(f"\nrounds (req/s): {', '.join(spread)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument(
        "--names",
        type=int,
        default=0,
        help="0: a fresh name per request; N: N names quoted again and again (divides 4x conns)",
    )
    run(parser.parse_args())


if __name__ == "__main__":
    main()
