"""Faults with real processes (issue 7): Redis killed and restarted between a payment and the
deploy that spends it, CreateOS hanging past the gateway's timeout mid-deploy, and a gateway
process killed mid-deploy while the agent retries against another process.

After each, the ledger consistency check holds and the payment's claim is used with its credit.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import httpx
from eth_account.signers.local import LocalAccount

from devstack.anvil import AnvilNode
from devstack.gateway_process import GatewayProcess, write_config
from devstack.simulator.server import CreateOSSimulator
from gateway.config import load_settings
from gateway.store.embedded import EmbeddedRedis
from tests.deploy_support import (
    ARBITRUM_USDC,
    UPLOAD_FILES,
    deploy,
    deploy_body,
    deploy_settings,
    signed,
)
from tests.payment_support import pay
from tests.support import LOCAL_CONFIG, Gateway, SettingsFactory, TcpProxy, running_gateway

HALF_USD = 500_000


def live_projects(sim: CreateOSSimulator) -> list[str]:
    return [p.id for p in sim.projects() if p.status != "deleted"]


async def assert_books_balance(gw: Gateway, wallet: str, chain_id: int, tx: str) -> None:
    report = await gw.services.ledger.check_consistency(wallet)
    assert report.ok, report
    assert await gw.services.ledger.claim_state(chain_id, tx, wallet) == "used"
    assert await gw.services.ledger.payment_record(chain_id, tx, wallet) is not None


async def test_redis_killed_between_payment_and_deploy_loses_nothing(
    tmp_path: Path,
    make_settings: SettingsFactory,
    chains: dict[str, AnvilNode],
    arbitrum: AnvilNode,
    sim: CreateOSSimulator,
    agent: LocalAccount,
) -> None:
    """SIGKILL, not a clean shutdown: AOF writes reach the file before Redis answers, so a
    crashed Redis process loses no acknowledged credit."""
    redis = EmbeddedRedis(tmp_path / "redis").start()
    try:
        settings = deploy_settings(make_settings, chains).with_overrides(redis_url=redis.url)
        async with running_gateway(settings) as gw:
            tx = pay(arbitrum, agent, HALF_USD)
            topup = await gw.client.post(
                "/agent/credits/topup", headers=signed(agent, X_Payment_Tx=tx)
            )
            assert topup.status_code == 200, topup.text

            assert redis.process is not None
            redis.process.kill()
            redis.process.wait(10)
            down = await gw.client.get("/agent/credits", headers=signed(agent))
            assert down.status_code == 503
            assert down.json()["error"] == "Storage unavailable"

            redis.restart()
            response = await deploy(gw, agent, deploy_body("after-restart"))
            assert response.status_code == 200, response.text
            assert await gw.balance(agent.address) == HALF_USD
            again = await gw.client.post(
                "/agent/credits/topup", headers=signed(agent, X_Payment_Tx=tx)
            )
            assert again.status_code == 409
            await assert_books_balance(gw, agent.address, 42161, tx)
            assert len(live_projects(sim)) == 1
    finally:
        redis.stop()


async def test_createos_hanging_past_the_timeout_mid_deploy_loses_nothing(
    make_settings: SettingsFactory,
    chains: dict[str, AnvilNode],
    arbitrum: AnvilNode,
    sim: CreateOSSimulator,
    agent: LocalAccount,
) -> None:
    """The upload is applied upstream, then CreateOS hangs past the gateway's upload timeout.
    The gateway must not upload twice: it reads the project's deployments and adopts the one
    the hung call made, at once or on the agent's retry."""
    settings = deploy_settings(make_settings, chains).with_overrides(upstream_upload_timeout=1.0)
    sim.delay_next("PUT", UPLOAD_FILES, seconds=4.0)
    async with running_gateway(settings) as gw:
        tx = pay(arbitrum, agent, HALF_USD)
        first = await deploy(gw, agent, deploy_body("hung-upload"), X_Payment_Tx=tx)
        if first.status_code != 200:
            assert first.status_code == 502, first.text
            assert await gw.balance(agent.address) == HALF_USD
            first = await deploy(gw, agent, deploy_body("hung-upload"))
        assert first.status_code == 200, first.text
        [project] = [p for p in sim.projects() if p.status != "deleted"]
        assert [d.id for d in project.deployments] == [first.json()["deploymentId"]]
        assert await gw.balance(agent.address) == HALF_USD
        await assert_books_balance(gw, agent.address, 42161, tx)


