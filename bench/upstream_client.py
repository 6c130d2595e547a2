"""Client CPU of one CreateOS name check: our client against a bare asyncio stream.

    .venv/bin/python -m bench.upstream_client [--calls 2000] [--rounds 2]

One simulator process (``bench.deploy_stack``); in this process, ``--calls`` name checks at 1, 8
and 64 at a time, through ``CreateOSClient`` (its transport, retries, metrics, envelope and
JSON) and through a hand-written exchange on kept-alive asyncio streams (the floor: one write,
one read, nothing else). Prints this process's CPU per call (``time.process_time``) and the
calls per second, median of ``--rounds``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from collections.abc import Awaitable, Callable

import uvloop

from bench.deploy_stack import SIM_KEY, DeployStack, machine_summary
from bench.loadgen import median
from gateway.upstream.client import CreateOSClient

PATH = "/v1/projects/available-unique-name"


async def bare_checks(url: str, concurrency: int) -> Callable[[str], Awaitable[bool]]:
    host, port = url.rsplit("/", 1)[1].split(":")
    idle = [await asyncio.open_connection(host, int(port)) for _ in range(concurrency)]

    async def check(name: str) -> bool:
        reader, writer = idle.pop()
        body = json.dumps({"uniqueName": name}).encode()
        writer.write(
            f"POST {PATH} HTTP/1.1\r\nHost: {host}:{port}\r\nX-Api-Key: {SIM_KEY}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode()
            + body
        )
        head = await reader.readuntil(b"\r\n\r\n")
        length = next(
            int(line.split(b":")[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        answer = json.loads(await reader.readexactly(length))
        idle.append((reader, writer))
        return bool(answer["data"]["isAvailable"])

    return check


async def measure(
    check: Callable[[str], Awaitable[bool]], calls: int, concurrency: int
) -> tuple[float, float]:
    gate = asyncio.Semaphore(concurrency)

    async def one(name: str) -> bool:
        async with gate:
            return await check(name)

    names = [f"bench-{uuid.uuid4().hex[:12]}" for _ in range(calls)]
    cpu, wall = time.process_time(), time.perf_counter()
    results = await asyncio.gather(*(one(n) for n in names))
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    assert all(results)
    return cpu / calls * 1e6, calls / wall


async def run(url: str, args: argparse.Namespace) -> None:
    client = CreateOSClient(url, SIM_KEY)
    rows: list[tuple[str, int, float, float]] = []
    try:
        for concurrency in (1, 8, 64):
            bare = await bare_checks(url, concurrency)
            sides: dict[str, Callable[[str], Awaitable[bool]]] = {
                "CreateOSClient": client.is_name_available,
                "bare asyncio stream": bare,
            }
            for check in sides.values():  # warm-up: connections, code paths
                await measure(check, 100, concurrency)
            figures: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
            for _ in range(args.rounds):
                for name, check in sides.items():
                    figures[name].append(await measure(check, args.calls, concurrency))
            for name, runs in figures.items():
                rows.append(
                    (name, concurrency, median([r[0] for r in runs]), median([r[1] for r in runs]))
                )
    finally:
        await client.aclose()
    print(f"\nmachine: {machine_summary()}; {args.calls} name checks x {args.rounds} rounds")
    print("\n| client | at once | client CPU per call, µs | calls/s |")
    print("|---|---:|---:|---:|")
    for name, concurrency, cpu, rate in rows:
        print(f"| {name} | {concurrency} | {cpu:,.0f} | {rate:,.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    with DeployStack.start() as stack:
        uvloop.run(run(stack.simulator_url, args))
    sys.stdout.flush()


if __name__ == "__main__":
    main()
