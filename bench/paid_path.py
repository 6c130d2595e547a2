"""The paid deploy under realistic network delays: from the retry with the payment to the 200.

    .venv/bin/python -m bench.paid_path [--runs 20] [--createos-ms 100] [--rpc-ms 50]
        [--pay transfer|gasless|both] [--show-redis]

``--pay gasless`` retries with an x402 ``PAYMENT-SIGNATURE`` (an EIP-3009 authorization the
gateway settles itself: the timed request then includes the settlement's RPC calls and its
receipt); ``both`` interleaves the two ways, run by run, in one sitting.

On loopback every call is nearly free, which hides what an agent feels in production. Here each
backend sits behind a ``devstack.latency_proxy.LatencyProxy`` that delays every request by a
fixed time: CreateOS (the simulator, in a thread) by ``--createos-ms``, each chain's JSON-RPC
(anvil) by ``--rpc-ms``, and Redis by ``--redis-ms`` (0 by default: the proxy then only counts
round trips). The gateway is a real ``python -m gateway serve`` process.

Each run: a fresh wallet is funded, asks for the quote (402), pays the quoted USDC with a plain
transfer straight to anvil (not timed, not through the proxy), then the timed request retries
with the payment and gets the 200. The proxies' records of that request give, per run, the
count of CreateOS, RPC (by JSON-RPC method) and Redis round trips, and a timeline of when each
call started, from which the report derives each step's share.

The floor is the chain of calls that truly depend on each other for this request:

    max(name check [CreateOS], receipt [RPC] -> block facts [RPC]) -> create [CreateOS]
    -> upload [CreateOS]

The name check and the payment's verification need nothing from each other; the create needs
both (a taken name must not cost the payment, an unverified payment must not create); the upload
needs the project id. Redis steps between them cost a round trip each on top.
"""

from __future__ import annotations

import argparse
import base64
import statistics
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import httpx
from eth_account import Account
from eth_account.signers.local import LocalAccount

from bench.deploy_stack import machine_summary
from devstack.anvil import ANVIL_ACCOUNTS, CANONICAL_TOKENS, AnvilNode
from devstack.gateway_process import GatewayProcess, write_config
from devstack.latency_proxy import Event, LatencyProxy
from devstack.server_thread import ServerThread
from devstack.simulator.server import CreateOSSimulator, SimulatorConfig
from gateway.client.gasless import gasless_offer, sign_payment
from gateway.client.signing import auth_headers
from gateway.config import PROJECT_ROOT
from gateway.store.embedded import EmbeddedRedis

SIM_KEY = "sim-test-key"
PAY_TO = "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720"  # config/local.toml
USDC = CANONICAL_TOKENS[42161]["usdc"]
SETTLER_KEY = ANVIL_ACCOUNTS[7][1]  # anvil's test key: pays the gas of gasless settlements


@dataclass
class Run:
    seconds: float
    createos: list[Event]
    rpc: list[Event]
    redis: list[Event]
    start: float


def _http_requests(events: list[Event]) -> list[Event]:
    return [e for e in events if e.request_line is not None]


def deploy_body(name: str) -> dict[str, object]:
    content = base64.b64encode(b"console.log('hello')\n").decode()
    return {
        "uniqueName": name,
        "displayName": "Bench App",
        "description": "A benchmark deploy",
        "upload": {"type": "files", "files": [{"path": "index.js", "content": content}]},
    }


def one_run(
    client: httpx.Client,
    node: AnvilNode,
    proxies: dict[str, LatencyProxy],
    index: int,
    pay: str = "transfer",
) -> Run:
    agent: LocalAccount = Account.create()
    node.set_balance(agent.address, 10**18)
    body = deploy_body(f"bench-{pay}-{index:04d}-{int(time.time()) % 10**6}")
    quote = client.post("/agent/deploy", json=body, headers=auth_headers(agent))
    if quote.status_code != 402:
        raise RuntimeError(f"expected the 402 quote, got {quote.status_code}: {quote.text}")
    amount = int(quote.json()["amount_token"])
    node.mint(USDC, agent.address, amount)
    if pay == "gasless":
        offer = gasless_offer(
            quote.headers.get("payment-required"), chain_id=node.chain_id, token_address=USDC
        )
        if offer is None:
            raise RuntimeError("the 402 offers no gasless payment (no settler key?)")
        headers = auth_headers(agent) | {"PAYMENT-SIGNATURE": sign_payment(agent, offer)}
    else:
        tx = node.transfer(USDC, agent.address, PAY_TO, amount, impersonate=True)
        headers = auth_headers(agent) | {"X-Payment-Tx": tx}
    for proxy in proxies.values():
        proxy.reset()
    start = time.perf_counter()
    paid = client.post("/agent/deploy", json=body, headers=headers)
    seconds = time.perf_counter() - start
    if paid.status_code != 200:
        raise RuntimeError(f"expected 200, got {paid.status_code}: {paid.text}")
    return Run(
        seconds=seconds,
        createos=_http_requests(proxies["createos"].snapshot()),
        rpc=_http_requests(proxies["rpc"].snapshot()),
        redis=proxies["redis"].snapshot(),
        start=start,
    )


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = max(0, min(len(ordered) - 1, round(q * (len(ordered) - 1))))
    return ordered[rank]


