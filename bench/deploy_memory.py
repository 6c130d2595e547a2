"""Peak RSS of a real gateway process while it accepts and forwards a deploy.

    .venv/bin/python -m bench.deploy_memory [--sizes 5,20,45] [--files 1]

For each size (MB of decoded upload, in ``--files`` equal files of random bytes) a fresh
wallet with credits deploys once. Before each deploy the gateway's peak RSS counter is reset
(``/proc/<pid>/clear_refs`` = 5) and its current RSS read; after the 200, ``VmHWM`` is the peak
during that deploy. Growth = peak - RSS before; the ratio is growth / request body size (the
JSON body, base64 included). Target: < 4x. A 1 MB deploy first warms every code path.

Linux only (reads ``/proc``). Loopback only; one request per size.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import time
from pathlib import Path

import httpx
from eth_account import Account
from eth_account.signers.local import LocalAccount

from bench.deploy_stack import DeployStack, machine_summary
from gateway.client.signing import auth_headers

MB = 1024 * 1024


def proc_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise KeyError(field)


def reset_peak(pid: int) -> bool:
    """Reset VmHWM to the current RSS (Linux >= 4.0); False if not permitted."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def deploy_body(name: str, size: int, files: int) -> bytes:
    per_file = size // files
    entries = []
    for index in range(files):
        content = base64_of_random(per_file)
        entries.append(f'{{"path":"assets/blob{index}.bin","content":"{content}"}}')
    upload = '{"type":"files","files":[' + ",".join(entries) + "]}"
    head = json.dumps({"uniqueName": name, "displayName": "Memory Bench"})[:-1]
    return (head + ',"upload":' + upload + "}").encode()


def base64_of_random(size: int) -> str:
    return base64.b64encode(os.urandom(size)).decode()


async def deploy_once(
    stack: DeployStack, client: httpx.AsyncClient, name: str, size: int, files: int
) -> tuple[int, int, int, float]:
    """``(body bytes, RSS before KiB, peak KiB, seconds)`` of one deploy."""
    account: LocalAccount = Account.create()
    await stack.credit(account.address, 10_000_000)
    body = deploy_body(name, size, files)
    headers = {**auth_headers(account), "Content-Type": "application/json"}
    before = proc_kib(stack.gateway_pid, "VmRSS")
    if not reset_peak(stack.gateway_pid):
        raise SystemExit("cannot reset VmHWM (/proc/<pid>/clear_refs): run on Linux >= 4.0")
    started = time.perf_counter()
    response = await client.post(stack.gateway_url + "/agent/deploy", content=body, headers=headers)
    elapsed = time.perf_counter() - started
    if response.status_code != 200:
        raise SystemExit(f"deploy of {size} bytes failed: {response.status_code} {response.text}")
    peak = proc_kib(stack.gateway_pid, "VmHWM")
    return len(body), before, peak, elapsed


async def run(sizes: list[int], files: int) -> None:
    with DeployStack.start() as stack:
        async with httpx.AsyncClient(timeout=300.0) as client:
            await deploy_once(stack, client, "warm-up-0", 1 * MB, files)
            rows = []
            for index, size_mb in enumerate(sizes):
                await asyncio.sleep(0.5)  # let the previous deploy's buffers go
                body, before, peak, seconds = await deploy_once(
                    stack, client, f"memory-bench-{index}", size_mb * MB, files
                )
                growth = (peak - before) * 1024
                rows.append((size_mb, body, before, peak, growth, growth / body, seconds))

    print(f"deploy_memory: {machine_summary()}; {files} file(s) per upload")
    header = (
        f"{'upload MB':>9} | {'body MB':>7} | {'RSS before MB':>13} | {'peak MB':>7} | "
        f"{'growth MB':>9} | {'growth/body':>11} | {'seconds':>7}"
    )
    print(header)
    print("-" * len(header))
    for size_mb, body, before, peak, growth, ratio, seconds in rows:
        print(
            f"{size_mb:>9} | {body / MB:>7.1f} | {before / 1024:>13.1f} | {peak / 1024:>7.1f} | "
            f"{growth / MB:>9.1f} | {ratio:>10.2f}x | {seconds:>7.2f}"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="5,20,45", help="decoded upload sizes in MB")
    parser.add_argument("--files", type=int, default=1, help="files per upload (<= 100)")
    args = parser.parse_args()
    asyncio.run(run([int(s) for s in args.sizes.split(",")], args.files))


if __name__ == "__main__":
    main()
