"""docs/PROTOCOL.md section 5: 30 requests/minute per (IP, wallet header), shared through Redis."""

from __future__ import annotations

import ipaddress

import pytest

from gateway.web.middleware import client_ip
from tests.support import running_gateway


async def test_429_after_30_requests_shared_by_two_app_instances(make_settings) -> None:
    settings = make_settings()
    wallet = {"X-Wallet-Address": "0x" + "ab" * 20}
    async with running_gateway(settings) as first_gw, running_gateway(settings) as second_gw:
        first = first_gw.client
        second = second_gw.client
        for i in range(30):
            client = first if i % 2 == 0 else second
            response = await client.get("/agent/chains", headers=wallet)
            assert response.status_code == 200, (i, response.text)
        for client in (first, second):
            limited = await client.get("/agent/chains", headers=wallet)
            assert limited.status_code == 429
            assert int(limited.headers["Retry-After"]) >= 1
            assert limited.json()["error"] == "Rate limit exceeded"
        # Another wallet from the same IP has its own budget.
        other = await first.get("/agent/chains", headers={"X-Wallet-Address": "0x" + "cd" * 20})
        assert other.status_code == 200


async def test_health_is_not_rate_limited(make_settings) -> None:
    async with running_gateway(make_settings(rate_limit_requests=2)) as running:
        gateway = running.client
        for _ in range(5):
            assert (await gateway.get("/health")).status_code == 200


async def test_budget_refills_with_the_clock(make_settings) -> None:
    from devstack.clock import ManualClock

    clock = ManualClock()
    async with running_gateway(make_settings(rate_limit_requests=30), clock=clock) as running:
        gateway = running.client
        for _ in range(30):
            assert (await gateway.get("/agent/chains")).status_code == 200
        limited = await gateway.get("/agent/chains")
        assert limited.status_code == 429
        assert limited.headers["Retry-After"] == "2"  # 60 s / 30 requests
        clock.advance(2)
        assert (await gateway.get("/agent/chains")).status_code == 200
        assert (await gateway.get("/agent/chains")).status_code == 429


async def test_garbage_wallet_headers_share_one_bucket(make_settings) -> None:
    """Rotating malformed X-Wallet-Address values does not buy new budgets."""
    async with running_gateway(make_settings(rate_limit_requests=3)) as running:
        gateway = running.client
        codes = [
            (
                await gateway.get("/agent/chains", headers={"X-Wallet-Address": f"junk{i}"})
            ).status_code
            for i in range(5)
        ]
    assert codes == [200, 200, 200, 429, 429]


TRUSTED = [ipaddress.ip_network("10.0.0.0/8")]


@pytest.mark.parametrize(
    ("peer", "xff", "expected"),
    [
        ("203.0.113.5", "1.2.3.4", "203.0.113.5"),  # untrusted peer: header ignored
        ("10.0.0.2", "1.2.3.4", "1.2.3.4"),  # trusted proxy: its client
        ("10.0.0.2", "6.6.6.6, 1.2.3.4", "1.2.3.4"),  # forged left-most entry ignored
        ("10.0.0.2", "1.2.3.4, 10.0.0.7", "1.2.3.4"),  # chain of trusted proxies
        ("10.0.0.2", "not-an-ip", "10.0.0.2"),  # malformed: not believed
        ("10.0.0.2", None, "10.0.0.2"),
        (None, "1.2.3.4", "unknown"),
    ],
)
def test_client_ip(peer: str | None, xff: str | None, expected: str) -> None:
    assert client_ip(peer, xff, TRUSTED) == expected


async def test_forged_forwarded_for_from_untrusted_peer_does_not_reset_budget(
    make_settings,
) -> None:
    async with running_gateway(make_settings(rate_limit_requests=2)) as running:
        gateway = running.client
        codes = [
            (
                await gateway.get("/agent/chains", headers={"X-Forwarded-For": f"9.9.9.{i}"})
            ).status_code
            for i in range(4)
        ]
    assert codes == [200, 200, 429, 429]


async def test_trusted_proxy_separates_clients(make_settings) -> None:
    trusted = (ipaddress.ip_network("127.0.0.1/32"),)
    async with running_gateway(
        make_settings(rate_limit_requests=2, trusted_proxies=trusted)
    ) as running:
        gateway = running.client
        codes = [
            (
                await gateway.get("/agent/chains", headers={"X-Forwarded-For": f"9.9.9.{i}"})
            ).status_code
            for i in range(4)
        ]
    assert codes == [200, 200, 200, 200]


async def test_authenticated_requests_share_the_budget_and_failures_count(
    make_settings, chains
) -> None:
    """Signed requests, bad signatures and wrong methods on protected routes all draw from
    the same (IP, wallet) budget; the 429 comes before the nonce is consumed."""
    from eth_account import Account

    from gateway.client.signing import auth_headers

    account = Account.create()
    async with running_gateway(make_settings(chains, rate_limit_requests=6)) as running:
        gateway = running.client
        ok = await gateway.get("/agent/credits", headers=auth_headers(account))
        assert ok.status_code == 200
        forged = auth_headers(Account.create(), address=account.address)
        assert (await gateway.get("/agent/credits", headers=forged)).status_code == 401
        missing = {"X-Wallet-Address": account.address}
        assert (await gateway.get("/agent/credits", headers=missing)).status_code == 401
        wrong_method = await gateway.put(
            "/agent/credits", headers={"X-Wallet-Address": account.address}
        )
        assert wrong_method.status_code == 405
        assert (await gateway.get("/agent/chains", headers=missing)).status_code == 200
        assert (
            await gateway.get("/agent/credits", headers=auth_headers(account))
        ).status_code == 200
        # Six counted: the seventh is limited, whatever it is, and its nonce stays unused.
        headers = auth_headers(account)
        limited = await gateway.get("/agent/credits", headers=headers)
        assert limited.status_code == 429
        assert int(limited.headers["Retry-After"]) >= 1
    # The limited request's nonce was not consumed.
    import redis

    from gateway.store.keys import KeySpace

    settings = make_settings()
    client = redis.Redis.from_url(settings.redis_url)
    nonce_key = KeySpace(settings.redis_key_prefix).nonce(account.address, headers["X-Nonce"])
    assert client.exists(nonce_key) == 0
    client.close()


def test_served_gateway_ignores_forwarded_for_from_a_local_peer(
    tmp_path, redis_url, key_prefix, sim_url
) -> None:
    """Through ``python -m gateway serve`` (real uvicorn), a local peer cannot reset its budget
    with ``X-Forwarded-For``: uvicorn's own proxy-header handling is off, and only
    GATEWAY_TRUSTED_PROXIES (empty here) is believed."""
    import httpx

    from devstack.gateway_process import GatewayProcess, write_config
    from tests.support import LOCAL_CONFIG

    changes = {"gateway.redis_key_prefix": key_prefix, "rate_limit.requests": 2}
    config = write_config(tmp_path / "gateway.toml", LOCAL_CONFIG, changes)
    env = {"REDIS_URL": redis_url, "CREATEOS_API_URL": sim_url}
    with GatewayProcess(config, env, tmp_path / "gateway.log") as gateway:
        codes = [
            httpx.get(
                f"{gateway.url}/agent/chains", headers={"X-Forwarded-For": f"9.9.9.{i}"}
            ).status_code
            for i in range(4)
        ]
    assert codes == [200, 200, 429, 429]