async def test_gateway_killed_mid_deploy_and_the_agent_retries_on_another_process(
    tmp_path: Path,
    redis_url: str,
    key_prefix: str,
    sim_url: str,
    chains: dict[str, AnvilNode],
    arbitrum: AnvilNode,
    sim: CreateOSSimulator,
    agent: LocalAccount,
    make_settings: SettingsFactory,
) -> None:
    """Process A is SIGKILLed while its upload is in flight (applied upstream, answer pending).
    Its per-(wallet, name) lock expires on its own; process B then finishes the deploy by
    adopting A's project and deployment: one project, one deployment, the credits intact."""
    config = write_config(
        tmp_path / "gateway.toml",
        LOCAL_CONFIG,
        {
            "gateway.redis_key_prefix": key_prefix,
            "upstream.api_url": sim_url,
            # Short timeouts keep the lock of the killed process short (deploy_lock_ttl_ms).
            "upstream.connect_timeout_seconds": 0.2,
            "upstream.read_timeout_seconds": 0.5,
            "upstream.upload_timeout_seconds": 3,
            "payments.verify_timeout_seconds": 2,
            "rate_limit.requests": 1000,
        },
    )
    env = {
        "REDIS_URL": redis_url,
        "GATEWAY_RPC_ARBITRUM": chains["arbitrum"].url,
        "GATEWAY_RPC_BASE": chains["base"].url,
    }
    sim.delay_next("PUT", UPLOAD_FILES, seconds=8.0)
    tx = pay(arbitrum, agent, HALF_USD)
    body = deploy_body("crash-test")
    with (
        GatewayProcess(config, env, tmp_path / "a.log") as gateway_a,
        GatewayProcess(config, env, tmp_path / "b.log") as gateway_b,
    ):
        async with httpx.AsyncClient(timeout=60) as http:
            in_flight = asyncio.create_task(
                http.post(
                    f"{gateway_a.url}/agent/deploy",
                    json=body,
                    headers=signed(agent, X_Payment_Tx=tx),
                )
            )
            deadline = time.monotonic() + 20
            while not any(r.path.endswith("/deployments/files/base64") for r in sim.requests):
                assert time.monotonic() < deadline, "the upload never reached CreateOS"
                assert not in_flight.done(), in_flight.result().text
                await asyncio.sleep(0.02)
            gateway_a.kill()
            try:
                await in_flight
                raise AssertionError("process A answered after it was killed")
            except httpx.HTTPError:
                pass  # the agent sees a dropped connection: it retries elsewhere

            # Retry on B without payment headers: the payment was credited by A.
            answers = []
            deadline = time.monotonic() + 40
            while time.monotonic() < deadline:
                response = await http.post(
                    f"{gateway_b.url}/agent/deploy", json=body, headers=signed(agent)
                )
                answers.append(response.status_code)
                if response.status_code != 409:
                    break
                assert response.json()["code"] == "deploy_in_progress"
                await asyncio.sleep(float(response.headers["Retry-After"]) / 5)
            assert response.status_code == 200, (answers, response.text)

    [project] = [p for p in sim.projects() if p.status != "deleted"]
    assert project.id == response.json()["projectId"]
    assert [d.id for d in project.deployments] == [response.json()["deploymentId"]]
    creates = [r for r in sim.requests if r.method == "POST" and r.path == "/v1/projects"]
    assert len(creates) == 1
    settings = make_settings(chains)
    async with running_gateway(settings) as gw:
        assert await gw.balance(agent.address) == HALF_USD
        await assert_books_balance(gw, agent.address, 42161, tx)
        assert await gw.services.ownership.get(project.id) is not None
    assert arbitrum.balance_of(ARBITRUM_USDC, agent.address) == 0


async def test_primary_rpc_killed_mid_run_fails_over(
    redis_url: str,
    key_prefix: str,
    sim_url: str,
    chains: dict[str, AnvilNode],
    arbitrum: AnvilNode,
    sim: CreateOSSimulator,
    agent: LocalAccount,
) -> None:
    """The first RPC URL serves a payment, then dies with connections open; the next payment
    is verified through the second URL without the agent noticing."""
    primary = TcpProxy(arbitrum.port)
    env = {
        "REDIS_URL": redis_url,
        "CREATEOS_API_URL": sim_url,
        "GATEWAY_RPC_ARBITRUM": f"{primary.url},{arbitrum.url}",
        "GATEWAY_RPC_BASE": chains["base"].url,
    }
    settings = load_settings(LOCAL_CONFIG, env).with_overrides(
        redis_key_prefix=key_prefix, rpc_timeout_seconds=2.0
    )
    try:
        async with running_gateway(settings) as gw:
            first = pay(arbitrum, agent, HALF_USD)
            answer = await gw.client.post(
                "/agent/credits/topup", headers=signed(agent, X_Payment_Tx=first)
            )
            assert answer.status_code == 200, answer.text
            assert primary.accepted > 0  # the first payment went through the primary
            primary.stop()
            second = pay(arbitrum, agent, HALF_USD)
            answer = await gw.client.post(
                "/agent/credits/topup", headers=signed(agent, X_Payment_Tx=second)
            )
            assert answer.status_code == 200, answer.text
            assert await gw.balance(agent.address) == 2 * HALF_USD
            for tx in (first, second):
                await assert_books_balance(gw, agent.address, 42161, tx)
    finally:
        primary.stop()
