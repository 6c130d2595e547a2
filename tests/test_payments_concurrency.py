"""SPEC section 5: one tx submitted concurrently through two separate gateway processes (real
uvicorn, ``python -m gateway serve``, one Redis) is credited exactly once.

Each process reads a copy of config/local.toml with this test's Redis key prefix and a rate limit
high enough for one wallet's 50 requests; the chains come from ``GATEWAY_RPC_<CHAIN>``."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
from eth_account.signers.local import LocalAccount

from gateway.client.signing import auth_headers
from gateway.config import PROJECT_ROOT
from gateway.devstack.anvil import AnvilNode
from gateway.ledger import Ledger
from gateway.store import connect_store
from tests.conftest import LOCAL_CONFIG
from tests.payment_support import ARBITRUM, assert_store_invariants, pay

SUBMISSIONS = 50
START_TIMEOUT_S = 30.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(directory: Path, key_prefix: str) -> Path:
    """config/local.toml with ``key_prefix`` and a rate limit one wallet cannot hit here."""
    text = LOCAL_CONFIG.read_text()
    text = text.replace('redis_key_prefix = "gwdev:"', f'redis_key_prefix = "{key_prefix}"')
    text = text.replace("[rate_limit]\nrequests = 30", "[rate_limit]\nrequests = 100000")
    assert key_prefix in text and "requests = 100000" in text  # local.toml changed shape?
    path = directory / "gateway.toml"
    path.write_text(text)
    return path


@contextlib.contextmanager
def gateway_process(env: dict[str, str], log_path: Path) -> Iterator[str]:
    """``python -m gateway serve`` on a free port; yields its base URL once /health answers."""
    port = _free_port()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "gateway", "serve", "--port", str(port),
             "--log-level", "warning"],
            cwd=PROJECT_ROOT, env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"gateway exited early:\n{log_path.read_text()[-2000:]}")
            try:
                if httpx.get(f"{url}/health", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"gateway did not start:\n{log_path.read_text()[-2000:]}")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


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
        "GATEWAY_CONFIG": str(write_config(tmp_path, key_prefix)),
        "REDIS_URL": redis_url,
        "CREATEOS_API_URL": sim_url,
        "GATEWAY_RPC_ARBITRUM": chains["arbitrum"].url,
        "GATEWAY_RPC_BASE": chains["base"].url,
    }
    amount = 1_500_000
    tx = pay(arbitrum, agent, amount)
    # Different spellings of one hash: the same claim.
    spellings = [tx, "0x" + tx[2:].upper()]
    with (
        gateway_process(env, tmp_path / "gw1.log") as first,
        gateway_process(env, tmp_path / "gw2.log") as second,
    ):
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
        assert await ledger.claim_state(ARBITRUM, tx) == "used"
        assert await ledger.wallet_payments(agent.address) == [f"{ARBITRUM}:{tx}"]
        await assert_store_invariants(store, ledger)
    finally:
        await store.close()
