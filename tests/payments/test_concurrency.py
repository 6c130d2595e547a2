"""docs/PAYMENTS.md section 2: one tx submitted concurrently through two separate gateway processes
(real uvicorn, ``python -m gateway serve``, one Redis) is credited exactly once.

Each process reads a copy of config/local.toml with this test's Redis key prefix and a rate limit
high enough for one wallet's 50 requests; the chains come from ``GATEWAY_RPC_<CHAIN>``."""

from __future__ import annotations

import asyncio
from collections import Counter
from pathlib import Path

import httpx
from eth_account.signers.local import LocalAccount

from devstack.anvil import AnvilNode
from devstack.gateway_process import GatewayProcess, write_config
from gateway.client.signing import auth_headers
from gateway.ledger import Ledger
from gateway.store import connect_store
from tests.payment_support import ARBITRUM, assert_store_invariants, pay
from tests.support import LOCAL_CONFIG

SUBMISSIONS = 50


def gateway_config(directory: Path, key_prefix: str) -> Path:
    """config/local.toml with ``key_prefix`` and a rate limit one wallet cannot hit here."""
    changes = {"gateway.redis_key_prefix": key_prefix, "rate_limit.requests": 100_000}
    return write_config(directory / "gateway.toml", LOCAL_CONFIG, changes)


async def test_one_tx_through_two_processes_is_credited_once(
    redis_url: str,
    key_prefix: str,
    sim_url: str,
    chains: dict[str, AnvilNode],
    arbitrum: AnvilNode,
    agent: LocalAccount,
    tmp_path: Path,
) -> None:
    env = {
        "REDIS_URL": redis_url,
        "CREATEOS_API_URL": sim_url,
        "GATEWAY_RPC_ARBITRUM": chains["arbitrum"].url,
        "GATEWAY_RPC_BASE": chains["base"].url,
    }
    amount = 1_500_000
    tx = pay(arbitrum, agent, amount)
    # Different spellings of one hash: the same claim.
    spellings = [tx, "0x" + tx[2:].upper()]
    config = gateway_config(tmp_path, key_prefix)
    with (
        GatewayProcess(config, env, tmp_path / "gw1.log") as first_process,
        GatewayProcess(config, env, tmp_path / "gw2.log") as second_process,
    ):
        first, second = first_process.url, second_process.url
        requests = []
        for i in range(SUBMISSIONS):
            headers = auth_headers(agent)  # signed up front: a fresh nonce each
            headers["X-Payment-Tx"] = spellings[i % 2]
            requests.append(((first, second)[i % 2], headers))
        async with httpx.AsyncClient(timeout=60.0) as client:
            responses = await asyncio.gather(
                *(client.post(f"{url}/agent/credits/topup", headers=h) for url, h in requests)
            )
            # Once the burst is over, either process answers 409: the claim is used for good.
            for url in (first, second):
                headers = {**auth_headers(agent), "X-Payment-Tx": tx}
                late = await client.post(f"{url}/agent/credits/topup", headers=headers)
                assert late.status_code == 409, late.text

    statuses = Counter(r.status_code for r in responses)
    assert statuses[200] == 1, statuses
    for response in responses:
        if response.status_code == 402:
            assert response.json()["payment_status"] == "pending", response.text
            assert "amount_usd" not in response.json()
        elif response.status_code == 409:
            assert response.json()["error"] == "Payment already processed"
        else:
            assert response.status_code == 200, response.text

    store = await connect_store(redis_url, key_prefix)
    try:
        ledger = Ledger(store)
        assert await ledger.balance(agent.address) == amount
        assert len(await ledger.entries(agent.address)) == 1
        assert (await ledger.check_consistency(agent.address)).ok
        assert await ledger.claim_state(ARBITRUM, tx, agent.address) == "used"
        assert await ledger.wallet_payments(agent.address) == [f"{ARBITRUM}:{tx}"]
        await assert_store_invariants(store, ledger)
    finally:
        await store.close()