#: The dependent RPC round trips of a gasless settlement before the credit's own two (receipt,
#: block facts): the reads that need nothing from each other, concurrently (is the nonce used,
#: the simulation, the fees, the settler's pending nonce), then the broadcast, then its receipt.
GASLESS_SETTLE_RPC_CHAIN = 3


def report(
    runs: list[Run],
    createos_ms: float,
    rpc_ms: float,
    redis_ms: float,
    pay: str = "transfer",
    *,
    show_redis: bool = False,
) -> None:
    totals = [r.seconds * 1000 for r in runs]
    if pay == "gasless":
        # Nothing is sent before the name is known free: name check, then the settlement's
        # chain of RPC calls, the credit's receipt and block facts, create, upload.
        floor = createos_ms + (GASLESS_SETTLE_RPC_CHAIN + 2) * rpc_ms + 2 * createos_ms
        floor_text = "name check + settle (3 RPC) + receipt + block facts + create + upload"
        header = "PAYMENT-SIGNATURE (gasless)"
    else:
        floor = max(createos_ms, 2 * rpc_ms) + 2 * createos_ms
        floor_text = "max(name check, receipt + block facts) + create + upload"
        header = "X-Payment-Tx"
    median = statistics.median(totals)
    print(f"\npaid deploy, retry with {header} -> 200, {len(runs)} runs ({machine_summary()})")
    print(f"injected delay per call: CreateOS {createos_ms:g} ms, RPC {rpc_ms:g} ms, "
          f"Redis {redis_ms:g} ms")  # fmt: skip
    print()
    print("| figure | ms |")
    print("|---|---:|")
    print(f"| median | {median:.1f} |")
    print(f"| p99 | {percentile(totals, 0.99):.1f} |")
    print(f"| floor: {floor_text} | {floor:.1f} |")
    print(f"| median / floor | {median / floor:.2f} |")

    print("\nround trips per paid request (median over runs)")
    print("| kind | calls |")
    print("|---|---:|")
    print(f"| CreateOS | {statistics.median(len(r.createos) for r in runs):g} |")
    print(f"| RPC (HTTP requests) | {statistics.median(len(r.rpc) for r in runs):g} |")
    print(f"| Redis (client writes) | {statistics.median(len(r.redis) for r in runs):g} |")
    methods: Counter[str] = Counter()
    for r in runs:
        methods.update(m for e in r.rpc for m in e.methods)
    lines: Counter[str] = Counter()
    for r in runs:
        lines.update(_route(e.request_line or "") for e in r.createos)
    print("\nwhat was asked (per request, averaged over runs)")
    print("| call | per request |")
    print("|---|---:|")
    for line, count in sorted(lines.items()):
        print(f"| CreateOS {line} | {count / len(runs):.2f} |")
    for method, count in sorted(methods.items()):
        print(f"| RPC {method} | {count / len(runs):.2f} |")

    # The timeline of the median run: when each call left the gateway, from the request's start.
    typical = sorted(runs, key=lambda r: r.seconds)[len(runs) // 2]
    calls = [("CreateOS " + _route(e.request_line or ""), e.time) for e in typical.createos]
    calls += [("RPC " + ",".join(e.methods or ("?",)), e.time) for e in typical.rpc]
    if show_redis:
        calls += [("Redis " + " ".join(e.methods or ("?",)), e.time) for e in typical.redis]
    commands: Counter[str] = Counter()
    for r in runs:
        commands.update(m for e in r.redis for m in e.methods)
    for command, count in sorted(commands.items()):
        print(f"| Redis {command} | {count / len(runs):.2f} |")

    print(f"\ntimeline of the median run ({typical.seconds * 1000:.1f} ms): call, start ms")
    print("| call | starts at ms | until the next call, ms | share |")
    print("|---|---:|---:|---:|")
    ordered = sorted(calls, key=lambda c: c[1])
    ends = [at for _, at in ordered[1:]] + [typical.start + typical.seconds]
    for (name, at), end in zip(ordered, ends, strict=True):
        span = (end - at) * 1000
        share = span / (typical.seconds * 1000)
        print(f"| {name} | {(at - typical.start) * 1000:.1f} | {span:.1f} | {share:.0%} |")


_WORDS = {"available-unique-name", "files", "base64", "upload-zip", "deployments"}


def _route(request_line: str) -> str:
    """``GET /v1/projects/abc/deployments`` -> ``GET /v1/projects/{id}/deployments``."""
    method, _, path = request_line.partition(" ")
    parts = path.split("?", 1)[0].split("/")
    for i in range(1, len(parts)):
        if parts[i - 1] in ("projects", "deployments") and parts[i] not in _WORDS:
            parts[i] = "{id}"
    return f"{method} {'/'.join(parts)}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--createos-ms", type=float, default=100.0)
    parser.add_argument("--rpc-ms", type=float, default=50.0)
    parser.add_argument("--redis-ms", type=float, default=0.0)
    parser.add_argument("--pay", choices=("transfer", "gasless", "both"), default="transfer")
    parser.add_argument(
        "--show-redis",
        action="store_true",
        help="put each Redis write (its commands) in the median run's timeline",
    )
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-paid-") as tmp_name:
        tmp = Path(tmp_name)
        simulator = CreateOSSimulator(
            SimulatorConfig(
                api_keys=(SIM_KEY,), queue_seconds=0.2, building_seconds=0.2,
                deploying_seconds=0.2,
            )
        )  # fmt: skip
        nodes = {
            name: AnvilNode.start(chain_id, log_dir=tmp / "anvil")
            for name, chain_id in (("arbitrum", 42161), ("base", 8453))
        }
        try:
            for node in nodes.values():
                node.install_test_tokens()
            with (
                EmbeddedRedis(tmp / "redis") as redis_server,
                ServerThread(simulator.app) as sim_server,
                LatencyProxy(redis_server.port, delay=args.redis_ms / 1000, name="redis") as rp,
                LatencyProxy(
                    int(sim_server.url.rsplit(":", 1)[1]), delay=args.createos_ms / 1000,
                    name="createos",
                ) as cp,
                LatencyProxy(
                    nodes["arbitrum"].port, delay=args.rpc_ms / 1000, name="rpc"
                ) as arb,
                LatencyProxy(nodes["base"].port, delay=args.rpc_ms / 1000, name="rpc-base") as bp,
            ):  # fmt: skip
                config = write_config(
                    tmp / "bench.toml",
                    PROJECT_ROOT / "config" / "local.toml",
                    {
                        "gateway.redis_key_prefix": "bench:",
                        "rate_limit.requests": 1_000_000,
                        "reconcile.enabled": False,  # its passes would add RPC calls to runs
                    },
                )
                env = {
                    "REDIS_URL": f"redis://127.0.0.1:{rp.port}/0",
                    "CREATEOS_API_URL": cp.url,
                    "CREATEOS_API_KEY": SIM_KEY,
                    "GATEWAY_RPC_ARBITRUM": arb.url,
                    "GATEWAY_RPC_BASE": bp.url,
                    "GATEWAY_SETTLER_KEY": SETTLER_KEY,
                }
                proxies = {"redis": rp, "createos": cp, "rpc": arb}
                with (
                    GatewayProcess(config, env, tmp / "gateway.log") as gateway,
                    httpx.Client(base_url=gateway.url, timeout=60) as client,
                ):
                    ways = ["transfer", "gasless"] if args.pay == "both" else [args.pay]
                    for way in ways:  # warm-up: connections
                        one_run(client, nodes["arbitrum"], proxies, -1, way)
                    runs: dict[str, list[Run]] = {way: [] for way in ways}
                    for i in range(args.runs):  # interleaved, run by run
                        for way in ways:
                            runs[way].append(one_run(client, nodes["arbitrum"], proxies, i, way))
                for way in ways:
                    report(
                        runs[way],
                        args.createos_ms,
                        args.rpc_ms,
                        args.redis_ms,
                        way,
                        show_redis=args.show_redis,
                    )
        finally:
            for node in nodes.values():
                node.stop()


if __name__ == "__main__":
    main()
