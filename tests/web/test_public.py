"""Public routes: health, chains, recipients, on-chain balances with RPC failover."""

from __future__ import annotations

import gc
import socket

import httpx
import pytest

from devstack.anvil import CANONICAL_TOKENS, AnvilNode
from tests.support import PAY_TO, running_gateway


def dead_url() -> str:
    """An http URL on a loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


async def test_health(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/health")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_ready_with_everything_up(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/health/ready")
    assert response.status_code == 200, response.text
    assert response.json()["checks"]["redis"] == "ok"
    assert response.json()["checks"]["rpc:arbitrum"] == "ok"


async def test_ready_names_the_failing_chain(make_settings, chains: dict[str, AnvilNode]) -> None:
    nodes_env = {"arbitrum": chains["arbitrum"]}
    settings = make_settings(nodes_env)
    base = settings.chains["base"]
    settings = settings.with_overrides(
        chains={
            **settings.chains,
            "base": type(base)(**{**_fields(base), "rpc_urls": (dead_url(),)}),
        }
    )
    async with running_gateway(settings) as running:
        gateway = running.client
        response = await gateway.get("/health/ready")
    assert response.status_code == 503
    assert response.json()["failing"] == ["rpc:base"]
    # What the probe got from each URL (by position: URLs may carry keys), not a hint.
    assert response.json()["checks"]["rpc:base"].startswith(
        "unavailable: no RPC URL answered: url 1: "
    )
    assert "try again later" not in response.json()["checks"]["rpc:base"]


async def test_ready_names_a_token_that_is_not_what_the_config_says(
    make_settings, chains: dict[str, AnvilNode]
) -> None:
    """A token address with no contract, or a token whose decimals() differ from the config,
    makes /health/ready fail naming it (the payments it would quote could never be made)."""
    settings = make_settings(chains)
    arbitrum = settings.chains["arbitrum"]
    usdc = arbitrum.tokens["usdc"]
    no_code = type(usdc)(**{**_fields(usdc), "address": "0x" + "42" * 20})
    wrong_decimals = type(usdc)(**{**_fields(usdc), "decimals": 18})
    for token, says in ((no_code, "has no code"), (wrong_decimals, "has 6 decimals")):
        tokens = {**arbitrum.tokens, "usdc": token}
        changed = type(arbitrum)(**{**_fields(arbitrum), "tokens": tokens})
        async with running_gateway(
            settings.with_overrides(chains={**settings.chains, "arbitrum": changed})
        ) as running:
            gateway = running.client
            response = await gateway.get("/health/ready")
        assert response.status_code == 503
        assert response.json()["failing"] == ["rpc:arbitrum"]
        assert says in response.json()["checks"]["rpc:arbitrum"]
        assert "usdc" in response.json()["checks"]["rpc:arbitrum"]


def _fields(obj: object) -> dict[str, object]:
    return {name: getattr(obj, name) for name in obj.__slots__}  # type: ignore[attr-defined]


async def test_chains(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/agent/chains")
    assert response.json() == {
        "chains": [
            {"chain": "arbitrum", "chain_id": 42161, "tokens": ["usdc", "usdt"]},
            {"chain": "base", "chain_id": 8453, "tokens": ["usdc", "usdt"]},
        ]
    }


async def test_recipients(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/agent/recipients")
    recipients = response.json()["recipients"]
    assert [r["chain"] for r in recipients] == ["arbitrum", "base"]
    assert all(r["address"] == PAY_TO for r in recipients)


async def test_disabled_token_is_not_listed(make_settings, chains: dict[str, AnvilNode]) -> None:
    settings = make_settings(chains)
    base = settings.chains["base"]
    only_usdc = {"usdc": base.tokens["usdc"]}
    settings = settings.with_overrides(
        chains={**settings.chains, "base": type(base)(**{**_fields(base), "tokens": only_usdc})}
    )
    async with running_gateway(settings) as running:
        gateway = running.client
        chains_body = (await gateway.get("/agent/chains")).json()["chains"]
    assert chains_body[1]["tokens"] == ["usdc"]


async def test_balance_after_mint_and_transfer(
    gateway: httpx.AsyncClient, arbitrum: AnvilNode
) -> None:
    holder = arbitrum.deploy("AlwaysValidWallet")  # any fresh address will do
    usdc = CANONICAL_TOKENS[42161]["usdc"]
    usdt = CANONICAL_TOKENS[42161]["usdt"]
    sender = "0x70997970C51812dc3A010C7d01b50e0d17dc79C8"  # anvil #1, unlocked
    arbitrum.mint(usdc, sender, 25_000_000)
    arbitrum.transfer(usdc, sender, holder, 18_000_000)
    arbitrum.mint(usdt, holder, 1_500_001)

    response = await gateway.get(f"/agent/balance/{holder.lower()}", params={"chain": "arbitrum"})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["address"] == holder
    assert body["chain"] == "arbitrum" and body["chain_id"] == 42161
    assert body["balances"] == [
        {
            "token": "usdc",
            "symbol": "USDC",
            "address": usdc,
            "balance": "18.000000",
            "balance_raw": "18000000",
            "decimals": 6,
        },
        {
            "token": "usdt",
            "symbol": "USDT",
            "address": usdt,
            "balance": "1.500001",
            "balance_raw": "1500001",
            "decimals": 6,
        },
    ]
    sender_body = (await gateway.get(f"/agent/balance/{sender}?chain=arbitrum")).json()
    assert sender_body["balances"][0]["balance_raw"] == "7000000"


async def test_balance_defaults_to_default_chain(gateway: httpx.AsyncClient) -> None:
    body = (await gateway.get("/agent/balance/0x" + "00" * 19 + "01")).json()
    assert body["chain"] == "arbitrum"


@pytest.mark.parametrize("address", ["0x1234", "0x" + "zz" * 20, "abc", "0x" + "11" * 21])
async def test_balance_bad_address(gateway: httpx.AsyncClient, address: str) -> None:
    response = await gateway.get(f"/agent/balance/{address}")
    assert response.status_code == 400
    assert response.json()["field"] == "address"


async def test_balance_unknown_chain(gateway: httpx.AsyncClient) -> None:
    response = await gateway.get("/agent/balance/0x" + "11" * 20, params={"chain": "ethereum"})
    assert response.status_code == 400
    assert response.json()["field"] == "chain"
    assert "ethereum" in response.json()["error"]


async def test_balance_fails_over_when_first_rpc_is_down(
    make_settings, chains: dict[str, AnvilNode]
) -> None:
    arbitrum = chains["arbitrum"]
    holder = "0x" + "42" * 20
    arbitrum.mint(CANONICAL_TOKENS[42161]["usdc"], holder, 5_000_000)
    settings = make_settings(
        {"arbitrum": arbitrum, "base": chains["base"]},
    )
    arb = settings.chains["arbitrum"]
    settings = settings.with_overrides(
        chains={
            **settings.chains,
            "arbitrum": type(arb)(**{**_fields(arb), "rpc_urls": (dead_url(), arbitrum.url)}),
        }
    )
    async with running_gateway(settings) as running:
        gateway = running.client
        response = await gateway.get(f"/agent/balance/{holder}?chain=arbitrum")
    assert response.status_code == 200, response.text
    assert response.json()["balances"][0]["balance_raw"] == "5000000"


async def test_balance_503_when_every_rpc_is_down(
    make_settings, chains: dict[str, AnvilNode]
) -> None:
    settings = make_settings(chains)
    arb = settings.chains["arbitrum"]
    settings = settings.with_overrides(
        chains={
            **settings.chains,
            "arbitrum": type(arb)(**{**_fields(arb), "rpc_urls": (dead_url(), dead_url())}),
        }
    )
    async with running_gateway(settings) as running:
        gateway = running.client
        response = await gateway.get("/agent/balance/0x" + "11" * 20 + "?chain=arbitrum")
    assert response.status_code == 503
    assert "arbitrum" in response.json()["error"]
    assert "Retry-After" in response.headers


async def test_rpc_serving_the_wrong_chain_is_not_used(
    make_settings, chains: dict[str, AnvilNode]
) -> None:
    """An arbitrum URL that actually serves chain 8453 is skipped, never read."""
    settings = make_settings(chains)
    arb = settings.chains["arbitrum"]
    settings = settings.with_overrides(
        chains={
            **settings.chains,
            "arbitrum": type(arb)(**{**_fields(arb), "rpc_urls": (chains["base"].url,)}),
        }
    )
    async with running_gateway(settings) as running:
        gateway = running.client
        response = await gateway.get("/agent/balance/0x" + "11" * 20 + "?chain=arbitrum")
    assert response.status_code == 503


async def test_startup_heap_is_frozen_while_serving(make_settings) -> None:
    """What start-up allocated is out of the cycle collector's reach while the app serves (a
    full collection over it paused every in-flight request), and back in it after shutdown."""
    gc.unfreeze()
    async with running_gateway(make_settings()) as running:
        assert gc.get_freeze_count() > 10_000
        assert (await running.client.get("/health")).status_code == 200
    assert gc.get_freeze_count() == 0
