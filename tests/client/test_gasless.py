"""Our own client and CLI pay gasless when the gateway offers it (a served gateway with a settler
key beside the local stack's): a wallet with USDC and no ETH deploys and tops up; ``--pay``
chooses; USDT falls back to a transfer; the journal makes a crashed client's retry send the
same authorization, never a second one.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from devstack.anvil import ANVIL_ACCOUNTS, CANONICAL_TOKENS
from devstack.gateway_process import GatewayProcess, write_config
from gateway.client.agent import AgentClient
from gateway.client.errors import PaymentError
from gateway.client.journal import FileJournal
from gateway.client.models import Progress
from tests.client.conftest import ARBITRUM_USDC, ClientCrashed, LocalStack

SETTLER_KEY = ANVIL_ACCOUNTS[7][1]
RECEIPT_SIGNER, RECEIPT_KEY = ANVIL_ACCOUNTS[6]
ARBITRUM_USDT = CANONICAL_TOKENS[42161]["usdt"]


@pytest.fixture(scope="module")
def gasless(local_stack: LocalStack) -> Iterator[GatewayProcess]:
    """A second gateway process on the same Redis, chains and simulator, with a settler."""
    lead = max(
        int(node.rpc("eth_getBlockByNumber", ["latest", False])["timestamp"], 16)
        for node in local_stack.nodes.values()
    ) - int(time.time())
    config = write_config(
        local_stack.workdir / "gasless.toml",
        local_stack.gateway.config,
        {"settlement.challenge_ttl_seconds": 600 + max(0, lead)},
    )
    env = {
        **local_stack.gateway.env,
        "GATEWAY_SETTLER_KEY": SETTLER_KEY,
        "GATEWAY_RECEIPT_KEY": RECEIPT_KEY,
    }
    gateway = GatewayProcess(config, env, local_stack.workdir / "gasless.log").start()
    try:
        yield gateway
    finally:
        gateway.stop()


def usdc_holder(stack: LocalStack, units: int = 10 * 10**6) -> LocalAccount:
    """A fresh wallet with test USDC on arbitrum and no ETH at all."""
    account: LocalAccount = Account.create()
    stack.arbitrum.mint(ARBITRUM_USDC, account.address, units)
    return account


def eth(stack: LocalStack, address: str) -> int:
    return int(stack.arbitrum.rpc("eth_getBalance", [address, "latest"]), 16)


def client(
    stack: LocalStack, gateway: GatewayProcess, agent: LocalAccount, **kw: object
) -> AgentClient:
    return AgentClient(gateway.url, agent, rpc_urls=stack.rpc_urls, poll_seconds=0.2, **kw)  # type: ignore[arg-type]


async def test_a_wallet_without_eth_deploys_and_tops_up_gasless(
    local_stack: LocalStack, gasless: GatewayProcess, tmp_path: Path
) -> None:
    agent = usdc_holder(local_stack)
    stages: list[str] = []
    app = {"index.js": "console.log('gasless')\n"}
    async with client(
        local_stack, gasless, agent, on_progress=lambda p: stages.append(p.stage)
    ) as c:
        from gateway.client.bundle import collect

        (tmp_path / "app").mkdir()
        for name, text in app.items():
            (tmp_path / "app" / name).write_text(text)
        deployment = await c.deploy(collect(tmp_path / "app").upload(), name="gasless-deploy")
        topped = await c.top_up(Decimal("1.5"))
        credits = await c.credits()
    assert deployment.url
    payment = deployment.started.payment
    assert payment is not None and payment.credential is not None
    assert payment.tx_hash.startswith("0x")  # the settlement tx, from PAYMENT-RESPONSE
    assert topped.payment.credential is not None and topped.payment.tx_hash.startswith("0x")
    # Both payments credited in full (the balance itself may already carry an hour's burn:
    # the metering loop ticks whenever it ticks).
    assert sum(e.amount_usd for e in credits.ledger if e.kind == "payment") == Decimal("2.0")
    assert Decimal("1.99") < credits.balance_usd <= Decimal("2.0")
    assert eth(local_stack, agent.address) == 0
    sent = [str(log["transactionHash"]) for log in local_stack.transfers_from(agent.address)]
    assert sent == [payment.tx_hash, topped.payment.tx_hash]
    assert "paying" in stages and "confirmed" in stages and "receipt" in stages
    # Both credits come with the gateway's signed receipt, verified by the client.
    assert payment.receipt is not None and payment.receipt["tx"] == payment.tx_hash
    assert topped.payment.receipt is not None
    assert topped.payment.receipt["creditedMicroUsd"] == 1_500_000


async def test_pay_with_transfer_and_usdt_send_the_token_and_gasless_refuses_usdt(
    local_stack: LocalStack, gasless: GatewayProcess
) -> None:
    agent = local_stack.funded_agent()
    async with client(local_stack, gasless, agent, pay_with="transfer") as c:
        topped = await c.top_up(Decimal("0.5"))
    assert topped.payment.credential is None and topped.payment.tx_hash.startswith("0x")

    local_stack.arbitrum.mint(ARBITRUM_USDT, agent.address, 10**6)
    async with client(local_stack, gasless, agent) as c:  # auto: USDT has no gasless offer
        topped = await c.top_up(Decimal("0.5"), token="usdt")
    assert topped.payment.credential is None

    async with client(local_stack, gasless, agent, pay_with="gasless") as c:
        with pytest.raises(PaymentError, match="no gasless payment in USDT"):
            await c.top_up(Decimal("0.5"), token="usdt")


async def test_a_client_that_crashes_after_signing_resends_the_same_authorization(
    local_stack: LocalStack, gasless: GatewayProcess, tmp_path: Path
) -> None:
    agent = usdc_holder(local_stack)
    journal = FileJournal(tmp_path / "payments.json")

    def crash_once_signed(progress: Progress) -> None:
        if progress.stage == "sent":
            raise ClientCrashed

    first = client(local_stack, gasless, agent, journal=journal, on_progress=crash_once_signed)
    try:
        with pytest.raises(ClientCrashed):
            await first.top_up(Decimal("1"))
    finally:
        await first.aclose()
    [entry] = journal._read().values()
    assert entry.credential is not None and entry.tx is None
    assert local_stack.transfers_from(agent.address) == []  # signed, never sent

    async with client(local_stack, gasless, agent, journal=journal) as second:
        topped = await second.top_up(Decimal("1"))
    assert topped.payment.credential == entry.credential
    assert len(local_stack.transfers_from(agent.address)) == 1
    assert journal._read() == {}


def test_cli_pay_option(local_stack: LocalStack, gasless: GatewayProcess, tmp_path: Path) -> None:
    agent = usdc_holder(local_stack)
    env = {
        **os.environ,
        "GATEWAY_URL": gasless.url,
        "AGENT_PRIVATE_KEY": "0x" + bytes(agent.key).hex(),
        "AGENT_STATE_DIR": str(tmp_path / "state"),
        "AGENT_RPC_URL_ARBITRUM": local_stack.arbitrum.url,
    }
    done = subprocess.run(
        [sys.executable, "-m", "gateway", "topup", "1", "--pay", "gasless", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert eth(local_stack, agent.address) == 0
    assert len(local_stack.transfers_from(agent.address)) == 1
    bad = subprocess.run(
        [sys.executable, "-m", "gateway", "topup", "1", "--pay", "later"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert bad.returncode == 2 and "--pay" in bad.stderr
