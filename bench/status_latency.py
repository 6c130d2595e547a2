"""The gateway's added latency on the status route vs calling CreateOS (the simulator) directly.

    .venv/bin/python -m bench.status_latency [--requests 300]

One real gateway process and one simulator process on loopback (``bench.deploy_stack``). A
wallet deploys one project and waits for it to be ``ready``; then, interleaved one by one on
keep-alive connections, ``--requests`` calls of

- direct:  ``GET /v1/projects/{pid}/deployments/{did}`` on the simulator (the upstream read), and
- gateway: ``GET /agent/deploy/{pid}/{did}/status`` (signature check, rate limit + nonce in
  Redis, ownership record, that same upstream read, mapping), headers signed before timing.

Prints median and p90 of each, the difference (the gateway's cost) and the ratio.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time

import httpx
from eth_account import Account
from eth_account.signers.local import LocalAccount

from bench.deploy_stack import SIM_KEY, DeployStack, machine_summary
from gateway.client.signing import auth_headers

WARM_UP = 20


def p90(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=10)[-1]


async def ready_project(
    stack: DeployStack, client: httpx.AsyncClient, account: LocalAccount
) -> tuple[str, str]:
    await stack.credit(account.address, 10_000_000)
    body = {
        "uniqueName": "latency-bench",
        "displayName": "Latency Bench",
        "upload": {"type": "files", "files": [{"path": "index.js", "content": "MQ=="}]},
    }
    response = await client.post(
        stack.gateway_url + "/agent/deploy", json=body, headers=auth_headers(account)
    )
    response.raise_for_status()
    project_id, deployment_id = response.json()["projectId"], response.json()["deploymentId"]
    url = f"{stack.gateway_url}/agent/deploy/{project_id}/{deployment_id}/status"
    for _ in range(100):
        status = (await client.get(url, headers=auth_headers(account))).json()
        if status["status"] == "ready":
            return project_id, deployment_id
        await asyncio.sleep(0.2)
    raise SystemExit(f"deployment never became ready: {status}")


async def run(requests: int) -> None:
    account: LocalAccount = Account.create()
    with DeployStack.start() as stack:
        async with (
            httpx.AsyncClient(timeout=30.0) as gateway,
            httpx.AsyncClient(
                base_url=stack.simulator_url + "/v1", headers={"X-Api-Key": SIM_KEY}, timeout=30.0
            ) as upstream,
        ):
            project_id, deployment_id = await ready_project(stack, gateway, account)
            status_url = f"{stack.gateway_url}/agent/deploy/{project_id}/{deployment_id}/status"
            direct_path = f"/projects/{project_id}/deployments/{deployment_id}"
            signed = [auth_headers(account) for _ in range(requests + WARM_UP)]
            direct: list[float] = []
            through: list[float] = []
            for index, headers in enumerate(signed):
                started = time.perf_counter()
                (await upstream.get(direct_path)).raise_for_status()
                middle = time.perf_counter()
                answer = await gateway.get(status_url, headers=headers)
                ended = time.perf_counter()
                if answer.status_code != 200 or answer.json()["status"] != "ready":
                    raise SystemExit(f"status failed: {answer.status_code} {answer.text}")
                if index >= WARM_UP:
                    direct.append((middle - started) * 1000)
                    through.append((ended - middle) * 1000)

    print(f"status_latency: {machine_summary()}; {requests} sequential requests each")
    header = f"{'path':<28} | {'median ms':>9} | {'p90 ms':>7}"
    print(header)
    print("-" * len(header))
    rows = [("simulator direct", direct), ("gateway status route", through)]
    for name, samples in rows:
        print(f"{name:<28} | {statistics.median(samples):>9.2f} | {p90(samples):>7.2f}")
    added_median = statistics.median(through) - statistics.median(direct)
    added_p90 = p90(through) - p90(direct)
    print(f"{'added by the gateway':<28} | {added_median:>9.2f} | {added_p90:>7.2f}")
    ratio_median = statistics.median(through) / statistics.median(direct)
    ratio_p90 = p90(through) / p90(direct)
    print(f"{'ratio gateway / direct':<28} | {ratio_median:>8.2f}x | {ratio_p90:>6.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    args = parser.parse_args()
    asyncio.run(run(args.requests))


if __name__ == "__main__":
    main()
