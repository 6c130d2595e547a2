"""A local stack for the agent client and CLI tests, started once for the package.

The session's Redis and anvil chains (tests/conftest.py), a CreateOS simulator on the real clock
with short build phases (in this process, so tests read its request recording), and the gateway
as a real ``python -m gateway serve`` process that tests may kill and start again. The chains
are snapshotted when the module starts and reverted when it ends.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.signers.local import LocalAccount

from devstack.anvil import CANONICAL_TOKENS, AnvilNode
from devstack.gateway_process import GatewayProcess
from devstack.server_thread import ServerThread
from devstack.simulator.server import CreateOSSimulator, SimulatorConfig
from gateway.client.agent import AgentClient
from gateway.client.journal import FileJournal
from gateway.client.models import Progress
from gateway.config import PROJECT_ROOT

SIM_KEY = "sim-test-key"
ARBITRUM_USDC = CANONICAL_TOKENS[42161]["usdc"]
TRANSFER_TOPIC = "0xddf252ad1be2c89b69c2b068fc378daa952ba7f163c4a11628f55a4df523b3ef"
START_TIMEOUT_S = 30.0


@dataclass
class LocalStack:
    gateway: GatewayProcess
    simulator: CreateOSSimulator
    nodes: dict[str, AnvilNode]
    workdir: Path

    @property
    def arbitrum(self) -> AnvilNode:
        return self.nodes["arbitrum"]

    @property
    def rpc_urls(self) -> dict[str, str]:
        return {name: node.url for name, node in self.nodes.items()}

    def funded_agent(self, usdc: int = 10 * 10**6) -> LocalAccount:
        """A fresh wallet with gas and ``usdc`` base units of test USDC on arbitrum."""
        account: LocalAccount = Account.create()
        self.arbitrum.set_balance(account.address, 10**18)
        self.arbitrum.mint(ARBITRUM_USDC, account.address, usdc)
        return account

    def transfers_from(self, wallet: str) -> list[dict[str, object]]:
        """Every USDC Transfer log on arbitrum sent by ``wallet``."""
        topic = "0x" + wallet.lower().removeprefix("0x").rjust(64, "0")
        logs: list[dict[str, object]] = self.arbitrum.rpc(
            "eth_getLogs",
            [
                {
                    "fromBlock": "0x0",
                    "toBlock": "latest",
                    "address": ARBITRUM_USDC,
                    "topics": [TRANSFER_TOPIC, topic],
                }
            ],
        )
        return logs

    def uploaded_names(self) -> set[str]:
        """Every file name the simulator received in an upload."""
        return {name for request in self.simulator.requests for name in (request.file_names or ())}


class ClientCrashed(BaseException):
    """Stands for the client process dying: nothing in the client catches it."""


async def pay_then_crash(
    stack: LocalStack,
    agent: LocalAccount,
    journal_path: Path,
    act: Callable[[AgentClient], Awaitable[object]],
    *,
    kill_gateway: bool = False,
) -> str:
    """Run ``act`` with a client that dies as soon as its transfer is mined, before the gateway
    is asked to credit it (``kill_gateway``: the gateway process dies at that moment too).
    Returns the paid tx hash, which the journal at ``journal_path`` now holds."""

    def crash_after_payment(progress: Progress) -> None:
        if progress.stage == "confirmed":
            if kill_gateway:
                stack.gateway.kill()
            raise ClientCrashed

    first = AgentClient(
        stack.gateway.url,
        agent,
        rpc_urls=stack.rpc_urls,
        journal=FileJournal(journal_path),
        on_progress=crash_after_payment,
    )
    try:
        await act(first)
        raise AssertionError("the first client should have crashed after paying")
    except ClientCrashed:
        pass
    finally:
        await first.aclose()
    [paid] = stack.transfers_from(agent.address)
    return str(paid["transactionHash"])


@pytest.fixture(scope="package")
def local_stack(
    anvil_nodes: dict[str, AnvilNode], redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalStack]:
    workdir = tmp_path_factory.mktemp("local-stack")
    snapshots = {name: node.snapshot() for name, node in anvil_nodes.items()}
    simulator = CreateOSSimulator(
        SimulatorConfig(
            api_keys=(SIM_KEY,), queue_seconds=0.2, building_seconds=0.4, deploying_seconds=0.2
        )
    )
    config = workdir / "gateway.toml"
    local = (PROJECT_ROOT / "config" / "local.toml").read_text(encoding="utf-8")
    prefix = f"clitest{uuid.uuid4().hex[:8]}:"
    # Many CLI calls from one wallet within a minute: the rate limit is not under test here.
    config.write_text(
        local.replace('redis_key_prefix = "gwdev:"', f'redis_key_prefix = "{prefix}"').replace(
            "[rate_limit]\nrequests = 30", "[rate_limit]\nrequests = 10000"
        ),
        encoding="utf-8",
    )
    with ServerThread(simulator.app) as simulator_server:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("GATEWAY_", "CREATEOS_"))}
        env.update(
            REDIS_URL=redis_url,
            CREATEOS_API_URL=simulator_server.url,
            CREATEOS_API_KEY=SIM_KEY,
            GATEWAY_RPC_ARBITRUM=anvil_nodes["arbitrum"].url,
            GATEWAY_RPC_BASE=anvil_nodes["base"].url,
        )
        gateway = GatewayProcess(config, env, workdir / "gateway.log")
        gateway.start()
        try:
            yield LocalStack(gateway, simulator, anvil_nodes, workdir)
        finally:
            gateway.stop()
            for name, node in anvil_nodes.items():
                node.set_automine(True)
                node.revert(snapshots[name])
