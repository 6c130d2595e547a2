"""A bounded mixed load on two real gateway processes sharing one Redis (issue 7): signed
reads, 402 quotes, paid deploys and replayed txs from many wallets, plus one greedy wallet
against the shared rate limit. Afterwards every payment is credited exactly once, the rate
limit held across processes, and nothing answered 5xx. Figures: ``python -m bench.load_mix``
(docs/PERFORMANCE.md); this test asserts correctness, never time."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.load_mix import RATE_LIMIT, check_books, gateway_config, run_mix, two_gateways
from devstack.anvil import AnvilNode
from devstack.simulator.server import CreateOSSimulator
from tests.deploy_support import SIM_KEY


async def _run(
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
    sim_url: str,
    chains: dict[str, AnvilNode],
    *,
    wallets: int,
    reads: int,
    greedy: int,
) -> None:
    config = gateway_config(tmp_path, prefix=key_prefix, sim_url=sim_url, api_key=SIM_KEY)
    env = {
        "REDIS_URL": redis_url,
        "GATEWAY_RPC_ARBITRUM": chains["arbitrum"].url,
        "GATEWAY_RPC_BASE": chains["base"].url,
    }
    with two_gateways(config, env, tmp_path) as gateways:
        report = await run_mix(
            gateways, chains["arbitrum"], wallets=wallets, reads=reads, greedy=greedy
        )
    await check_books(report, redis_url, key_prefix, 42161)
    print(report.table())
    assert report.books == []
    assert report.server_errors == 0
    assert report.statuses["authenticated read"] == {200: wallets * reads}
    assert report.statuses["402 quote"] == {402: wallets}
    assert report.statuses["paid deploy"] == {200: wallets}
    assert report.statuses["replayed tx"] == {409: wallets}
    assert len(report.payments) == wallets
    # The burst itself is allowed; beyond it (plus refill, checked in check_books) only 429s.
    assert report.greedy_admitted >= RATE_LIMIT
    assert report.greedy_limited > 0


async def test_mixed_load_on_two_processes_keeps_the_books(
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
    sim_url: str,
    sim: CreateOSSimulator,
    chains: dict[str, AnvilNode],
) -> None:
    await _run(tmp_path, redis_url, key_prefix, sim_url, chains, wallets=8, reads=6, greedy=45)


@pytest.mark.slow
async def test_long_mixed_load(
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
    sim_url: str,
    sim: CreateOSSimulator,
    chains: dict[str, AnvilNode],
) -> None:
    await _run(tmp_path, redis_url, key_prefix, sim_url, chains, wallets=60, reads=20, greedy=120)
