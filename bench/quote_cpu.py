"""The gateway's own CPU per 402 quote, and the name check's share of it.

    .venv/bin/python -m bench.quote_cpu [--quotes 2000] [--rounds 3]

The gateway app runs in this process (``create_app`` with its lifespan, uvloop, the real Redis
and CreateOS simulator of ``bench.deploy_stack``; no HTTP server in front, so uvicorn's share is
left out) and takes ``--quotes`` signed quote requests of fresh names, 64 at a time, straight as
ASGI calls. Each round is timed with ``time.process_time`` twice, interleaved: as it is, and
with ``CreateOSClient.is_name_available`` answering at once without a request (what the quote
would cost with no name check). The difference is the name check's gateway CPU per quote.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import uvloop

from bench.deploy_stack import SIM_KEY, DeployStack, bench_config, machine_summary
from bench.loadgen import median
from bench.quote_path import quote_requests
from gateway.app import create_app
from gateway.config import load_settings
from gateway.upstream.client import CreateOSClient

Scope = dict[str, Any]


def as_asgi(raw: bytes) -> tuple[Scope, bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    method, path, _ = lines[0].split(b" ")
    headers = [
        (name.lower(), value) for name, value in (line.split(b": ", 1) for line in lines[1:])
    ]
    scope: Scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method.decode(),
        "path": path.decode(),
        "raw_path": path,
        "query_string": b"",
        "headers": headers,
        "client": ("127.0.0.1", 40000),
        "server": ("127.0.0.1", 8000),
        "scheme": "http",
        "root_path": "",
    }
    return scope, body


async def call(app: Callable[..., Awaitable[None]], scope: Scope, body: bytes) -> int:
    delivered = False
    status = 0

    async def receive() -> dict[str, Any]:
        nonlocal delivered
        if not delivered:
            delivered = True
            return {"type": "http.request", "body": body, "more_body": False}
        await asyncio.Event().wait()  # the client never disconnects
        raise AssertionError("unreachable")

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = int(message["status"])

    await app(scope, receive, send)
    return status


@contextmanager
def without_name_check(enabled: bool) -> Iterator[None]:
    original = CreateOSClient.is_name_available
    if enabled:

        async def free(self: CreateOSClient, unique_name: str) -> bool:
            return True

        CreateOSClient.is_name_available = free  # type: ignore[method-assign]
    try:
        yield
    finally:
        CreateOSClient.is_name_available = original  # type: ignore[method-assign]


async def cpu_per_quote(app: Any, quotes: int, skip_name_check: bool) -> float:
    requests = [as_asgi(raw) for raw in quote_requests(quotes, 256)]
    gate = asyncio.Semaphore(64)

    async def one(scope: Scope, body: bytes) -> int:
        async with gate:
            return await call(app, scope, body)

    with without_name_check(skip_name_check):
        started = time.process_time()
        statuses = await asyncio.gather(*(one(s, b) for s, b in requests))
        spent = time.process_time() - started
    if set(statuses) != {402}:
        raise RuntimeError(f"expected only 402 quotes, got {sorted(set(statuses))}")
    return spent / quotes * 1e6


async def run(stack: DeployStack, args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        env = {
            **os.environ,
            "REDIS_URL": stack.redis_url,
            "CREATEOS_API_URL": stack.simulator_url,
            "CREATEOS_API_KEY": SIM_KEY,
        }
        settings = load_settings(bench_config(Path(tmp)), env)
    app = create_app(settings)
    figures: dict[bool, list[float]] = {False: [], True: []}
    async with app.router.lifespan_context(app):
        await cpu_per_quote(app, 200, False)  # warm-up: connections, scripts, code paths
        for _ in range(args.rounds):
            for skip in (False, True):
                figures[skip].append(await cpu_per_quote(app, args.quotes, skip))
    with_check, without = median(figures[False]), median(figures[True])
    print(f"\nmachine: {machine_summary()}; {args.quotes} quotes of fresh names x {args.rounds} "
          "rounds, 64 at a time, in process")  # fmt: skip
    print("\n| quote | gateway CPU per quote, µs |")
    print("|---|---:|")
    print(f"| as it is | {with_check:,.0f} |")
    print(f"| name check answered at once | {without:,.0f} |")
    print(f"| the name check's share | {with_check - without:,.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quotes", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with DeployStack.start() as stack:
        uvloop.run(run(stack, args))


if __name__ == "__main__":
    main()
