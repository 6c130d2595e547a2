"""Settlement throughput: gasless top-ups (the gateway settles each EIP-3009 authorization and
pays the gas) against pushed top-ups (the agent already sent its transfer; the gateway only
verifies it), through one ``python -m gateway serve`` process on a local anvil chain.

    .venv/bin/python -m bench.settlement [--payments 40] [--concurrency 8] [--rounds 3]

Each round runs both ways, interleaved, with fresh wallets: ``payments`` top-ups of 1 USD,
``concurrency`` at a time. Timed per top-up from the paid request to its 200; the transfers of
the pushed way are sent before the clock starts (what the agent pays in time and gas there is
its own). Every settlement is one transaction from the single settler account, so they share
its nonce sequence: this measures how well the Redis-handed nonces keep them flowing.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from pathlib import Path

import httpx
from eth_account import Account
from eth_account.signers.local import LocalAccount

from bench.deploy_stack import machine_summary
from devstack.anvil import ANVIL_ACCOUNTS, CANONICAL_TOKENS, AnvilNode
from devstack.gateway_process import GatewayProcess, write_config
from gateway.client.gasless import gasless_offer, sign_payment
from gateway.client.signing import auth_headers
from gateway.config import PROJECT_ROOT
from gateway.store.embedded import EmbeddedRedis

PAY_TO = "0xa0Ee7A142d267C1f36714E4a8F75612F20a79720"  # config/local.toml
USDC = CANONICAL_TOKENS[42161]["usdc"]
SETTLER_KEY = ANVIL_ACCOUNTS[7][1]
AMOUNT = 1_000_000  # 1 USD of USDC
TOPUP = "/agent/credits/topup?amount_usd=1"


async def prepared(
    http: httpx.AsyncClient, node: AnvilNode, way: str
) -> tuple[LocalAccount, dict[str, str]]:
    """A fresh wallet and the payment header of its top-up (untimed)."""
    agent: LocalAccount = Account.create()
    node.mint(USDC, agent.address, AMOUNT)
    if way == "pushed":
        node.set_balance(agent.address, 10**18)
        tx = node.transfer(USDC, agent.address, PAY_TO, AMOUNT, impersonate=True)
        return agent, {"X-Payment-Tx": tx}
    quote = await http.post(TOPUP, headers=auth_headers(agent))
    offer = gasless_offer(
        quote.headers.get("payment-required"), chain_id=node.chain_id, token_address=USDC
    )
    if offer is None:
        raise RuntimeError(f"no gasless offer: {quote.status_code} {quote.text}")
    return agent, {"PAYMENT-SIGNATURE": sign_payment(agent, offer)}


async def one_round(
    http: httpx.AsyncClient, node: AnvilNode, way: str, payments: int, concurrency: int
) -> tuple[float, list[float]]:
    ready = [await prepared(http, node, way) for _ in range(payments)]
    gate = asyncio.Semaphore(concurrency)
    latencies: list[float] = []

    async def top_up(agent: LocalAccount, payment: dict[str, str]) -> None:
        async with gate:
            started = time.perf_counter()
            answer = await http.post(TOPUP, headers=auth_headers(agent) | payment)
            latencies.append(time.perf_counter() - started)
            if answer.status_code != 200:
                raise RuntimeError(f"{way} top-up: {answer.status_code} {answer.text}")

    started = time.perf_counter()
    await asyncio.gather(*(top_up(agent, payment) for agent, payment in ready))
    return time.perf_counter() - started, latencies


async def run(args: argparse.Namespace, gateway_url: str, node: AnvilNode) -> None:
    results: dict[str, list[tuple[float, list[float]]]] = {"pushed": [], "gasless": []}
    async with httpx.AsyncClient(base_url=gateway_url, timeout=120) as http:
        for way in results:  # warm-up
            await one_round(http, node, way, 2, 2)
        for _ in range(args.rounds):
            for way, rounds in results.items():
                rounds.append(await one_round(http, node, way, args.payments, args.concurrency))
    print(f"\ntop-ups of 1 USD, {args.payments} per round, {args.concurrency} at a time, "
          f"{args.rounds} rounds interleaved ({machine_summary()})\n")  # fmt: skip
    print("| way | top-ups/s (median round) | latency p50 ms | p99 ms |")
    print("|---|---:|---:|---:|")
    rates = {}
    for way, rounds in results.items():
        rate = statistics.median(args.payments / seconds for seconds, _ in rounds)
        rates[way] = rate
        latencies = sorted(x * 1000 for _, lat in rounds for x in lat)
        p99 = latencies[min(len(latencies) - 1, round(0.99 * (len(latencies) - 1)))]
        print(f"| {way} | {rate:.1f} | {statistics.median(latencies):.1f} | {p99:.1f} |")
    print(f"\ngasless / pushed throughput: {rates['gasless'] / rates['pushed']:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--payments", type=int, default=40)
    parser.add_argument("--concurrency", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-settle-") as tmp_name:
        tmp = Path(tmp_name)
        nodes = {
            name: AnvilNode.start(chain_id, log_dir=tmp / "anvil")
            for name, chain_id in (("arbitrum", 42161), ("base", 8453))
        }
        try:
            for node in nodes.values():
                node.install_test_tokens()
            with EmbeddedRedis(tmp / "redis") as redis_server:
                config = write_config(
                    tmp / "bench.toml",
                    PROJECT_ROOT / "config" / "local.toml",
                    {
                        "gateway.redis_key_prefix": "bench:",
                        "rate_limit.requests": 1_000_000,
                        "reconcile.enabled": False,
                    },
                )
                env = {
                    "REDIS_URL": redis_server.url,
                    "GATEWAY_RPC_ARBITRUM": nodes["arbitrum"].url,
                    "GATEWAY_RPC_BASE": nodes["base"].url,
                    "GATEWAY_SETTLER_KEY": SETTLER_KEY,
                }
                with GatewayProcess(config, env, tmp / "gateway.log") as gateway:
                    asyncio.run(run(args, gateway.url, nodes["arbitrum"]))
        finally:
            for node in nodes.values():
                node.stop()


if __name__ == "__main__":
    main()
